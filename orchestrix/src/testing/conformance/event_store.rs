//! Checks of [`EventStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs; it panics with the
//! check's name and what it expected and found. [`super::event_store()`] runs
//! them all.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::support::{
    batch, collect, event_with, expect, expect_conflict, expect_eq, expect_increasing, expect_invalid_input,
    expect_quiet, expect_same_record, json, jsons, next_event, next_events, numbered, ok, positions, unique_stream,
    versions, within,
};
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::event::MAX_EVENT_TYPE_LEN;
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::{StreamId, MAX_STREAM_PART_LEN};

pub use super::stream_listing::streams_are_listed_in_pages;
pub use super::validation::{
    payloads_at_the_limits_are_stored, payloads_come_back_as_equal_values, unreadable_payloads_are_refused,
};

async fn append<S: EventStore>(
    check: &str,
    store: &S,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Vec<Arc<RecordedEvent>> {
    ok(
        check,
        &format!("append to `{stream}` expecting {expected}"),
        within(check, "append", store.append(stream, expected, events)).await,
    )
}

async fn read_stream<S: EventStore>(check: &str, store: &S, stream: &StreamId, from: u64) -> Vec<Arc<RecordedEvent>> {
    collect(check, &format!("read_stream(`{stream}`, {from})"), store.read_stream(stream, from)).await
}

async fn read_all<S: EventStore>(check: &str, store: &S, from: u64, filter: &EventFilter) -> Vec<Arc<RecordedEvent>> {
    collect(check, &format!("read_all({from}, {filter:?})"), store.read_all(from, filter)).await
}

async fn head<S: EventStore>(check: &str, store: &S) -> Option<u64> {
    ok(check, "head_position", within(check, "head_position", store.head_position()).await)
}

async fn version<S: EventStore>(check: &str, store: &S, stream: &StreamId) -> Option<u64> {
    ok(check, "stream_version", within(check, "stream_version", store.stream_version(stream)).await)
}

/// The events' data as parsed JSON: stores may normalize whitespace and key
/// order (PostgreSQL `jsonb` does), so data is compared as JSON values.
fn data_of(events: &[Arc<RecordedEvent>]) -> Vec<serde_json::Value> {
    events.iter().map(|event| json(event.data.get())).collect()
}

/// Appends three events with full metadata to a new stream and reads them
/// back: unique UUID v7 ids, versions 1..=3, increasing positions, types,
/// schema versions, equal JSON data (as values: a store may normalize
/// whitespace and key order), metadata (headers, unicode), and
/// the records read back equal the ones the append returned.
pub async fn append_and_read_back<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::append_and_read_back";
    let stream = unique_stream("Account");
    let metadata = Metadata::default()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_tenant("tenant-ü-🦀")
        .with_header("source", "import")
        .with_header("ünïcødé", "värde ✓ 漢字")
        .with_header("empty", "");
    let metadata = Metadata {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        tracestate: Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
        ..metadata
    };
    let data = [
        r#"{"owner":"Ada","limits":[1,2,3],"nested":{"flag":true,"none":null}}"#,
        r#"{"amount":30,"note":"déjà vu 🦀 \"quoted\""}"#,
        r#"{"amount":18446744073709551615,"ratio":0.25}"#,
    ];
    let events = vec![
        event_with("AccountOpened", data[0], metadata.clone()),
        NewEvent { schema_version: 2, ..event_with("AccountDeposited", data[1], Metadata::default()) },
        NewEvent { schema_version: 7, ..event_with("AccountDeposited", data[2], metadata.clone()) },
    ];
    let before = Utc::now();
    let recorded = append(CHECK, &store, &stream, ExpectedVersion::NoStream, events).await;
    let after = Utc::now();

    expect_eq(CHECK, "number of recorded events", &recorded.len(), &3);
    expect_eq(CHECK, "stream versions", &versions(&recorded), &vec![1, 2, 3]);
    expect_increasing(CHECK, "global positions", &positions(&recorded));
    expect(CHECK, recorded[0].global_position >= 1, format_args!("global positions start at 1, found 0"));
    let ids: HashSet<Uuid> = recorded.iter().map(|event| event.id).collect();
    expect_eq(CHECK, "number of distinct event ids", &ids.len(), &3);
    for event in &recorded {
        expect_eq(CHECK, "event id UUID version", &event.id.get_version_num(), &7);
        expect_eq(CHECK, "recorded stream", &event.stream, &stream);
        let slack = chrono::Duration::seconds(5);
        expect(
            CHECK,
            event.recorded_at >= before - slack && event.recorded_at <= after + slack,
            format_args!("recorded_at {} is not the time of the append ({before} .. {after})", event.recorded_at),
        );
    }
    let types: Vec<&str> = recorded.iter().map(|event| event.event_type.as_str()).collect();
    expect_eq(CHECK, "event types", &types, &vec!["AccountOpened", "AccountDeposited", "AccountDeposited"]);
    let schemas: Vec<u32> = recorded.iter().map(|event| event.schema_version).collect();
    expect_eq(CHECK, "schema versions", &schemas, &vec![1, 2, 7]);
    expect_eq(CHECK, "data (equal JSON values)", &data_of(&recorded), &jsons(&data));
    expect_eq(CHECK, "metadata of the first event", &recorded[0].metadata, &metadata);
    expect_eq(CHECK, "metadata of the second event", &recorded[1].metadata, &Metadata::default());
    expect_eq(CHECK, "metadata of the third event", &recorded[2].metadata, &metadata);

    let read = read_stream(CHECK, &store, &stream, 1).await;
    expect_eq(CHECK, "number of events read back", &read.len(), &3);
    for (found, expected) in read.iter().zip(&recorded) {
        expect_same_record(CHECK, "read_stream returns what append recorded", found, expected);
    }
    let all = read_all(CHECK, &store, 1, &EventFilter::all()).await;
    expect_eq(CHECK, "number of events in the global log", &all.len(), &3);
    for (found, expected) in all.iter().zip(&recorded) {
        expect_same_record(CHECK, "read_all returns what append recorded", found, expected);
    }
}

/// `NoStream` on an existing stream is `WrongExpectedVersion` with the
/// actual version, and writes nothing.
pub async fn no_stream_on_existing_stream_conflicts<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::no_stream_on_existing_stream_conflicts";
    let stream = unique_stream("Account");
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    let result = store.append(&stream, ExpectedVersion::NoStream, batch("Opened", 3, 1)).await;
    expect_conflict(CHECK, "second NoStream append", result, &stream, ExpectedVersion::NoStream, Some(2));
    expect_eq(CHECK, "stream version after the conflict", &version(CHECK, &store, &stream).await, &Some(2));
    expect_eq(CHECK, "events after the conflict", &read_stream(CHECK, &store, &stream, 1).await.len(), &2);
}

