//! The tenant view of the snapshot, checkpoint, key-value, key and
//! dead-letter stores: namespaced streams and `<tenant>/` prefixed names.

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::{
    CheckpointStore, ConsumerControl, DeadLetter, DeadLetterStore, KeyStore, KeyValueStore, PauseAck, Snapshot,
    SnapshotStore,
};
use crate::stream::StreamId;

use super::TenantStore;

#[async_trait]
impl<S: SnapshotStore> SnapshotStore for TenantStore<S> {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let stream = self.inner_stream(&snapshot.stream)?;
        self.inner.save(Snapshot { stream, ..snapshot }).await
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let snapshot = self.inner.load(&self.inner_stream(stream)?, at_or_before).await?;
        Ok(snapshot.map(|snapshot| Snapshot { stream: stream.clone(), ..snapshot }))
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.inner.delete(&self.inner_stream(stream)?).await
    }
}

#[async_trait]
impl<S: CheckpointStore> CheckpointStore for TenantStore<S> {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.inner.load(&self.inner_key(consumer)).await
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save(&self.inner_key(consumer), position).await
    }

    async fn delete(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.inner_key(consumer)).await
    }

    async fn load_control(&self, consumer: &str) -> Result<Option<ConsumerControl>, StoreError> {
        self.inner.load_control(&self.inner_key(consumer)).await
    }

    async fn request_pause(&self, consumer: &str, pause: bool) -> Result<(), StoreError> {
        self.inner.request_pause(&self.inner_key(consumer), pause).await
    }

    async fn acknowledge_pause(&self, consumer: &str, ack: Option<PauseAck>) -> Result<bool, StoreError> {
        self.inner.acknowledge_pause(&self.inner_key(consumer), ack).await
    }
}

#[async_trait]
impl<S: KeyValueStore> KeyValueStore for TenantStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(&self.inner_key(key)).await
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        self.inner.put(&self.inner_key(key), value).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(&self.inner_key(key)).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.keys(&self.inner_key(prefix)).await?;
        Ok(keys.into_iter().filter_map(|key| key.strip_prefix(&*self.prefix).map(str::to_owned)).collect())
    }
}

/// Data subjects are per tenant: tenant A's subject `c-1` and tenant B's
/// `c-1` have different keys, and forgetting one keeps the other.
#[async_trait]
impl<S: KeyStore> KeyStore for TenantStore<S> {
    async fn key(&self, subject: &str) -> Result<Option<crate::personal::DataKey>, StoreError> {
        self.inner.key(&self.inner_key(subject)).await
    }

    async fn key_or_create(&self, subject: &str) -> Result<crate::personal::DataKey, StoreError> {
        self.inner.key_or_create(&self.inner_key(subject)).await
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.delete_key(&self.inner_key(subject)).await
    }

    async fn readmit(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.readmit(&self.inner_key(subject)).await
    }

    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.is_forgotten(&self.inner_key(subject)).await
    }

    /// The streams are kept as given (the tenant's own view of them) under
    /// the tenant's subject.
    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        self.inner.record_streams(&self.inner_key(subject), streams).await
    }

    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        self.inner.streams_of(&self.inner_key(subject)).await
    }

    /// The inner store's mark: another tenant's `forget` changes it too,
    /// which costs this tenant's caches a reload, never a stale read.
    async fn erasure_mark(&self) -> Result<u64, StoreError> {
        self.inner.erasure_mark().await
    }
}

#[async_trait]
impl<S: DeadLetterStore> DeadLetterStore for TenantStore<S> {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        // A letter of another tenant under the same id must not be replaced.
        if let Some(existing) = self.inner.get(letter.id).await? {
            if !existing.consumer.starts_with(&*self.prefix) {
                return Err(StoreError::InvalidInput(format!("dead letter {} belongs to another tenant", letter.id)));
            }
        }
        let consumer = self.inner_key(&letter.consumer);
        self.inner.park(DeadLetter { consumer, ..letter }).await
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let letters = match consumer {
            Some(consumer) => self.inner.list(Some(&self.inner_key(consumer))).await?,
            None => self.inner.list(None).await?,
        };
        Ok(letters.into_iter().filter_map(|letter| self.outer_letter(letter)).collect())
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.inner.get(id).await?.and_then(|letter| self.outer_letter(letter)))
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.inner.remove(id).await
    }
}

impl<S> TenantStore<S> {
    /// The view of an inner dead letter: `None` if it is not the tenant's.
    fn outer_letter(&self, letter: DeadLetter) -> Option<DeadLetter> {
        let consumer = letter.consumer.strip_prefix(&*self.prefix)?.to_owned();
        Some(DeadLetter { consumer, ..letter })
    }
}
