//! The in-memory [`DeadLetterStore`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::{DeadLetter, DeadLetterStore};

/// A dead-letter store held in memory: the reference behaviour of
/// [`DeadLetterStore`].
///
/// `list` returns letters by `parked_at`, oldest first; letters parked at
/// the same instant keep the order they were first parked in. Parking a
/// letter with an id that is already parked replaces it. Cloning is cheap
/// and every clone shares the same letters; nothing is durable.
#[derive(Debug, Clone, Default)]
pub struct InMemoryDeadLetterStore {
    inner: Arc<RwLock<Letters>>,
}

#[derive(Debug, Default)]
struct Letters {
    /// Each letter with the sequence number of its first parking.
    by_id: HashMap<Uuid, (u64, DeadLetter)>,
    next_sequence: u64,
}

impl InMemoryDeadLetterStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DeadLetterStore for InMemoryDeadLetterStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = inner.by_id.get_mut(&letter.id) {
            slot.1 = letter;
        } else {
            let sequence = inner.next_sequence;
            inner.next_sequence += 1;
            inner.by_id.insert(letter.id, (sequence, letter));
        }
        Ok(())
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut letters: Vec<&(u64, DeadLetter)> = inner
            .by_id
            .values()
            .filter(|(_, letter)| consumer.is_none_or(|consumer| letter.consumer == consumer))
            .collect();
        letters.sort_by_key(|(sequence, letter)| (letter.parked_at, *sequence));
        Ok(letters.into_iter().map(|(_, letter)| letter.clone()).collect())
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.inner.read().unwrap_or_else(PoisonError::into_inner).by_id.get(&id).map(|(_, letter)| letter.clone()))
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.inner.write().unwrap_or_else(PoisonError::into_inner).by_id.remove(&id).is_some())
    }
}
