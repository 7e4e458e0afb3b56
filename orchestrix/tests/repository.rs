//! The repository on its own: loading a missing aggregate, saving against
//! an expectation, time travel by version and by time, the history,
//! catching a loaded state up, and a save retried with the same event ids
//! (ADR 0027).

use std::sync::Arc;
use std::time::Duration;

use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::repository::Repository;
use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix::{Metadata, StoreError, Uuid};

#[event]
#[derive(Debug, Clone, PartialEq)]
enum TankEvent {
    Filled { litres: u32 },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[aggregate(event = TankEvent, error = Never, id = String)]
#[derive(Debug, Default)]
struct Tank {
    litres: u32,
}

impl Tank {
    fn apply(&mut self, event: &TankEvent) {
        let TankEvent::Filled { litres } = event;
        self.litres += litres;
    }
}

fn filled(litres: u32) -> TankEvent {
    TankEvent::Filled { litres }
}

fn repository() -> (InMemoryEventStore, Repository<Tank>) {
    let store = InMemoryEventStore::new();
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    (store, Repository::new(events, None))
}

fn id() -> String {
    "t1".to_owned()
}

#[tokio::test]
async fn a_missing_aggregate_loads_as_new() {
    let (_, tanks) = repository();
    let loaded = tanks.load(id()).await.unwrap();
    assert!(!loaded.exists());
    assert_eq!((loaded.version, loaded.state.litres), (0, 0));
    assert_eq!(loaded.expected_version(), ExpectedVersion::NoStream);
    assert!(tanks.history(id()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_save_checks_its_expectation_and_a_stale_one_writes_nothing() {
    let (store, tanks) = repository();
    let saved = tanks.save(id(), ExpectedVersion::NoStream, &[filled(1), filled(2)], &Metadata::default()).await;
    assert_eq!(saved.unwrap().iter().map(|r| r.stream_version).collect::<Vec<_>>(), [1, 2]);
    let loaded = tanks.load(id()).await.unwrap();
    assert_eq!((loaded.version, loaded.state.litres), (2, 3));
    assert_eq!(loaded.expected_version(), ExpectedVersion::Exact(2));
    let stale = tanks.save(id(), ExpectedVersion::Exact(1), &[filled(9)], &Metadata::default()).await.unwrap_err();
    assert!(
        matches!(&stale, orchestrix::Error::Store(StoreError::WrongExpectedVersion { actual: Some(2), .. })),
        "{stale:?}"
    );
    assert_eq!(store.head_position().await.unwrap(), Some(2));
}

#[tokio::test]
async fn time_travel_by_version_and_by_time() {
    let (_, tanks) = repository();
    tanks.save(id(), ExpectedVersion::NoStream, &[filled(1), filled(2)], &Metadata::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tanks.save(id(), ExpectedVersion::Exact(2), &[filled(4)], &Metadata::default()).await.unwrap();

    let at = |version| {
        let tanks = tanks.clone();
        async move {
            let loaded = tanks.load_at(id(), version).await.unwrap();
            (loaded.version, loaded.state.litres)
        }
    };
    assert_eq!(at(0).await, (0, 0));
    assert_eq!(at(1).await, (1, 1));
    assert_eq!(at(2).await, (2, 3));
    assert_eq!(at(99).await, (3, 7), "past the end: the current state");
    let then = tanks.load_as_of(id(), between).await.unwrap();
    assert_eq!((then.version, then.state.litres), (2, 3));
    let before = tanks.load_as_of(id(), between - chrono::Duration::days(1)).await.unwrap();
    assert!(!before.exists());
}

#[tokio::test]
async fn the_history_is_every_event_decoded_in_order() {
    let (_, tanks) = repository();
    tanks.save(id(), ExpectedVersion::NoStream, &[filled(1), filled(2)], &Metadata::default()).await.unwrap();
    tanks.save(id(), ExpectedVersion::Exact(2), &[filled(3)], &Metadata::default()).await.unwrap();
    let history = tanks.history(id()).await.unwrap();
    let seen: Vec<(u64, TankEvent)> = history.into_iter().map(|e| (e.stream_version, e.event)).collect();
    assert_eq!(seen, [(1, filled(1)), (2, filled(2)), (3, filled(3))]);
}

#[tokio::test]
async fn a_loaded_state_catches_up_with_later_events() {
    let (_, tanks) = repository();
    tanks.save(id(), ExpectedVersion::NoStream, &[filled(1)], &Metadata::default()).await.unwrap();
    let mut loaded = tanks.load(id()).await.unwrap();
    tanks.save(id(), ExpectedVersion::Exact(1), &[filled(2), filled(3)], &Metadata::default()).await.unwrap();
    tanks.catch_up(id(), &mut loaded).await.unwrap();
    assert_eq!((loaded.version, loaded.state.litres), (3, 6));
    tanks.catch_up(id(), &mut loaded).await.unwrap();
    assert_eq!((loaded.version, loaded.state.litres), (3, 6), "nothing new: unchanged");
}

/// A save whose answer was lost, retried with the same event ids, is
/// answered with the stored events, even though its expectation (a new
/// stream) no longer holds; other ids are a conflict.
#[tokio::test]
async fn a_save_retried_with_the_same_ids_is_answered_as_the_original() {
    let (store, tanks) = repository();
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    let save = |ids: [Uuid; 2]| {
        let tanks = tanks.clone();
        async move {
            tanks
                .save_with_ids(id(), ExpectedVersion::NoStream, &[filled(1), filled(2)], &Metadata::default(), |i| {
                    ids[i as usize]
                })
                .await
        }
    };
    let first = save(ids).await.unwrap();
    let again = save(ids).await.unwrap();
    assert_eq!(first.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        again.iter().map(|r| (r.id, r.global_position)).collect::<Vec<_>>(),
        first.iter().map(|r| (r.id, r.global_position)).collect::<Vec<_>>()
    );
    assert_eq!(store.head_position().await.unwrap(), Some(2));
    let other = save([Uuid::now_v7(), Uuid::now_v7()]).await.unwrap_err();
    assert!(other.is_conflict(), "{other:?}");
}
