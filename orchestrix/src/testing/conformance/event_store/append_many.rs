//! Multi-stream appends (`append_many`): parts, guards, conflicts,
//! concurrency and subscribers.

use super::super::support::{append, data_of, head, read_all, read_stream, version};
use super::super::support::{
    batch, event_with, expect, expect_conflict, expect_eq, expect_increasing, expect_invalid_input, expect_quiet,
    expect_same_record, jsons, next_events, numbered, ok, positions, unique_stream, versions, within,
};
use crate::envelope::{Metadata, RecordedEvent};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::StreamId;
use std::sync::Arc;
use uuid::Uuid;

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
        super::super::support::fail(check, format_args!("{what}: event {} is missing from the global log", first.id))
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
