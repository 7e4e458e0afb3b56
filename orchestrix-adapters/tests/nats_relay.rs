//! The relay, the workers and the bus against the real JetStream at
//! `ORCHESTRIX_NATS_URL`. Every test uses its own stream and subjects and
//! deletes them.

mod nats_support;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use nats_support::{client, counted, ignored, Ledger, MemoryLeases, Place};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::PoisonPolicy;
use orchestrix::store::{Message, MessageBus};
use orchestrix::{
    envelope::RecordedEvent,
    store::{CheckpointStore, EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::nats::cloudevent::decode;
use orchestrix_adapters::nats::{JetStreamBus, ProjectionWorker, Relay, RelayOptions, SoleWorker, WorkerOptions};
use tokio::time::timeout;

/// How long a test waits for a worker to reach a state.
const MINUTE: Duration = Duration::from_mins(1);

/// Appends `per_stream` `Counted` events (and one ignored event) to each
/// of `streams` streams, interleaved; returns the last position.
async fn fill(store: &InMemoryEventStore, streams: usize, per_stream: u64) -> Vec<std::sync::Arc<RecordedEvent>> {
    let ids: Vec<StreamId> = (0..streams).map(|i| StreamId::new("Tally", format!("s{i}")).unwrap()).collect();
    let mut all = Vec::new();
    for round in 0..per_stream {
        for id in &ids {
            all.extend(store.append(id, ExpectedVersion::Any, vec![counted(round + 1)]).await.unwrap());
        }
    }
    all.extend(store.append(&ids[0], ExpectedVersion::Any, vec![ignored()]).await.unwrap());
    all
}

fn relay(place: &Place, store: &InMemoryEventStore, checkpoints: &InMemoryCheckpointStore, window: usize) -> Relay {
    let options = RelayOptions::default().window(window).checkpoint_every(50);
    Relay::new(
        place.client.clone(),
        store.clone(),
        checkpoints.clone(),
        place.subjects.clone(),
        place.stream.clone(),
        options,
    )
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_every_event_once_as_a_cloudevent() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 4);
    let store = InMemoryEventStore::new();
    let events = fill(&store, 5, 20).await;
    let last = events.last().unwrap().global_position;
    let checkpoints = InMemoryCheckpointStore::new();

    let mut handle = relay(&place, &store, &checkpoints, 16).spawn();
    handle.wait_for_position(last).await;
    handle.stop().await.unwrap();
    assert_eq!(checkpoints.load("nats-relay").await.unwrap(), Some(last), "the checkpoint follows the acks");
    assert_eq!(place.message_count().await, events.len() as u64);

    // Every message is the CloudEvent of its event, on its subject, with
    // the event id as the broker's message id.
    let stream = place.js().get_stream(place.stream.name()).await.unwrap();
    for (i, event) in events.iter().enumerate() {
        let message = stream.get_raw_message(i as u64 + 1).await.unwrap();
        assert_eq!(message.subject.as_str(), place.subjects.subject_of(event));
        let headers: std::collections::BTreeMap<String, String> = message
            .headers
            .iter()
            .filter_map(|(k, v)| v.last().map(|v| (k.to_string(), v.as_str().to_owned())))
            .collect();
        assert_eq!(headers["Nats-Msg-Id"], event.id.to_string());
        assert_eq!(headers["ce-specversion"], "1.0");
        assert_eq!(headers["ce-type"], event.event_type);
        let back = decode(&headers, &message.payload).unwrap();
        assert_eq!(
            (back.id, back.global_position, back.stream_version),
            (event.id, event.global_position, event.stream_version)
        );
        assert_eq!(back.data.get(), event.data.get());
    }

    // A relay that lost its checkpoint publishes everything again: the
    // broker drops every duplicate.
    checkpoints.delete("nats-relay").await.unwrap();
    let mut again = relay(&place, &store, &checkpoints, 64).spawn();
    let status = again.wait_for_position(last).await;
    again.stop().await.unwrap();
    assert_eq!(status.duplicates, events.len() as u64, "{status:?}");
    assert_eq!(place.message_count().await, events.len() as u64);
    place.delete().await;
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_applies_every_event_in_stream_order() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 4);
    let store = InMemoryEventStore::new();
    let events = fill(&store, 12, 25).await;
    let checkpoints = InMemoryCheckpointStore::new();
    let relay = relay(&place, &store, &checkpoints, 32).spawn();

    let ledger = Ledger::named("ledger");
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker);
    let mut handle = worker.spawn(ledger.clone(), WorkerOptions::default().batch(7));
    let wanted = events.len() as u64 - 1;
    let status = handle.wait_for(|s| s.handled >= wanted && s.skipped >= 1).await;
    assert_eq!(status.partitions.len(), 4, "a sole worker takes every partition");
    handle.stop().await.unwrap();
    relay.stop().await.unwrap();

    {
        let state = ledger.state();
        assert_eq!(state.applied.len() as u64, wanted);
        assert!(state.out_of_order.is_empty(), "{:?}", state.out_of_order);
        assert_eq!(state.total, 12 * (1..=25).sum::<u64>());
    }
    place.delete().await;
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_takes_over_a_dead_ones_partitions_in_order() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 3);
    let store = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let relay = relay(&place, &store, &checkpoints, 32).spawn();
    let leases = MemoryLeases::default();
    let ledger = Ledger::named("takeover");
    let worker =
        ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), leases.clone());
    let options = WorkerOptions::default().batch(5).lease_interval(Duration::from_millis(100));

    let first = worker.spawn(ledger.clone(), options.clone());
    let events = fill(&store, 9, 40).await;
    let wanted = events.len() as u64 - 1;
    let mut first = first;
    first.wait_for(|s| s.handled >= wanted / 3).await;
    // A crash: no acks for what is in hand, leases gone with the process.
    first.abort();
    let second = worker.spawn(ledger.clone(), options);
    let mut second = second;
    second.wait_for(|_| ledger.state().applied.len() as u64 >= wanted).await;
    second.stop().await.unwrap();
    relay.stop().await.unwrap();

    {
        let state = ledger.state();
        assert_eq!(state.applied.len() as u64, wanted);
        assert!(state.out_of_order.is_empty(), "{:?}", state.out_of_order);
        assert_eq!(state.total, 9 * (1..=40).sum::<u64>());
    }
    place.delete().await;
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_starts_later_gets_its_share_and_the_work_is_done_once() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 4);
    let store = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let relay = relay(&place, &store, &checkpoints, 32).spawn();
    let leases = MemoryLeases::default();
    let ledger = Ledger::named("sharing");
    let worker =
        ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), leases.clone());
    let options = WorkerOptions::default().batch(5).lease_interval(Duration::from_millis(100));
    let within = |what: &'static str| move |_| panic!("{what} did not happen within a minute");

    // Alone, a worker takes every partition.
    let mut first = worker.spawn(ledger.clone(), options.clone());
    let alone = timeout(MINUTE, first.wait_for(|s| s.partitions.len() == 4)).await.unwrap_or_else(within("alone"));
    assert_eq!(alone.workers, 1);

    // A second one arrives: the first gives up half, the second takes it.
    let mut second = worker.spawn(ledger.clone(), options.clone());
    let shared =
        timeout(MINUTE, second.wait_for(|s| s.partitions.len() == 2)).await.unwrap_or_else(within("the share"));
    let first_now =
        timeout(MINUTE, first.wait_for(|s| s.partitions.len() == 2)).await.unwrap_or_else(within("the give-up"));
    assert_eq!((shared.workers, first_now.workers), (2, 2));
    assert!(shared.partitions.is_disjoint(&first_now.partitions), "{shared:?} and {first_now:?} overlap");

    // Both work on what arrives now.
    let events = fill(&store, 12, 30).await;
    let wanted = events.len() as u64 - 1;
    let handled_by_second = timeout(MINUTE, second.wait_for(|s| s.handled > 0)).await.unwrap_or_else(within("work"));
    assert!(handled_by_second.handled > 0);

    // The second one stops: the first takes everything back and finishes.
    second.stop().await.unwrap();
    timeout(MINUTE, first.wait_for(|s| s.partitions.len() == 4 && ledger.state().applied.len() as u64 >= wanted))
        .await
        .unwrap_or_else(within("the take-back"));
    first.stop().await.unwrap();
    relay.stop().await.unwrap();

    {
        let state = ledger.state();
        assert_eq!(state.applied.len() as u64, wanted);
        assert!(state.out_of_order.is_empty(), "{:?}", state.out_of_order);
        assert_eq!(state.total, 12 * (1..=30).sum::<u64>());
    }
    place.delete().await;
}