/// An `Exact` expectation that does not match is a conflict carrying the
/// actual version (or `None` for a missing stream), and nothing of the
/// batch is written.
pub async fn exact_mismatch_conflicts_and_writes_nothing<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::exact_mismatch_conflicts_and_writes_nothing";
    let stream = unique_stream("Account");
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    for expected in [ExpectedVersion::Exact(1), ExpectedVersion::Exact(3), ExpectedVersion::Exact(0)] {
        let result = store.append(&stream, expected, batch("Deposited", 10, 3)).await;
        expect_conflict(CHECK, &format!("append expecting {expected}"), result, &stream, expected, Some(2));
    }
    let read = read_stream(CHECK, &store, &stream, 1).await;
    expect_eq(
        CHECK,
        "data after the conflicts (nothing written)",
        &data_of(&read),
        &jsons(&[r#"{"n":1}"#, r#"{"n":2}"#]),
    );
    expect_eq(CHECK, "head position after the conflicts", &head(CHECK, &store).await, &Some(read[1].global_position));

    let missing = unique_stream("Account");
    let result = store.append(&missing, ExpectedVersion::Exact(5), batch("Opened", 1, 1)).await;
    expect_conflict(CHECK, "Exact(5) on a missing stream", result, &missing, ExpectedVersion::Exact(5), None);
    expect_eq(CHECK, "version of the missing stream", &version(CHECK, &store, &missing).await, &None);
}

/// `Exact(0)` appends to a new stream like `NoStream`, and conflicts once
/// the stream exists; a matching `Exact(n)` appends after version `n`.
pub async fn exact_zero_is_no_stream<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::exact_zero_is_no_stream";
    let stream = unique_stream("Account");
    let first = append(CHECK, &store, &stream, ExpectedVersion::Exact(0), batch("Opened", 1, 1)).await;
    expect_eq(CHECK, "versions after Exact(0)", &versions(&first), &vec![1]);
    let result = store.append(&stream, ExpectedVersion::Exact(0), batch("Opened", 2, 1)).await;
    expect_conflict(CHECK, "second Exact(0) append", result, &stream, ExpectedVersion::Exact(0), Some(1));
    let next = append(CHECK, &store, &stream, ExpectedVersion::Exact(1), batch("Deposited", 2, 2)).await;
    expect_eq(CHECK, "versions after Exact(1)", &versions(&next), &vec![2, 3]);
}

/// `Any` appends to a new stream and to an existing one.
pub async fn any_appends_whatever_the_version<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::any_appends_whatever_the_version";
    let stream = unique_stream("Account");
    let first = append(CHECK, &store, &stream, ExpectedVersion::Any, batch("Opened", 1, 2)).await;
    expect_eq(CHECK, "versions of the first Any append", &versions(&first), &vec![1, 2]);
    let second = append(CHECK, &store, &stream, ExpectedVersion::Any, batch("Deposited", 3, 1)).await;
    expect_eq(CHECK, "versions of the second Any append", &versions(&second), &vec![3]);
    expect_eq(CHECK, "stream version", &version(CHECK, &store, &stream).await, &Some(3));
}

/// An empty batch checks the expectation and stores nothing: it does not
/// create the stream nor move the head.
pub async fn empty_batch_checks_and_stores_nothing<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::empty_batch_checks_and_stores_nothing";
    let stream = unique_stream("Account");
    let head_before = head(CHECK, &store).await;
    let recorded = append(CHECK, &store, &stream, ExpectedVersion::NoStream, Vec::new()).await;
    expect_eq(CHECK, "events recorded by an empty batch", &recorded.len(), &0);
    expect_eq(CHECK, "version of a stream that only got an empty batch", &version(CHECK, &store, &stream).await, &None);
    expect_eq(CHECK, "head after an empty batch", &head(CHECK, &store).await, &head_before);
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    let result = store.append(&stream, ExpectedVersion::NoStream, Vec::new()).await;
    expect_conflict(
        CHECK,
        "empty batch expecting NoStream on an existing stream",
        result,
        &stream,
        ExpectedVersion::NoStream,
        Some(1),
    );
    let result = store.append(&stream, ExpectedVersion::Exact(4), Vec::new()).await;
    expect_conflict(CHECK, "empty batch expecting Exact(4)", result, &stream, ExpectedVersion::Exact(4), Some(1));
    let recorded = append(CHECK, &store, &stream, ExpectedVersion::Exact(1), Vec::new()).await;
    expect_eq(CHECK, "events recorded by a matching empty batch", &recorded.len(), &0);
    expect_eq(CHECK, "stream version", &version(CHECK, &store, &stream).await, &Some(1));
}

/// A batch is atomic: when one of its events is refused, none is stored.
pub async fn batch_is_atomic<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::batch_is_atomic";
    let stream = unique_stream("Account");
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    let head_before = head(CHECK, &store).await;
    let mut events = batch("Deposited", 2, 3);
    events.push(numbered("", 5));
    let result = store.append(&stream, ExpectedVersion::Exact(1), events).await;
    expect_invalid_input(CHECK, "a batch whose last event has an empty type", &result);
    expect_eq(CHECK, "stream version after the refused batch", &version(CHECK, &store, &stream).await, &Some(1));
    expect_eq(CHECK, "head after the refused batch", &head(CHECK, &store).await, &head_before);
    expect_eq(CHECK, "events after the refused batch", &read_stream(CHECK, &store, &stream, 1).await.len(), &1);
    let next = append(CHECK, &store, &stream, ExpectedVersion::Exact(1), batch("Deposited", 2, 2)).await;
    expect_eq(CHECK, "versions of the next batch (no gap)", &versions(&next), &vec![2, 3]);
}

