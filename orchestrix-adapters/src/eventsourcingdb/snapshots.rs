//! [`SnapshotStore`] on EventSourcingDB: snapshots are events on the
//! subject below the stream's (ADR 0012).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use orchestrix::store::{Snapshot, SnapshotStore};
use orchestrix::{StoreError, StreamId};
use serde_json::value::RawValue;

use super::store::{read_raw, EsdbStore};
use super::wire::{self, EventCandidate, FromLatestEvent, ReadEvents, ReadOptions, SnapshotData};

#[async_trait]
impl SnapshotStore for EsdbStore {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let subject = wire::snapshot_subject(&snapshot.stream);
        let data = SnapshotData {
            version: snapshot.version,
            schema_version: snapshot.schema_version,
            state: snapshot.state.get().to_owned(),
            taken_at: snapshot.taken_at,
        };
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| StoreError::InvalidInput(format!("cannot serialize the snapshot: {e}")))?;
        let candidate = EventCandidate {
            source: &self.inner.config.source,
            subject: &subject,
            event_type: self.inner.snapshot_type.clone(),
            data,
            traceparent: None,
            tracestate: None,
        };
        self.write(&self.write_body(vec![candidate], Vec::new())).await?;
        Ok(())
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let subject = wire::snapshot_subject(stream);
        let body = ReadEvents {
            subject: subject.clone(),
            options: ReadOptions {
                recursive: false,
                from_latest_event: Some(FromLatestEvent {
                    subject,
                    event_type: self.inner.snapshots_deleted_type.clone(),
                    if_event_is_missing: "read-everything",
                }),
                ..ReadOptions::default()
            },
        };
        let mut events = Box::pin(read_raw(Arc::clone(&self.inner), body));
        let mut best: Option<SnapshotData> = None;
        while let Some(event) = events.next().await {
            let event = event?;
            if event.event_type == self.inner.snapshots_deleted_type {
                best = None;
                continue;
            }
            if event.event_type != self.inner.snapshot_type {
                continue;
            }
            let data: SnapshotData = serde_json::from_str(event.data.get()).map_err(|e| StoreError::Corrupt {
                stream: stream.clone(),
                version: 0,
                reason: format!("snapshot event {}: {e}", event.id),
            })?;
            if at_or_before.is_some_and(|bound| data.version > bound) {
                continue;
            }
            if best.as_ref().is_none_or(|b| data.version >= b.version) {
                best = Some(data);
            }
        }
        let Some(data) = best else { return Ok(None) };
        let state = RawValue::from_string(data.state).map_err(|e| StoreError::Corrupt {
            stream: stream.clone(),
            version: data.version,
            reason: format!("snapshot state is not JSON: {e}"),
        })?;
        Ok(Some(Snapshot::new(stream.clone(), data.version, data.schema_version, state, data.taken_at)))
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        let subject = wire::snapshot_subject(stream);
        let data = RawValue::from_string("{}".to_owned()).map_err(|e| StoreError::backend(e.to_string()))?;
        let candidate = EventCandidate {
            source: &self.inner.config.source,
            subject: &subject,
            event_type: self.inner.snapshots_deleted_type.clone(),
            data,
            traceparent: None,
            tracestate: None,
        };
        self.write(&self.write_body(vec![candidate], Vec::new())).await?;
        Ok(())
    }
}
