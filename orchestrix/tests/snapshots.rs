//! Commands over snapshots that cannot be trusted (ADR 0006, ADR 0026): a
//! snapshot past the stream's last event used to give the aggregate a
//! ghost version, so every command failed with `Conflict { attempts: 10 }`.
//! (The repository's behaviour on every adapter is the conformance port
//! `snapshot_trust`; this is the command path through `Orchestrix`.)

use chrono::Utc;
use orchestrix::memory::{InMemoryEventStore, InMemorySnapshotStore};
use orchestrix::prelude::*;
use orchestrix::store::Snapshot;
use orchestrix::{
    repository::Repository,
    store::{EventStore, ExpectedVersion, SnapshotStore},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The counter's events.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    /// The counter went up.
    Added {
        /// By how much.
        by: u64,
    },
}

/// The counter's (never returned) error.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// A counter, snapshotted every 5 events.
#[aggregate(event = CounterEvent, error = Never, id = u64, snapshot_every = 5)]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    total: u64,
}

impl Counter {
    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Added { by } = event;
        self.total += by;
    }
}

/// Adds to the counter.
#[derive(Debug, Clone)]
pub struct Add {
    /// By how much.
    pub by: u64,
}

#[command_handler]
impl Counter {
    fn add(&self, cmd: Add) -> Result<CounterEvent, Never> {
        Ok(CounterEvent::Added { by: cmd.by })
    }
}

/// A snapshot planted at version 10 while the stream holds 3 events (a
/// restored backup): commands succeed, the state is the events', and the
/// snapshot taken at the next snapshot point is the one later loads use.
#[tokio::test]
async fn commands_succeed_over_a_snapshot_past_the_head() {
    let events = InMemoryEventStore::new();
    let snapshots = InMemorySnapshotStore::new();
    let app = Orchestrix::builder()
        .event_store(events.clone())
        .snapshot_store(snapshots.clone())
        .aggregate::<Counter>()
        .build()
        .unwrap();
    let id = 7_u64;
    let seed = [CounterEvent::Added { by: 1 }, CounterEvent::Added { by: 1 }, CounterEvent::Added { by: 1 }];
    app.repository::<Counter>().save(&id, ExpectedVersion::NoStream, &seed, &Metadata::default()).await.unwrap();
    let stream = Repository::<Counter>::stream_id(id).unwrap();
    let ghost = Snapshot::new(
        stream.clone(),
        10,
        1,
        RawValue::from_string(r#"{"total":1000}"#.to_owned()).unwrap(),
        Utc::now(),
    );
    snapshots.save(ghost).await.unwrap();

    // A second process (no cache) runs the next commands.
    let other = Orchestrix::builder()
        .event_store(events.clone())
        .snapshot_store(snapshots.clone())
        .aggregate::<Counter>()
        .build()
        .unwrap();
    let outcome = other.execute(id, Add { by: 1 }).await.unwrap();
    assert_eq!(outcome.version, 4);
    other.execute(id, Add { by: 1 }).await.unwrap();
    assert_eq!(events.stream_version(&stream).await.unwrap(), Some(5));
    let snapshot = snapshots.load(&stream, None).await.unwrap().expect("the snapshot of version 5");
    assert_eq!(snapshot.version, 5, "the fresh snapshot replaced the ghost");
    let loaded = other.load::<Counter>(&id).await.unwrap();
    assert_eq!((loaded.version, loaded.state.total, loaded.from_snapshot), (5, 5, Some(5)));
}