/// `read_stream` starts at the given version (inclusive); 0 reads from the
/// start and a version past the end reads nothing.
pub async fn read_stream_from_a_version<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_stream_from_a_version";
    let stream = unique_stream("Account");
    let other = unique_stream("Account");
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    append(CHECK, &store, &other, ExpectedVersion::NoStream, batch("Opened", 100, 2)).await;
    append(CHECK, &store, &stream, ExpectedVersion::Exact(2), batch("Deposited", 3, 3)).await;
    expect_eq(CHECK, "versions read from 3", &versions(&read_stream(CHECK, &store, &stream, 3).await), &vec![3, 4, 5]);
    expect_eq(
        CHECK,
        "data read from 3",
        &data_of(&read_stream(CHECK, &store, &stream, 3).await),
        &jsons(&[r#"{"n":3}"#, r#"{"n":4}"#, r#"{"n":5}"#]),
    );
    expect_eq(
        CHECK,
        "versions read from 0",
        &versions(&read_stream(CHECK, &store, &stream, 0).await),
        &vec![1, 2, 3, 4, 5],
    );
    expect_eq(CHECK, "versions read from 5", &versions(&read_stream(CHECK, &store, &stream, 5).await), &vec![5]);
    expect_eq(CHECK, "events read from 6", &read_stream(CHECK, &store, &stream, 6).await.len(), &0);
    expect_eq(CHECK, "events read from u64::MAX", &read_stream(CHECK, &store, &stream, u64::MAX).await.len(), &0);
}

/// Reading a stream that does not exist yields nothing (not an error).
pub async fn read_missing_stream_is_empty<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_missing_stream_is_empty";
    append(CHECK, &store, &unique_stream("Account"), ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    let missing = unique_stream("Account");
    expect_eq(CHECK, "events of a missing stream", &read_stream(CHECK, &store, &missing, 1).await.len(), &0);
    expect_eq(CHECK, "version of a missing stream", &version(CHECK, &store, &missing).await, &None);
}

/// `stream_version` and `head_position` are `None` on an empty store and
/// follow the appends.
pub async fn stream_version_and_head_position<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::stream_version_and_head_position";
    let (a, b) = (unique_stream("Account"), unique_stream("Order"));
    expect_eq(CHECK, "head of an empty store", &head(CHECK, &store).await, &None);
    expect_eq(CHECK, "version of a stream of an empty store", &version(CHECK, &store, &a).await, &None);
    let first = append(CHECK, &store, &a, ExpectedVersion::NoStream, batch("Opened", 1, 3)).await;
    expect_eq(CHECK, "head after the first append", &head(CHECK, &store).await, &Some(first[2].global_position));
    let second = append(CHECK, &store, &b, ExpectedVersion::NoStream, batch("Placed", 1, 2)).await;
    expect_eq(CHECK, "head after the second append", &head(CHECK, &store).await, &Some(second[1].global_position));
    expect_eq(CHECK, "version of the first stream", &version(CHECK, &store, &a).await, &Some(3));
    expect_eq(CHECK, "version of the second stream", &version(CHECK, &store, &b).await, &Some(2));
}

/// `read_all` reads the global log from a position (inclusive), with and
/// without a type filter, in position order.
pub async fn read_all_from_a_position_with_a_filter<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_all_from_a_position_with_a_filter";
    let (a, b) = (unique_stream("Account"), unique_stream("Order"));
    let mut recorded =
        append(CHECK, &store, &a, ExpectedVersion::NoStream, vec![numbered("Opened", 1), numbered("Deposited", 2)])
            .await;
    recorded.extend(
        append(CHECK, &store, &b, ExpectedVersion::NoStream, vec![numbered("Placed", 3), numbered("Shipped", 4)]).await,
    );
    recorded.extend(
        append(CHECK, &store, &a, ExpectedVersion::Exact(2), vec![numbered("Deposited", 5), numbered("Closed", 6)])
            .await,
    );

    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_eq(CHECK, "positions read from 0", &positions(&all), &positions(&recorded));
    let all = read_all(CHECK, &store, 1, &EventFilter::all()).await;
    expect_eq(CHECK, "positions read from 1", &positions(&all), &positions(&recorded));
    let from = recorded[2].global_position;
    let tail = read_all(CHECK, &store, from, &EventFilter::all()).await;
    expect_eq(CHECK, &format!("positions read from {from}"), &positions(&tail), &positions(&recorded[2..]));

    let filter = EventFilter::types(["Deposited", "Shipped"]);
    let filtered = read_all(CHECK, &store, 0, &filter).await;
    let expected: Vec<u64> = [1, 3, 4].iter().map(|&i| recorded[i].global_position).collect();
    expect_eq(CHECK, "positions read with a filter", &positions(&filtered), &expected);
    let filtered = read_all(CHECK, &store, recorded[3].global_position, &filter).await;
    expect_eq(CHECK, "positions read from a position with a filter", &positions(&filtered), &expected[1..].to_vec());
    let none = read_all(CHECK, &store, 0, &EventFilter::types(["NoSuchType"])).await;
    expect_eq(CHECK, "events of a type never stored", &none.len(), &0);
    let past = read_all(CHECK, &store, recorded[5].global_position + 1, &EventFilter::all()).await;
    expect_eq(CHECK, "events read past the head", &past.len(), &0);
}

/// The global log keeps the order of appends across streams.
pub async fn global_order_across_streams<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::global_order_across_streams";
    let streams: Vec<StreamId> = (0..3).map(|_| unique_stream("Account")).collect();
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for (index, stream) in streams.iter().enumerate() {
            let n = usize::try_from(round).expect("small") * 10 + index;
            let recorded =
                append(CHECK, &store, stream, ExpectedVersion::Exact(round), vec![numbered("Step", n)]).await;
            expected.push((stream.clone(), round + 1, json(recorded[0].data.get())));
        }
    }
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_increasing(CHECK, "global positions", &positions(&all));
    let found: Vec<(StreamId, u64, serde_json::Value)> =
        all.iter().map(|event| (event.stream.clone(), event.stream_version, json(event.data.get()))).collect();
    expect_eq(CHECK, "(stream, version, data) in global order", &found, &expected);
}

/// Streams are told apart exactly: by case, by trailing space, by leading
/// zero, by category.
pub async fn stream_ids_are_exact<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::stream_ids_are_exact";
    let suffix = Uuid::now_v7().to_string();
    let ids = [
        ("Account", suffix.clone()),
        ("account", suffix.clone()),
        ("ACCOUNT", suffix.clone()),
        ("Accounts", suffix.clone()),
        ("Account", format!("{suffix} ")),
        ("Account", format!("0{suffix}")),
        ("Account", suffix.to_uppercase()),
    ];
    for (category, id) in &ids {
        let stream = StreamId::new(*category, id.as_str()).expect("a valid stream id");
        append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    }
    for (category, id) in &ids {
        let stream = StreamId::new(*category, id.as_str()).expect("a valid stream id");
        expect_eq(CHECK, &format!("version of `{stream}`"), &version(CHECK, &store, &stream).await, &Some(1));
        let read = read_stream(CHECK, &store, &stream, 1).await;
        expect_eq(CHECK, &format!("events of `{stream}`"), &read.len(), &1);
        expect_eq(CHECK, "stream of the event read back", &read[0].stream, &stream);
    }
}

