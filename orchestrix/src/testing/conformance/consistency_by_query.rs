//! Checks of consistency by query ([`EventStore::read_by_query`] and
//! [`EventStore::append_if`], ADR 0023), for the adapters that implement
//! it. An adapter that does not must refuse `append_if` with
//! [`StoreError::Unsupported`], which [`unsupported_is_refused`] checks.

use std::sync::Arc;

use futures_util::StreamExt;

use super::support::{
    append, collect, event_with, expect_eq, expect_quiet, fail, next_event, next_events, ok, positions, unique_stream,
    within,
};
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::query::{AppendCondition, Query, QueryItem};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::StreamId;

pub use super::validation::{append_if_refuses_unreadable_payloads, tenants_cannot_forge_tenant_tags};

/// An event of `event_type` with `tags`.
fn tagged(event_type: &str, tags: &[String]) -> NewEvent {
    let metadata = Metadata::default().with_tags(tags.iter().cloned());
    event_with(event_type, "{}", metadata)
}

/// A tag value no other check (or run) uses.
fn fresh(name: &str) -> String {
    format!("{name}:{}", uuid::Uuid::now_v7())
}

fn part(stream: &StreamId, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, events)]
}

async fn by_query<S: EventStore>(check: &str, store: &S, query: &Query, from: u64) -> Vec<Arc<RecordedEvent>> {
    let events: Vec<_> = within(check, "read_by_query", store.read_by_query(query, from).collect::<Vec<_>>()).await;
    events.into_iter().map(|event| ok(check, "read_by_query", event)).collect()
}

/// Tags are stored with every event and read back; `read_by_query` returns
/// exactly the events that match any item, in position order, from a
/// position.
pub async fn tags_round_trip_and_queries_select<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::tags_round_trip_and_queries_select";
    let (course, student, other) = (fresh("course"), fresh("student"), fresh("course"));
    let stream = unique_stream("Course");
    let written = append(
        CHECK,
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![
            tagged("CourseDefined", std::slice::from_ref(&course)),
            tagged("StudentSubscribed", &[course.clone(), student.clone()]),
            tagged("StudentSubscribed", &[other.clone(), student.clone()]),
            tagged("CourseDefined", std::slice::from_ref(&other)),
            tagged("Untagged", &[]),
        ],
    )
    .await;
    let mut sorted = vec![course.clone(), student.clone()];
    sorted.sort();
    if written[1].tags() != sorted.as_slice() {
        fail(CHECK, format_args!("recorded tags {:?}, expected {sorted:?}", written[1].tags()));
    }
    let read = by_query(CHECK, &store, &Query::new([QueryItem::any().raw_tag(course.clone())]), 0).await;
    if read.len() != 2 || read[1].tags() != sorted.as_slice() {
        fail(CHECK, format_args!("reading `{course}` gave {read:?}"));
    }
    let query = Query::new([
        QueryItem::types(["CourseDefined"]).raw_tag(course.clone()),
        QueryItem::types(["StudentSubscribed"]).raw_tag(student.clone()),
    ]);
    let positions: Vec<u64> = by_query(CHECK, &store, &query, 0).await.iter().map(|e| e.global_position).collect();
    let expected: Vec<u64> = written[..3].iter().map(|e| e.global_position).collect();
    if positions != expected {
        fail(CHECK, format_args!("query read positions {positions:?}, expected {expected:?}"));
    }
    let from_second = by_query(CHECK, &store, &query, expected[1]).await;
    if from_second.len() != 2 {
        fail(CHECK, format_args!("reading from {} gave {} events, expected 2", expected[1], from_second.len()));
    }
    let both = Query::new([QueryItem::any().raw_tag(course.clone()).raw_tag(other.clone())]);
    if !by_query(CHECK, &store, &both, 0).await.is_empty() {
        fail(CHECK, format_args!("an item needs all of its tags"));
    }
    if !by_query(CHECK, &store, &Query::none(), 0).await.is_empty() {
        fail(CHECK, format_args!("a query without items matched events"));
    }
}

