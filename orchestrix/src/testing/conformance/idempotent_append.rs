//! Checks that appends are safe to retry (ADR 0027,
//! [`crate::idempotency`]): event ids are unique across the store, an
//! append whose ids are all stored (in its stream, in its order) is
//! answered with the stored events and writes nothing, and one whose ids
//! are partly stored or stored elsewhere is
//! [`StoreError::DuplicateEventId`] and writes nothing.
//!
//! [`super::event_store()`] runs them with the other event store checks,
//! unless the adapter declares them unsupported
//! ([`super::Unsupported::IdempotentAppend`]).

use std::sync::Arc;

use uuid::Uuid;

use super::support::{
    append, batch, collect, expect, expect_eq, expect_invalid_input, numbered, ok, positions, unique_stream, versions,
    within,
};
use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::query::{AppendCondition, Query, QueryItem};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::StreamId;

async fn stream_events<S: EventStore>(check: &str, store: &S, stream: &StreamId) -> Vec<Arc<RecordedEvent>> {
    collect(check, &format!("read_stream(`{stream}`)"), store.read_stream(stream, 0)).await
}

async fn log<S: EventStore>(check: &str, store: &S) -> Vec<Arc<RecordedEvent>> {
    let all = EventFilter::all();
    collect(check, "read_all", store.read_all(0, &all)).await
}

fn ids(events: &[Arc<RecordedEvent>]) -> Vec<Uuid> {
    events.iter().map(|event| event.id).collect()
}

/// Fails unless the answer to a retry is the original append's records:
/// same ids, versions and positions.
#[track_caller]
fn expect_same_answer(check: &str, what: &str, found: &[Arc<RecordedEvent>], original: &[Arc<RecordedEvent>]) {
    let key = |events: &[Arc<RecordedEvent>]| -> Vec<(Uuid, String, u64, u64)> {
        events.iter().map(|e| (e.id, e.stream.to_string(), e.stream_version, e.global_position)).collect()
    };
    expect_eq(check, what, &key(found), &key(original));
}

/// Fails unless `result` is a `DuplicateEventId` naming `id`.
#[track_caller]
fn expect_duplicate<T: std::fmt::Debug>(check: &str, what: &str, result: &Result<T, StoreError>, id: Uuid) {
    match result {
        Err(StoreError::DuplicateEventId { id: found, .. }) if *found == id => {}
        other => fail_duplicate(check, what, other, id),
    }
}

#[track_caller]
fn fail_duplicate<T: std::fmt::Debug>(check: &str, what: &str, found: &Result<T, StoreError>, id: Uuid) {
    super::support::fail(check, format_args!("{what}: expected DuplicateEventId {{ id: {id}, .. }}, found {found:?}"));
}

/// The events keep the ids the caller gave them, and `read_event` finds
/// each by its id (and nothing for an id never stored).
pub async fn events_keep_their_ids<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::events_keep_their_ids";
    let stream = unique_stream("Account");
    let events = batch("Deposited", 1, 3);
    let given: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let recorded = append(CHECK, &store, &stream, ExpectedVersion::NoStream, events).await;
    expect_eq(CHECK, "ids of the recorded events", &ids(&recorded), &given);
    expect_eq(CHECK, "ids read back", &ids(&stream_events(CHECK, &store, &stream).await), &given);
    for (id, original) in given.iter().zip(&recorded) {
        let found = ok(CHECK, "read_event", within(CHECK, "read_event", store.read_event(*id)).await);
        let found =
            found.unwrap_or_else(|| super::support::fail(CHECK, format_args!("read_event({id}) found nothing")));
        expect_same_answer(CHECK, "read_event", &[found], std::slice::from_ref(original));
    }
    let unknown = ok(CHECK, "read_event", within(CHECK, "read_event", store.read_event(Uuid::now_v7())).await);
    expect(CHECK, unknown.is_none(), format_args!("read_event of an unknown id found {unknown:?}"));
}

