//! Issue 23, scenario 1: a three-node NATS JetStream cluster on loopback
//! (three `nats-server` processes this test starts, each with its own
//! configuration file and data folder), the event stream with three
//! replicas. A relay publishes a PostgreSQL store's log while three
//! workers consume it into a transactional read model, and the servers
//! are killed with SIGKILL one at a time and restarted: followers first,
//! then the stream's leader. Nothing acknowledged may be lost, nothing
//! applied twice; the figures go to `target/faults/nats-cluster.json`.
//!
//! Short by default (CI); `ORCHESTRIX_FAULTS=full` runs the long version.
//! Needs `ORCHESTRIX_PG_URL` and `nats-server`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orchestrix::store::EventStore;
use orchestrix_adapters::nats::async_nats::jetstream;
use orchestrix_adapters::nats::{
    connect, EventStreamConfig, ProjectionWorker, Relay, RelayOptions, Subjects, WorkerOptions,
};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_faults::nats::{nats_server_or_skip, placement, wait_healthy, NatsCluster};
use orchestrix_faults::process::{full, scaled};
use orchestrix_faults::report::{self, Figures};
use orchestrix_faults::tally::{pg_url_or_skip, unique_schema, verdict, write, Appended, Samples, Tally};
use serde_json::json;

const REPLICAS: usize = 3;
const PARTITIONS: u32 = 6;
const WORKERS: usize = 3;
const STREAMS: u64 = 40;
const BATCH: u64 = 5;

/// One batch every this long: 25 events a second, well below what three
/// workers applying one event per transaction manage on a busy two-core
/// machine with a shared PostgreSQL (about 60 a second in a debug build;
/// at 60 a second the full version's read model fell behind for good),
/// so that a lag is the faults' doing.
fn pace() -> Duration {
    Duration::from_millis(200)
}

/// Which server a fault kills.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// A server that is not the stream's leader.
    Follower,
    /// The stream's leader.
    Leader,
}

