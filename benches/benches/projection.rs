//! Projection catch-up over 1,000,000 in-memory events through a no-op
//! projection, beside a plain loop that reads the same events and calls
//! the same handler, in one run (goal: at least 0.7 of the loop).
//!
//! `cargo bench -p orchestrix-benches --bench projection` (add `-- --quick`
//! for 100,000 events; `-- --only plain|rebuild|spawned|none` runs one
//! round of one side, to count instructions under callgrind).

use std::time::Instant;

use futures_util::StreamExt;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore};
use orchestrix::projection::{Projection, ProjectionEngine, ProjectionOptions};
use orchestrix::{
    envelope::NewEvent,
    store::{EventFilter, EventStore, ExpectedVersion},
    Metadata, StreamId,
};
use orchestrix_benches::Counting;
use serde_json::value::RawValue;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only plain|rebuild|spawned|none`: one round of one side (`none`:
    // the setup alone), for instruction counts under callgrind: the
    // difference with `none`, divided by the events, is the cost per event.
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let runs = |side: &str| only.as_deref().is_none_or(|only| only == side);
    let total: u64 = if quick { 100_000 } else { 1_000_000 };
    let store = InMemoryEventStore::new();
    let data = RawValue::from_string(r#"{"amount":1}"#.to_owned()).expect("valid JSON");
    for stream in 0..total / 100 {
        let stream = StreamId::new("Account", stream.to_string()).expect("a valid stream");
        let batch = (0..100)
            .map(|_| NewEvent {
                id: orchestrix::Uuid::now_v7(),
                event_type: "Deposited".into(),
                schema_version: 1,
                data: data.clone(),
                metadata: Metadata::default(),
            })
            .collect();
        store.append(&stream, ExpectedVersion::Any, batch).await.expect("appends");
    }
    println!("projection catch-up over {total} in-memory events, 3 rounds each, best of 3\n");
    let rebuilding = ProjectionEngine::new(store.clone(), InMemoryCheckpointStore::new());
    let filter = EventFilter::all();
    let (mut best_plain, mut best_engine, mut best_spawned) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..if only.is_some() { 1 } else { 3 } {
        // The baseline: read the same events and call the same handler,
        // with nothing else (no checkpoint, no retry, no span).
        if runs("plain") {
            let start = Instant::now();
            let mut events = store.read_all(1, &filter);
            let mut plain = Counting::new("plain");
            while let Some(event) = events.next().await {
                plain.handle(&event.expect("reads")).await.expect("handles");
            }
            assert_eq!(plain.seen, total);
            best_plain = best_plain.min(start.elapsed().as_secs_f64());
        }

        if runs("rebuild") {
            let start = Instant::now();
            let mut projection = Counting::new("no-op");
            let options = ProjectionOptions::default().checkpoint_every(1_000);
            rebuilding.rebuild(&mut projection, options, |_| {}).await.expect("rebuilds");
            assert_eq!(projection.seen, total);
            best_engine = best_engine.min(start.elapsed().as_secs_f64());
        }

        if runs("spawned") {
            // A spawned projection catching up from no checkpoint, as a new
            // projection would in production (subscription, then live).
            let engine = ProjectionEngine::new(store.clone(), InMemoryCheckpointStore::new());
            let start = Instant::now();
            let mut handle = engine.spawn(Counting::new("no-op"), ProjectionOptions::default().checkpoint_every(1_000));
            handle
                .wait_for_position(total, std::time::Duration::from_mins(10))
                .await
                .expect("the projection catches up");
            best_spawned = best_spawned.min(start.elapsed().as_secs_f64());
            assert_eq!(handle.stop().await.expect("stops").seen, total);
        }
    }
    if only.is_some() {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |secs: f64| total as f64 / secs;
    let (plain, rebuilt, spawned) = (rate(best_plain), rate(best_engine), rate(best_spawned));
    println!("plain loop over read_all              {plain:>12.0} events/s");
    println!("rebuild, no-op projection             {rebuilt:>12.0} events/s   ratio {:.3}", rebuilt / plain);
    println!("spawned catch-up, no-op projection    {spawned:>12.0} events/s   ratio {:.3}", spawned / plain);
}
