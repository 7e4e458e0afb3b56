//! The relay killed (SIGKILL) and restarted ten times while 100,000 events
//! are appended to PostgreSQL: every event reaches the consumer, the
//! broker stores each exactly once, and every effect is applied once and
//! in stream order. Needs `ORCHESTRIX_PG_URL` and `ORCHESTRIX_NATS_URL`.

mod nats_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nats_support::{client, counted, Ledger, Place};
use orchestrix::{
    store::{EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::nats::{ProjectionWorker, SoleWorker, WorkerOptions};
use orchestrix_adapters::postgres::PgStore;

const STREAMS: u64 = 500;
const PER_STREAM: u64 = 200;
const BATCH: u64 = 50;
const TOTAL: u64 = STREAMS * PER_STREAM;

fn spawn_relay(url: &str, store: &PgStore, place: &Place) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orchestrix-nats-relay"))
        .args(["--pg-url", url, "--schema", store.config().schema()])
        .args(["--nats-url", &std::env::var("ORCHESTRIX_NATS_URL").unwrap()])
        .args(["--prefix", place.subjects.prefix(), "--stream", place.stream.name()])
        .args(["--partitions", &place.subjects.partitions().to_string(), "--window", "128"])
        .stdin(Stdio::null())
        .spawn()
        .expect("the relay binary starts")
}

#[cfg_attr(
    not(all(orchestrix_pg, orchestrix_nats)),
    ignore = "needs ORCHESTRIX_PG_URL and ORCHESTRIX_NATS_URL (PostgreSQL and NATS servers), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_ten_times_loses_and_duplicates_nothing() {
    let Some(client) = client().await else { return };
    let Some(url) = support::pg_url() else { return };
    let Some(store) = support::pg_store().await else { return };
    let place = Place::new(client, 8);
    // The stream exists before the first relay, so the count below works.
    place.stream.ensure(&place.js(), &place.subjects).await.unwrap();

    let ledger = Ledger::named("kills");
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker);
    let mut handle = worker.spawn(ledger.clone(), WorkerOptions::default().batch(256));

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..PER_STREAM / BATCH {
                for s in 0..STREAMS {
                    let stream = StreamId::new("Tally", format!("s{s}")).unwrap();
                    let events = (0..BATCH).map(|i| counted(round * BATCH + i + 1)).collect();
                    store.append(&stream, ExpectedVersion::Exact(round * BATCH), events).await.unwrap();
                }
            }
        })
    };

    let mut kills = 0;
    while kills < 10 {
        let before = place.message_count().await;
        let mut relay = spawn_relay(&url, &store, &place);
        // Let it publish a little (or give up waiting after a while), then kill it.
        let started = Instant::now();
        let pause = Duration::from_millis(100 + fastrand::u64(..400));
        while place.message_count().await < before + 500 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(pause).await;
        relay.kill().unwrap();
        relay.wait().unwrap();
        kills += 1;
        eprintln!("kill {kills}: {} messages in the stream", place.message_count().await);
    }
    writer.await.unwrap();
    let mut last = spawn_relay(&url, &store, &place);
    let status = tokio::time::timeout(
        Duration::from_mins(10),
        handle.wait_for(|_| ledger.state().applied.len() as u64 >= TOTAL),
    )
    .await
    .expect("every event arrives");
    last.kill().unwrap();
    last.wait().unwrap();
    handle.stop().await.unwrap();

    {
        let state = ledger.state();
        eprintln!("{TOTAL} events, {} deliveries, worker {status:?}", state.deliveries);
        assert_eq!(state.applied.len() as u64, TOTAL, "every event delivered");
        assert!(state.out_of_order.is_empty(), "{:?}", &state.out_of_order[..state.out_of_order.len().min(5)]);
        assert_eq!(state.total, STREAMS * (1..=PER_STREAM).sum::<u64>(), "every effect applied once");
    }
    assert_eq!(place.message_count().await, TOTAL, "the broker stored each event once");
    place.delete().await;
    let _ = store.drop_schema().await;
}