/// A global read or subscription through a filter with tags
/// ([`EventFilter::with_tag`]) delivers exactly the events of its types
/// that carry every one of its tags, in position order, caught up and live
/// (ADR 0036).
pub async fn global_reads_filter_by_tags<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::global_reads_filter_by_tags";
    let (course, student) = (fresh("course"), fresh("student"));
    let stream = unique_stream("Course");
    let written = append(
        CHECK,
        &store,
        &stream,
        ExpectedVersion::NoStream,
        vec![
            tagged("CourseDefined", std::slice::from_ref(&course)),
            tagged("StudentSubscribed", &[course.clone(), student.clone()]),
            tagged("StudentSubscribed", std::slice::from_ref(&student)),
            tagged("Untagged", &[]),
            tagged("CourseDefined", std::slice::from_ref(&course)),
        ],
    )
    .await;
    let at = |indexes: &[usize]| -> Vec<u64> { indexes.iter().map(|&i| written[i].global_position).collect() };
    let first = written[0].global_position;
    let by_course = EventFilter::all().with_tag(course.clone());
    let read = collect(CHECK, "read_all", store.read_all(first, &by_course)).await;
    expect_eq(CHECK, "positions read with one tag", &positions(&read), &at(&[0, 1, 4]));
    let both = EventFilter::all().with_tag(student.clone()).with_tag(course.clone());
    let read = collect(CHECK, "read_all", store.read_all(first, &both)).await;
    expect_eq(CHECK, "positions read with two tags", &positions(&read), &at(&[1]));
    let typed = EventFilter::types(["CourseDefined"]).with_tag(course.clone());
    let read = collect(CHECK, "read_all", store.read_all(written[1].global_position, &typed)).await;
    expect_eq(CHECK, "positions read with a type and a tag, from a position", &positions(&read), &at(&[4]));

    let mut subscription = store.subscribe(first, EventFilter::types(["StudentSubscribed"]).with_tag(student.clone()));
    let caught_up = next_events(CHECK, &mut subscription, 2).await;
    expect_eq(CHECK, "positions caught up with a type and a tag", &positions(&caught_up), &at(&[1, 2]));
    let live = append(
        CHECK,
        &store,
        &stream,
        ExpectedVersion::Exact(5),
        vec![
            tagged("StudentSubscribed", std::slice::from_ref(&course)),
            tagged("StudentSubscribed", &[student.clone(), course.clone()]),
        ],
    )
    .await;
    let event = next_event(CHECK, &mut subscription).await;
    expect_eq(CHECK, "position of the live event with the tag", &event.global_position, &live[1].global_position);
    expect_quiet(CHECK, &mut subscription).await;
}

/// A condition holds while no matching event follows `after`, and fails,
/// writing nothing, once one does; events that do not match never fail it.
pub async fn condition_passes_then_fails<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::condition_passes_then_fails";
    let course = fresh("course");
    let (a, b) = (unique_stream("Course"), unique_stream("Course"));
    let query = Query::new([QueryItem::types(["StudentSubscribed"]).raw_tag(course.clone())]);
    let first = AppendCondition::new(query.clone(), None);
    let written = ok(
        CHECK,
        "append_if with no matching event",
        within(
            CHECK,
            "append_if",
            store.append_if(first.clone(), part(&a, vec![tagged("StudentSubscribed", std::slice::from_ref(&course))])),
        )
        .await,
    );
    let position = written[0][0].global_position;
    // The same condition again: the event just written breaks it.
    let again = within(CHECK, "append_if", store.append_if(first, part(&b, vec![tagged("X", &[])]))).await;
    match again {
        Err(StoreError::ConditionFailed { position: p, after: None }) if p == position => {}
        other => fail(CHECK, format_args!("expected ConditionFailed at {position}, got {other:?}")),
    }
    if ok(CHECK, "stream_version", store.stream_version(&b).await).is_some() {
        fail(CHECK, format_args!("a failed condition wrote events"));
    }
    // After the position read, unrelated events do not break it.
    ok(
        CHECK,
        "append",
        store
            .append(
                &b,
                ExpectedVersion::Any,
                vec![
                    tagged("StudentSubscribed", &[fresh("course")]),
                    tagged("CourseDefined", std::slice::from_ref(&course)),
                ],
            )
            .await,
    );
    let later = AppendCondition::new(query, Some(position));
    ok(
        CHECK,
        "append_if after the position read",
        within(
            CHECK,
            "append_if",
            store.append_if(later, part(&b, vec![tagged("StudentSubscribed", std::slice::from_ref(&course))])),
        )
        .await,
    );
}