/// A retried append (the same events, the same expectation) is answered
/// with the first one's records, for every expectation, and the stream
/// holds the events once: the retry after a lost acknowledgement.
pub async fn retried_append_is_answered_as_the_original<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::retried_append_is_answered_as_the_original";
    let mut total = 0;
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any, ExpectedVersion::Exact(2)] {
        let stream = unique_stream("Account");
        if expected == ExpectedVersion::Exact(2) {
            append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 0, 2)).await;
        }
        let events = batch("Deposited", 1, 2);
        let first = append(CHECK, &store, &stream, expected, events.clone()).await;
        let retry = append(CHECK, &store, &stream, expected, events.clone()).await;
        expect_same_answer(CHECK, &format!("the retry of an append expecting {expected}"), &retry, &first);
        let stored = stream_events(CHECK, &store, &stream).await;
        let before = if expected == ExpectedVersion::Exact(2) { 2 } else { 0 };
        expect_eq(CHECK, &format!("events stored after a retry expecting {expected}"), &stored.len(), &(before + 2));
        total += before + 3;
        // One event alone, too (adapters may take a separate path for it).
        let one = vec![numbered("Deposited", 9)];
        let first = append(CHECK, &store, &stream, ExpectedVersion::Any, one.clone()).await;
        let retry = append(CHECK, &store, &stream, ExpectedVersion::Any, one).await;
        expect_same_answer(CHECK, "the retry of a one-event append", &retry, &first);
    }
    expect_eq(CHECK, "events in the global log", &log(CHECK, &store).await.len(), &total);
}

/// A retry whose expectation no longer holds (the stream moved on since)
/// is still answered with the original records, and writes nothing.
pub async fn retry_after_the_stream_moved_on<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::retry_after_the_stream_moved_on";
    let stream = unique_stream("Account");
    let events = batch("Opened", 1, 2);
    let first = append(CHECK, &store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    append(CHECK, &store, &stream, ExpectedVersion::Exact(2), batch("Deposited", 3, 1)).await;
    let retry = append(CHECK, &store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    expect_same_answer(CHECK, "a NoStream retry after the stream moved on", &retry, &first);
    let retry = append(CHECK, &store, &stream, ExpectedVersion::Exact(7), events).await;
    expect_same_answer(CHECK, "an Exact(7) retry", &retry, &first);
    expect_eq(CHECK, "versions stored", &versions(&stream_events(CHECK, &store, &stream).await), &vec![1, 2, 3]);
}

/// Ids partly stored, stored in another stream or in another order, or
/// repeated within one call: refused, nothing written.
pub async fn partial_or_foreign_ids_are_refused<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::partial_or_foreign_ids_are_refused";
    let (stream, other) = (unique_stream("Account"), unique_stream("Account"));
    let events = batch("Opened", 1, 2);
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, events.clone()).await;
    // The first id again, with a new one.
    let partial = vec![events[0].clone(), numbered("Deposited", 3)];
    let result = store.append(&stream, ExpectedVersion::Any, partial).await;
    expect_duplicate(CHECK, "an append with one stored id and one new", &result, events[0].id);
    // A new id first, then a stored one.
    let partial = vec![numbered("Deposited", 3), events[1].clone()];
    let result = store.append(&stream, ExpectedVersion::Exact(2), partial).await;
    expect_duplicate(CHECK, "an append with a new id, then a stored one", &result, events[1].id);
    // The same ids to another stream.
    let result = store.append(&other, ExpectedVersion::Any, events.clone()).await;
    expect_duplicate(CHECK, "the stored ids appended to another stream", &result, events[0].id);
    // The same ids in the other order.
    let reversed: Vec<NewEvent> = events.iter().rev().cloned().collect();
    let result = store.append(&stream, ExpectedVersion::Any, reversed).await;
    expect(
        CHECK,
        matches!(result, Err(StoreError::DuplicateEventId { .. })),
        format_args!("the stored ids in the other order: expected DuplicateEventId, found {result:?}"),
    );
    // Only the second (a suffix is not the append that stored it).
    let result = store.append(&stream, ExpectedVersion::Any, vec![events[1].clone()]).await;
    expect(
        CHECK,
        result.as_ref().is_ok_and(|found| found.len() == 1 && found[0].id == events[1].id)
            || matches!(result, Err(StoreError::DuplicateEventId { .. })),
        format_args!("a suffix of a stored append: expected its stored event or DuplicateEventId, found {result:?}"),
    );
    // One id twice in one call.
    let twice = numbered("Deposited", 4);
    let result = store.append(&other, ExpectedVersion::Any, vec![twice.clone(), twice]).await;
    expect_invalid_input(CHECK, "one id twice in one append", &result);
    expect_eq(CHECK, "versions of the stream", &versions(&stream_events(CHECK, &store, &stream).await), &vec![1, 2]);
    expect_eq(CHECK, "events of the other stream", &stream_events(CHECK, &store, &other).await.len(), &0);
}

