//! Snapshots: the stored type, the port, and the read of a snapshot with
//! the events after it ([`EventStore::read_from_snapshot`], ADR 0054).

use std::any::Any;
use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{EventStore, EventStream};
use crate::error::StoreError;
use crate::stream::StreamId;

/// A stored snapshot: an aggregate's state at one version of its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: u64,
    /// The schema version of `state`; a snapshot whose schema version is
    /// not the code's is ignored and rebuilt.
    pub schema_version: u32,
    /// The serialized state.
    pub state: Box<RawValue>,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
}

impl Snapshot {
    /// The serialized `state` of `stream`'s aggregate at stream `version`,
    /// written with `schema_version` of the state, taken at `taken_at`.
    pub fn new(
        stream: StreamId,
        version: u64,
        schema_version: u32,
        state: Box<RawValue>,
        taken_at: DateTime<Utc>,
    ) -> Self {
        Self { stream, version, schema_version, state, taken_at }
    }
}

/// Where aggregate snapshots are kept.
///
/// `Any` is a supertrait so that an event store can recognise a snapshot
/// store that keeps its snapshots beside its own events (a clone of
/// itself) and read both in one query
/// ([`EventStore::read_from_snapshot`]); every `'static` type is `Any`,
/// so implementations need nothing for it.
#[async_trait]
pub trait SnapshotStore: Any + Send + Sync + Debug + 'static {
    /// Stores a snapshot, replacing one at the same stream and version.
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// The latest snapshot of `stream`, or with `at_or_before`, the latest
    /// one whose version is not above it.
    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError>;

    /// Deletes every snapshot of `stream`.
    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError>;
}

/// What [`EventStore::read_from_snapshot`] answers: the snapshot found
/// (as stored, not yet checked), and the stream's events from that
/// snapshot's own version on (from version 1 when there is none).
pub type SnapshotAndTail<'a> = (Option<Snapshot>, EventStream<'a>);

/// [`EventStore::read_from_snapshot`] in two calls: `snapshots.load`, then
/// `events.read_stream` from the snapshot's version (from 1 without a
/// snapshot, or with one at version 0). What the method's default does,
/// and what an override falls back to for a snapshot store it cannot read
/// together with its events.
pub async fn snapshot_then_tail<'a, E: EventStore + ?Sized>(
    events: &'a E,
    stream: &'a StreamId,
    at_or_before: Option<u64>,
    snapshots: &'a dyn SnapshotStore,
) -> Result<SnapshotAndTail<'a>, StoreError> {
    let snapshot = snapshots.load(stream, at_or_before).await?;
    let from = snapshot.as_ref().map_or(1, |snapshot| snapshot.version.max(1));
    Ok((snapshot, events.read_stream(stream, from)))
}
