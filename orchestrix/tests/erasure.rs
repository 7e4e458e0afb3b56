//! After `forget(subject)`, no path of the framework reads or re-persists
//! the subject's plaintext: on the in-memory stores, and on a tenant's
//! views of them beside another tenant with the same ids (ADR 0031). The
//! scenario (`support/erasure.rs`) also runs on SQLite and PostgreSQL in
//! `orchestrix-adapters`.
#![allow(missing_docs)]

#[path = "support/erasure.rs"]
mod erasure;

use std::sync::Arc;

use erasure::{forget_erases_every_copy, wire, Join, Mailing, Member, Stores, SECRETS};
use orchestrix::memory::{
    InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore, InMemoryKeyStore, InMemorySnapshotStore,
};
use orchestrix::{tenant::TenantStore, StreamId};

#[tokio::test]
async fn forget_erases_every_copy_in_memory() {
    forget_erases_every_copy(Stores {
        events: InMemoryEventStore::new(),
        keys: Arc::new(InMemoryKeyStore::new()),
        snapshots: Arc::new(InMemorySnapshotStore::new()),
        dead_letters: Arc::new(InMemoryDeadLetterStore::new()),
        checkpoints: Arc::new(InMemoryCheckpointStore::new()),
    })
    .await;
}

/// The crypto store over a tenant's views, as the docs compose them
/// (`CryptoStore::new(TenantStore::new(events, t)?, TenantStore::new(keys, t)?)`):
/// one tenant forgets its `m-1`; the other tenant's `m-1` keeps its data,
/// its snapshot and its key.
#[tokio::test]
async fn forgetting_in_one_tenant_keeps_the_other_tenants_subject() {
    let (events, keys) = (InMemoryEventStore::new(), InMemoryKeyStore::new());
    let (snapshots, dead_letters) = (InMemorySnapshotStore::new(), InMemoryDeadLetterStore::new());
    let checkpoints = InMemoryCheckpointStore::new();
    let tenant = |name: &str| Stores {
        events: TenantStore::new(events.clone(), name).unwrap(),
        keys: Arc::new(TenantStore::new(keys.clone(), name).unwrap()),
        snapshots: Arc::new(TenantStore::new(snapshots.clone(), name).unwrap()),
        dead_letters: Arc::new(TenantStore::new(dead_letters.clone(), name).unwrap()),
        checkpoints: Arc::new(TenantStore::new(checkpoints.clone(), name).unwrap()),
    };
    let globex = tenant("globex");
    let (_, globex_app) = wire(&globex, Arc::new(Mailing::default()));
    let id = "m-1".to_owned();
    let join = Join { member_id: id.clone(), email: SECRETS[0].into(), name: SECRETS[1].into() };
    globex_app.execute(id.clone(), join).await.unwrap();
    globex_app.execute(id.clone(), erasure::Remind).await.unwrap();

    forget_erases_every_copy(tenant("acme")).await;

    let kept = globex_app.load::<Member>(&id).await.unwrap();
    assert_eq!(format!("{:?}", kept.state).matches(SECRETS[0]).count(), 1, "{:?}", kept.state);
    let stream = StreamId::new("Member", "m-1").unwrap();
    assert!(globex.snapshots.load(&stream, None).await.unwrap().is_some(), "the other tenant's snapshot stays");
    assert!(!globex.keys.is_forgotten("m-1").await.unwrap());
}
