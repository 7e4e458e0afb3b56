//! The in-memory [`KeyStore`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::personal::DataKey;
use crate::store::KeyStore;
use crate::stream::StreamId;

/// Data subjects' keys held in memory (see [`crate::crypto`]).
///
/// Cloning is cheap and clones share the keys. `Debug` shows how many keys
/// it holds, never a key.
///
/// ```
/// use orchestrix::memory::InMemoryKeyStore;
/// use orchestrix::store::KeyStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrix::StoreError> {
/// let keys = InMemoryKeyStore::new();
/// let key = keys.key_or_create("customer-1").await?;
/// assert_eq!(keys.key("customer-1").await?.map(|k| k.id()), Some(key.id()));
/// assert!(keys.delete_key("customer-1").await?);
/// assert!(keys.key("customer-1").await?.is_none());
/// // A forgotten subject gets no new key until it is re-admitted.
/// assert!(matches!(keys.key_or_create("customer-1").await, Err(orchestrix::StoreError::SubjectForgotten { .. })));
/// assert!(keys.readmit("customer-1").await?);
/// assert_ne!(keys.key_or_create("customer-1").await?.id(), key.id());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct InMemoryKeyStore {
    state: Arc<Mutex<State>>,
}

/// Everything behind the lock: keys, forgotten subjects, and each
/// subject's streams.
#[derive(Default)]
struct State {
    keys: HashMap<String, DataKey>,
    forgotten: HashSet<String>,
    /// Counts forgets and re-admissions.
    mark: u64,
    streams: HashMap<String, BTreeSet<StreamId>>,
}

impl InMemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryKeyStore").field("keys", &self.lock().keys.len()).finish()
    }
}

#[async_trait]
impl KeyStore for InMemoryKeyStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        Ok(self.lock().keys.get(subject).cloned())
    }

    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError> {
        let mut keys = self.lock();
        if keys.forgotten.contains(subject) {
            return Err(StoreError::SubjectForgotten { subject: subject.to_owned() });
        }
        Ok(keys.keys.entry(subject.to_owned()).or_insert_with(DataKey::generate).clone())
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        let mut keys = self.lock();
        if keys.forgotten.insert(subject.to_owned()) {
            keys.mark += 1;
        }
        Ok(keys.keys.remove(subject).is_some())
    }

    async fn readmit(&self, subject: &str) -> Result<bool, StoreError> {
        let mut keys = self.lock();
        let readmitted = keys.forgotten.remove(subject);
        if readmitted {
            keys.mark += 1;
            // The new key at once (ADR 0051): no key and not forgotten
            // then means a lost key, never a re-admission.
            keys.keys.insert(subject.to_owned(), DataKey::generate());
        }
        Ok(readmitted)
    }

    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError> {
        Ok(self.lock().forgotten.contains(subject))
    }

    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        self.lock().streams.entry(subject.to_owned()).or_default().extend(streams.iter().cloned());
        Ok(())
    }

    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        Ok(self.lock().streams.get(subject).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn erasure_mark(&self) -> Result<u64, StoreError> {
        Ok(self.lock().mark)
    }
}