/// Eight concurrent copies of one `Any` append (a retry racing the
/// original): every one answers with the same records, stored once.
pub async fn concurrent_copies_store_once<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::concurrent_copies_store_once";
    let store = Arc::new(store);
    let stream = unique_stream("Account");
    append(CHECK, &*store, &stream, ExpectedVersion::NoStream, batch("Opened", 0, 1)).await;
    // The stream is at 1, then at 3 after the `Any` copies.
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(3)] {
        let events = batch("Deposited", 1, 2);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, stream, events) = (Arc::clone(&store), stream.clone(), events.clone());
                tokio::spawn(async move { store.append(&stream, expected, events).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            let answer = within(CHECK, "a concurrent append", task).await.expect("the task does not panic");
            answers.push(ok(CHECK, &format!("a concurrent copy expecting {expected}"), answer));
        }
        for answer in &answers[1..] {
            expect_same_answer(
                CHECK,
                &format!("answers of concurrent copies expecting {expected}"),
                answer,
                &answers[0],
            );
        }
    }
    let stored = stream_events(CHECK, &*store, &stream).await;
    expect_eq(CHECK, "versions stored", &versions(&stored), &vec![1, 2, 3, 4, 5]);
    let all = log(CHECK, &*store).await;
    expect_eq(CHECK, "events in the global log", &all.len(), &5);
}

/// A retried multi-stream append is answered with the stored events per
/// part (its guards not checked again); one with a part whose ids are new
/// is refused.
pub async fn retried_append_many_is_answered_as_the_original<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::retried_append_many_is_answered_as_the_original";
    let (a, b, guarded) = (unique_stream("Account"), unique_stream("Account"), unique_stream("Account"));
    let (for_a, for_b) = (batch("Debited", 1, 2), batch("Credited", 1, 1));
    let call = || {
        vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, for_a.clone()),
            StreamAppend::new(guarded.clone(), ExpectedVersion::NoStream, Vec::new()),
            StreamAppend::new(b.clone(), ExpectedVersion::NoStream, for_b.clone()),
        ]
    };
    let first = ok(CHECK, "append_many", within(CHECK, "append_many", store.append_many(call())).await);
    // The guarded stream moves on: the retry's guard would fail now.
    append(CHECK, &store, &guarded, ExpectedVersion::NoStream, batch("Opened", 0, 1)).await;
    let retry = ok(CHECK, "the retried append_many", within(CHECK, "append_many", store.append_many(call())).await);
    expect_eq(CHECK, "parts of the answer", &retry.len(), &3);
    for (found, original) in retry.iter().zip(&first) {
        expect_same_answer(CHECK, "a part of the retried append_many", found, original);
    }
    // One part repeated, one new: refused.
    let mixed = vec![
        StreamAppend::new(a.clone(), ExpectedVersion::Any, for_a.clone()),
        StreamAppend::new(b.clone(), ExpectedVersion::Any, batch("Credited", 5, 1)),
    ];
    let result = within(CHECK, "append_many", store.append_many(mixed)).await;
    expect_duplicate(CHECK, "an append_many with one stored part and one new", &result, for_a[0].id);
    let flat: Vec<Arc<RecordedEvent>> = first.iter().flatten().cloned().collect();
    let all = log(CHECK, &store).await;
    expect_eq(
        CHECK,
        "positions in the global log (the call's, then the guarded stream's)",
        &positions(&all[..3]),
        &positions(&flat),
    );
    expect_eq(CHECK, "events in the global log", &all.len(), &4);
}

/// A retried conditional append is answered with the stored events,
/// although its own events now break its condition. Skipped by adapters
/// without conditional appends ([`StoreError::Unsupported`]).
pub async fn retried_append_if_is_answered_as_the_original<S: EventStore>(store: S) {
    const CHECK: &str = "idempotent_append::retried_append_if_is_answered_as_the_original";
    let stream = unique_stream("Course");
    let condition = AppendCondition::new(Query::new([QueryItem::types(["Subscribed"])]), None);
    let events = batch("Subscribed", 1, 1);
    let call = || vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, events.clone())];
    let first = match within(CHECK, "append_if", store.append_if(condition.clone(), call())).await {
        Err(StoreError::Unsupported(_)) => return,
        first => ok(CHECK, "append_if", first),
    };
    let retry =
        ok(CHECK, "the retried append_if", within(CHECK, "append_if", store.append_if(condition, call())).await);
    expect_same_answer(CHECK, "the retried append_if", &retry[0], &first[0]);
    expect_eq(CHECK, "events stored", &stream_events(CHECK, &store, &stream).await.len(), &1);
}
