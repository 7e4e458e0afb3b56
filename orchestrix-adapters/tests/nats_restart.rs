//! NATS restarted while the relay publishes: nothing is lost or stored
//! twice.
//!
//! **This test restarts the shared nats-server** on 127.0.0.1 (stop, then
//! the start command of the machine's services list), for about a second;
//! other tests using NATS at that moment may see errors. It is the only
//! test in this binary, so `cargo test --test nats_restart` runs it alone.
//! It runs only when `ORCHESTRIX_NATS_RESTART` is set (`.ci/run` sets it)
//! besides `ORCHESTRIX_NATS_URL`, and says so when it skips.

mod nats_support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use nats_support::{client, counted, Ledger, Place};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore};
use orchestrix::{
    store::{EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::nats::async_nats::jetstream::consumer::pull;
use orchestrix_adapters::nats::{ProjectionWorker, Relay, RelayOptions, SoleWorker, WorkerOptions};

const EVENTS: u64 = 20_000;

fn restart_nats() {
    let stop = Command::new("start-stop-daemon")
        .args(["--stop", "--oknodo", "--retry", "5", "--exec", "/usr/sbin/nats-server"])
        .status()
        .expect("start-stop-daemon runs");
    assert!(stop.success(), "nats-server stopped");
    let start = Command::new("start-stop-daemon")
        .args(["--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--"])
        .args(["-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log"])
        .status()
        .expect("start-stop-daemon runs");
    assert!(start.success(), "nats-server started again");
}

#[cfg_attr(
    not(all(orchestrix_nats, orchestrix_nats_restart)),
    ignore = "needs ORCHESTRIX_NATS_URL and ORCHESTRIX_NATS_RESTART=1 (this test restarts that NATS server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_while_the_relay_publishes() {
    if std::env::var_os("ORCHESTRIX_NATS_RESTART").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ORCHESTRIX_NATS_RESTART is not set, but CI is: the NATS restart test must run in CI"
        );
        eprintln!("skipped: set ORCHESTRIX_NATS_RESTART=1 to let this test restart the shared nats-server");
        return;
    }
    let Some(client) = client().await else { return };
    let place = Place::new(client, 4);
    let store = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let options = RelayOptions::default().window(64).max_backoff(Duration::from_millis(200));
    let relay = Relay::new(
        place.client.clone(),
        store.clone(),
        checkpoints,
        place.subjects.clone(),
        place.stream.clone(),
        options,
    )
    .spawn();
    let ledger = Ledger::named("restart");
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker);
    let mut handle = worker.spawn(ledger.clone(), WorkerOptions::default());

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..EVENTS / 100 {
                let stream = StreamId::new("Tally", format!("s{}", round % 20)).unwrap();
                let events = (0..100).map(|i| counted(round * 100 + i)).collect();
                store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut relay = relay;
    relay.wait_for_position(EVENTS / 4).await;
    let before = place.client.server_info().server_id;
    restart_nats();
    writer.await.unwrap();
    let status = relay.wait_for_position(EVENTS).await;
    handle.wait_for(|_| ledger.state().applied.len() as u64 >= EVENTS).await;
    handle.stop().await.unwrap();
    relay.stop().await.unwrap();
    eprintln!("relay after the restart: {status:?}");
    assert_ne!(place.client.server_info().server_id, before, "the client reconnected to a new server process");

    assert_eq!(ledger.state().applied.len() as u64, EVENTS);
    assert!(ledger.state().out_of_order.is_empty());
    assert_eq!(place.message_count().await, EVENTS, "each event stored once");
    // And every stored message is a different event.
    let stream = place.js().get_stream(place.stream.name()).await.unwrap();
    let consumer = stream.create_consumer(pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap().take(usize::try_from(EVENTS).unwrap());
    let mut ids = HashSet::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        ids.insert(message.headers.as_ref().and_then(|h| h.get("ce-id")).unwrap().as_str().to_owned());
    }
    assert_eq!(ids.len() as u64, EVENTS);
    place.delete().await;
}
