//! Shared and boxed stores are stores: `Arc<T>` and `Box<T>` implement
//! every port `T` does (`T = dyn Port` included), so the wrappers generic
//! over a port (tenant views, crypto-shredding) take a shared trait object
//! as they take a concrete store (ADR 0030).

use std::sync::Arc;

use orchestrix::crypto::CryptoStore;
use orchestrix::memory::{
    InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore, InMemoryKeyStore, InMemoryKeyValueStore,
    InMemoryMessageBus, InMemorySnapshotStore,
};
use orchestrix::store::{
    CheckpointStore, DeadLetterStore, EventStore, KeyStore, KeyValueStore, MessageBus, SnapshotStore,
};
use orchestrix::tenant::TenantStore;
use orchestrix::testing::conformance;

fn shared_events() -> Arc<dyn EventStore> {
    Arc::new(InMemoryEventStore::new())
}

/// The consistency-by-query checks that a store which is itself a tenant
/// view passes: all but `tenants_cannot_forge_tenant_tags`, which makes
/// views of its own over the store, and views do not nest (see
/// tests/tenants.rs).
async fn conditions_through_a_view<S: EventStore>(make: impl Fn() -> S) {
    use conformance::consistency_by_query as conditions;
    conditions::tags_round_trip_and_queries_select(make()).await;
    conditions::condition_passes_then_fails(make()).await;
    conditions::condition_and_expectations_are_atomic(make()).await;
    conditions::concurrent_conditions_have_one_winner(make()).await;
    conditions::no_write_skew_across_queries(make()).await;
    conditions::append_if_refuses_unreadable_payloads(make()).await;
}

/// Each port behind `Arc<dyn _>` passes the port's conformance suite; the
/// consistency-by-query checks fail if `append_if` (a default method the
/// in-memory store overrides) is not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_trait_objects_conform() {
    conformance::event_store(|| async { shared_events() }).await;
    conformance::consistency_by_query(|| async { shared_events() }).await;
    conformance::snapshot_store(|| async { Arc::new(InMemorySnapshotStore::new()) as Arc<dyn SnapshotStore> }).await;
    conformance::checkpoint_store(|| async { Arc::new(InMemoryCheckpointStore::new()) as Arc<dyn CheckpointStore> })
        .await;
    conformance::key_value_store(|| async { Arc::new(InMemoryKeyValueStore::new()) as Arc<dyn KeyValueStore> }).await;
    conformance::key_store(|| async { Arc::new(InMemoryKeyStore::new()) as Arc<dyn KeyStore> }).await;
    conformance::message_bus(|| async { Arc::new(InMemoryMessageBus::new()) as Arc<dyn MessageBus> }).await;
    conformance::dead_letter_store(|| async { Arc::new(InMemoryDeadLetterStore::new()) as Arc<dyn DeadLetterStore> })
        .await;
}

/// A boxed trait object is a store too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxed_trait_objects_conform() {
    conformance::consistency_by_query(|| async { Box::new(InMemoryEventStore::new()) as Box<dyn EventStore> }).await;
    conformance::key_value_store(|| async { Box::new(InMemoryKeyValueStore::new()) as Box<dyn KeyValueStore> }).await;
}

/// The case: a tenant view over `Arc<dyn EventStore>` used to
/// build, then fail to compile at its first method call. Now it is a store
/// that conforms, for every port a view implements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_views_over_shared_trait_objects_conform() {
    use conformance::event_store as checks;
    let view = |inner| TenantStore::new(inner, "acme").unwrap();
    // The event-store checks a view passes (see tests/tenants.rs: two
    // checks write other tenants' events on purpose, which a view refuses).
    checks::batch_is_atomic(view(shared_events())).await;
    checks::read_all_from_a_position_with_a_filter(view(shared_events())).await;
    checks::append_many_writes_every_stream(view(shared_events())).await;
    checks::subscribe_catches_up_then_follows_live(view(shared_events())).await;
    conditions_through_a_view(|| view(shared_events())).await;
    conformance::snapshot_store(|| async {
        TenantStore::new(Arc::new(InMemorySnapshotStore::new()) as Arc<dyn SnapshotStore>, "acme").unwrap()
    })
    .await;
    conformance::checkpoint_store(|| async {
        TenantStore::new(Arc::new(InMemoryCheckpointStore::new()) as Arc<dyn CheckpointStore>, "acme").unwrap()
    })
    .await;
    conformance::key_value_store(|| async {
        TenantStore::new(Arc::new(InMemoryKeyValueStore::new()) as Arc<dyn KeyValueStore>, "acme").unwrap()
    })
    .await;
    conformance::key_store(|| async {
        TenantStore::new(Arc::new(InMemoryKeyStore::new()) as Arc<dyn KeyStore>, "acme").unwrap()
    })
    .await;
    conformance::dead_letter_store(|| async {
        TenantStore::new(Arc::new(InMemoryDeadLetterStore::new()) as Arc<dyn DeadLetterStore>, "acme").unwrap()
    })
    .await;
}

/// Crypto-shredding over a shared event store and a shared key store, and
/// wrappers stacked on trait objects (a crypto store over a tenant view
/// over `Arc<dyn EventStore>`, itself shared again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_over_shared_trait_objects_conforms() {
    let keys: Arc<dyn KeyStore> = Arc::new(InMemoryKeyStore::new());
    conformance::event_store(|| async { CryptoStore::new(shared_events(), Arc::clone(&keys)) }).await;
    conditions_through_a_view(|| {
        let view = TenantStore::new(shared_events(), "acme").unwrap();
        Arc::new(CryptoStore::new(view, Arc::clone(&keys))) as Arc<dyn EventStore>
    })
    .await;
}
