//! Helpers shared by the checks: fixtures, timeouts and failure messages.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::store::{EventFilter, EventStore, EventStream, ExpectedVersion};
use crate::stream::StreamId;

/// How long any single step may take before the check fails instead of
/// hanging.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a subscription must stay silent to count as "delivers nothing
/// more".
pub(crate) const QUIET: Duration = Duration::from_millis(150);

/// Panics with the check's name and a message.
#[track_caller]
pub(crate) fn fail(check: &str, message: std::fmt::Arguments<'_>) -> ! {
    panic!("conformance check `{check}` failed: {message}")
}

/// Awaits `future` for at most [`TIMEOUT`].
#[track_caller]
pub(crate) fn within<'a, T>(
    check: &'a str,
    what: &'a str,
    future: impl Future<Output = T> + 'a,
) -> impl Future<Output = T> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let Ok(value) = tokio::time::timeout(TIMEOUT, future).await else {
            panic!("conformance check `{check}` failed: {what} did not complete within {TIMEOUT:?} (at {caller})")
        };
        value
    }
}

/// Unwraps a port result, failing the check on an error.
#[track_caller]
pub(crate) fn ok<T>(check: &str, what: &str, result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(check, format_args!("{what} returned an error: {error}")),
    }
}

/// A stream id no other check uses, so that a store shared between checks
/// still keeps their streams apart.
pub(crate) fn unique_stream(category: &str) -> StreamId {
    StreamId::new(category, Uuid::now_v7().to_string()).expect("a valid stream id")
}

/// An event with the given type and JSON data.
pub(crate) fn event_with(event_type: &str, data: &str, metadata: Metadata) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: RawValue::from_string(data.to_owned()).expect("fixture data is valid JSON"),
        metadata,
    }
}

/// An event with the given type and `{"n":n}` as data.
pub(crate) fn numbered(event_type: &str, n: usize) -> NewEvent {
    event_with(event_type, &format!("{{\"n\":{n}}}"), Metadata::default())
}

/// `count` events of `event_type` numbered from `first`.
pub(crate) fn batch(event_type: &str, first: usize, count: usize) -> Vec<NewEvent> {
    (first..first + count).map(|n| numbered(event_type, n)).collect()
}

/// Reads a finite stream to its end, failing the check on an error item or
/// a timeout.
pub(crate) async fn collect(check: &str, what: &str, stream: EventStream<'_>) -> Vec<Arc<RecordedEvent>> {
    let items: Vec<_> = within(check, what, stream.collect::<Vec<_>>()).await;
    items.into_iter().map(|item| ok(check, what, item)).collect()
}

/// The next event of a subscription, failing the check if none arrives in
/// time, the subscription ends or yields an error.
pub(crate) async fn next_event(check: &str, subscription: &mut EventStream<'static>) -> Arc<RecordedEvent> {
    match tokio::time::timeout(TIMEOUT, subscription.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => fail(check, format_args!("the subscription yielded an error: {error}")),
        Ok(None) => fail(check, format_args!("the subscription ended while an event was expected")),
        Err(_) => fail(check, format_args!("no event arrived on the subscription within {TIMEOUT:?}")),
    }
}

/// The next `count` events of a subscription.
pub(crate) async fn next_events(
    check: &str,
    subscription: &mut EventStream<'static>,
    count: usize,
) -> Vec<Arc<RecordedEvent>> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(check, subscription).await);
    }
    events
}

/// Fails the check if the subscription delivers anything within [`QUIET`].
pub(crate) async fn expect_quiet(check: &str, subscription: &mut EventStream<'static>) {
    if let Ok(Some(item)) = tokio::time::timeout(QUIET, subscription.next()).await {
        match item {
            Ok(event) => fail(
                check,
                format_args!(
                    "the subscription delivered an unexpected event (a duplicate or a filtered one): {} `{}` at position {}",
                    event.event_type, event.stream, event.global_position
                ),
            ),
            Err(error) => fail(check, format_args!("the subscription yielded an error: {error}")),
        }
    }
}

/// Fails unless `result` is a `WrongExpectedVersion` with these fields.
#[track_caller]
pub(crate) fn expect_conflict<T: std::fmt::Debug>(
    check: &str,
    what: &str,
    result: Result<T, StoreError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(StoreError::WrongExpectedVersion { stream: s, expected: e, actual: a }) => {
            if (&s, e, a) != (stream, expected, actual) {
                fail(
                    check,
                    format_args!(
                        "{what}: expected WrongExpectedVersion {{ stream: {stream}, expected: {expected:?}, actual: {actual:?} }}, \
                         found {{ stream: {s}, expected: {e:?}, actual: {a:?} }}"
                    ),
                );
            }
        }
        other => {
            fail(check, format_args!("{what}: expected WrongExpectedVersion (actual {actual:?}), found {other:?}"))
        }
    }
}

