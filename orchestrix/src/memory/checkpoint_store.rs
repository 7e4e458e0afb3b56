//! The in-memory [`CheckpointStore`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{CheckpointStore, ConsumerControl, PauseAck};

/// A checkpoint store held in memory: the reference behaviour of
/// [`CheckpointStore`].
///
/// A save replaces the consumer's checkpoint, whether the new position is
/// above or below the old one. Cloning is cheap and every clone shares the
/// same checkpoints; nothing is durable.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCheckpointStore {
    checkpoints: Arc<RwLock<HashMap<String, u64>>>,
    /// The consumers' control records (ADR 0050).
    controls: Arc<RwLock<HashMap<String, ConsumerControl>>>,
}

impl InMemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CheckpointStore for InMemoryCheckpointStore {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.checkpoints.read().unwrap_or_else(PoisonError::into_inner).get(consumer).copied())
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        let mut checkpoints = self.checkpoints.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = checkpoints.get_mut(consumer) {
            *current = position;
        } else {
            checkpoints.insert(consumer.to_owned(), position);
        }
        Ok(())
    }

    async fn delete(&self, consumer: &str) -> Result<(), StoreError> {
        self.checkpoints.write().unwrap_or_else(PoisonError::into_inner).remove(consumer);
        Ok(())
    }

    async fn load_control(&self, consumer: &str) -> Result<Option<ConsumerControl>, StoreError> {
        Ok(self.controls.read().unwrap_or_else(PoisonError::into_inner).get(consumer).cloned())
    }

    async fn request_pause(&self, consumer: &str, pause: bool) -> Result<(), StoreError> {
        let mut controls = self.controls.write().unwrap_or_else(PoisonError::into_inner);
        let control = controls.entry(consumer.to_owned()).or_insert_with(|| ConsumerControl::new(false, None));
        if control.pause_requested != pause {
            *control = ConsumerControl::new(pause, None);
        }
        Ok(())
    }

    async fn acknowledge_pause(&self, consumer: &str, ack: Option<PauseAck>) -> Result<bool, StoreError> {
        let mut controls = self.controls.write().unwrap_or_else(PoisonError::into_inner);
        match (controls.get_mut(consumer), ack) {
            (Some(control), Some(ack)) if control.pause_requested => {
                control.paused = Some(ack);
                Ok(true)
            }
            (_, Some(_)) => Ok(false),
            (Some(control), None) => {
                control.paused = None;
                Ok(true)
            }
            (None, None) => Ok(true),
        }
    }
}
