//! The in-memory [`KeyValueStore`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreError;
use crate::store::KeyValueStore;

/// A key-value store held in memory: the reference behaviour of
/// [`KeyValueStore`].
///
/// Keys are kept sorted (byte-wise, as `str` orders), so `keys(prefix)` is a
/// range scan. Values are [`Bytes`], so reads share the stored buffer.
/// Cloning is cheap and every clone shares the same map; nothing is durable.
#[derive(Debug, Clone, Default)]
pub struct InMemoryKeyValueStore {
    entries: Arc<RwLock<BTreeMap<String, Bytes>>>,
}

impl InMemoryKeyValueStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl KeyValueStore for InMemoryKeyValueStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.entries.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = entries.get_mut(key) {
            *current = value;
        } else {
            entries.insert(key.to_owned(), value);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(key).is_some())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        Ok(entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }
}
