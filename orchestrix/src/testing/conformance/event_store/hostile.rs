//! Hostile strings and invalid event types.

use super::super::support::{append, head, read_all, read_stream, version};
use super::super::support::{
    event_with, expect_eq, expect_invalid_input, expect_quiet, expect_same_record, json, next_event, numbered, ok,
    unique_stream,
};
use crate::envelope::Metadata;
use crate::event::MAX_EVENT_TYPE_LEN;
use crate::store::{EventFilter, EventStore, ExpectedVersion};
use crate::stream::{StreamId, MAX_STREAM_PART_LEN};
use std::collections::BTreeMap;
use uuid::Uuid;

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
