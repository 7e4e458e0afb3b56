//! The aggregates the command bus keeps between commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;
use crate::repository::Loaded;

pub(super) type CacheEntry<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// Aggregates kept between commands, each behind an async lock so that
/// commands to one aggregate in this process take turns.
pub(super) struct AggregateCache<A: Aggregate> {
    entries: Mutex<HashMap<A::Id, CacheEntry<A>>>,
    capacity: usize,
}

impl<A: Aggregate> AggregateCache<A> {
    pub(super) fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry of `id`, created empty if needed. When the cache is over
    /// capacity, entries that no command holds are evicted first.
    pub(super) fn entry(&self, id: &A::Id) -> CacheEntry<A> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(id) {
            return Arc::clone(entry);
        }
        if entries.len() >= self.capacity.max(1) {
            let target = self.capacity - self.capacity / 4;
            let mut excess = entries.len().saturating_sub(target);
            entries.retain(|_, entry| {
                if excess > 0 && Arc::strong_count(entry) == 1 {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        Arc::clone(entries.entry(id.clone()).or_default())
    }
}
