//! Unit tests of the in-memory event store (a file of their own, so that
//! `event_store.rs` stays under 600 lines).

use std::collections::HashSet;

use futures_util::StreamExt;
use serde_json::value::RawValue;

use super::*;
use crate::envelope::Metadata;

fn event(event_type: &str, n: usize) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap(),
        metadata: Metadata::default(),
    }
}

fn stream(id: &str) -> StreamId {
    StreamId::new("Test", id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_racing_concurrent_appends_sees_each_event_once_in_order() {
    const TASKS: usize = 4;
    const APPENDS: usize = 250;
    let store = InMemoryEventStore::new();
    let mut subscription = store.subscribe(0, EventFilter::all());
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = stream(&task.to_string());
                for i in 0..APPENDS {
                    store.append(&stream, ExpectedVersion::Any, vec![event("E", i)]).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::with_capacity(TASKS * APPENDS);
    while seen.len() < TASKS * APPENDS {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), subscription.next())
            .await
            .expect("the subscription stalled")
            .expect("the subscription ended")
            .unwrap();
        seen.push(event.global_position);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: Vec<u64> = (1..=to_u64(TASKS * APPENDS)).collect();
    assert_eq!(seen, expected);
    let extra = tokio::time::timeout(std::time::Duration::from_millis(50), subscription.next()).await;
    assert!(extra.is_err(), "unexpected extra item: {extra:?}");
}

#[tokio::test]
async fn a_subscription_started_mid_stream_switches_to_live_without_gaps() {
    let store = InMemoryEventStore::new();
    let s = stream("a");
    // Enough events for several catch-up chunks, with a filter that
    // skips most of them.
    for i in 0..3000 {
        let event_type = if i % 7 == 0 { "Kept" } else { "Skipped" };
        store.append(&s, ExpectedVersion::Any, vec![event(event_type, i)]).await.unwrap();
    }
    let mut subscription = store.subscribe(1, EventFilter::types(["Kept"]));
    let mut positions = Vec::new();
    for _ in 0..=(3000 / 7) {
        positions.push(subscription.next().await.unwrap().unwrap().global_position);
    }
    let expected: Vec<u64> = (0..3000).filter(|i| i % 7 == 0).map(|i| i + 1).collect();
    assert_eq!(positions, expected);
    let live = store.append(&s, ExpectedVersion::Any, vec![event("Skipped", 0), event("Kept", 1)]).await.unwrap();
    assert_eq!(subscription.next().await.unwrap().unwrap().global_position, live[1].global_position);
}

#[tokio::test]
async fn subscriptions_end_when_the_store_is_gone_and_unregister_when_dropped() {
    let store = InMemoryEventStore::new();
    let dropped = store.subscribe(0, EventFilter::all());
    assert_eq!(store.shared.head.receiver_count(), 1);
    drop(dropped);
    assert_eq!(store.shared.head.receiver_count(), 0);

    let mut subscription = store.subscribe(0, EventFilter::all());
    store.append(&stream("a"), ExpectedVersion::Any, vec![event("E", 1)]).await.unwrap();
    assert!(subscription.next().await.is_some());
    drop(store);
    let end = tokio::time::timeout(std::time::Duration::from_secs(1), subscription.next()).await;
    assert!(matches!(end, Ok(None)), "expected the subscription to end, got {end:?}");
}

#[tokio::test]
async fn a_read_ends_where_the_log_ended_when_it_began() {
    let store = InMemoryEventStore::new();
    let s = stream("a");
    store.append(&s, ExpectedVersion::Any, (0..600).map(|i| event("E", i)).collect()).await.unwrap();
    let filter = EventFilter::all();
    let mut all = store.read_all(1, &filter);
    let mut in_stream = store.read_stream(&s, 1);
    assert_eq!(all.next().await.unwrap().unwrap().global_position, 1);
    assert_eq!(in_stream.next().await.unwrap().unwrap().stream_version, 1);
    store.append(&s, ExpectedVersion::Any, (0..10).map(|i| event("E", i)).collect()).await.unwrap();
    assert_eq!(all.count().await, 599);
    assert_eq!(in_stream.count().await, 599);
}

#[tokio::test]
async fn records_share_storage_and_ids_follow_positions() {
    let store = InMemoryEventStore::new();
    let s = stream("a");
    let appended = store.append(&s, ExpectedVersion::NoStream, (0..50).map(|i| event("E", i)).collect()).await;
    let appended = appended.unwrap();
    let read: Vec<_> = store.read_stream(&s, 1).map(Result::unwrap).collect().await;
    for (a, r) in appended.iter().zip(&read) {
        assert!(Arc::ptr_eq(a, r), "reads must hand out the stored Arc, not a copy");
    }
    let ids: HashSet<Uuid> = read.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 50);
    assert!(read.windows(2).all(|w| w[0].id < w[1].id), "v7 ids sort like positions");
}

#[test]
fn event_type_validation() {
    use crate::event::validate_event_type;
    assert!(validate_event_type("AccountOpened").is_ok());
    assert!(validate_event_type(&"x".repeat(crate::event::MAX_EVENT_TYPE_LEN)).is_ok());
    assert!(validate_event_type("a.b").is_ok() && validate_event_type("...").is_ok());
    let too_long = "x".repeat(crate::event::MAX_EVENT_TYPE_LEN + 1);
    for bad in [String::new(), "a\0b".to_owned(), ".".to_owned(), "..".to_owned(), too_long] {
        assert!(matches!(validate_event_type(&bad), Err(StoreError::InvalidInput(_))), "{bad:?}");
    }
}
