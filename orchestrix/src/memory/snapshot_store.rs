//! The in-memory [`SnapshotStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{Snapshot, SnapshotStore};
use crate::stream::StreamId;

/// A snapshot store held in memory: the reference behaviour of
/// [`SnapshotStore`].
///
/// Keeps every snapshot of every stream, ordered by version, so that
/// `load(stream, Some(version))` serves time travel. Saving at a version
/// that already has a snapshot replaces it. Cloning is cheap and every clone
/// shares the same snapshots; nothing is durable.
#[derive(Debug, Clone, Default)]
pub struct InMemorySnapshotStore {
    snapshots: Arc<RwLock<HashMap<StreamId, BTreeMap<u64, Snapshot>>>>,
}

impl InMemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.write().unwrap_or_else(PoisonError::into_inner);
        snapshots.entry(snapshot.stream.clone()).or_default().insert(snapshot.version, snapshot);
        Ok(())
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let snapshots = self.snapshots.read().unwrap_or_else(PoisonError::into_inner);
        let Some(versions) = snapshots.get(stream) else { return Ok(None) };
        let found = match at_or_before {
            None => versions.values().next_back(),
            Some(version) => versions.range(..=version).next_back().map(|(_, snapshot)| snapshot),
        };
        Ok(found.cloned())
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.snapshots.write().unwrap_or_else(PoisonError::into_inner).remove(stream);
        Ok(())
    }
}
