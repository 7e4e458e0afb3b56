//! Scenario 20, the writer curve (issue 22, goal 2): one command per new
//! aggregate at 1, 4, 16, 64 and 256 concurrent writers, each contestant
//! timed per command (an HDR histogram, microseconds) beside its
//! throughput.
//!
//! Contestants at every point, in rotating turns after a warm-up turn:
//! Orchestrix over `PgStore` with group commit (ADR 0024) and without it,
//! a raw per-row sqlx `INSERT` into Orchestrix's own table, the same raw
//! `INSERT` into a lean table of its own (the shape a hand-written store
//! would choose, see [`lean_table`]), and cqrs-es 0.5 over postgres-es 0.5.
//! The faster raw contestant of the run is the baseline (ADR 0053: the
//! fastest fair baseline), and both are reported.
//!
//! Every contestant has the same pool size at a point: `min(writers,
//! ORCHESTRIX_BENCH_MAX_POOL)` (16 unless set), since the server is shared
//! and allows 100 connections; with group commit, Orchestrix uses at most
//! three of them.
//!
//! Two variables serve investigations (ADR 0053), not the published run:
//! `ORCHESTRIX_BENCH_WRITERS=1,64` measures only those points, and
//! `ORCHESTRIX_BENCH_BLOCKS=1` runs each contestant's rounds in one block
//! instead of rotating turns (as a harness that runs one system after the
//! other does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use orchestrix::{Orchestrix, Uuid};
use orchestrix_benches::ledger::{self, AccountEvent, PeerCommand, CATEGORY};
use serde::Serialize;
use sqlx::PgPool;

use crate::pg::{self, BoxError, Server, OWNER, PEER};
use crate::report::{Entry, Row};
use crate::{Options, Size};

/// The writer counts of the curve.
pub(crate) const WRITERS: [u64; 5] = [1, 4, 16, 64, 256];

/// The scenario's number in the suite (its rows are `20a` to `20e`).
pub(crate) const ID: &str = "20";

/// The goals of issue 22 for the curve.
const GOAL_AT_64: f64 = 2.5;
const NO_COLLAPSE: f64 = 0.9;
/// Group commit may cost at most 10 % of the p99 at one writer: p99 off
/// / p99 on at least 1 / 1.1.
const GROUP_COMMIT_P99: f64 = 1.0 / 1.1;

const ORX: &str = "Orchestrix PgStore";
const ORX_ALONE: &str = "Orchestrix, group commit off";
const RAW_SAME: &str = "raw sqlx INSERT, Orchestrix's table";
const RAW_LEAN: &str = "raw sqlx INSERT, own lean table";

/// One contestant's latency at one point of the curve, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) name: String,
    pub(crate) per_second: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
}

/// One operation of a contestant, callable from many tasks.
type Op = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// What a contestant measured at one point: its median rate over the
/// rounds and every command's latency.
struct Measured {
    rates: Vec<f64>,
    latencies: Histogram<u64>,
}

impl Measured {
    fn new() -> Self {
        Self { rates: Vec::new(), latencies: histogram() }
    }

    fn median_rate(&self) -> f64 {
        let mut rates = self.rates.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    fn latency(&self, name: &str) -> Latency {
        Latency {
            name: name.to_owned(),
            per_second: self.median_rate(),
            p50_us: self.latencies.value_at_quantile(0.5),
            p99_us: self.latencies.value_at_quantile(0.99),
        }
    }
}

/// Microseconds from 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// One turn: `ops` operations split over `writers` tasks, each operation
/// timed. Returns the wall time and the latencies.
async fn turn(writers: u64, ops: u64, work: &Op) -> (Duration, Histogram<u64>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let work = Arc::clone(work);
            let n = ops / writers + u64::from(w < ops % writers);
            tokio::spawn(async move {
                let mut latencies = histogram();
                for _ in 0..n {
                    let at = Instant::now();
                    work().await;
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.saturating_record(micros.max(1));
                }
                latencies
            })
        })
        .collect();
    let mut all = histogram();
    for task in tasks {
        all.add(task.await.expect("a writer panicked")).expect("histograms of the same bounds");
    }
    (started.elapsed(), all)
}

/// Rounds and operations per turn at `writers`: many short turns for one
/// writer (a sequential command waits for its WAL flush, whose latency
/// drifts within seconds on a shared machine; see scenario 1), enough
/// commands per turn for every writer to make several otherwise.
fn shape(size: Size, writers: u64) -> (usize, u64) {
    if writers == 1 {
        (size.pick(100, 20), size.pick(25, 10))
    } else {
        (size.pick(7, 3), size.pick((writers * 16).max(400), (writers * 4).max(100)))
    }
}