/// The condition and the parts' expectations are all or nothing: a failed
/// expectation under a holding condition writes nothing and is a version
/// conflict; an empty query always holds; an empty call only checks.
pub async fn condition_and_expectations_are_atomic<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::condition_and_expectations_are_atomic";
    let tag = fresh("student");
    let (a, b) = (unique_stream("Student"), unique_stream("Student"));
    ok(CHECK, "append", store.append(&a, ExpectedVersion::NoStream, vec![tagged("StudentRegistered", &[])]).await);
    let holds = AppendCondition::new(Query::new([QueryItem::any().raw_tag(tag.clone())]), None);
    let parts = vec![
        StreamAppend::new(
            b.clone(),
            ExpectedVersion::NoStream,
            vec![tagged("StudentSubscribed", std::slice::from_ref(&tag))],
        ),
        StreamAppend::new(a.clone(), ExpectedVersion::NoStream, vec![]),
    ];
    match within(CHECK, "append_if", store.append_if(holds.clone(), parts)).await {
        Err(StoreError::WrongExpectedVersion { stream, .. }) if stream == a => {}
        other => fail(CHECK, format_args!("expected a version conflict on `{a}`, got {other:?}")),
    }
    if ok(CHECK, "stream_version", store.stream_version(&b).await).is_some() {
        fail(CHECK, format_args!("a failed expectation let the other part be written"));
    }
    let none = ok(CHECK, "empty call", within(CHECK, "append_if", store.append_if(holds.clone(), Vec::new())).await);
    if !none.is_empty() {
        fail(CHECK, format_args!("an empty call returned {none:?}"));
    }
    ok(
        CHECK,
        "append",
        store.append(&b, ExpectedVersion::Any, vec![tagged("StudentSubscribed", std::slice::from_ref(&tag))]).await,
    );
    if !matches!(
        within(CHECK, "append_if", store.append_if(holds, Vec::new())).await,
        Err(StoreError::ConditionFailed { .. })
    ) {
        fail(CHECK, format_args!("an empty call did not check its condition"));
    }
    let always = AppendCondition::new(Query::none(), None);
    ok(
        CHECK,
        "empty query",
        within(CHECK, "append_if", store.append_if(always, part(&b, vec![tagged("X", &[])]))).await,
    );
    let bad = AppendCondition::new(Query::new([QueryItem::any().raw_tag("")]), None);
    if !matches!(store.append_if(bad, Vec::new()).await, Err(StoreError::InvalidInput(_))) {
        fail(CHECK, format_args!("an empty tag in a query was not refused"));
    }
}

