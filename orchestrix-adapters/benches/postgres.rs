//! The PostgreSQL adapter's `append`, and a whole command through
//! `Orchestrix::execute` (handle, append), against a raw sqlx single-row
//! INSERT of the same event into the same table, side by side in one run.
//!
//! `ORCHESTRIX_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p orchestrix-adapters --features postgres --bench postgres`
//!
//! Workloads: one append of one event to a new stream, sequential and with
//! 16 concurrent writers. Rounds alternate adapter and raw so that drift in
//! the machine's load hits both. Synchronous commit stays on. Prints
//! events/s, median and p99 latency, and the ratio adapter / raw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrix::prelude::*;
use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix::{envelope::NewEvent, StreamId, Uuid};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde_json::value::RawValue;

const PHASE: Duration = Duration::from_secs(2);
const ROUNDS: usize = 2;
const DATA: &str = r#"{"owner":"Ada","amount":30,"note":"benchmark"}"#;

fn new_event() -> NewEvent {
    NewEvent::new("AccountOpened", 1, RawValue::from_string(DATA.to_owned()).expect("valid JSON"))
}

/// The event a command produces: the same data as the raw INSERT.
#[event]
#[derive(Debug, Clone)]
enum AccountEvent {
    /// The same fields as `DATA`.
    Opened { owner: String, amount: u64, note: String },
}

/// Never happens in the benchmark.
#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

/// A minimal aggregate.
#[aggregate(event = AccountEvent, error = Refused, name = "Account")]
#[derive(Debug, Default)]
struct Account;

impl Account {
    #[allow(clippy::unused_self)] // the state is not needed here
    fn apply(&mut self, _: &AccountEvent) {}
}

/// Opens an account: one event on a new stream.
#[derive(Debug, Clone)]
struct Open;

#[command_handler]
impl Account {
    fn open(_: Open) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Opened { owner: "Ada".into(), amount: 30, note: "benchmark".into() })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Adapter,
    Command,
    Raw,
}

async fn one(store: &PgStore, app: &Orchestrix, raw_sql: &str, side: Side) {
    let id = Uuid::now_v7().to_string();
    match side {
        Side::Command => {
            app.execute(Uuid::now_v7(), Open).await.expect("the command succeeds");
        }
        Side::Adapter => {
            let stream = StreamId::new("Account", id).expect("valid id");
            store.append(&stream, ExpectedVersion::NoStream, vec![new_event()]).await.expect("append");
        }
        Side::Raw => {
            let metadata = serde_json::to_string(&Metadata::default()).expect("metadata");
            sqlx::query(raw_sql)
                .bind(Uuid::now_v7())
                .bind("Account")
                .bind(id)
                .bind("AccountOpened")
                .bind(1_i64)
                .bind(DATA)
                .bind(metadata)
                .bind(chrono::Utc::now())
                .execute(store.pool())
                .await
                .expect("raw insert");
        }
    }
}

/// Runs `writers` loops for [`PHASE`]; returns events/s and latencies.
async fn phase(
    store: &PgStore,
    app: &Orchestrix,
    raw_sql: &Arc<String>,
    side: Side,
    writers: usize,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, app, raw_sql) = (store.clone(), app.clone(), Arc::clone(raw_sql));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < PHASE {
                    let t = Instant::now();
                    one(&store, &app, &raw_sql, side).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = latencies.len() as f64 / elapsed;
    (rate, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let Ok(url) = std::env::var("ORCHESTRIX_PG_URL") else {
        eprintln!("skipped: set ORCHESTRIX_PG_URL, e.g. postgres://postgres@127.0.0.1:5432/test");
        return;
    };
    let schema = format!("orx_bench_{}", std::process::id());
    let notify = std::env::var("ORCHESTRIX_BENCH_NOTIFY").map_or(true, |v| v != "0");
    let config = PgConfig::new(&schema).expect("schema").with_max_connections(20).with_notify(notify);
    let store = PgStore::connect(&url, config).await.expect("connect");
    store.drop_schema().await.expect("clean");
    store.migrate().await.expect("migrate");
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(store.pool()).await.expect("show");
    println!("synchronous_commit = {sync}; {PHASE:?} per phase, {ROUNDS} rounds, alternating sides");
    let raw_sql = Arc::new(format!(
        "INSERT INTO \"{schema}\".events (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, $1, $2, \
         $3, 1, $4, $5, $6::jsonb, $7::jsonb, $8)"
    ));
    let app = Orchestrix::builder()
        .event_store(store.clone())
        .snapshot_store(store.clone())
        .aggregate::<Account>()
        .build()
        .expect("a valid configuration");
    // Warm up every path (prepared statements, pool).
    for side in [Side::Adapter, Side::Command, Side::Raw] {
        phase(&store, &app, &raw_sql, side, 4).await;
    }
    for writers in [1, 16] {
        let mut results = [(0.0, Vec::new()), (0.0, Vec::new()), (0.0, Vec::new())];
        for _ in 0..ROUNDS {
            for (slot, side) in [(0, Side::Adapter), (1, Side::Command), (2, Side::Raw)] {
                let (rate, latencies) = phase(&store, &app, &raw_sql, side, writers).await;
                results[slot].0 += rate / f64::from(u32::try_from(ROUNDS).expect("small"));
                results[slot].1.extend(latencies);
            }
        }
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".events"))
            .fetch_one(store.pool())
            .await
            .expect("count");
        println!("\n{writers} writer(s), one event per new stream (table holds {count} rows afterwards):");
        for (name, (rate, latencies)) in
            ["adapter append", "command (execute)", "raw INSERT"].iter().zip(results.iter_mut())
        {
            latencies.sort_unstable();
            println!(
                "  {name:<15} {rate:>9.0} events/s   median {:>8.2?}   p99 {:>8.2?}",
                percentile(latencies, 0.5),
                percentile(latencies, 0.99)
            );
        }
        println!("  ratio adapter/raw: {:.2}", results[0].0 / results[2].0);
        println!("  ratio command/raw: {:.2}", results[1].0 / results[2].0);
    }
    store.drop_schema().await.expect("drop");
}