/// The pool size of every contestant at `writers`.
fn pool_size(writers: u64) -> u32 {
    let cap = std::env::var("ORCHESTRIX_BENCH_MAX_POOL").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(16);
    u32::try_from(writers).unwrap_or(u32::MAX).clamp(2, cap.max(2))
}

/// The raw contestant's own table: what a hand-written store would make
/// for the same job (append to a stream, guarded by its version; read in
/// one global order): a generated position as primary key and the
/// stream's versions unique, no generated columns, no tag or event-id
/// index.
fn lean_table(schema: &str) -> String {
    format!(
        "CREATE TABLE \"{schema}\".events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT \
         NULL, category text NOT NULL, aggregate_id text NOT NULL, version bigint NOT NULL, event_type text NOT NULL, \
         data jsonb NOT NULL, metadata jsonb NOT NULL, recorded_at timestamptz NOT NULL, UNIQUE (category, \
         aggregate_id, version))"
    )
}

/// A raw `INSERT` into [`lean_table`].
#[derive(Clone)]
struct Lean {
    pool: PgPool,
    sql: Arc<str>,
}

impl Lean {
    async fn new(server: &Server, tag: &str, max: u32) -> Result<Self, BoxError> {
        let schema = server.schema(&format!("{tag}_lean")).await?;
        let pool = server.pool(max).await?;
        sqlx::raw_sql(&lean_table(&schema)).execute(&pool).await?;
        let sql = format!(
            "INSERT INTO \"{schema}\".events (event_id, category, aggregate_id, version, event_type, data, metadata, \
             recorded_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)"
        );
        Ok(Self { pool, sql: sql.into() })
    }

    async fn open_account(&self) {
        let (event_type, data) = ledger::stored(&AccountEvent::Opened { owner: OWNER.into() });
        let metadata = serde_json::to_string(&ledger::command_metadata()).expect("metadata serializes");
        sqlx::query(&self.sql)
            .bind(Uuid::now_v7())
            .bind(CATEGORY)
            .bind(Uuid::now_v7().to_string())
            .bind(1_i64)
            .bind(event_type)
            .bind(data)
            .bind(metadata)
            .bind(Utc::now())
            .execute(&self.pool)
            .await
            .expect("the lean INSERT succeeds");
    }
}

