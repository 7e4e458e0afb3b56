//! Concurrent single-stream appends.

use super::super::support::{
    batch, event_with, expect, expect_conflict, expect_eq, expect_increasing, jsons, ok, positions, unique_stream,
    versions, within,
};
use super::super::support::{data_of, read_all, read_stream};
use crate::envelope::Metadata;
use crate::store::{EventFilter, EventStore, ExpectedVersion};
use crate::stream::StreamId;
use std::collections::HashSet;
use std::sync::Arc;

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
