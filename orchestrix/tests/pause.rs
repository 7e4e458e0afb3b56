//! Pausing and resuming projections through their durable control record
//! (ADR 0050), against the in-memory stores: the awkward cases of the ADR,
//! each as a test.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::error::BoxError;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{
    PoisonPolicy, Projection, ProjectionEngine, ProjectionError, ProjectionOptions, ProjectionState,
};
use orchestrix::store::{CheckpointStore, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore, ExpectedVersion};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    retry::RetryPolicy,
    StreamId,
};
use serde_json::value::RawValue;

/// How long a test waits for a projection before it fails.
const WAIT: Duration = Duration::from_secs(30);

/// Longer than a runner takes to read its record (500 ms): long enough
/// for a runner that ignored a pause to have handled something.
const SETTLE: Duration = Duration::from_millis(1_200);

fn event(n: u64) -> NewEvent {
    NewEvent::new("Noted", 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap())
}

fn stream(name: &str) -> StreamId {
    StreamId::new("Ledger", name).unwrap()
}

/// Records every event it applies, as (stream, version); refuses the
/// events whose `n` is in `refused` while `broken` is set.
#[derive(Clone, Default)]
struct Ledger {
    applied: Arc<Mutex<Vec<(String, u64)>>>,
    broken: Arc<AtomicBool>,
    refused: Vec<u64>,
}

impl Ledger {
    fn applied(&self) -> Vec<(String, u64)> {
        self.applied.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.applied.lock().unwrap().len()
    }
}

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> Cow<'static, str> {
        "ledger".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let value: serde_json::Value = serde_json::from_str(event.data.get())?;
        let n = value["n"].as_u64().ok_or("no n")?;
        if self.broken.load(Ordering::SeqCst) && self.refused.contains(&n) {
            return Err(format!("event {n} refused").into());
        }
        self.applied.lock().unwrap().push((event.stream.id().to_owned(), event.stream_version));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.applied.lock().unwrap().clear();
        Ok(())
    }
}

struct World {
    events: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    letters: InMemoryDeadLetterStore,
}

impl World {
    fn new() -> Self {
        Self {
            events: InMemoryEventStore::new(),
            checkpoints: InMemoryCheckpointStore::new(),
            letters: InMemoryDeadLetterStore::new(),
        }
    }

    /// An engine over the same stores: another process, as far as the
    /// projection can tell.
    fn engine(&self) -> ProjectionEngine {
        ProjectionEngine::new(self.events.clone(), self.checkpoints.clone()).with_dead_letters(self.letters.clone())
    }

    async fn append(&self, name: &str, from: u64, to: u64) {
        let events = (from..=to).map(event).collect();
        self.events.append(&stream(name), ExpectedVersion::Any, events).await.unwrap();
    }
}

fn parking() -> ProjectionOptions {
    ProjectionOptions::default().poison(PoisonPolicy::Park).retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
}

