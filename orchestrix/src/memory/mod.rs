//! In-memory adapters: the reference behaviour of every port.
//!
//! Each adapter here implements one of the ports of [`crate::store`] as
//! simply and strictly as the port's contract allows; where a port's
//! documentation leaves room, the behaviour of these adapters is the
//! answer, and the conformance suite (`orchestrix::testing::conformance`,
//! with the `testing` feature) checks every other adapter against it.
//!
//! They are fast (the event store is the ceiling the benchmarks measure
//! other adapters against), cheap to clone (an `Arc` inside, every clone
//! shares the same data) and **not durable**: everything is lost when the
//! last clone is dropped. Use them in tests, examples and single-process
//! programs that can afford to forget.
//!
//! [`InMemoryStores`] bundles one of each.

mod checkpoint_store;
mod dead_letter_store;
mod event_store;
mod key_store;
mod key_value_store;
mod message_bus;
mod snapshot_store;

pub use checkpoint_store::InMemoryCheckpointStore;
pub use dead_letter_store::InMemoryDeadLetterStore;
pub use event_store::InMemoryEventStore;
pub use key_store::InMemoryKeyStore;
pub use key_value_store::InMemoryKeyValueStore;
pub use message_bus::InMemoryMessageBus;
pub use snapshot_store::InMemorySnapshotStore;

pub use crate::lease::InMemoryLeases;

/// One in-memory adapter for every port, each empty.
///
/// Cloning clones the handles: the clone shares every store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InMemoryStores {
    /// The event log.
    pub events: InMemoryEventStore,
    /// Aggregate snapshots.
    pub snapshots: InMemorySnapshotStore,
    /// Consumer checkpoints.
    pub checkpoints: InMemoryCheckpointStore,
    /// Key-value entries.
    pub key_values: InMemoryKeyValueStore,
    /// The message bus.
    pub bus: InMemoryMessageBus,
    /// Parked dead letters.
    pub dead_letters: InMemoryDeadLetterStore,
}

impl InMemoryStores {
    /// A fresh, empty set of stores.
    pub fn new() -> Self {
        Self::default()
    }
}
