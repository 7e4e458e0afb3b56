//! The conformance suite run against the in-memory adapters, which define
//! the reference behaviour: one test per check.

use orchestrix::memory::{
    InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore, InMemoryKeyStore, InMemoryKeyValueStore,
    InMemoryMessageBus, InMemorySnapshotStore,
};

orchestrix::conformance_tests!(event_store, InMemoryEventStore::new());
orchestrix::conformance_tests!(consistency_by_query, InMemoryEventStore::new());
orchestrix::conformance_tests!(snapshot_store, InMemorySnapshotStore::new());
orchestrix::conformance_tests!(retag, InMemoryEventStore::new());
orchestrix::conformance_tests!(snapshot_trust, (InMemoryEventStore::new(), InMemorySnapshotStore::new()));
orchestrix::conformance_tests!(checkpoint_store, InMemoryCheckpointStore::new());
orchestrix::conformance_tests!(key_value_store, InMemoryKeyValueStore::new());
orchestrix::conformance_tests!(key_store, InMemoryKeyStore::new());
orchestrix::conformance_tests!(message_bus, InMemoryMessageBus::new());
orchestrix::conformance_tests!(dead_letter_store, InMemoryDeadLetterStore::new());

/// The runner functions run the same checks from a single test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_run_every_check() {
    use orchestrix::testing::conformance;

    conformance::event_store(|| async { InMemoryEventStore::new() }).await;
    conformance::consistency_by_query(|| async { InMemoryEventStore::new() }).await;
    conformance::snapshot_store(|| async { InMemorySnapshotStore::new() }).await;
    conformance::retag(|| async { InMemoryEventStore::new() }).await;
    conformance::snapshot_trust(|| async { (InMemoryEventStore::new(), InMemorySnapshotStore::new()) }).await;
    conformance::checkpoint_store(|| async { InMemoryCheckpointStore::new() }).await;
    conformance::key_value_store(|| async { InMemoryKeyValueStore::new() }).await;
    conformance::key_store(|| async { InMemoryKeyStore::new() }).await;
    conformance::message_bus(|| async { InMemoryMessageBus::new() }).await;
    conformance::dead_letter_store(|| async { InMemoryDeadLetterStore::new() }).await;
}