/// Each stream's versions in the order applied: every event once, in order.
fn assert_once_in_order(applied: &[(String, u64)], streams: &[(&str, u64)]) {
    for (name, last) in streams {
        let versions: Vec<u64> = applied.iter().filter(|(s, _)| s == name).map(|(_, v)| *v).collect();
        assert_eq!(versions, (1..=*last).collect::<Vec<_>>(), "stream {name}: every event once, in order");
    }
    assert_eq!(applied.len(), streams.iter().map(|(_, n)| usize::try_from(*n).unwrap()).sum::<usize>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_while_catching_up_stops_between_events_and_resume_goes_on() {
    let world = World::new();
    world.append("a", 1, 3_000).await;
    let ledger = Ledger::default();
    let mut handle = world.engine().spawn(ledger.clone(), ProjectionOptions::default());
    let status = handle.pause(WAIT).await.unwrap();
    assert_eq!(status.state, ProjectionState::Paused);
    let record = world.checkpoints.load_control("ledger").await.unwrap().unwrap();
    let ack = record.paused.expect("acknowledged");
    assert_eq!(world.checkpoints.load("ledger").await.unwrap(), Some(ack.position), "checkpoint saved at the pause");
    assert_eq!(ack.position, status.position);
    let handled = ledger.count();
    assert_eq!(u64::try_from(handled).unwrap(), ack.position, "the checkpoint is what was handled");

    // While paused: nothing handled, even new events.
    world.append("a", 3_001, 3_010).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(ledger.count(), handled, "a paused projection handles nothing");
    assert_eq!(handle.status().state, ProjectionState::Paused);

    handle.resume().await.unwrap();
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_once_in_order(&ledger.applied(), &[("a", 3_010)]);
    assert_eq!(world.checkpoints.load_control("ledger").await.unwrap().unwrap().paused, None, "ack cleared");
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_paused_from_elsewhere_pauses_and_one_that_starts_paused_stays_paused() {
    let world = World::new();
    world.append("a", 1, 5).await;
    let ledger = Ledger::default();
    let mut handle = world.engine().spawn(ledger.clone(), ProjectionOptions::default());
    handle.wait_caught_up(WAIT).await.unwrap();

    // Another process asks: the runner notices by itself.
    world.checkpoints.request_pause("ledger", true).await.unwrap();
    let record = wait_paused(&world.checkpoints).await;
    assert_eq!(record.paused.unwrap().position, 5);
    assert_eq!(handle.status().state, ProjectionState::Paused);

    // The process crashes while paused; the restarted runner starts paused.
    handle.abort();
    world.append("a", 6, 8).await;
    let restarted = Ledger::default();
    let mut handle = world.engine().spawn(restarted.clone(), ProjectionOptions::default());
    let status = handle.pause(WAIT).await.unwrap();
    assert_eq!(status.state, ProjectionState::Paused);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(restarted.count(), 0, "started paused: nothing handled");
    assert_eq!(world.checkpoints.load("ledger").await.unwrap(), Some(5));

    // Resumed from another process: from the checkpoint, nothing lost.
    world.checkpoints.request_pause("ledger", false).await.unwrap();
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(restarted.applied(), vec![("a".into(), 6), ("a".into(), 7), ("a".into(), 8)]);
    handle.stop().await.unwrap();
}

async fn wait_paused(checkpoints: &InMemoryCheckpointStore) -> orchestrix::store::ConsumerControl {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(record) =
                checkpoints.load_control("ledger").await.unwrap().filter(orchestrix::store::ConsumerControl::is_paused)
            {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the runner acknowledges the pause")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_running_projection_and_pause_of_an_unknown_name_are_harmless() {
    let world = World::new();
    let ledger = Ledger::default();
    let mut handle = world.engine().spawn(ledger.clone(), ProjectionOptions::default());
    handle.resume().await.unwrap();
    world.append("a", 1, 3).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(ledger.count(), 3, "resume of a projection that is not paused changes nothing");
    assert_ne!(handle.status().state, ProjectionState::Paused);

    world.checkpoints.request_pause("nobody", true).await.unwrap();
    let record = world.checkpoints.load_control("nobody").await.unwrap().unwrap();
    assert!(record.pause_requested && record.paused.is_none(), "requested; no runner acknowledges");
    world.append("a", 4, 4).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(ledger.count(), 4, "another name's pause leaves this one running");
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_retried_elsewhere_while_paused_is_applied_once_and_the_stream_follows_in_order() {
    let world = World::new();
    let ledger = Ledger { refused: vec![2], ..Ledger::default() };
    ledger.broken.store(true, Ordering::SeqCst);
    let mut handle = world.engine().spawn(ledger.clone(), parking());
    world.append("a", 1, 3).await; // 2 is parked, 3 parked behind it
    world.append("b", 10, 11).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    let letters = world.letters.query(&DeadLetterQuery::consumer("ledger")).await.unwrap();
    assert_eq!(letters.len(), 2);

    // What `orchestrix dead-letters retry` does: pause, wait for the
    // acknowledgement, retry with its own engine, resume.
    world.checkpoints.request_pause("ledger", true).await.unwrap();
    wait_paused(&world.checkpoints).await;
    ledger.broken.store(false, Ordering::SeqCst);
    world.append("a", 4, 4).await; // appended while paused
    let mut elsewhere = ledger.clone();
    let outcome = world.engine().retry_dead_letter(&mut elsewhere, letters[0].id).await.unwrap();
    assert!(outcome.is_complete(), "{outcome:?}");
    world.checkpoints.request_pause("ledger", false).await.unwrap();
    handle.wait_caught_up(WAIT).await.unwrap();
    world.append("a", 5, 5).await;
    handle.wait_caught_up(WAIT).await.unwrap();

    assert_once_in_order(&ledger.applied(), &[("a", 5), ("b", 2)]);
    assert_eq!(world.letters.count(&DeadLetterQuery::consumer("ledger")).await.unwrap(), 0);
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_runner_serves_its_handle_and_a_rebuild_elsewhere_moves_its_checkpoint() {
    let world = World::new();
    let ledger = Ledger { refused: vec![2], ..Ledger::default() };
    ledger.broken.store(true, Ordering::SeqCst);
    let mut handle = world.engine().spawn(ledger.clone(), parking());
    world.append("a", 1, 3).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    handle.pause(WAIT).await.unwrap();

    // Dead-letter requests through the handle are served while paused.
    ledger.broken.store(false, Ordering::SeqCst);
    let outcome = handle.retry_dead_letters().await.unwrap();
    assert_eq!(outcome.applied.len(), 2);
    assert_eq!(handle.status().state, ProjectionState::Paused, "still paused after serving");

    // A rebuild by another process while paused: the runner must go on
    // from the rebuilt checkpoint, not from where it paused.
    world.append("a", 4, 6).await;
    let mut rebuilt = ledger.clone();
    world.engine().rebuild(&mut rebuilt, ProjectionOptions::default(), |_| {}).await.unwrap();
    handle.resume().await.unwrap();
    world.append("a", 7, 7).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_once_in_order(&ledger.applied(), &[("a", 7)]);
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_paused_ends_the_runner_and_a_store_without_records_refuses_to_pause() {
    let world = World::new();
    world.append("a", 1, 2).await;
    let handle = world.engine().spawn(Ledger::default(), ProjectionOptions::default());
    handle.pause(WAIT).await.unwrap();
    let ledger = tokio::time::timeout(WAIT, handle.stop()).await.expect("a paused runner stops").unwrap();
    assert_eq!(
        ledger.count(),
        world.checkpoints.load("ledger").await.unwrap().map_or(0, |p| usize::try_from(p).unwrap())
    );

    let ledger = Ledger::default();
    let mut handle = ProjectionEngine::new(world.events.clone(), Plain::default())
        .spawn(ledger.clone(), ProjectionOptions::default());
    let refused = handle.pause(WAIT).await.unwrap_err();
    assert!(matches!(refused, ProjectionError::Store { .. }), "{refused}");
    assert!(refused.to_string().contains("keeps no control records"), "{refused}");
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(ledger.count(), 2, "it runs on");
    handle.stop().await.unwrap();
}

/// A checkpoint store that keeps no control records (the port's defaults).
#[derive(Debug, Clone, Default)]
struct Plain(InMemoryCheckpointStore);
#[async_trait]
impl CheckpointStore for Plain {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, orchestrix::StoreError> {
        self.0.load(consumer).await
    }
    async fn save(&self, consumer: &str, position: u64) -> Result<(), orchestrix::StoreError> {
        self.0.save(consumer, position).await
    }
    async fn delete(&self, consumer: &str) -> Result<(), orchestrix::StoreError> {
        self.0.delete(consumer).await
    }
}