/// Many concurrent read-decide-append loops over overlapping queries: in
/// each group of appenders that read the same (empty) state and append an
/// event matching each other's query, exactly one wins (no write skew),
/// and the others fail with [`StoreError::ConditionFailed`].
pub async fn concurrent_conditions_have_one_winner<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::concurrent_conditions_have_one_winner";
    const GROUPS: usize = 4;
    const RACERS: usize = 8;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    let mut groups = Vec::new();
    for group in 0..GROUPS {
        // Two tags per group: each racer's query asks for the course *or*
        // the student, and its event carries one of them, so every pair in
        // a group conflicts through one tag or the other.
        let (course, student) = (fresh("course"), fresh("student"));
        groups.push(course.clone());
        let query = Query::new([
            QueryItem::types(["StudentSubscribed"]).raw_tag(course.clone()),
            QueryItem::types(["StudentSubscribed"]).raw_tag(student.clone()),
        ]);
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        for racer in 0..RACERS {
            let (store, query, barrier) = (Arc::clone(&store), query.clone(), Arc::clone(&barrier));
            let tag = if racer % 2 == 0 { course.clone() } else { student.clone() };
            tasks.push(tokio::spawn(async move {
                let stream = unique_stream("Subscription");
                barrier.wait().await;
                let result = store
                    .append_if(
                        AppendCondition::new(query, None),
                        part(&stream, vec![tagged("StudentSubscribed", &[tag])]),
                    )
                    .await;
                (group, result)
            }));
        }
    }
    let mut wins = [0_usize; GROUPS];
    for task in tasks {
        let (group, result) = within(CHECK, "a racer", task).await.unwrap_or_else(|e| fail(CHECK, format_args!("{e}")));
        match result {
            Ok(_) => wins[group] += 1,
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(error) => fail(CHECK, format_args!("a racer failed with {error}")),
        }
    }
    if wins.iter().any(|&w| w != 1) {
        fail(CHECK, format_args!("expected exactly one winner per group, got {wins:?}"));
    }
    for course in groups {
        let query = Query::new([QueryItem::any().raw_tag(course)]);
        let stored = by_query(CHECK, &*store, &query, 0).await.len();
        if stored > 1 {
            fail(CHECK, format_args!("{stored} events stored for one course"));
        }
    }
}

/// The write-skew shape: half the racers decide on a course's events and
/// append a student's, the other half the reverse, all from the same
/// (empty) state. Racers of one half do not conflict with each other, but
/// any two of different halves do: winners never come from both halves.
pub async fn no_write_skew_across_queries<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::no_write_skew_across_queries";
    const ROUNDS: usize = 6;
    const RACERS: usize = 6;
    let store = Arc::new(store);
    for _ in 0..ROUNDS {
        let (course, student) = (fresh("course"), fresh("student"));
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for racer in 0..RACERS {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let (reads, writes) =
                if racer % 2 == 0 { (course.clone(), student.clone()) } else { (student.clone(), course.clone()) };
            tasks.push(tokio::spawn(async move {
                let query = Query::new([QueryItem::types(["StudentSubscribed"]).raw_tag(reads)]);
                let stream = unique_stream("Subscription");
                barrier.wait().await;
                let event = tagged("StudentSubscribed", &[writes]);
                (racer % 2, store.append_if(AppendCondition::new(query, None), part(&stream, vec![event])).await)
            }));
        }
        let mut wins = [0_usize; 2];
        for task in tasks {
            let (half, result) =
                within(CHECK, "a racer", task).await.unwrap_or_else(|e| fail(CHECK, format_args!("{e}")));
            match result {
                Ok(_) => wins[half] += 1,
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(error) => fail(CHECK, format_args!("a racer failed with {error}")),
            }
        }
        if wins[0] > 0 && wins[1] > 0 || wins == [0, 0] {
            fail(CHECK, format_args!("winners per half {wins:?}: expected winners from exactly one half"));
        }
    }
}

/// For adapters without consistency by query: `append_if` is refused with
/// [`StoreError::Unsupported`] and writes nothing, never ignoring the
/// condition.
pub async fn unsupported_is_refused<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::unsupported_is_refused";
    let stream = unique_stream("Course");
    let condition = AppendCondition::new(Query::new([QueryItem::any().raw_tag(fresh("course"))]), None);
    match within(CHECK, "append_if", store.append_if(condition, part(&stream, vec![tagged("X", &[])]))).await {
        Err(StoreError::Unsupported(_)) => {}
        other => fail(CHECK, format_args!("expected Unsupported, got {other:?}")),
    }
    if ok(CHECK, "stream_version", store.stream_version(&stream).await).is_some() {
        fail(CHECK, format_args!("a refused append wrote events"));
    }
}
