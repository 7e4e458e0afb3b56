//! Subscriptions: catch-up then live, filters, start positions, races
//! with appends, dropping.

use super::super::support::{append, read_all};
use super::super::support::{
    batch, expect_eq, expect_increasing, expect_quiet, expect_same_record, next_event, next_events, numbered, ok,
    positions, unique_stream, versions, within,
};
use crate::store::{EventFilter, EventStore, ExpectedVersion};
use std::sync::Arc;
use uuid::Uuid;

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
