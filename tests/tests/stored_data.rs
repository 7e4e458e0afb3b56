//! What the core does with stored data it did not write itself: old
//! versions, newer versions, unknown types, malformed JSON, and snapshots
//! it cannot trust.

use std::sync::Arc;

use bank::{Account, AccountEvent, Deposit, OpenAccount, Withdraw};
use chrono::Utc;
use orchestrix::memory::{InMemoryEventStore, InMemorySnapshotStore};
use orchestrix::store::Snapshot;
use orchestrix::{
    envelope::NewEvent,
    error::DecodeErrorKind,
    repository::Repository,
    store::{EventStore, ExpectedVersion, SnapshotStore},
    CommandError, Error, Orchestrix, Uuid,
};
use serde_json::value::RawValue;

struct Fixture {
    app: Orchestrix,
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

fn fixture() -> Fixture {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(InMemorySnapshotStore::new());
    let app = Orchestrix::builder()
        .event_store(Arc::clone(&events))
        .snapshot_store(Arc::clone(&snapshots))
        .aggregate::<Account>()
        .cache_capacity(0)
        .build()
        .unwrap();
    Fixture { app, events, snapshots }
}

fn raw(event_type: &str, schema_version: u32, data: &str) -> NewEvent {
    NewEvent::new(event_type, schema_version, RawValue::from_string(data.into()).unwrap())
}

async fn opened_account(f: &Fixture) -> Uuid {
    let id = Uuid::now_v7();
    f.app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    id
}

async fn append(f: &Fixture, id: &Uuid, event: NewEvent) {
    let stream = Repository::<Account>::stream_id(id).unwrap();
    f.events.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
}

#[tokio::test]
async fn old_schema_versions_are_upcast_on_read() {
    let f = fixture();
    let id = opened_account(&f).await;
    append(&f, &id, raw("AccountDeposited", 1, r#"{"amount":100}"#)).await;
    append(&f, &id, raw("AccountWithdrawn", 1, r#"{"amount":40}"#)).await;
    let history = f.app.repository::<Account>().history(&id).await.unwrap();
    assert_eq!(history[2].event, AccountEvent::Withdrawn { amount: 40, reason: "unspecified".into() });
    let loaded = f.app.load::<Account>(&id).await.unwrap();
    assert_eq!((loaded.state.balance, loaded.version), (60, 3));
}

async fn decode_failure(stored: NewEvent) -> (Uuid, Box<orchestrix::error::DecodeError>) {
    let f = fixture();
    let id = opened_account(&f).await;
    append(&f, &id, stored).await;
    let error = f.app.execute(id, Deposit { amount: 1 }).await.unwrap_err();
    let CommandError::Framework(Error::Decode(decode)) = error else {
        panic!("expected a decode error, got {error:?}")
    };
    // Nothing already stored was lost, and nothing was appended.
    let stream = Repository::<Account>::stream_id(id).unwrap();
    assert_eq!(f.events.stream_version(&stream).await.unwrap(), Some(2));
    (id, decode)
}

#[tokio::test]
async fn an_event_newer_than_the_code_is_a_typed_error_naming_where_it_is() {
    let (id, error) = decode_failure(raw("AccountWithdrawn", 3, r#"{"amount":1,"reason":"x","new":true}"#)).await;
    assert!(matches!(error.kind, DecodeErrorKind::NewerThanCode { supported: 2 }), "{error:?}");
    assert_eq!((error.stream.id(), error.stream_version), (id.to_string().as_str(), 2));
    assert_eq!((error.event_type.as_str(), error.schema_version), ("AccountWithdrawn", 3));
    let message = error.to_string();
    assert!(message.contains("AccountWithdrawn") && message.contains(&id.to_string()), "{message}");
}

#[tokio::test]
async fn an_unknown_event_type_is_a_typed_error() {
    let (_, error) = decode_failure(raw("AccountFrozen", 1, "{}")).await;
    assert!(matches!(error.kind, DecodeErrorKind::UnknownType), "{error:?}");
}

#[tokio::test]
async fn malformed_data_is_a_typed_error() {
    for data in [r#"{"amount":"ten"}"#, r#"{"amount":-1}"#, "[1,2]", r#""text""#, "{}"] {
        let (_, error) = decode_failure(raw("AccountDeposited", 1, data)).await;
        assert!(matches!(error.kind, DecodeErrorKind::Malformed(_)), "{data}: {error:?}");
    }
}

#[tokio::test]
async fn an_upcaster_that_refuses_is_a_typed_error() {
    let (_, error) = decode_failure(raw("AccountWithdrawn", 1, "[]")).await;
    assert!(matches!(error.kind, DecodeErrorKind::Upcast { from: 1, .. }), "{error:?}");
}

#[tokio::test]
async fn snapshots_are_taken_and_used() {
    let f = fixture();
    let id = opened_account(&f).await;
    for _ in 0..11 {
        f.app.execute(id, Deposit { amount: 10 }).await.unwrap();
    }
    let stream = Repository::<Account>::stream_id(id).unwrap();
    let latest = f.snapshots.load(&stream, None).await.unwrap().expect("a snapshot every 5 events");
    assert_eq!(latest.version, 10);
    let loaded = f.app.load::<Account>(&id).await.unwrap();
    assert_eq!((loaded.from_snapshot, loaded.version, loaded.state.balance), (Some(10), 12, 110));
    let at_7 = f.app.repository::<Account>().load_at(&id, 7).await.unwrap();
    assert_eq!((at_7.from_snapshot, at_7.version, at_7.state.balance), (Some(5), 7, 60));
}

#[tokio::test]
async fn a_snapshot_of_another_schema_version_or_unreadable_is_ignored_and_rebuilt() {
    let f = fixture();
    let id = opened_account(&f).await;
    f.app.execute(id, Deposit { amount: 25 }).await.unwrap();
    let stream = Repository::<Account>::stream_id(id).unwrap();
    let lying = |schema_version, state: &str| {
        Snapshot::new(stream.clone(), 2, schema_version, RawValue::from_string(state.into()).unwrap(), Utc::now())
    };
    f.snapshots.save(lying(99, r#"{"owner":"Mallory","balance":1000000,"closed":false}"#)).await.unwrap();
    let loaded = f.app.load::<Account>(&id).await.unwrap();
    assert_eq!((loaded.from_snapshot, loaded.state.balance), (None, 25));
    f.snapshots.save(lying(1, r#"{"not":"an account"}"#)).await.unwrap();
    let loaded = f.app.load::<Account>(&id).await.unwrap();
    assert_eq!((loaded.from_snapshot, loaded.state.balance), (None, 25));
}

#[tokio::test]
async fn time_travel_by_version_and_by_time() {
    let f = fixture();
    let id = opened_account(&f).await;
    f.app.execute(id, Deposit { amount: 100 }).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    f.app.execute(id, Withdraw { amount: 30, reason: "rent".into() }).await.unwrap();
    let repository = f.app.repository::<Account>();
    assert_eq!(repository.load_at(&id, 1).await.unwrap().state.balance, 0);
    assert_eq!(repository.load_at(&id, 2).await.unwrap().state.balance, 100);
    assert_eq!(repository.load_at(&id, 99).await.unwrap().version, 3, "past the end: the current state");
    let then = repository.load_as_of(&id, between).await.unwrap();
    assert_eq!((then.version, then.state.balance), (2, 100));
    let before = repository.load_as_of(&id, Utc::now() - chrono::Duration::days(1)).await.unwrap();
    assert!(!before.exists());
}