/// One fault, as it happened.
#[derive(Debug)]
struct Fault {
    node: String,
    target: Target,
    at: Duration,
    /// From the kill until the stream had a leader and three current
    /// replicas again (the server restarted in between).
    healthy_after: Duration,
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (PostgreSQL: the store and the read model) and nats-server, see docs/guide/operations.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
async fn a_three_node_cluster_loses_and_repeats_nothing_while_its_servers_are_killed() {
    let Some(binary) = nats_server_or_skip() else { return };
    let Some(url) = pg_url_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(&binary, dir.path(), 3).unwrap();
    let schema = unique_schema("orx_fc");
    let read_model = format!("{schema}_rm");
    let store = PgStore::connect(&url, PgConfig::new(&schema).unwrap().with_max_connections(10)).await.unwrap();
    store.migrate().await.unwrap();
    Tally::create(store.pool(), &read_model).await.unwrap();

    // The client is given every server: whichever is down, it reaches another.
    let client = connect(&cluster.urls()).await.unwrap();
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new("faults.cluster", PARTITIONS).unwrap();
    let stream = EventStreamConfig::new("FAULTS_CLUSTER").unwrap().with_replicas(REPLICAS).unwrap();
    // The cluster elects its JetStream meta leader first: bounded retries.
    let started = Instant::now();
    while let Err(error) = stream.ensure(&js, &subjects).await {
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "the R3 stream cannot be created: {error}\n{}",
            cluster.logs_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Err(last) = wait_healthy(&js, stream.name(), REPLICAS, Duration::from_mins(1)).await {
        panic!("the stream did not get three current replicas: {last:?}\n{}", cluster.logs_tail(40));
    }

    // Shared with the sampler, which reads how far the broker acknowledged.
    let relay = Arc::new(
        Relay::new(
            client.clone(),
            store.clone(),
            store.clone(),
            subjects.clone(),
            stream.clone(),
            RelayOptions::default().window(64).max_backoff(Duration::from_millis(500)),
        )
        .spawn(),
    );
    let mut workers = Vec::new();
    let mut applied = Vec::new();
    for i in 0..WORKERS {
        let tally = Tally::new(store.pool().clone(), &read_model, format!("w{i}")).unwrap();
        applied.push(tally.applied());
        let worker = ProjectionWorker::new(
            connect(&cluster.urls()).await.unwrap(),
            subjects.clone(),
            stream.clone(),
            store.clone(),
        );
        workers
            .push(worker.spawn(tally, WorkerOptions::default().batch(64).lease_interval(Duration::from_millis(250))));
    }
    let applied_now = {
        let applied = applied.clone();
        move || applied.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>()
    };

    let appended = Appended::default();
    let writer = tokio::spawn(write(
        Arc::new(store.clone()) as Arc<dyn EventStore>,
        STREAMS,
        BATCH,
        scaled(40_000, 400_000),
        pace(),
        appended.clone(),
    ));
    let clock = Instant::now();
    // (appended, applied) and (appended, acknowledged by the broker).
    let samples = Arc::new(Mutex::new((Samples::default(), Samples::default())));
    let sampling = {
        let (samples, appended, applied_now, relay) =
            (Arc::clone(&samples), appended.clone(), applied_now.clone(), Arc::clone(&relay));
        tokio::spawn(async move {
            loop {
                let (at, appended, applied, published) =
                    (clock.elapsed(), appended.count(), applied_now(), relay.status().published);
                {
                    let mut samples = samples.lock().unwrap_or_else(PoisonError::into_inner);
                    samples.0.push(at, appended, applied);
                    samples.1.push(at, appended, published);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Warm up until the read model keeps up (bounded), then a healthy
    // stretch: the normal lag of the read model.
    let warm = Instant::now();
    while (applied_now() == 0 || applied_now() + 4 * BATCH < appended.count())
        && warm.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy_from = clock.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let healthy_until = clock.elapsed();
    let plan: Vec<Target> = if full() {
        [Target::Follower, Target::Follower, Target::Leader, Target::Leader].repeat(4)
    } else {
        vec![Target::Follower, Target::Follower, Target::Leader]
    };
    let mut faults: Vec<Fault> = Vec::new();
    let mut next_follower = 0;
    for target in plan {
        let leader =
            placement(&js, stream.name()).await.and_then(|p| p.leader).and_then(|name| cluster.index_of(&name));
        let victim = match target {
            Target::Leader => leader.expect("the stream has a leader before each fault"),
            Target::Follower => {
                // The servers in turn, skipping the leader.
                let mut i = next_follower % 3;
                if Some(i) == leader {
                    i = (i + 1) % 3;
                }
                next_follower = i + 1;
                i
            }
        };
        let at = clock.elapsed();
        cluster.kill(victim);
        tokio::time::sleep(scaled(Duration::from_secs(1), Duration::from_secs(4))).await;
        cluster.restart(victim).unwrap();
        let health = wait_healthy(&js, stream.name(), REPLICAS, Duration::from_mins(2)).await;
        let name = cluster.nodes()[victim].name.clone();
        assert!(
            health.is_ok(),
            "after {name} restarted the stream did not recover its replicas: {health:?}\n{}",
            cluster.logs_tail(40)
        );
        faults.push(Fault { node: name, target, at, healthy_after: clock.elapsed().saturating_sub(at) });
        eprintln!("{:?}", faults.last().unwrap());
        // Let it run healthy for a while before the next fault.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    appended.stop();
    writer.await.unwrap().expect("every append is acknowledged");
    let total = appended.count();

    // Everything appended reaches the read model (bounded).
    let deadline = Instant::now() + scaled(Duration::from_mins(2), Duration::from_mins(10));
    while applied_now() < total && Instant::now() < deadline && workers.iter().all(|w| w.status().failed.is_none()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = clock.elapsed();
    if std::env::var_os("FAULTS_DEBUG").is_some() {
        for worker in &workers {
            eprintln!("{:?}", worker.status());
        }
    }
    sampling.abort();
    let _ = sampling.await;
    let relay = Arc::into_inner(relay).expect("the sampler let the relay go");
    let relay_status = relay.status();
    let worker_failures: Vec<String> = workers.iter().filter_map(|w| w.status().failed).collect();
    let deliveries: u64 = workers.iter().map(|w| w.status().handled).sum();
    let missed: u64 = workers.iter().map(|w| w.status().missed).sum();
    for worker in workers {
        let _ = worker.stop().await;
    }
    relay.stop().await.unwrap();
    let stored = placement(&js, stream.name()).await.map(|p| p.messages);

    let (ids, rows) = Tally::contents(store.pool(), &read_model).await.unwrap();
    let (lost, duplicated) = verdict(&appended.ids(), &ids, rows);
    let (samples, published) = samples.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(path) = std::env::var_os("FAULTS_DEBUG") {
        std::fs::write(path, format!("{samples:#?}\n{faults:#?}")).unwrap();
    }
    let threshold = (samples.normal_lag(healthy_from, healthy_until) * 3 / 2).max(2 * BATCH);
    let mut kills = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let to = faults.get(i + 1).map_or(end, |next| next.at);
        kills.push(json!({
            "node": fault.node,
            "leader": fault.target == Target::Leader,
            "replicas_current_ms": fault.healthy_after.as_millis(),
            "recovery_ms": samples.recovery(fault.at, to, threshold).as_millis(),
            "stall_ms": samples.longest_stall(fault.at, to).as_millis(),
            "publish_stall_ms": published.longest_stall(fault.at, to).as_millis(),
        }));
    }
    let max = |key: &str| kills.iter().filter_map(|k| k[key].as_u64()).max().unwrap_or(0);
    let mut extra = serde_json::Map::new();
    extra.insert("servers".into(), json!(3));
    extra.insert("replicas".into(), json!(REPLICAS));
    extra.insert("workers".into(), json!(WORKERS));
    extra.insert("partitions".into(), json!(PARTITIONS));
    extra.insert("appended".into(), json!(total));
    extra.insert("published".into(), json!(relay_status.published));
    extra.insert("published_duplicates".into(), json!(relay_status.duplicates));
    extra.insert("relay_restarts".into(), json!(relay_status.restarts));
    extra.insert("stored_in_stream".into(), json!(stored));
    extra.insert("applied".into(), json!(ids.len()));
    extra.insert("deliveries".into(), json!(deliveries));
    extra.insert("deliveries_lost_in_transit".into(), json!(missed));
    extra.insert("write_rate_per_s".into(), json!(BATCH * 1000 / u64::try_from(pace().as_millis()).unwrap_or(1)));
    extra.insert("normal_lag".into(), json!(threshold));
    extra.insert("max_recovery_ms".into(), json!(max("recovery_ms")));
    extra.insert("max_stall_ms".into(), json!(max("stall_ms")));
    extra.insert("max_publish_stall_ms".into(), json!(max("publish_stall_ms")));
    extra.insert("kills".into(), json!(kills));
    let figures = Figures {
        scenario: "nats-cluster".into(),
        version: if full() { "full" } else { "short" }.into(),
        faults: faults.len() as u64,
        acknowledged: total,
        lost,
        duplicated,
        extra,
    };
    let path = report::record(&figures).unwrap();
    eprintln!("{}\n(written to {})", serde_json::to_string_pretty(&figures).unwrap(), path.display());

    assert!(worker_failures.is_empty(), "workers failed: {worker_failures:?}");
    assert_eq!(lost, 0, "acknowledged events missing from the read model");
    assert_eq!(duplicated, 0, "events applied twice to the read model");
    assert_eq!(stored, Some(total), "the stream holds each event once (the broker dropped the republished ones)");
    Tally::drop_schema(store.pool(), &read_model).await.unwrap();
    store.drop_schema().await.unwrap();
    drop(cluster);
}