/// Long streams read back whole and in order across the store's internal
/// page boundaries, from the start and from the middle.
pub async fn long_streams_read_back_in_order<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::long_streams_read_back_in_order";
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    for round in 0..6 {
        let v = u64::try_from(round * 100).expect("small");
        append(CHECK, &store, &a, ExpectedVersion::Exact(v), batch("Deposited", round * 100 + 1, 100)).await;
        append(CHECK, &store, &b, ExpectedVersion::Exact(v), batch("Withdrawn", round * 100 + 1, 100)).await;
    }
    let read = read_stream(CHECK, &store, &a, 1).await;
    expect_eq(CHECK, "versions of a 600-event stream", &versions(&read), &(1..=600).collect::<Vec<u64>>());
    let expected_data: Vec<String> = (1..=600).map(|n| format!("{{\"n\":{n}}}")).collect();
    expect_eq(CHECK, "data of a 600-event stream", &data_of(&read), &jsons(&expected_data));
    let read = read_stream(CHECK, &store, &a, 257).await;
    expect_eq(CHECK, "versions read from 257", &versions(&read), &(257..=600).collect::<Vec<u64>>());
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_eq(CHECK, "events in the global log", &all.len(), &1200);
    expect_increasing(CHECK, "global positions", &positions(&all));
    let withdrawn = read_all(CHECK, &store, all[300].global_position, &EventFilter::types(["Withdrawn"])).await;
    let expected: Vec<u64> =
        all[300..].iter().filter(|event| event.event_type == "Withdrawn").map(|event| event.global_position).collect();
    expect_eq(CHECK, "positions of a filtered read from the middle", &positions(&withdrawn), &expected);
}

/// Eight tasks append with the same `Exact(v)` at once, ten times over:
/// each time exactly one wins, the others get a conflict with the actual
/// version, and the stream ends up with ten contiguous versions holding
/// the winners' events.
pub async fn concurrent_exact_appends_to_one_stream<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::concurrent_exact_appends_to_one_stream";
    const TASKS: usize = 8;
    const ROUNDS: u64 = 10;
    let store = Arc::new(store);
    let stream = unique_stream("Account");
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, stream, barrier) = (Arc::clone(&store), stream.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let data = format!("{{\"round\":{round},\"task\":{task}}}");
                    barrier.wait().await;
                    let result = store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(round),
                            vec![event_with("Raced", &data, Metadata::default())],
                        )
                        .await;
                    (data, result)
                })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            let (data, result) = within(CHECK, "a racing append", task).await.expect("the appending task panicked");
            match result {
                Ok(recorded) => {
                    expect_eq(CHECK, "versions of the winning append", &versions(&recorded), &vec![round + 1]);
                    won.push(data);
                }
                Err(error) => expect_conflict(
                    CHECK,
                    "a losing racing append",
                    Err::<(), _>(error),
                    &stream,
                    ExpectedVersion::Exact(round),
                    Some(round + 1),
                ),
            }
        }
        expect_eq(CHECK, &format!("number of winners of the race for version {}", round + 1), &won.len(), &1);
        winners.extend(won);
    }
    let read = read_stream(CHECK, &*store, &stream, 1).await;
    expect_eq(CHECK, "versions after the races", &versions(&read), &(1..=ROUNDS).collect::<Vec<u64>>());
    expect_eq(CHECK, "events after the races (the winners', once each)", &data_of(&read), &jsons(&winners));
}

/// Eight tasks append batches to their own streams at once: every append
/// succeeds, positions are unique, every stream is contiguous.
pub async fn concurrent_appends_to_different_streams<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::concurrent_appends_to_different_streams";
    const TASKS: usize = 8;
    const APPENDS: u64 = 25;
    let store = Arc::new(store);
    let streams: Vec<StreamId> = (0..TASKS).map(|_| unique_stream("Account")).collect();
    let tasks: Vec<_> = streams
        .iter()
        .map(|stream| {
            let (store, stream) = (Arc::clone(&store), stream.clone());
            tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..APPENDS {
                    let n = usize::try_from(i).expect("small") * 2;
                    let recorded = store.append(&stream, ExpectedVersion::Exact(i * 2), batch("Deposited", n, 2)).await;
                    positions.push(recorded.map(|events| (events[0].global_position, events[1].global_position)));
                }
                positions
            })
        })
        .collect();
    let mut all_positions = HashSet::new();
    for task in tasks {
        for result in within(CHECK, "a concurrent append task", task).await.expect("the appending task panicked") {
            let (first, second) = ok(CHECK, "an append to a stream of its own", result);
            expect(
                CHECK,
                first < second,
                format_args!("positions within a batch must increase: {first} then {second}"),
            );
            for position in [first, second] {
                expect(CHECK, all_positions.insert(position), format_args!("position {position} was assigned twice"));
            }
        }
    }
    let expected_count = TASKS * usize::try_from(APPENDS).expect("small") * 2;
    expect_eq(CHECK, "number of assigned positions", &all_positions.len(), &expected_count);
    let all = read_all(CHECK, &*store, 0, &EventFilter::all()).await;
    expect_eq(CHECK, "events in the global log", &all.len(), &expected_count);
    expect_increasing(CHECK, "global positions", &positions(&all));
    for stream in &streams {
        let read = read_stream(CHECK, &*store, stream, 1).await;
        expect_eq(
            CHECK,
            &format!("versions of `{stream}`"),
            &versions(&read),
            &(1..=APPENDS * 2).collect::<Vec<u64>>(),
        );
    }
}