/// Fails unless `result` is `InvalidInput`.
#[track_caller]
pub(crate) fn expect_invalid_input<T: std::fmt::Debug>(check: &str, what: &str, result: &Result<T, StoreError>) {
    if !matches!(result, Err(StoreError::InvalidInput(_))) {
        fail(check, format_args!("{what}: expected StoreError::InvalidInput, found {result:?}"));
    }
}

/// Fails unless two records agree on every field.
#[track_caller]
pub(crate) fn expect_same_record(check: &str, what: &str, found: &RecordedEvent, expected: &RecordedEvent) {
    let same = found.id == expected.id
        && found.stream == expected.stream
        && found.stream_version == expected.stream_version
        && found.global_position == expected.global_position
        && found.recorded_at == expected.recorded_at
        && found.event_type == expected.event_type
        && found.schema_version == expected.schema_version
        && json(found.data.get()) == json(expected.data.get())
        && found.metadata == expected.metadata;
    if !same {
        fail(check, format_args!("{what}: the records differ\n  expected: {expected:?}\n     found: {found:?}"));
    }
}

/// Parses JSON for comparison as a value: stores may normalize whitespace
/// and key order (PostgreSQL `jsonb` does), so checks compare event data as
/// parsed values, not bytes. Text that is not JSON becomes a string value,
/// so that it compares unequal to any JSON instead of panicking.
pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// Parses each of `texts` with [`json`].
pub(crate) fn jsons<S: AsRef<str>>(texts: &[S]) -> Vec<serde_json::Value> {
    texts.iter().map(|text| json(text.as_ref())).collect()
}

/// The global positions of `events`.
pub(crate) fn positions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
    events.iter().map(|event| event.global_position).collect()
}

/// The stream versions of `events`.
pub(crate) fn versions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
    events.iter().map(|event| event.stream_version).collect()
}

/// Fails unless `values` strictly increase.
#[track_caller]
pub(crate) fn expect_increasing(check: &str, what: &str, values: &[u64]) {
    if let Some(&[before, after]) = values.windows(2).find(|pair| pair[0] >= pair[1]) {
        fail(check, format_args!("{what}: positions must strictly increase, found {before} then {after}"));
    }
}

/// Fails unless `found == expected`.
#[track_caller]
pub(crate) fn expect_eq<T: PartialEq + std::fmt::Debug + ?Sized>(check: &str, what: &str, found: &T, expected: &T) {
    if found != expected {
        fail(check, format_args!("{what}\n  expected: {expected:?}\n     found: {found:?}"));
    }
}

/// Fails unless `condition` holds.
#[track_caller]
pub(crate) fn expect(check: &str, condition: bool, message: std::fmt::Arguments<'_>) {
    if !condition {
        fail(check, message);
    }
}

/// Appends `events` to `stream`, failing the check unless it succeeds.
pub(crate) async fn append<S: EventStore>(
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

/// The whole of `stream` from version `from`.
pub(crate) async fn read_stream<S: EventStore>(
    check: &str,
    store: &S,
    stream: &StreamId,
    from: u64,
) -> Vec<Arc<RecordedEvent>> {
    collect(check, &format!("read_stream(`{stream}`, {from})"), store.read_stream(stream, from)).await
}

/// The global log from position `from` through `filter`.
pub(crate) async fn read_all<S: EventStore>(
    check: &str,
    store: &S,
    from: u64,
    filter: &EventFilter,
) -> Vec<Arc<RecordedEvent>> {
    collect(check, &format!("read_all({from}, {filter:?})"), store.read_all(from, filter)).await
}

/// The store's head position.
pub(crate) async fn head<S: EventStore>(check: &str, store: &S) -> Option<u64> {
    ok(check, "head_position", within(check, "head_position", store.head_position()).await)
}

/// The version of `stream`.
pub(crate) async fn version<S: EventStore>(check: &str, store: &S, stream: &StreamId) -> Option<u64> {
    ok(check, "stream_version", within(check, "stream_version", store.stream_version(stream)).await)
}

/// The events' data as parsed JSON: stores may normalize whitespace and key
/// order (PostgreSQL `jsonb` does), so data is compared as JSON values.
pub(crate) fn data_of(events: &[Arc<RecordedEvent>]) -> Vec<serde_json::Value> {
    events.iter().map(|event| json(event.data.get())).collect()
}
