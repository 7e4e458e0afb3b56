//! Issue 23, scenario 2: worker processes, not tasks. Four
//! `faults-nats-worker` processes share the eight partitions of one
//! projection (ADR 0017: a durable consumer and a PostgreSQL lease per
//! partition) while a relay publishes a PostgreSQL store's log to a NATS
//! server of the test's own. Random workers are killed with SIGKILL and
//! started again. Every event must be applied exactly once to the
//! transactional read model, the partitions must be shared again after
//! each kill and each restart, and the time that takes is measured. The
//! figures go to `target/faults/nats-workers.json`.
//!
//! Short by default (CI); `ORCHESTRIX_FAULTS=full` runs the long version.
//! Needs `ORCHESTRIX_PG_URL` and `nats-server`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrix::store::EventStore;
use orchestrix_adapters::nats::async_nats::jetstream;
use orchestrix_adapters::nats::{connect, EventStreamConfig, Relay, RelayOptions, Subjects};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_faults::nats::{nats_server_or_skip, NatsCluster};
use orchestrix_faults::process::{full, scaled, Guarded};
use orchestrix_faults::report::{self, Figures};
use orchestrix_faults::tally::{pg_url_or_skip, unique_schema, verdict, write, Appended, Tally};
use serde_json::json;

const WORKERS: usize = 4;
const PARTITIONS: u32 = 8;
const STREAMS: u64 = 64;
const BATCH: u64 = 5;

/// One batch every this long: 25 events a second, below what the
/// workers apply on a busy two-core machine with a shared PostgreSQL (a
/// debug build).
fn pace() -> Duration {
    Duration::from_millis(200)
}

/// What starts a worker process.
struct Launch {
    args: Vec<String>,
    dir: PathBuf,
}

impl Launch {
    fn status_file(&self, worker: usize) -> PathBuf {
        self.dir.join(format!("worker-{worker}.status"))
    }

    fn spawn(&self, worker: usize) -> Guarded {
        let _ = std::fs::remove_file(self.status_file(worker));
        Guarded::spawn(
            format!("worker {worker}"),
            Command::new(env!("CARGO_BIN_EXE_faults-nats-worker"))
                .args(&self.args)
                .args(["--id", &format!("w{worker}"), "--status"])
                .arg(self.status_file(worker))
                .stdin(Stdio::null()),
        )
        .expect("the worker binary starts")
    }
}

/// The partitions a worker last reported, if it reported.
fn partitions_of(file: &Path) -> Option<BTreeSet<u32>> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find_map(|line| line.strip_prefix("partitions "))?;
    Some(line.split(',').filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect())
}

/// Whether the live workers hold every partition, none twice, each its
/// fair share or less (ceil(partitions / live), as ADR 0017's balance
/// gives it).
fn balanced(launch: &Launch, live: &[usize]) -> bool {
    let share = (PARTITIONS as usize).div_ceil(live.len().max(1));
    let mut seen = BTreeSet::new();
    for &worker in live {
        let Some(held) = partitions_of(&launch.status_file(worker)) else { return false };
        if held.len() > share || held.iter().any(|p| !seen.insert(*p)) {
            return false;
        }
    }
    seen.len() == PARTITIONS as usize
}

