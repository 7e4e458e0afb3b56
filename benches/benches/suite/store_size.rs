//! Scenario 10, on PostgreSQL: the cost of the same work on a small store
//! and on a large one (issue 22, goal 3: flat in the size of the store).
//! Each store is a schema kept by name between runs (`orx_size_<events>`),
//! filled once through the adapter's batch path (appends of 100 events,
//! one stream each, from 4 tasks) and `ANALYZE`d; a schema that holds
//! fewer events than it should is dropped and filled again.
//!
//! - 10a: one command per new aggregate, sequential (scenario 1);
//! - 10b: one command on an existing aggregate of the store, aggregate
//!   cache off (a load, then an append that expects its version);
//! - 10c: a projection catching up over the newest 100,000 events.
//!
//! The figure is the large store's rate beside the small one's, in
//! rotating turns in one run. Commands add their events to the stores,
//! which are kept: a store grows by a few thousand events a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::store::{CheckpointStore, EventStore, ExpectedVersion, KeyValueStore};
use orchestrix::{envelope::NewEvent, Metadata, Orchestrix, StreamId, Uuid};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_benches::ledger::{self, Account, AccountEvent, CATEGORY};
use orchestrix_benches::{race, round, Counting, Rate};

use crate::pg::{BoxError, BATCH};
use crate::report::{Entry, Row};
use crate::Options;

/// The key that records, in a store's key-value table, how many events
/// its fill wrote.
const FILLED: &str = "orx-bench-filled";

/// How many of the newest events 10c catches up over.
const CATCH_UP: u64 = 100_000;

/// A store of `events` events in the schema `orx_size_<label>`, filled now
/// if it is not yet.
async fn sized_store(url: &str, label: &str, events: u64) -> Result<PgStore, BoxError> {
    let schema = format!("orx_size_{label}");
    let store = PgStore::connect(url, PgConfig::new(schema.as_str())?.with_max_connections(4)).await?;
    store.migrate().await?;
    let filled = KeyValueStore::get(&store, FILLED).await?.and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
    if filled.as_deref() == Some(events.to_string().as_str()) {
        println!("[10] store {schema}: {events} events, filled in an earlier run");
        return Ok(store);
    }
    store.pool().close().await;
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&admin).await?;
    admin.close().await;
    let store = PgStore::connect(url, PgConfig::new(schema.as_str())?.with_max_connections(4)).await?;
    store.migrate().await?;
    let started = std::time::Instant::now();
    fill(&store, events).await?;
    sqlx::raw_sql(&format!("ANALYZE \"{schema}\".events")).execute(store.pool()).await?;
    KeyValueStore::put(&store, FILLED, events.to_string().into_bytes().into()).await?;
    println!("[10] store {schema}: filled with {events} events in {:.1?}", started.elapsed());
    Ok(store)
}

