//! Checks of [`KeyStore`] implementations.

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use super::support::{expect, expect_eq, ok, within};
use crate::store::KeyStore;

fn subject() -> String {
    format!("subject-{}", Uuid::now_v7())
}

/// A missing subject has no key; `key_or_create` makes one, returns the
/// same one again, and `key` returns it; subjects have keys of their own.
pub async fn create_once_and_read<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::create_once_and_read";
    let (a, b) = (subject(), subject());
    let missing = ok(CHECK, "key of a missing subject", within(CHECK, "key", store.key(&a)).await);
    expect(CHECK, missing.is_none(), format_args!("a subject without a key has one: {missing:?}"));
    let first = ok(CHECK, "key_or_create", within(CHECK, "key_or_create", store.key_or_create(&a)).await);
    let again = ok(CHECK, "key_or_create again", within(CHECK, "key_or_create", store.key_or_create(&a)).await);
    expect_eq(CHECK, "key id of a second key_or_create", &again.id(), &first.id());
    expect_eq(CHECK, "key material of a second key_or_create", again.material(), first.material());
    let read = ok(CHECK, "key", within(CHECK, "key", store.key(&a)).await);
    expect_eq(CHECK, "key id read back", &read.as_ref().map(crate::crypto::DataKey::id), &Some(first.id()));
    expect_eq(CHECK, "key material read back", &read.as_ref().map(|k| *k.material()), &Some(*first.material()));
    let other = ok(CHECK, "key_or_create of another subject", store.key_or_create(&b).await);
    expect(CHECK, other.id() != first.id(), format_args!("two subjects share key {}", first.id()));
    expect(CHECK, other.material() != first.material(), format_args!("two subjects share key material"));
    let hostile = "'; DROP TABLE keys; -- 🦀 ünï";
    let key = ok(CHECK, "key_or_create of a hostile subject", store.key_or_create(hostile).await);
    let read = ok(CHECK, "key of a hostile subject", store.key(hostile).await);
    expect_eq(CHECK, "key of a hostile subject", &read.map(|k| k.id()), &Some(key.id()));
}

/// Deleting a key removes it for good: `key` finds none, a second delete
/// reports nothing deleted, another subject's key stays, and a later
/// `key_or_create` makes a different key.
pub async fn delete_is_final<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::delete_is_final";
    let (a, b) = (subject(), subject());
    let first = ok(CHECK, "key_or_create", store.key_or_create(&a).await);
    let kept = ok(CHECK, "key_or_create of another subject", store.key_or_create(&b).await);
    expect(CHECK, ok(CHECK, "delete_key", store.delete_key(&a).await), format_args!("delete_key found no key"));
    expect(CHECK, ok(CHECK, "key after delete", store.key(&a).await).is_none(), format_args!("the key survived"));
    expect(CHECK, !ok(CHECK, "second delete_key", store.delete_key(&a).await), format_args!("deleted twice"));
    let other = ok(CHECK, "key of the other subject", store.key(&b).await);
    expect_eq(CHECK, "the other subject's key", &other.map(|k| k.id()), &Some(kept.id()));
    let new = ok(CHECK, "key_or_create after delete", store.key_or_create(&a).await);
    expect(CHECK, new.id() != first.id(), format_args!("a deleted key came back"));
    expect(CHECK, new.material() != first.material(), format_args!("deleted key material came back"));
}

/// Eight tasks call `key_or_create` for one subject at once: all get the
/// same key.
pub async fn concurrent_creates_agree<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::concurrent_creates_agree";
    let store = Arc::new(store);
    let subject = subject();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, subject, barrier) = (Arc::clone(&store), subject.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.key_or_create(&subject).await.map(|key| key.id())
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(ok(CHECK, "a racing key_or_create", within(CHECK, "a task", task).await.expect("task panicked")));
    }
    expect_eq(CHECK, "distinct keys handed out for one subject", &ids.len(), &1);
}
