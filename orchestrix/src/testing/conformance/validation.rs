//! Checks of what every append refuses and what every read gives back
//! (the contract in [`EventStore`]'s docs, ADR 0026): input no backend
//! can store and read back is refused up front with
//! [`StoreError::InvalidInput`], the same on every backend, and payloads
//! come back as equal JSON values, not necessarily as equal bytes.
//!
//! The checks run with the [`EventStore`] checks (the `event_store` list
//! names them; [`super::event_store::unreadable_payloads_are_refused`] is
//! the same function) and, for conditional appends, with the
//! consistency-by-query checks.

use std::sync::Arc;

use super::support::{collect, event_with, expect_eq, expect_invalid_input, json, ok, unique_stream, within};
use crate::envelope::{Metadata, NewEvent, RecordedEvent, MAX_JSON_DEPTH};
use crate::error::StoreError;
use crate::query::{AppendCondition, Query, QueryItem, MAX_TAG_LEN};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::StreamId;

/// JSON nested `depth` arrays deep around `0`.
fn nested(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

/// Event data no backend can store and read back, each with what it is.
fn unreadable_data() -> Vec<(&'static str, String)> {
    vec![
        ("a lone leading surrogate escape", r#"{"text":"\ud800"}"#.to_owned()),
        ("a lone trailing surrogate escape", r#"{"text":"a\udc00b"}"#.to_owned()),
        ("a lone surrogate escape in a key", r#"{"\ud800":1}"#.to_owned()),
        ("a NUL escape", r#"{"text":"a\u0000b"}"#.to_owned()),
        ("a NUL escape in a key", r#"{"a\u0000":1}"#.to_owned()),
        ("a NUL escape deep inside", r#"{"a":[{"b":["\u0000"]}]}"#.to_owned()),
        ("a number beyond f64", r#"{"n":1e400}"#.to_owned()),
        ("nesting one level past the limit", nested(MAX_JSON_DEPTH + 1)),
        ("nesting 100,000 levels deep", nested(100_000)),
    ]
}

/// Metadata no backend can store and read back, each with what it is.
fn unreadable_metadata() -> Vec<(&'static str, Metadata)> {
    vec![
        ("a NUL in a header value", Metadata::default().with_header("source", "a\0b")),
        ("a NUL in a header name", Metadata::default().with_header("so\0urce", "import")),
        ("a NUL in the tenant", Metadata::default().with_tenant("ac\0me")),
    ]
}

/// Tags conditions refuse ([`crate::query::validate_tag`]), each with what
/// it is.
fn invalid_tags() -> Vec<(&'static str, String)> {
    vec![
        ("a tag over the limit", format!("sku:{}", "x".repeat(MAX_TAG_LEN))),
        ("a tag with NUL", "sku:a\0b".to_owned()),
        ("an empty tag", String::new()),
    ]
}

/// Every refused event: bad data, bad metadata, bad tags, bad types.
fn refused_events() -> Vec<(String, NewEvent)> {
    let mut events = Vec::new();
    for (what, data) in unreadable_data() {
        events.push((format!("data with {what}"), event_with("Noted", &data, Metadata::default())));
    }
    for (what, metadata) in unreadable_metadata() {
        events.push((format!("metadata with {what}"), event_with("Noted", "{}", metadata)));
    }
    for (what, tag) in invalid_tags() {
        events.push((format!("an event with {what}"), event_with("Noted", "{}", Metadata::default().with_tag(tag))));
    }
    for event_type in [".", ".."] {
        events.push((format!("the event type `{event_type}`"), event_with(event_type, "{}", Metadata::default())));
    }
    events
}

async fn version<S: EventStore>(check: &str, store: &S, stream: &StreamId) -> Option<u64> {
    ok(check, "stream_version", within(check, "stream_version", store.stream_version(stream)).await)
}

async fn head<S: EventStore>(check: &str, store: &S) -> Option<u64> {
    ok(check, "head_position", within(check, "head_position", store.head_position()).await)
}

/// Fails unless the store holds nothing at all.
async fn expect_nothing_stored<S: EventStore>(check: &str, store: &S, stream: &StreamId) {
    expect_eq(check, "stream version after the refusals", &version(check, store, stream).await, &None);
    expect_eq(check, "head after the refusals", &head(check, store).await, &None);
    let all = collect(check, "read_all after the refusals", store.read_all(0, &EventFilter::all())).await;
    expect_eq(check, "events in the global log after the refusals", &all.len(), &0);
}

/// Data that is valid JSON but not storable everywhere (lone surrogate
/// escapes, `\u0000`, numbers beyond `f64`, nesting past
/// [`MAX_JSON_DEPTH`]), metadata with NUL, tags conditions refuse and the
/// event types `.` and `..` are refused by [`EventStore::append`] and
/// [`EventStore::append_many`] with [`StoreError::InvalidInput`], alone
/// or after a valid event of the same call, and nothing is stored.
pub async fn unreadable_payloads_are_refused<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::unreadable_payloads_are_refused";
    let stream = unique_stream("Note");
    let fine = || event_with("Noted", r#"{"text":"fine"}"#, Metadata::default());
    for (what, event) in refused_events() {
        let alone = within(CHECK, "append", store.append(&stream, ExpectedVersion::Any, vec![event.clone()])).await;
        expect_invalid_input(CHECK, &format!("append of {what}"), &alone);
        let after_a_good_one =
            within(CHECK, "append", store.append(&stream, ExpectedVersion::Any, vec![fine(), event.clone()])).await;
        expect_invalid_input(CHECK, &format!("append of a valid event and {what}"), &after_a_good_one);
        let parts = vec![
            StreamAppend::new(unique_stream("Note"), ExpectedVersion::Any, vec![fine()]),
            StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event]),
        ];
        let many = within(CHECK, "append_many", store.append_many(parts)).await;
        expect_invalid_input(CHECK, &format!("append_many with {what}"), &many);
    }
    expect_nothing_stored(CHECK, &store, &stream).await;
}

/// What is just within the rules is stored and read back as the same JSON
/// value: nesting of exactly [`MAX_JSON_DEPTH`], a surrogate *pair* escape
/// (one character, 🦀), escaped control characters other than NUL, and a
/// tag of exactly [`MAX_TAG_LEN`] bytes.
pub async fn payloads_at_the_limits_are_stored<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::payloads_at_the_limits_are_stored";
    let stream = unique_stream("Note");
    let tag = format!("sku:{}", "x".repeat(MAX_TAG_LEN - 4));
    let datas = [nested(MAX_JSON_DEPTH), r#"{"crab":"\ud83e\udd80","ctl":"\u0001\u001f\t"}"#.to_owned()];
    let events: Vec<NewEvent> =
        datas.iter().map(|data| event_with("Noted", data, Metadata::default().with_tag(tag.clone()))).collect();
    let written = ok(
        CHECK,
        "append at the limits",
        within(CHECK, "append", store.append(&stream, ExpectedVersion::NoStream, events)).await,
    );
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    expect_eq(CHECK, "events read back", &read.len(), &datas.len());
    for ((record, data), written) in read.iter().zip(&datas).zip(&written) {
        expect_eq(CHECK, "data read back, as a JSON value", &json(record.data.get()), &json(data));
        expect_eq(CHECK, "data returned by the append, as a JSON value", &json(written.data.get()), &json(data));
        expect_eq(CHECK, "tags read back", record.tags(), &[tag.clone()][..]);
    }
    let crab: serde_json::Value = json(read[1].data.get());
    expect_eq(CHECK, "the surrogate pair decoded", &crab["crab"], &serde_json::Value::from("🦀"));
}

/// Data and metadata come back as **equal JSON values**; their bytes may
/// differ (PostgreSQL's jsonb reorders keys and drops whitespace). The
/// check compares values only, and does not require bytes to be kept: a
/// store that keeps them (memory, SQLite) and one that does not
/// (PostgreSQL) both pass.
pub async fn payloads_come_back_as_equal_values<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::payloads_come_back_as_equal_values";
    let stream = unique_stream("Note");
    // Keys out of order at every level, with whitespace a store may drop.
    let data = r#"{ "zeta": 1, "alpha": { "y": [3, {"b": true, "a": null}], "x": "é\n" }, "mid": -2.5 }"#;
    let reordered = r#"{"alpha":{"x":"é\n","y":[3,{"a":null,"b":true}]},"mid":-2.5,"zeta":1}"#;
    // The comparison is by value: a reordered payload is the same value with
    // different bytes, so nothing below may compare text.
    expect_eq(CHECK, "a reordered payload, as a value", &json(data), &json(reordered));
    assert_ne!(data, reordered, "the fixture's two spellings differ as bytes");
    let metadata = Metadata::default().with_header("zeta", "1").with_header("alpha", "2").with_tag("note:1");
    let written = ok(
        CHECK,
        "append",
        within(
            CHECK,
            "append",
            store.append(&stream, ExpectedVersion::NoStream, vec![event_with("Noted", data, metadata.clone())]),
        )
        .await,
    );
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    let all = collect(CHECK, "read_all", store.read_all(0, &EventFilter::all())).await;
    for (what, record) in [("the append's record", &written[0]), ("read_stream", &read[0]), ("read_all", &all[0])] {
        expect_eq(CHECK, &format!("data from {what}, as a JSON value"), &json(record.data.get()), &json(data));
        expect_eq(CHECK, &format!("metadata from {what}"), &record.metadata, &metadata);
    }
}

/// [`EventStore::append_if`] refuses what [`EventStore::append`] refuses
/// (unreadable data and metadata, tags conditions would refuse, `.` and
/// `..`) with [`StoreError::InvalidInput`] before checking the condition,
/// and stores nothing.
pub async fn append_if_refuses_unreadable_payloads<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::append_if_refuses_unreadable_payloads";
    let stream = unique_stream("Note");
    let condition = || AppendCondition::new(Query::new([QueryItem::types(["Noted"]).raw_tag("note:1")]), None);
    for (what, event) in refused_events() {
        let parts = vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event])];
        let result: Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> =
            within(CHECK, "append_if", store.append_if(condition(), parts)).await;
        expect_invalid_input(CHECK, &format!("append_if with {what}"), &result);
    }
    expect_nothing_stored(CHECK, &store, &stream).await;
}