#[derive(Debug, Clone)]
struct Failing;

#[orchestrix::async_trait]
impl orchestrix::projection::Projection for Failing {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "failing".into()
    }
    fn filter(&self) -> orchestrix::store::EventFilter {
        orchestrix::store::EventFilter::all()
    }
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
        if event.stream_version == 2 {
            return Err("version 2 is refused".into());
        }
        Ok(())
    }
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_parked_or_stop_the_worker() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 1);
    let store = InMemoryEventStore::new();
    fill(&store, 1, 3).await;
    let relay = relay(&place, &store, &InMemoryCheckpointStore::new(), 8).spawn();

    let dead = InMemoryDeadLetterStore::new();
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker)
        .with_dead_letters(dead.clone());
    let options = WorkerOptions::default()
        .name("parking")
        .poison(PoisonPolicy::Park)
        .retry(orchestrix::retry::RetryPolicy::none());
    let mut parking = worker.spawn(Failing, options.clone());
    let status = parking.wait_for(|s| s.handled + s.parked >= 4).await;
    // Version 2 fails; the stream's later events are parked behind it
    // (ADR 0025), untried.
    assert_eq!((status.handled, status.parked), (1, 3));
    let letters = orchestrix::store::DeadLetterStore::list(&dead, Some("parking")).await.unwrap();
    let versions: Vec<(u64, u32)> = letters.iter().map(|l| (l.event.stream_version, l.attempts)).collect();
    assert_eq!(versions, vec![(2, 1), (3, 0), (4, 0)]);
    // A retry through the worker replays the stream in order and stops at
    // the first failure: version 2 still fails, nothing is applied.
    let outcome = parking.retry_dead_letter(letters[2].id).await.unwrap();
    assert!(outcome.applied.is_empty() && outcome.failed.len() == 1 && outcome.still_parked == 3, "{outcome:?}");
    // Dropping the first letter leaves the others parked; a retry applies them.
    let dropped = parking.drop_dead_letter(letters[0].id).await.unwrap();
    assert!(dropped.removed && dropped.still_parked == 2, "{dropped:?}");
    let outcome = parking.retry_dead_letters().await.unwrap();
    assert_eq!(outcome.applied, vec![letters[1].id, letters[2].id]);
    parking.stop().await.unwrap();
    assert!(orchestrix::store::DeadLetterStore::list(&dead, Some("parking")).await.unwrap().is_empty());

    let mut stopping = worker.spawn(Failing, options.name("stopping").poison(PoisonPolicy::Stop));
    let status = stopping.wait_for(|s| s.failed.is_some()).await;
    assert!(status.handled >= 1, "{status:?}");
    let error = stopping.stop().await.unwrap_err();
    assert!(error.to_string().contains("version 2 is refused"), "{error}");
    relay.stop().await.unwrap();
    place.delete().await;
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_carries_messages_and_headers_by_pattern() {
    let Some(client) = client().await else { return };
    let place = Place::new(client, 1);
    let bus = JetStreamBus::new(place.client.clone(), &place.subjects, &place.stream).await.unwrap();
    let prefix = place.subjects.prefix().to_owned();
    let mut orders = bus.subscribe(&format!("{prefix}.orders.*")).await.unwrap();
    let mut everything = bus.subscribe(&format!("{prefix}.>")).await.unwrap();

    let mut message = Message::new(format!("{prefix}.orders.placed"), "one");
    message.headers.insert("x-trace".into(), "abc".into());
    bus.publish(message.clone()).await.unwrap();
    bus.publish(Message::new(format!("{prefix}.payments.taken"), "two")).await.unwrap();

    let got = tokio::time::timeout(Duration::from_secs(10), orders.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((got.subject.as_str(), &got.payload[..]), (message.subject.as_str(), &b"one"[..]));
    assert_eq!(got.headers["x-trace"], "abc");
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let got = tokio::time::timeout(Duration::from_secs(10), everything.next()).await.unwrap().unwrap().unwrap();
        seen.insert(got.subject);
    }
    assert_eq!(seen.len(), 2);

    let outside = bus.publish(Message::new("elsewhere.x", "no")).await.unwrap_err();
    assert!(matches!(outside, orchestrix::StoreError::InvalidInput(_)), "{outside}");
    assert!(bus.publish(Message::new(format!("{prefix}.*"), "no")).await.is_err());
    assert!(bus.subscribe("elsewhere.>").await.is_err());
    place.delete().await;
}