/// Runs the curve; returns one row per writer count.
pub(crate) async fn run(url: &str, options: &Options) -> Result<Vec<Row>, BoxError> {
    let server = Server::connect(url).await?;
    let mut rows = Vec::new();
    let mut result = Ok(());
    let started = Instant::now();
    let only: Option<Vec<u64>> = std::env::var("ORCHESTRIX_BENCH_WRITERS")
        .ok()
        .map(|list| list.split(',').filter_map(|w| w.trim().parse().ok()).collect());
    for (index, writers) in WRITERS.into_iter().enumerate() {
        if only.as_ref().is_some_and(|only| !only.contains(&writers)) {
            continue;
        }
        match point(&server, options.size, writers).await {
            Ok(latencies) => rows.push((index, writers, latencies)),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
        server.drop_schemas().await?;
    }
    println!("[{ID}] the writer curve took {:.1?}", started.elapsed());
    server.drop_schemas().await?;
    result?;
    let at_64 = rows.iter().find(|(_, w, _)| *w == 64).map(|(_, _, l)| l[0].per_second);
    Ok(rows
        .into_iter()
        .map(|(index, writers, latencies)| row(index, writers, options.size, &latencies, at_64))
        .collect())
}

/// Measures every contestant at `writers`; returns their figures in the
/// order Orchestrix, raw (same table), cqrs-es, Orchestrix with group
/// commit off, raw (lean table).
async fn point(server: &Server, size: Size, writers: u64) -> Result<Vec<Latency>, BoxError> {
    let (rounds, ops) = shape(size, writers);
    let max = pool_size(writers);
    let tag = format!("w{writers}");
    let store = server.store(&tag, max).await?;
    let alone = server.store_with(&format!("{tag}_alone"), max, |config| config.with_group_commit(0)).await?;
    let raw = server.raw(&tag, max).await?;
    let peer = server.peer(&tag, max, None).await?;
    let lean = Lean::new(server, &tag, max).await?;
    let (orchestrix, alone) = (pg::app(&store, false, true), pg::app(&alone, false, true));
    let contestants: Vec<(&str, Op)> = vec![
        (ORX, open_with(orchestrix)),
        (RAW_SAME, {
            let raw = raw.clone();
            op(move || {
                let raw = raw.clone();
                async move {
                    raw.insert(&Uuid::now_v7().to_string(), 1, &AccountEvent::Opened { owner: OWNER.into() }).await;
                }
            })
        }),
        (PEER, {
            let cqrs = Arc::clone(&peer.cqrs);
            op(move || {
                let cqrs = Arc::clone(&cqrs);
                async move {
                    let open = PeerCommand::Open { owner: OWNER.into() };
                    cqrs.execute(&Uuid::now_v7().to_string(), open).await.expect("cqrs-es opens");
                }
            })
        }),
        (ORX_ALONE, open_with(alone)),
        (RAW_LEAN, {
            let lean = lean.clone();
            op(move || {
                let lean = lean.clone();
                async move { lean.open_account().await }
            })
        }),
    ];
    let mut measured: Vec<Measured> = contestants.iter().map(|_| Measured::new()).collect();
    for (_, work) in &contestants {
        turn(writers, ops, work).await;
    }
    let n = contestants.len();
    let blocks = std::env::var_os("ORCHESTRIX_BENCH_BLOCKS").is_some_and(|v| v == "1");
    for step in 0..rounds * n {
        let (r, k) = (step / n, step % n);
        let i = if blocks { step / rounds } else { (r + k) % n };
        let (elapsed, latencies) = turn(writers, ops, &contestants[i].1).await;
        #[allow(clippy::cast_precision_loss)] // op counts far below 2^52
        measured[i].rates.push(ops as f64 / elapsed.as_secs_f64());
        measured[i].latencies.add(latencies).expect("histograms of the same bounds");
    }
    let latencies: Vec<Latency> =
        contestants.iter().zip(&measured).map(|((name, _), measured)| measured.latency(name)).collect();
    for l in &latencies {
        println!(
            "[{ID}] {writers:>3} writers, {max:>2} connections: {:<36} {:>8.0}/s  p50 {:>7} µs  p99 {:>7} µs",
            l.name, l.per_second, l.p50_us, l.p99_us
        );
    }
    Ok(latencies)
}

fn open_with(app: Orchestrix) -> Op {
    op(move || {
        let app = app.clone();
        async move {
            app.execute(Uuid::now_v7(), ledger::Open { owner: OWNER.into() }).await.expect("the command succeeds");
        }
    })
}

/// The row of one point: the faster raw contestant as the baseline.
fn row(index: usize, writers: u64, size: Size, latencies: &[Latency], at_64: Option<f64>) -> Row {
    let (orx, raw_same, peer, alone, raw_lean) =
        (&latencies[0], &latencies[1], &latencies[2], &latencies[3], &latencies[4]);
    let baseline = if raw_lean.per_second >= raw_same.per_second { raw_lean } else { raw_same };
    let letter = char::from(b'a' + u8::try_from(index).expect("five points"));
    let name = if writers == 1 {
        "writer curve: one command per new aggregate, 1 writer".to_owned()
    } else {
        format!("writer curve: one command per new aggregate, {writers} writers")
    };
    let (rounds, ops) = shape(size, writers);
    let mut row = Row::new(
        &format!("{ID}{letter}"),
        &name,
        "commands/s",
        Entry::new(ORX, orx.per_second),
        Entry::new(baseline.name.clone(), baseline.per_second),
    )
    .peer(Entry::new(format!("{PEER} + postgres-es 0.5"), peer.per_second))
    .reference(Entry::new(ORX_ALONE, alone.per_second))
    .ratio("to_raw_same_table", orx.per_second / raw_same.per_second)
    .ratio("to_raw_lean_table", orx.per_second / raw_lean.per_second)
    .latencies(latencies.to_vec());
    #[allow(clippy::cast_precision_loss)] // microseconds far below 2^52
    let p99_off_to_on = alone.p99_us as f64 / orx.p99_us.max(1) as f64;
    row = match writers {
        1 => {
            row.ratio("p99_group_commit_off_to_on", p99_off_to_on).goal("p99_group_commit_off_to_on", GROUP_COMMIT_P99)
        }
        64 => row.goal("to_baseline", GOAL_AT_64),
        256 => match at_64 {
            Some(at_64) => row.ratio("to_64_writers", orx.per_second / at_64).goal("to_64_writers", NO_COLLAPSE),
            None => row,
        },
        _ => row,
    };
    row.method(format!(
        "{rounds} rounds of {ops} commands, {writers} task(s), {} connections per contestant, every command timed \
         (HDR histogram); baseline: the faster raw INSERT of the run (Orchestrix's table: {:.0}/s, own lean table: \
         {:.0}/s)",
        pool_size(writers),
        raw_same.per_second,
        raw_lean.per_second
    ))
    .announce()
}
