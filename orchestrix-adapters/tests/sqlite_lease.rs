//! SQLite leases (ADR 0032): one holder per name across store instances
//! on one file, kept while checked, taken over only after expiry, and a
//! holder that was taken over is fenced off.
#![cfg(feature = "sqlite")]

use std::path::Path;
use std::time::Duration;

use orchestrix::lease::{Lease, Leases};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

async fn open(path: &Path, ttl: Duration) -> SqliteStore {
    SqliteStore::open(path, SqliteConfig::default().with_lease_ttl(ttl)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_across_instances_and_a_released_lease_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let (a, b) = (open(&path, Duration::from_secs(10)).await, open(&path, Duration::from_secs(10)).await);
    let mut held = a.try_lease("saga:Transfer").await.unwrap().expect("free");
    assert_eq!(held.token(), 1);
    assert!(b.try_lease("saga:Transfer").await.unwrap().is_none(), "held by the other instance");
    assert!(a.try_lease("saga:Transfer").await.unwrap().is_none(), "held, even for the same instance");
    assert!(b.try_lease("saga:Other").await.unwrap().is_some(), "another name is another lease");
    held.check().await.unwrap();
    Box::new(held).release().await.unwrap();
    let next = b.try_acquire("saga:Transfer").await.unwrap().expect("released");
    drop(next);
    // Dropping releases in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.try_lease("saga:Transfer").await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "a dropped lease stays held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_lease_is_kept_and_an_expired_one_is_taken_over_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let ttl = Duration::from_secs(1);
    let (a, b) = (open(&path, ttl).await, open(&path, ttl).await);
    let mut first = a.try_lease("projection:x").await.unwrap().expect("free");
    // Checked more often than its time to live, it stays held.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.check().await.unwrap();
        assert!(b.try_lease("projection:x").await.unwrap().is_none());
    }
    // Not checked for longer than its time to live: taken over, with a
    // larger fencing token.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut second = b.try_lease("projection:x").await.unwrap().expect("expired");
    assert_eq!(second.token(), first.token() + 1);
    let fenced = first.check().await;
    assert!(fenced.is_err(), "the stale holder must learn it lost the lease: {fenced:?}");
    // The stale holder's release leaves the new holder's lease alone.
    Box::new(first).release().await.unwrap();
    second.check().await.unwrap();
    assert!(a.try_lease("projection:x").await.unwrap().is_none());
}

#[tokio::test]
async fn lease_names_are_validated() {
    let store = SqliteStore::in_memory().await.unwrap();
    let long = "x".repeat(100_000);
    assert!(matches!(store.try_lease(&long).await, Err(orchestrix::StoreError::InvalidInput(_))));
}