/// A subscription from the start delivers the existing events, then new
/// ones as they are appended, in order and without duplicates.
pub async fn subscribe_catches_up_then_follows_live<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::subscribe_catches_up_then_follows_live";
    let (a, b) = (unique_stream("Account"), unique_stream("Order"));
    let mut recorded = append(CHECK, &store, &a, ExpectedVersion::NoStream, batch("Deposited", 1, 3)).await;
    let mut subscription = store.subscribe(0, EventFilter::all());
    let caught_up = next_events(CHECK, &mut subscription, 3).await;
    expect_eq(CHECK, "positions caught up", &positions(&caught_up), &positions(&recorded));
    for (found, expected) in caught_up.iter().zip(&recorded) {
        expect_same_record(CHECK, "a caught-up event", found, expected);
    }
    let live = append(CHECK, &store, &b, ExpectedVersion::NoStream, batch("Placed", 4, 2)).await;
    let live2 = append(CHECK, &store, &a, ExpectedVersion::Exact(3), batch("Deposited", 6, 1)).await;
    recorded.extend(live.iter().chain(&live2).cloned());
    let followed = next_events(CHECK, &mut subscription, 3).await;
    expect_eq(CHECK, "positions followed live", &positions(&followed), &positions(&recorded[3..]));
    expect_quiet(CHECK, &mut subscription).await;
    let late = append(CHECK, &store, &b, ExpectedVersion::Exact(2), batch("Shipped", 7, 1)).await;
    let event = next_event(CHECK, &mut subscription).await;
    expect_same_record(CHECK, "an event appended after a quiet spell", &event, &late[0]);
    expect_quiet(CHECK, &mut subscription).await;
}

/// A subscription with a type filter delivers only those types, in the
/// catch-up and live.
pub async fn subscribe_with_a_filter<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::subscribe_with_a_filter";
    let stream = unique_stream("Account");
    let recorded = append(
        CHECK,
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![numbered("Opened", 1), numbered("Deposited", 2), numbered("Opened", 3), numbered("Closed", 4)],
    )
    .await;
    let mut subscription = store.subscribe(0, EventFilter::types(["Opened", "Closed"]));
    let caught_up = next_events(CHECK, &mut subscription, 3).await;
    let expected: Vec<u64> = [0, 2, 3].iter().map(|&i| recorded[i].global_position).collect();
    expect_eq(CHECK, "positions caught up through the filter", &positions(&caught_up), &expected);
    let live = append(
        CHECK,
        &store,
        &stream,
        ExpectedVersion::Exact(4),
        vec![numbered("Deposited", 5), numbered("Closed", 6)],
    )
    .await;
    let event = next_event(CHECK, &mut subscription).await;
    expect_eq(CHECK, "position of the live event through the filter", &event.global_position, &live[1].global_position);
    expect_quiet(CHECK, &mut subscription).await;
}

/// A subscription from a middle position starts there (inclusive).
pub async fn subscribe_from_a_middle_position<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::subscribe_from_a_middle_position";
    let stream = unique_stream("Account");
    let recorded = append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Deposited", 1, 6)).await;
    let mut subscription = store.subscribe(recorded[3].global_position, EventFilter::all());
    let caught_up = next_events(CHECK, &mut subscription, 3).await;
    expect_eq(CHECK, "positions from the middle", &positions(&caught_up), &positions(&recorded[3..]));
    let live = append(CHECK, &store, &stream, ExpectedVersion::Exact(6), batch("Deposited", 7, 1)).await;
    let event = next_event(CHECK, &mut subscription).await;
    expect_same_record(CHECK, "the live event", &event, &live[0]);
    expect_quiet(CHECK, &mut subscription).await;

    let mut from_head = store.subscribe(live[0].global_position + 1, EventFilter::all());
    expect_quiet(CHECK, &mut from_head).await;
    let next = append(CHECK, &store, &stream, ExpectedVersion::Exact(7), batch("Deposited", 8, 1)).await;
    let event = next_event(CHECK, &mut from_head).await;
    expect_same_record(CHECK, "the first event of a subscription from past the head", &event, &next[0]);
}

/// A subscription that starts while four tasks append receives every event
/// exactly once, in position order, across the switch from catching up to
/// following live.
pub async fn subscription_races_with_appends<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::subscription_races_with_appends";
    const TASKS: usize = 4;
    const APPENDS: usize = 100;
    let store = Arc::new(store);
    let first =
        append(CHECK, &*store, &unique_stream("Account"), ExpectedVersion::NoStream, batch("Opened", 0, 10)).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let stream = unique_stream("Account");
                for i in 0..APPENDS {
                    store.append(&stream, ExpectedVersion::Any, vec![numbered("Deposited", task * 1000 + i)]).await?;
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok::<_, crate::error::StoreError>(())
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let mut subscription = store.subscribe(first[0].global_position, EventFilter::all());
    let received = next_events(CHECK, &mut subscription, 10 + TASKS * APPENDS).await;
    for task in tasks {
        ok(
            CHECK,
            "a racing append",
            within(CHECK, "an appending task", task).await.expect("the appending task panicked"),
        );
    }
    expect_quiet(CHECK, &mut subscription).await;
    expect_increasing(CHECK, "positions received", &positions(&received));
    let stored = read_all(CHECK, &*store, 0, &EventFilter::all()).await;
    let ids: Vec<Uuid> = received.iter().map(|event| event.id).collect();
    let stored_ids: Vec<Uuid> = stored.iter().map(|event| event.id).collect();
    expect_eq(CHECK, "ids received (every stored event once, in order)", &ids, &stored_ids);
}

/// Dropping a subscription ends it without disturbing the store, and a new
/// subscription still works.
pub async fn dropped_subscription_is_harmless<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::dropped_subscription_is_harmless";
    let stream = unique_stream("Account");
    let mut subscription = store.subscribe(0, EventFilter::all());
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    next_event(CHECK, &mut subscription).await;
    drop(subscription);
    let never_polled = store.subscribe(0, EventFilter::all());
    drop(never_polled);
    append(CHECK, &store, &stream, ExpectedVersion::Exact(1), batch("Deposited", 2, 1)).await;
    let mut subscription = store.subscribe(0, EventFilter::all());
    let events = next_events(CHECK, &mut subscription, 2).await;
    expect_eq(CHECK, "versions seen by a new subscription", &versions(&events), &vec![1, 2]);
}

