//! The in-memory [`KeyStore`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::crypto::DataKey;
use crate::error::StoreError;
use crate::store::KeyStore;

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
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct InMemoryKeyStore {
    keys: Arc<Mutex<HashMap<String, DataKey>>>,
}

impl InMemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DataKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryKeyStore").field("keys", &self.lock().len()).finish()
    }
}

#[async_trait]
impl KeyStore for InMemoryKeyStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        Ok(self.lock().get(subject).cloned())
    }

    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError> {
        Ok(self.lock().entry(subject.to_owned()).or_insert_with(DataKey::generate).clone())
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove(subject).is_some())
    }
}