/// The message ids of the stream's messages, in stream order.
async fn stored_ids(place: &Place) -> Vec<String> {
    let stream = place.js().get_stream(place.stream.name()).await.unwrap();
    let mut ids = Vec::new();
    for sequence in 1..=place.message_count().await {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
        ids.push(id);
    }
    ids
}

/// A broker that refuses one publish of the window (as one that lost it
/// in a restart would) while it takes the later ones: with `ordered`, the
/// relay never lets a later event land before it; without, it does.
async fn a_refused_publish_with(ordered: bool) -> (Vec<String>, Vec<String>, Vec<String>) {
    let place = Place::new(client().await.expect("checked by the caller"), 1);
    let js = place.js();
    place.stream.ensure(&js, &place.subjects).await.unwrap();
    // Refuse messages over 1,000 bytes: the fourth event is one.
    let mut config = js.get_stream(place.stream.name()).await.unwrap().info().await.unwrap().config.clone();
    config.max_message_size = 1_000;
    js.update_stream(config.clone()).await.unwrap();

    let store = InMemoryEventStore::new();
    let target = StreamId::new("Tally", "s0").unwrap();
    let mut events = Vec::new();
    for n in 1..=10_u64 {
        let mut event = counted(n);
        if n == 4 {
            event.data =
                serde_json::value::RawValue::from_string(format!("{{\"n\":4,\"padding\":\"{}\"}}", "x".repeat(2_000)))
                    .unwrap();
        }
        events.extend(store.append(&target, ExpectedVersion::Any, vec![event]).await.unwrap());
    }
    let ids: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
    let options = RelayOptions::default().window(64).max_backoff(Duration::from_millis(50)).ordered(ordered);
    let mut relay = Relay::new(
        place.client.clone(),
        store.clone(),
        InMemoryCheckpointStore::new(),
        place.subjects.clone(),
        place.stream.clone(),
        options,
    )
    .spawn();
    timeout(MINUTE, async {
        while relay.status().restarts < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the relay fails on the refused event and starts over");
    let while_refused = stored_ids(&place).await;

    // The broker takes it again: everything arrives.
    config.max_message_size = -1;
    js.update_stream(config).await.unwrap();
    timeout(MINUTE, relay.wait_for_position(events[9].global_position)).await.expect("the relay gets through");
    relay.stop().await.unwrap();
    let after = stored_ids(&place).await;
    place.delete().await;
    (ids, while_refused, after)
}

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_refuses_is_never_overtaken() {
    if client().await.is_none() {
        return;
    }
    let (ids, while_refused, after) = a_refused_publish_with(true).await;
    assert_eq!(while_refused, ids[..3], "nothing after the refused event was stored");
    assert_eq!(after, ids, "every event once, in the log's order");

    // Without the chain, the later events land first: the limit `ordered`
    // lifts, shown rather than assumed.
    let (ids, while_refused, after) = a_refused_publish_with(false).await;
    assert!(while_refused.len() > 3, "later events landed while the fourth was refused: {while_refused:?}");
    assert_ne!(after, ids);
    assert_eq!(after.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
}

/// A cluster's clients are given every server, comma-separated: one that
/// is down (here, a port nothing listens on) is skipped. `connect` used to
/// hand the whole list to the client's one-URL parser, which failed on it.
#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server), see docs/guide/getting-started.md"
)]
#[tokio::test]
async fn a_client_given_several_servers_reaches_a_live_one() {
    let Some(url) = nats_support::nats_url() else { return };
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("nats://{}", dead.local_addr().unwrap());
    drop(dead);
    let client = timeout(MINUTE, orchestrix_adapters::nats::connect(&format!("{dead_url}, {url}")))
        .await
        .expect("connects within a minute")
        .expect("a list of servers is accepted");
    client.flush().await.expect("the live server answers");
    assert!(orchestrix_adapters::nats::connect(&format!("{url},,")).await.is_err(), "an empty entry is refused");
}

/// A delivery that never reaches the worker must not let the partition's
/// later messages overtake it. When a server dies with a message on its
/// way to the worker's client, the consumer counts it delivered and
/// sends the next ones to the worker's next pull; it would come again
/// only after `ack_wait`, after its successors. Here another client's
/// pull on the worker's consumer takes a message and drops it, which is
/// what the consumer sees in that case.
#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delivery_is_not_overtaken_by_the_partitions_next_messages() {
    use orchestrix_adapters::nats::async_nats::jetstream::consumer::{pull, Consumer};
    let Some(client) = client().await else { return };
    let place = Place::new(client, 1);
    place.stream.ensure(&place.js(), &place.subjects).await.unwrap();
    let ledger = Ledger::named("lost");
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker);
    let options =
        WorkerOptions::default().batch(1).ack_wait(Duration::from_secs(2)).lease_interval(Duration::from_millis(100));
    let mut handle = worker.spawn(ledger.clone(), options);
    timeout(MINUTE, handle.wait_for(|s| s.partitions.contains(&0))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The thief's pull waits behind the worker's: of the first messages,
    // one goes to each.
    let stream = place.js().get_stream(place.stream.name()).await.unwrap();
    let consumer: Consumer<pull::Config> = stream.get_consumer("lost-p0").await.unwrap();
    let mut thief = consumer.fetch().max_messages(1).expires(Duration::from_secs(20)).messages().await.unwrap();

    let store = InMemoryEventStore::new();
    let relay = Relay::new(
        place.client.clone(),
        store.clone(),
        InMemoryCheckpointStore::new(),
        place.subjects.clone(),
        place.stream.clone(),
        RelayOptions::default(),
    )
    .spawn();
    let id = StreamId::new("Tally", "one").unwrap();
    store.append(&id, ExpectedVersion::Any, (1..=20).map(counted).collect()).await.unwrap();
    let stolen = timeout(MINUTE, thief.next()).await.unwrap().expect("the thief got a message").unwrap();
    eprintln!("stolen: {:?}", stolen.info().map(|i| (i.stream_sequence, i.consumer_sequence)).unwrap());
    drop(stolen); // never acknowledged, as if lost with its server

    let status =
        timeout(MINUTE, handle.wait_for(|_| ledger.state().applied.len() == 20)).await.expect("every event applied");
    assert!(status.missed >= 1, "the worker noticed the lost delivery: {status:?}");
    handle.stop().await.unwrap();
    relay.stop().await.unwrap();
    {
        let state = ledger.state();
        assert!(state.out_of_order.is_empty(), "later events overtook the lost one: {:?}", state.out_of_order);
        assert_eq!(state.total, (1..=20).sum::<u64>());
    }
    place.delete().await;
}
