//! The aggregates the command bus keeps between commands: least recently
//! used first out, with hit and miss counts.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::aggregate::Aggregate;
use crate::repository::Loaded;
use crate::telemetry;

pub(super) type CacheEntry<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// How the aggregate cache of one aggregate type has served commands since
/// the application was built ([`crate::app::Orchestrix::cache_stats`]).
///
/// The same counts go to the metrics recorder as
/// [`telemetry::AGGREGATE_CACHE_LOOKUPS_TOTAL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Command attempts that found the aggregate's state in the cache.
    pub hits: u64,
    /// Command attempts that did not: they loaded the aggregate (or, for a
    /// creating command, started from nothing).
    pub misses: u64,
    /// States dropped to make room for others.
    pub evictions: u64,
}

impl CacheStats {
    /// The share of attempts that were hits, or `None` before the first.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        #[allow(clippy::cast_precision_loss)] // a rate: 2^52 lookups are far away
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

/// Aggregates kept between commands, each behind an async lock so that
/// commands to one aggregate in this process take turns.
///
/// When full, the least recently used entry that no command holds is
/// evicted. An entry in use is never evicted (a second command to the same
/// aggregate must find the same lock), so while more commands than the
/// capacity are in flight the cache holds one entry per command.
pub(super) struct AggregateCache<A: Aggregate> {
    /// Least recently used first.
    entries: Mutex<Recency<A::Id, CacheEntry<A>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    /// The store's erasure generation the entries were read under.
    erasures: AtomicU64,
}

impl<A: Aggregate> AggregateCache<A> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Recency::default()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            erasures: AtomicU64::new(0),
        }
    }

    /// Erasure hook (ADR 0031): empties the cache if the store's erasure
    /// generation is not the one its entries were read under, and returns
    /// it. Commands that hold an entry finish on it; their appends of a
    /// forgotten subject's personal data are refused by the store.
    pub(super) fn sync_erasures(&self, generation: u64) -> u64 {
        if self.erasures.swap(generation, Ordering::AcqRel) != generation {
            self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        generation
    }

    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry of `id`, created empty if needed, now the most recently
    /// used. When the cache is full, least recently used entries that no
    /// command holds are evicted first.
    pub(super) fn entry(&self, id: &A::Id) -> CacheEntry<A> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.touch(id) {
            return Arc::clone(entry);
        }
        while entries.len() >= self.capacity.max(1) {
            let idle = entries.iter().find(|(_, entry)| Arc::strong_count(entry) == 1).map(|(id, _)| id.clone());
            let Some(idle) = idle else { break };
            entries.remove(&idle);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let entry = CacheEntry::<A>::default();
        entries.insert(id.clone(), Arc::clone(&entry));
        entry
    }

    /// Counts a command attempt that found (`hit`) or did not find the
    /// aggregate's state in its entry.
    pub(super) fn record(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        telemetry::aggregate_cache_lookup::<super::slot::Named<A>>(hit);
    }

    /// The counts so far.
    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// How many entries the cache holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A map that knows the order its keys were last used in: each value with
/// the tick of its last use, and the keys by tick (least recent first).
/// Touching, inserting and removing take a logarithmic time; nothing is
/// cloned.
struct Recency<K, V> {
    values: HashMap<K, (V, u64)>,
    by_use: BTreeMap<u64, K>,
    clock: u64,
}

impl<K, V> Default for Recency<K, V> {
    fn default() -> Self {
        Self { values: HashMap::new(), by_use: BTreeMap::new(), clock: 0 }
    }
}

impl<K: Clone + Eq + Hash, V> Recency<K, V> {
    /// The value of `key`, which becomes the most recently used.
    fn touch(&mut self, key: &K) -> Option<&V> {
        let (value, tick) = self.values.get_mut(key)?;
        self.clock += 1;
        let key = self.by_use.remove(tick).expect("every value's tick is in the order");
        *tick = self.clock;
        self.by_use.insert(self.clock, key);
        Some(value)
    }

    /// Inserts `key` (absent) as the most recently used.
    fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        if let Some((_, old)) = self.values.insert(key.clone(), (value, self.clock)) {
            self.by_use.remove(&old);
        }
        self.by_use.insert(self.clock, key);
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, tick)) = self.values.remove(key) {
            self.by_use.remove(&tick);
        }
    }

    /// The entries, least recently used first.
    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.by_use.values().map(|key| (key, &self.values[key].0))
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn clear(&mut self) {
        self.values.clear();
        self.by_use.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Counter;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Counted;

    impl crate::event::Event for Counted {
        fn event_types() -> &'static [crate::event::EventType] {
            &[]
        }
        fn event_type(&self) -> &'static str {
            "Counted"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn encode(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
            serde_json::value::to_raw_value(self)
        }
        fn decode(_: &str, _: u32, _: &serde_json::value::RawValue) -> Result<Self, crate::error::DecodeErrorKind> {
            Ok(Self)
        }
    }

    impl Aggregate for Counter {
        const NAME: &'static str = "Counter";
        type Id = u32;
        type Event = Counted;
        type Error = Never;
        fn apply(&mut self, _: &Counted) {}
    }

    fn ids(cache: &AggregateCache<Counter>) -> Vec<u32> {
        cache.entries.lock().unwrap().iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = AggregateCache::<Counter>::new(3);
        for id in [1, 2, 3] {
            drop(cache.entry(&id));
        }
        drop(cache.entry(&1)); // 1 is now the most recently used
        drop(cache.entry(&4)); // full: 2, the least recently used, goes
        assert_eq!(ids(&cache), [3, 1, 4]);
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn an_entry_in_use_is_never_evicted() {
        let cache = AggregateCache::<Counter>::new(2);
        let held = cache.entry(&1);
        drop(cache.entry(&2));
        drop(cache.entry(&3)); // 1 is the oldest but held: 2 goes
        assert_eq!(ids(&cache), [1, 3]);
        let also_held = cache.entry(&3);
        drop(cache.entry(&4)); // both others are held: the cache grows
        assert_eq!(cache.len(), 3);
        assert!(Arc::ptr_eq(&held, &cache.entry(&1)), "a held entry is still the aggregate's lock");
        drop((held, also_held));
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = AggregateCache::<Counter>::new(2);
        assert_eq!(cache.stats().hit_rate(), None);
        cache.record(false);
        cache.record(true);
        cache.record(true);
        cache.record(true);
        assert_eq!(cache.stats(), CacheStats { hits: 3, misses: 1, evictions: 0 });
        assert_eq!(cache.stats().hit_rate(), Some(0.75));
    }
}
