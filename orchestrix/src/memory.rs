//! TEMP stub (not committed)
#![allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all)]
use crate::store::*;
use crate::*;
use std::sync::Arc;
#[derive(Debug, Default, Clone)]
pub struct InMemoryEventStore;
impl InMemoryEventStore {
    pub fn new() -> Self {
        Self
    }
}
#[derive(Debug, Default, Clone)]
pub struct InMemorySnapshotStore;
impl InMemorySnapshotStore {
    pub fn new() -> Self {
        Self
    }
}
#[async_trait::async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        _: &StreamId,
        _: ExpectedVersion,
        _: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        unimplemented!()
    }
    fn read_stream<'a>(&'a self, _: &'a StreamId, _: u64) -> EventStream<'a> {
        unimplemented!()
    }
    fn read_all<'a>(&'a self, _: u64, _: &'a EventFilter) -> EventStream<'a> {
        unimplemented!()
    }
    fn subscribe(&self, _: u64, _: EventFilter) -> EventStream<'static> {
        unimplemented!()
    }
    async fn stream_version(&self, _: &StreamId) -> Result<Option<u64>, StoreError> {
        unimplemented!()
    }
    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        unimplemented!()
    }
}
#[async_trait::async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    async fn save(&self, _: Snapshot) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn load(&self, _: &StreamId, _: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        unimplemented!()
    }
    async fn delete(&self, _: &StreamId) -> Result<(), StoreError> {
        unimplemented!()
    }
}