/// Waits (at most `timeout`) until the live workers are balanced; how
/// long it took. Fails if a worker exits by itself meanwhile.
async fn wait_balanced(launch: &Launch, workers: &mut [Option<Guarded>], timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        for (i, worker) in workers.iter_mut().enumerate() {
            if let Some(process) = worker {
                assert!(!process.has_exited(), "worker {i} exited by itself (it failed: see its error above)");
            }
        }
        let live: Vec<usize> = (0..workers.len()).filter(|&i| workers[i].is_some()).collect();
        if balanced(launch, &live) {
            return started.elapsed();
        }
        let report: Vec<String> =
            live.iter().map(|&i| format!("w{i}: {:?}", partitions_of(&launch.status_file(i)))).collect();
        assert!(started.elapsed() < timeout, "the partitions were not shared again within {timeout:?}: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (PostgreSQL: the store, the leases and the read model) and nats-server, see docs/guide/operations.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
async fn worker_processes_killed_at_random_apply_every_event_once() {
    let Some(binary) = nats_server_or_skip() else { return };
    let Some(url) = pg_url_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(&binary, dir.path(), 1).unwrap();
    let schema = unique_schema("orx_fw");
    let read_model = format!("{schema}_rm");
    let store = PgStore::connect(&url, PgConfig::new(&schema).unwrap().with_max_connections(6)).await.unwrap();
    store.migrate().await.unwrap();
    Tally::create(store.pool(), &read_model).await.unwrap();

    let client = connect(&nats.urls()).await.unwrap();
    let subjects = Subjects::new("faults.workers", PARTITIONS).unwrap();
    let stream = EventStreamConfig::new("FAULTS_WORKERS").unwrap();
    let started = Instant::now();
    while let Err(error) = stream.ensure(&jetstream::new(client.clone()), &subjects).await {
        assert!(started.elapsed() < Duration::from_secs(30), "the stream cannot be created: {error}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let relay = Relay::new(
        client.clone(),
        store.clone(),
        store.clone(),
        subjects.clone(),
        stream.clone(),
        RelayOptions::default().window(64),
    )
    .spawn();

    let launch = Launch {
        args: [
            "--pg-url",
            &url,
            "--schema",
            &schema,
            "--read-model",
            &read_model,
            "--nats-url",
            &nats.urls(),
            "--prefix",
            subjects.prefix(),
            "--stream",
            stream.name(),
            "--partitions",
            &PARTITIONS.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        dir: dir.path().to_owned(),
    };
    let mut workers: Vec<Option<Guarded>> = (0..WORKERS).map(|i| Some(launch.spawn(i))).collect();
    let settle = Duration::from_mins(1);
    let first_balance = wait_balanced(&launch, &mut workers, settle).await;

    let appended = Appended::default();
    let writer = tokio::spawn(write(
        Arc::new(store.clone()) as Arc<dyn EventStore>,
        STREAMS,
        BATCH,
        scaled(20_000, 300_000),
        pace(),
        appended.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut takeovers = Vec::new();
    let mut rejoins = Vec::new();
    let kills: u64 = scaled(3, 12);
    for _ in 0..kills {
        let victim = fastrand::usize(..WORKERS);
        if let Some(mut process) = workers[victim].take() {
            process.kill(); // SIGKILL, reaped
        }
        let _ = std::fs::remove_file(launch.status_file(victim));
        takeovers.push(wait_balanced(&launch, &mut workers, settle).await);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1_000))).await;
        workers[victim] = Some(launch.spawn(victim));
        rejoins.push(wait_balanced(&launch, &mut workers, settle).await);
        eprintln!(
            "killed w{victim}: taken over in {:?}, shared again {:?} after its restart",
            takeovers.last(),
            rejoins.last()
        );
        tokio::time::sleep(Duration::from_millis(fastrand::u64(500..1_500))).await;
    }
    appended.stop();
    writer.await.unwrap().expect("every append is acknowledged");
    let total = appended.count();

    // Everything appended reaches the read model (bounded).
    let deadline = Instant::now() + scaled(Duration::from_mins(2), Duration::from_mins(10));
    while Tally::rows(store.pool(), &read_model).await.unwrap() < total && Instant::now() < deadline {
        for (i, worker) in workers.iter_mut().enumerate() {
            if let Some(process) = worker {
                assert!(!process.has_exited(), "worker {i} exited by itself (it failed: see its error above)");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in &mut workers {
        if let Some(mut process) = worker.take() {
            process.kill();
        }
    }
    let relay_status = relay.status();
    relay.stop().await.unwrap();

    let (ids, rows) = Tally::contents(store.pool(), &read_model).await.unwrap();
    let (lost, duplicated) = verdict(&appended.ids(), &ids, rows);
    let ms = |d: &Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut extra = serde_json::Map::new();
    extra.insert("workers".into(), json!(WORKERS));
    extra.insert("partitions".into(), json!(PARTITIONS));
    extra.insert("appended".into(), json!(total));
    extra.insert("published".into(), json!(relay_status.published));
    extra.insert("applied".into(), json!(ids.len()));
    extra.insert("first_balance_ms".into(), json!(ms(&first_balance)));
    extra.insert("takeover_ms".into(), json!(takeovers.iter().map(ms).collect::<Vec<_>>()));
    extra.insert("rejoin_ms".into(), json!(rejoins.iter().map(ms).collect::<Vec<_>>()));
    extra.insert("max_takeover_ms".into(), json!(takeovers.iter().map(ms).max().unwrap_or(0)));
    extra.insert("max_rejoin_ms".into(), json!(rejoins.iter().map(ms).max().unwrap_or(0)));
    let figures = Figures {
        scenario: "nats-workers".into(),
        version: if full() { "full" } else { "short" }.into(),
        faults: kills,
        acknowledged: total,
        lost,
        duplicated,
        extra,
    };
    let path = report::record(&figures).unwrap();
    eprintln!("{}\n(written to {})", serde_json::to_string_pretty(&figures).unwrap(), path.display());

    assert_eq!(lost, 0, "acknowledged events missing from the read model");
    assert_eq!(duplicated, 0, "events applied twice to the read model");
    Tally::drop_schema(store.pool(), &read_model).await.unwrap();
    store.drop_schema().await.unwrap();
    drop(nats);
}