/// Hostile strings (quotes, semicolons, SQL, wildcards, control
/// characters, unicode, emoji, ids of the maximum length) round-trip in
/// stream ids, metadata and data.
pub async fn hostile_strings_round_trip<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::hostile_strings_round_trip";
    let suffix = Uuid::now_v7().to_string();
    let hostile = [
        "'; DROP TABLE events; --".to_owned(),
        "\"double\" 'single' `back` $1 ?".to_owned(),
        "semi;colon,comma|pipe\\back\\slash/slash".to_owned(),
        "percent % underscore _ star * bracket [a-z]".to_owned(),
        "emoji 🦀🎉 CJK 漢字 RTL עברית combining e\u{301}".to_owned(),
        "new\nline\ttab\rreturn \u{7f} \u{200b}".to_owned(),
        " leading and trailing spaces ".to_owned(),
    ];
    let mut cases: Vec<(String, String)> =
        hostile.iter().map(|id| ("Account".to_owned(), format!("{id} {suffix}"))).collect();
    cases.push(("Kategorie-ü 🦀 'quoted';".to_owned(), suffix.clone()));
    let long = format!("{suffix}{}", "x".repeat(MAX_STREAM_PART_LEN - suffix.len()));
    cases.push(("Account".to_owned(), long));
    let wide = "é".repeat((MAX_STREAM_PART_LEN - suffix.len()) / 2);
    cases.push(("Account".to_owned(), format!("{suffix}{wide}")));

    let mut expected = BTreeMap::new();
    for (category, id) in &cases {
        let stream = ok(
            CHECK,
            "a hostile but valid stream id",
            StreamId::new(category.as_str(), id.as_str()).map_err(Into::into),
        );
        let mut metadata = Metadata::default().with_tenant(hostile[0].clone());
        for (i, value) in hostile.iter().enumerate() {
            metadata = metadata.with_header(format!("{value} key {i}"), value.clone());
        }
        let data = serde_json::json!({ "text": hostile, "id": id }).to_string();
        let events = vec![event_with("Opened", &data, metadata.clone())];
        let recorded = append(CHECK, &store, &stream, ExpectedVersion::NoStream, events).await;
        let read = read_stream(CHECK, &store, &stream, 1).await;
        expect_eq(CHECK, "events read back from a hostile stream id", &read.len(), &1);
        expect_same_record(CHECK, "an event of a hostile stream id", &read[0], &recorded[0]);
        expect_eq(CHECK, "the hostile stream id read back", &read[0].stream, &stream);
        expect_eq(CHECK, "hostile metadata read back", &read[0].metadata, &metadata);
        expect_eq(CHECK, "hostile data read back", &json(read[0].data.get()), &json(&data));
        expect_eq(CHECK, "version of a hostile stream id", &version(CHECK, &store, &stream).await, &Some(1));
        expected.insert(recorded[0].global_position, stream);
    }
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    let found: BTreeMap<u64, StreamId> =
        all.iter().map(|event| (event.global_position, event.stream.clone())).collect();
    expect_eq(CHECK, "streams of the hostile events in the global log", &found, &expected);
}

/// An event type name that is empty, contains NUL or is longer than
/// [`MAX_EVENT_TYPE_LEN`] is `InvalidInput`, and nothing is written.
pub async fn invalid_event_types_are_refused<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::invalid_event_types_are_refused";
    let stream = unique_stream("Account");
    for (what, event_type) in [
        ("an empty event type", String::new()),
        ("an event type with NUL", "Account\0Opened".to_owned()),
        ("an event type longer than the limit", "x".repeat(MAX_EVENT_TYPE_LEN + 1)),
    ] {
        let result = store.append(&stream, ExpectedVersion::Any, vec![numbered(&event_type, 1)]).await;
        expect_invalid_input(CHECK, what, &result);
    }
    expect_eq(CHECK, "stream version after the refusals", &version(CHECK, &store, &stream).await, &None);
    expect_eq(CHECK, "head after the refusals", &head(CHECK, &store).await, &None);
    let mut subscription = store.subscribe(0, EventFilter::all());
    let valid = append(CHECK, &store, &stream, ExpectedVersion::NoStream, vec![numbered("Account.Opened-v1", 1)]).await;
    let event = next_event(CHECK, &mut subscription).await;
    expect_same_record(CHECK, "the first event after the refusals", &event, &valid[0]);
    expect_quiet(CHECK, &mut subscription).await;
}

async fn append_many<S: EventStore>(
    check: &str,
    store: &S,
    appends: Vec<StreamAppend>,
) -> Vec<Vec<Arc<RecordedEvent>>> {
    ok(check, "append_many", within(check, "append_many", store.append_many(appends)).await)
}

/// Fails unless the events of one call occupy consecutive places of the
/// global log `all`, in the order they were returned.
#[track_caller]
fn expect_consecutive(check: &str, what: &str, all: &[Arc<RecordedEvent>], call: &[Arc<RecordedEvent>]) {
    let Some(first) = call.first() else { return };
    let Some(start) = all.iter().position(|event| event.id == first.id) else {
        super::support::fail(check, format_args!("{what}: event {} is missing from the global log", first.id))
    };
    let found: Vec<Uuid> = all[start..].iter().take(call.len()).map(|event| event.id).collect();
    let expected: Vec<Uuid> = call.iter().map(|event| event.id).collect();
    expect_eq(check, &format!("{what}: ids of the call's events, consecutive in the log"), &found, &expected);
}