/// Writes `total` events through the adapter, `BATCH` per stream and
/// append, from 4 tasks.
async fn fill(store: &PgStore, total: u64) -> Result<(), BoxError> {
    let tasks: Vec<_> = (0..4u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stream_no = task;
                while stream_no * BATCH < total {
                    let stream = StreamId::new(CATEGORY, fill_id(stream_no).to_string())?;
                    let events = (0..BATCH)
                        .map(|i| {
                            let event = if i == 0 {
                                AccountEvent::Opened { owner: "Ada Lovelace".into() }
                            } else {
                                AccountEvent::Deposited { amount: i }
                            };
                            NewEvent::encode(&event, Metadata::default())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    store.append(&stream, ExpectedVersion::NoStream, events).await?;
                    stream_no += 4;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn app(store: &PgStore, cache: bool) -> Orchestrix {
    let builder = Orchestrix::builder().event_store(store.clone()).snapshot_store(store.clone()).aggregate::<Account>();
    let builder = if cache { builder } else { builder.cache_capacity(0) };
    builder.build().expect("a valid configuration")
}

async fn open_accounts(app: &Orchestrix, n: u64) {
    for _ in 0..n {
        app.execute(Uuid::now_v7(), ledger::Open { owner: "Ada Lovelace".into() }).await.expect("opens");
    }
}

/// The aggregate id of the fill's stream number `k`.
fn fill_id(k: u64) -> Uuid {
    Uuid::from_u128(u128::from(k) + 1)
}

/// `n` deposits, each on one of the fill's `streams` streams, the
/// aggregate cache off.
async fn deposits(app: &Orchestrix, streams: u64, next: &AtomicU64, n: u64) {
    for _ in 0..n {
        // A stride prime to the stream count visits streams far apart.
        let k = next.fetch_add(7_919, Ordering::Relaxed) % streams;
        app.execute(fill_id(k), ledger::Deposit { amount: 1 }).await.expect("deposits");
    }
}

/// Catches up a new counting projection over the newest `CATCH_UP` events
/// of `store`, asserting it saw them all.
async fn catch_up(store: &PgStore, run: &AtomicU64, n: u64) {
    let offset = i64::try_from(n).expect("small");
    let table = format!("\"{}\".events", store.config().schema());
    let (after, head): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COALESCE((SELECT global_position FROM {table} ORDER BY global_position DESC OFFSET $1 LIMIT 1), 0), \
         (SELECT max(global_position) FROM {table})"
    ))
    .bind(offset)
    .fetch_one(store.pool())
    .await
    .expect("the store has enough events");
    let name = format!("size-catch-up-{}-{}", std::process::id(), run.fetch_add(1, Ordering::Relaxed));
    CheckpointStore::save(store, &name, u64::try_from(after).expect("positive")).await.expect("a checkpoint");
    let engine = ProjectionEngine::new(store.clone(), store.clone());
    let mut handle = engine.spawn(Counting::new(name.clone()), ProjectionOptions::default());
    handle
        .wait_for_position(u64::try_from(head).expect("positive"), Duration::from_mins(10))
        .await
        .expect("the projection catches up");
    assert_eq!(handle.stop().await.expect("the projection ran").seen, n);
    CheckpointStore::delete(store, &name).await.expect("the checkpoint is removed");
}

/// The large store's rate beside the small one's.
fn row(id: &str, name: &str, unit: &'static str, rates: &[Rate], names: (&str, &str), method: String) -> Row {
    Row::new(
        id,
        name,
        unit,
        Entry::new(format!("Orchestrix, store of {}", names.1), rates[1].per_second),
        Entry::new(format!("Orchestrix, store of {}", names.0), rates[0].per_second),
    )
    .goal("to_baseline", 0.9)
    .method(method)
    .announce()
}

/// Runs scenario 10 (`--only 10`, or one of `10a`, `10b`, `10c`). The
/// large store has 2,000,000 events, or `ORCHESTRIX_BENCH_LARGE_STORE`.
pub(crate) async fn run(url: &str, options: &Options) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    if !["10a", "10b", "10c"].iter().any(|id| options.runs(id)) {
        return Ok(rows);
    }
    let large_events =
        std::env::var("ORCHESTRIX_BENCH_LARGE_STORE").ok().and_then(|value| value.parse().ok()).unwrap_or(2_000_000u64);
    let small_events = 100_000u64;
    let small = sized_store(url, &small_events.to_string(), small_events).await?;
    let large = sized_store(url, &large_events.to_string(), large_events).await?;
    #[allow(clippy::cast_precision_loss)] // event counts far below 2^52
    let names = (
        format!("{} events", crate::report::figure(small_events as f64)),
        format!("{} events", crate::report::figure(large_events as f64)),
    );
    let names = (names.0.as_str(), names.1.as_str());
    let size = options.size;
    if options.runs("10c") {
        let run = AtomicU64::new(0);
        let rates =
            race(3, CATCH_UP, &mut [round(|n| catch_up(&small, &run, n)), round(|n| catch_up(&large, &run, n))]).await;
        rows.push(row(
            "10c",
            "store size: catch-up over the newest 100,000 events",
            "events/s",
            &rates,
            names,
            format!("3 rounds; a new counting projection from a checkpoint {CATCH_UP} events before the head"),
        ));
    }
    if options.runs("10a") {
        let (a, b) = (app(&small, true), app(&large, true));
        let (rounds, ops) = (size.pick(120, 30), size.pick(25, 10));
        let rates = race(rounds, ops, &mut [round(|n| open_accounts(&a, n)), round(|n| open_accounts(&b, n))]).await;
        rows.push(row(
            "10a",
            "store size: one command per new aggregate, sequential",
            "commands/s",
            &rates,
            names,
            format!("{rounds} rounds of {ops} commands"),
        ));
    }
    if options.runs("10b") {
        let (a, b) = (app(&small, false), app(&large, false));
        let (next_a, next_b) = (AtomicU64::new(0), AtomicU64::new(0));
        let (rounds, ops) = (size.pick(60, 15), size.pick(25, 10));
        let rates = race(
            rounds,
            ops,
            &mut [
                round(|n| deposits(&a, small_events / BATCH, &next_a, n)),
                round(|n| deposits(&b, large_events / BATCH, &next_b, n)),
            ],
        )
        .await;
        rows.push(row(
            "10b",
            "store size: one command on an existing aggregate, cache off",
            "commands/s",
            &rates,
            names,
            format!("{rounds} rounds of {ops} commands, each on another stream of 100+ events"),
        ));
    }
    small.pool().close().await;
    large.pool().close().await;
    Ok(rows)
}
