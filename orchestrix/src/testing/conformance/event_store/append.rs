//! Single-stream appends: expectations, empty and atomic batches.

use super::super::support::{append, data_of, head, read_all, read_stream, version};
use super::super::support::{
    batch, event_with, expect, expect_conflict, expect_eq, expect_increasing, expect_invalid_input, expect_same_record,
    jsons, numbered, positions, unique_stream, versions,
};
use crate::envelope::{Metadata, NewEvent};
use crate::store::{EventFilter, EventStore, ExpectedVersion};
use chrono::Utc;
use std::collections::HashSet;
use uuid::Uuid;

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