/// A multi-stream append writes every part: a new stream (`NoStream`), an
/// existing one (`Exact`), one with `Any`; it returns the records per part
/// in the call's order, with the right versions; the events read back equal
/// them; and they take consecutive places of the global log, part by part.
pub async fn append_many_writes_every_stream<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::append_many_writes_every_stream";
    let (a, b, c) = (unique_stream("Account"), unique_stream("Account"), unique_stream("Order"));
    append(CHECK, &store, &b, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    append(CHECK, &store, &c, ExpectedVersion::NoStream, batch("Placed", 1, 1)).await;
    let metadata = Metadata::default().with_correlation_id(Uuid::now_v7()).with_header("part", "first");
    let recorded = append_many(
        CHECK,
        &store,
        vec![
            StreamAppend::new(
                a.clone(),
                ExpectedVersion::NoStream,
                vec![event_with("Opened", r#"{"n":10}"#, metadata.clone())],
            ),
            StreamAppend::new(b.clone(), ExpectedVersion::Exact(2), batch("Withdrawn", 20, 2)),
            StreamAppend::new(c.clone(), ExpectedVersion::Any, batch("Shipped", 30, 1)),
        ],
    )
    .await;
    expect_eq(CHECK, "number of parts returned", &recorded.len(), &3);
    expect_eq(CHECK, "versions of the new stream", &versions(&recorded[0]), &vec![1]);
    expect_eq(CHECK, "versions of the Exact(2) stream", &versions(&recorded[1]), &vec![3, 4]);
    expect_eq(CHECK, "versions of the Any stream", &versions(&recorded[2]), &vec![2]);
    for (part, stream) in recorded.iter().zip([&a, &b, &c]) {
        for event in part {
            expect_eq(CHECK, "stream of a recorded event", &event.stream, stream);
        }
    }
    let found = &recorded[0][0].metadata;
    expect_eq(
        CHECK,
        "correlation id and headers of the first part",
        &(found.correlation_id, &found.headers),
        &(metadata.correlation_id, &metadata.headers),
    );
    let flat: Vec<Arc<RecordedEvent>> = recorded.iter().flatten().cloned().collect();
    expect_increasing(CHECK, "global positions across the parts", &positions(&flat));
    let read = read_stream(CHECK, &store, &b, 3).await;
    for (found, expected) in read.iter().zip(&recorded[1]) {
        expect_same_record(CHECK, "read_stream returns what append_many recorded", found, expected);
    }
    expect_eq(CHECK, "data of the Exact(2) part", &data_of(&read), &jsons(&[r#"{"n":20}"#, r#"{"n":21}"#]));
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_consecutive(CHECK, "a multi-stream append", &all, &flat);
    for (found, expected) in all.iter().rev().zip(flat.iter().rev()) {
        expect_same_record(CHECK, "read_all returns what append_many recorded", found, expected);
    }
    expect_eq(CHECK, "head after the call", &head(CHECK, &store).await, &Some(flat[3].global_position));
    expect_eq(CHECK, "version of the new stream", &version(CHECK, &store, &a).await, &Some(1));
}

/// When one part's expectation fails, nothing of any part is written, and
/// the error names the first failing part's stream, its expectation and
/// its actual version; a failing guard (a part without events) also stops
/// the whole call.
pub async fn append_many_conflict_writes_nothing<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::append_many_conflict_writes_nothing";
    let (a, b, c) = (unique_stream("Account"), unique_stream("Account"), unique_stream("Account"));
    append(CHECK, &store, &a, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    append(CHECK, &store, &b, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    let head_before = head(CHECK, &store).await;
    let cases = [
        ("a mismatched Exact in the middle", ExpectedVersion::Exact(1), ExpectedVersion::Exact(1), Some(2)),
        ("NoStream on an existing stream", ExpectedVersion::Exact(1), ExpectedVersion::NoStream, Some(2)),
        ("Exact past the end", ExpectedVersion::Any, ExpectedVersion::Exact(3), Some(2)),
    ];
    for (what, first, second, actual) in cases {
        let result = store
            .append_many(vec![
                StreamAppend::new(a.clone(), first, batch("Deposited", 2, 2)),
                StreamAppend::new(b.clone(), second, batch("Deposited", 3, 1)),
                StreamAppend::new(c.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            ])
            .await;
        expect_conflict(CHECK, what, result, &b, second, actual);
    }
    // Two failing parts: the first in the call's order is named.
    let result = store
        .append_many(vec![
            StreamAppend::new(c.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(7), batch("Deposited", 2, 1)),
            StreamAppend::new(b.clone(), ExpectedVersion::Exact(9), batch("Deposited", 3, 1)),
        ])
        .await;
    expect_conflict(CHECK, "two failing parts", result, &a, ExpectedVersion::Exact(7), Some(1));
    // A failing guard.
    let result = store
        .append_many(vec![
            StreamAppend::new(c.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(5), Vec::new()),
        ])
        .await;
    expect_conflict(CHECK, "a failing guard", result, &a, ExpectedVersion::Exact(5), Some(1));
    expect_eq(CHECK, "version of the first stream", &version(CHECK, &store, &a).await, &Some(1));
    expect_eq(CHECK, "version of the second stream", &version(CHECK, &store, &b).await, &Some(2));
    expect_eq(CHECK, "version of the stream that was to be created", &version(CHECK, &store, &c).await, &None);
    expect_eq(CHECK, "head after the conflicts", &head(CHECK, &store).await, &head_before);
    expect_eq(CHECK, "events in the log", &read_all(CHECK, &store, 0, &EventFilter::all()).await.len(), &3);
    let recorded = append_many(
        CHECK,
        &store,
        vec![
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(1), batch("Deposited", 2, 1)),
            StreamAppend::new(b.clone(), ExpectedVersion::Exact(2), batch("Deposited", 3, 1)),
            StreamAppend::new(c.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
        ],
    )
    .await;
    let found: Vec<Vec<u64>> = recorded.iter().map(|part| versions(part)).collect();
    expect_eq(CHECK, "versions after the conflicts (no gaps)", &found, &vec![vec![2], vec![3], vec![1]]);
}

/// Guards (parts without events) that hold let the call write the other
/// parts; a call of only guards, or of no parts, writes nothing and
/// succeeds.
pub async fn append_many_guards_and_empty_calls<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::append_many_guards_and_empty_calls";
    let (a, b, missing) = (unique_stream("Account"), unique_stream("Account"), unique_stream("Account"));
    append(CHECK, &store, &a, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    let head_before = head(CHECK, &store).await;
    let none = append_many(CHECK, &store, Vec::new()).await;
    expect_eq(CHECK, "parts returned for an empty call", &none.len(), &0);
    let guards = append_many(
        CHECK,
        &store,
        vec![
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(2), Vec::new()),
            StreamAppend::new(missing.clone(), ExpectedVersion::NoStream, Vec::new()),
            StreamAppend::new(b.clone(), ExpectedVersion::Any, Vec::new()),
        ],
    )
    .await;
    expect_eq(
        CHECK,
        "parts returned for a call of guards",
        &guards.iter().map(Vec::len).collect::<Vec<_>>(),
        &vec![0, 0, 0],
    );
    expect_eq(CHECK, "head after calls that write nothing", &head(CHECK, &store).await, &head_before);
    expect_eq(CHECK, "version of a guarded missing stream", &version(CHECK, &store, &missing).await, &None);
    let written = append_many(
        CHECK,
        &store,
        vec![
            StreamAppend::new(a.clone(), ExpectedVersion::Exact(2), Vec::new()),
            StreamAppend::new(b.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 2)),
        ],
    )
    .await;
    expect_eq(CHECK, "events of the guard part", &written[0].len(), &0);
    expect_eq(CHECK, "versions written beside a guard", &versions(&written[1]), &vec![1, 2]);
    expect_eq(CHECK, "version of the guarded stream", &version(CHECK, &store, &a).await, &Some(2));
}

/// A stream named by two parts of one call, or an invalid event type in
/// any part, is refused with `InvalidInput` before anything is stored.
pub async fn append_many_refuses_a_stream_twice<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::append_many_refuses_a_stream_twice";
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    let result = store
        .append_many(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            StreamAppend::new(b.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            StreamAppend::new(a.clone(), ExpectedVersion::Any, batch("Deposited", 2, 1)),
        ])
        .await;
    expect_invalid_input(CHECK, "a stream named twice", &result);
    let result = store
        .append_many(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::Any, Vec::new()),
            StreamAppend::new(a.clone(), ExpectedVersion::Any, Vec::new()),
        ])
        .await;
    expect_invalid_input(CHECK, "a stream guarded twice", &result);
    let result = store
        .append_many(vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, batch("Opened", 1, 1)),
            StreamAppend::new(b.clone(), ExpectedVersion::NoStream, vec![numbered("Opened", 1), numbered("", 2)]),
        ])
        .await;
    expect_invalid_input(CHECK, "an empty event type in the last part", &result);
    expect_eq(CHECK, "version of the first stream", &version(CHECK, &store, &a).await, &None);
    expect_eq(CHECK, "version of the second stream", &version(CHECK, &store, &b).await, &None);
    expect_eq(CHECK, "head after the refusals", &head(CHECK, &store).await, &None);
}

