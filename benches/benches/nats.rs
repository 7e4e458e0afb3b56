//! The NATS relay's throughput beside raw `async-nats` JetStream
//! publishing with acknowledgements, same payloads, same run (issue 22,
//! goal 8: at least 0.8 of raw).
//!
//! `ORCHESTRIX_NATS_URL=nats://127.0.0.1:4222 cargo bench -p orchestrix-benches --bench nats`
//! (`-- --quick`: 20,000 events instead of 100,000). Without the variable
//! it prints why it did nothing.
//!
//! - **Relay**: [`Relay`] with its default options (a window of 256
//!   publishes awaiting their acks, each naming its predecessor, the
//!   checkpoint saved every 1,000 acks) tails an in-memory store of the
//!   events until the broker acknowledged the last one.
//! - **Raw**: the same messages (the relay's own CloudEvent encoding,
//!   subject and `Nats-Msg-Id`, computed before the clock starts), sent
//!   with `send_publish` and acknowledged through the same window of 256,
//!   by a loop with nothing else to do: no store to read, no checkpoint.
//!
//! Each round gives each side a JetStream stream of its own (file storage,
//! as the relay's default), deleted after the round; the sides alternate
//! which goes first. The best round of each is compared.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore};
use orchestrix::{
    envelope::NewEvent,
    store::{EventFilter, EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::nats::async_nats::{self, jetstream, jetstream::message::PublishMessage, HeaderMap};
use orchestrix_adapters::nats::cloudevent::{encode, ContentMode, EncodedEvent};
use orchestrix_adapters::nats::{connect, EventStreamConfig, Relay, RelayOptions, Subjects};
use serde_json::value::RawValue;

/// Publishes awaiting their ack at once, on both sides (the relay's default).
const WINDOW: usize = 256;
/// Subject partitions.
const PARTITIONS: u32 = 8;

/// A message of the raw side, ready to send.
struct Ready {
    subject: String,
    headers: HeaderMap,
    encoded: EncodedEvent,
    id: String,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let Some(url) = std::env::var("ORCHESTRIX_NATS_URL").ok().filter(|url| !url.is_empty()) else {
        println!("skipped: set ORCHESTRIX_NATS_URL (e.g. nats://127.0.0.1:4222) to run the NATS relay benchmark");
        return;
    };
    let client = connect(&url).await.expect("NATS is reachable");
    let total: u64 = if quick { 20_000 } else { 100_000 };
    let rounds = if quick { 3 } else { 5 };
    let store = InMemoryEventStore::new();
    let data = RawValue::from_string(r#"{"amount":1}"#.to_owned()).expect("valid JSON");
    for stream in 0..total / 100 {
        let stream = StreamId::new("Account", stream.to_string()).expect("a valid stream");
        let batch = (0..100).map(|_| NewEvent::new("Deposited", 1, data.clone())).collect();
        store.append(&stream, ExpectedVersion::Any, batch).await.expect("appends");
    }
    // Names of our own, deleted after each round.
    let token = orchestrix::Uuid::now_v7().simple().to_string()[20..].to_owned();
    println!(
        "NATS relay over {total} in-memory events beside raw JetStream publishing, {rounds} rounds, best of each\n"
    );

    let (mut relay_best, mut raw_best) = (Duration::MAX, Duration::MAX);
    for round in 0..rounds {
        let relay_first = round % 2 == 0;
        for side in if relay_first { ["relay", "raw"] } else { ["raw", "relay"] } {
            let subjects = Subjects::new(format!("perfengine.{token}.{side}{round}"), PARTITIONS).expect("valid");
            let stream = EventStreamConfig::new(format!("PERFENGINE_{token}_{side}{round}")).expect("valid");
            let elapsed = if side == "relay" {
                relay(&client, &store, &subjects, &stream, total).await
            } else {
                let messages = messages(&store, &subjects).await;
                raw(&client, &subjects, &stream, messages).await
            };
            let js = jetstream::new(client.clone());
            let count =
                js.get_stream(stream.name()).await.expect("the stream").info().await.expect("info").state.messages;
            assert_eq!(count, total, "{side}: every event stored once");
            stream.delete(&js).await.expect("deletes its stream");
            if side == "relay" {
                relay_best = relay_best.min(elapsed);
            } else {
                raw_best = raw_best.min(elapsed);
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let (relay_rate, raw_rate) = (rate(relay_best), rate(raw_best));
    println!("raw async-nats publish + ack, window {WINDOW}   {raw_rate:>10.0} events/s");
    println!(
        "relay (default options)                 {relay_rate:>10.0} events/s   ratio {:.3}",
        relay_rate / raw_rate
    );
}

/// Relays the whole store into `stream`; the time until the last ack.
async fn relay(
    client: &async_nats::Client,
    store: &InMemoryEventStore,
    subjects: &Subjects,
    stream: &EventStreamConfig,
    total: u64,
) -> Duration {
    let relay = Relay::new(
        client.clone(),
        store.clone(),
        InMemoryCheckpointStore::new(),
        subjects.clone(),
        stream.clone(),
        RelayOptions::default(),
    );
    let start = Instant::now();
    let mut handle = relay.spawn();
    let status = handle.wait_for_position(total).await;
    let elapsed = start.elapsed();
    assert_eq!(status.position, total, "the relay reached the head: {status:?}");
    handle.stop().await.expect("the relay stops cleanly");
    elapsed
}

/// The relay's messages for every stored event, encoded as it does.
async fn messages(store: &InMemoryEventStore, subjects: &Subjects) -> Vec<Ready> {
    use futures_util::StreamExt;

    let filter = EventFilter::all();
    let mut events = store.read_all(1, &filter);
    let mut out = Vec::new();
    while let Some(event) = events.next().await {
        let event = event.expect("reads");
        let encoded = encode(&event, "orchestrix", ContentMode::Binary);
        let mut headers = HeaderMap::new();
        for (name, value) in &encoded.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        out.push(Ready { subject: subjects.subject_of(&event), headers, encoded, id: event.id.to_string() });
    }
    out
}

/// Publishes `messages` to a new `stream`, at most [`WINDOW`] unacknowledged
/// at once; the time from creating the stream to the last ack.
async fn raw(
    client: &async_nats::Client,
    subjects: &Subjects,
    stream: &EventStreamConfig,
    messages: Vec<Ready>,
) -> Duration {
    let start = Instant::now();
    let js = jetstream::new(client.clone());
    stream.ensure(&js, subjects).await.expect("creates the stream");
    let mut pending = VecDeque::with_capacity(WINDOW);
    for message in messages {
        if pending.len() >= WINDOW {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().expect("a publish in flight");
            ack.await.expect("acknowledged");
        }
        let publish =
            PublishMessage::build().payload(message.encoded.payload).headers(message.headers).message_id(message.id);
        pending.push_back(js.send_publish(message.subject, publish).await.expect("sent"));
    }
    while let Some(ack) = pending.pop_front() {
        ack.await.expect("acknowledged");
    }
    start.elapsed()
}