/// Tasks race multi-stream appends over the same two streams, in both
/// orders, each call expecting the versions it read and adding one event to
/// each stream: every round exactly one call wins, the losers write
/// nothing, and the two streams always hold the same number of events.
pub async fn concurrent_append_many_is_all_or_nothing<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::concurrent_append_many_is_all_or_nothing";
    const TASKS: usize = 6;
    const ROUNDS: u64 = 8;
    let store = Arc::new(store);
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                let (first, second) = if task % 2 == 0 { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
                tokio::spawn(async move {
                    let n = usize::try_from(round).expect("small") * 100 + task;
                    barrier.wait().await;
                    store
                        .append_many(vec![
                            StreamAppend::new(first, ExpectedVersion::Exact(round), vec![numbered("Moved", n)]),
                            StreamAppend::new(second, ExpectedVersion::Exact(round), vec![numbered("Moved", n)]),
                        ])
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match within(CHECK, "a racing append_many", task).await.expect("the appending task panicked") {
                Ok(parts) => {
                    winners += 1;
                    expect_eq(
                        CHECK,
                        "versions of the winner",
                        &parts.iter().map(|p| versions(p)).collect::<Vec<_>>(),
                        &vec![vec![round + 1], vec![round + 1]],
                    );
                }
                Err(error) => expect(
                    CHECK,
                    error.is_conflict(),
                    format_args!("a losing append_many must be WrongExpectedVersion, found {error}"),
                ),
            }
        }
        expect_eq(CHECK, &format!("winners of round {round}"), &winners, &1);
        let (va, vb) = (version(CHECK, &*store, &a).await, version(CHECK, &*store, &b).await);
        expect_eq(CHECK, "versions of the two streams after a round", &(va, vb), &(Some(round + 1), Some(round + 1)));
    }
    let (ra, rb) = (read_stream(CHECK, &*store, &a, 1).await, read_stream(CHECK, &*store, &b, 1).await);
    expect_eq(CHECK, "the same winners' events in both streams", &data_of(&ra), &data_of(&rb));
}

/// A subscriber that runs while tasks make multi-stream appends (and
/// single appends) receives every event once, in position order, and the
/// events of each multi-stream call consecutively: it never sees part of a
/// call without the rest.
pub async fn subscribers_see_append_many_whole<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::subscribers_see_append_many_whole";
    const TASKS: usize = 3;
    const CALLS: usize = 20;
    let store = Arc::new(store);
    let mut subscription = store.subscribe(0, EventFilter::all());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let streams: Vec<StreamId> = (0..3).map(|_| unique_stream("Account")).collect();
                let mut calls = Vec::new();
                for i in 0..CALLS {
                    let parts = streams
                        .iter()
                        .enumerate()
                        .map(|(s, stream)| {
                            StreamAppend::new(
                                stream.clone(),
                                ExpectedVersion::Any,
                                batch("Moved", task * 10_000 + i * 10 + s, 1 + s),
                            )
                        })
                        .collect();
                    calls.push(store.append_many(parts).await?.into_iter().flatten().collect::<Vec<_>>());
                    store.append(&streams[0], ExpectedVersion::Any, vec![numbered("Single", i)]).await?;
                }
                Ok::<_, crate::error::StoreError>(calls)
            })
        })
        .collect();
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(ok(
            CHECK,
            "an appending task",
            within(CHECK, "an appending task", task).await.expect("the appending task panicked"),
        ));
    }
    let total = TASKS * CALLS * (6 + 1);
    let received = next_events(CHECK, &mut subscription, total).await;
    expect_quiet(CHECK, &mut subscription).await;
    expect_increasing(CHECK, "positions received", &positions(&received));
    for call in &calls {
        expect_consecutive(CHECK, "a multi-stream append seen by a subscriber", &received, call);
    }
    let stored = read_all(CHECK, &*store, 0, &EventFilter::all()).await;
    let ids: Vec<Uuid> = received.iter().map(|event| event.id).collect();
    let stored_ids: Vec<Uuid> = stored.iter().map(|event| event.id).collect();
    expect_eq(CHECK, "ids received (every stored event once, in order)", &ids, &stored_ids);
}

/// Guards hold against concurrent calls: two calls race, each guarding the
/// stream the other writes at the version both read and writing the other
/// stream (a write skew if guards were only read). Every round exactly one
/// wins, so the two streams' versions always add up to the round number.
pub async fn guards_hold_against_concurrent_writes<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::guards_hold_against_concurrent_writes";
    const ROUNDS: usize = 12;
    let store = Arc::new(store);
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    for round in 0..ROUNDS {
        let (va, vb) = (version(CHECK, &*store, &a).await, version(CHECK, &*store, &b).await);
        let expect_of = |v: Option<u64>| v.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [(a.clone(), va, b.clone(), vb), (b.clone(), vb, a.clone(), va)]
            .into_iter()
            .map(|(guarded, guarded_version, written, written_version)| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .append_many(vec![
                            StreamAppend::new(guarded, expect_of(guarded_version), Vec::new()),
                            StreamAppend::new(written, expect_of(written_version), vec![numbered("Skewed", round)]),
                        ])
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match within(CHECK, "a racing guarded append", task).await.expect("the appending task panicked") {
                Ok(_) => winners += 1,
                Err(error) => expect(
                    CHECK,
                    error.is_conflict(),
                    format_args!("a losing guarded append must be WrongExpectedVersion, found {error}"),
                ),
            }
        }
        expect_eq(CHECK, &format!("winners of round {round}"), &winners, &1);
        let (va, vb) = (version(CHECK, &*store, &a).await, version(CHECK, &*store, &b).await);
        let total = va.unwrap_or(0) + vb.unwrap_or(0);
        expect_eq(
            CHECK,
            "events written to both streams together",
            &total,
            &(u64::try_from(round).expect("small") + 1),
        );
    }
}
