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
    expect_eq(CHECK, "key id read back", &read.as_ref().map(crate::personal::DataKey::id), &Some(first.id()));
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
/// reports nothing deleted, another subject's key stays, and the deleted
/// subject gets no new key (it is forgotten) until it is re-admitted, and
/// then a different one, made by `readmit` itself.
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
    expect(CHECK, ok(CHECK, "readmit", store.readmit(&a).await), format_args!("readmit found no forgotten subject"));
    let new = ok(CHECK, "key_or_create after readmit", store.key_or_create(&a).await);
    expect(CHECK, new.id() != first.id(), format_args!("a deleted key came back"));
    expect(CHECK, new.material() != first.material(), format_args!("deleted key material came back"));
}

/// A forgotten subject (even one that never had a key) gets no key:
/// `key_or_create` is [`StoreError::SubjectForgotten`](crate::error::StoreError::SubjectForgotten)
/// and creates nothing; `is_forgotten` says so; another subject is not
/// affected; `readmit` lifts it once (a second `readmit` finds nothing);
/// the erasure mark changes with the forget and with the readmit.
pub async fn forgotten_until_readmitted<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::forgotten_until_readmitted";
    let (a, b) = (subject(), subject());
    let mark = ok(CHECK, "erasure_mark", store.erasure_mark().await);
    expect(
        CHECK,
        !ok(CHECK, "is_forgotten of a new subject", store.is_forgotten(&a).await),
        format_args!("new subject forgotten"),
    );
    expect(
        CHECK,
        !ok(CHECK, "delete_key without a key", store.delete_key(&a).await),
        format_args!("deleted a key that never was"),
    );
    expect(
        CHECK,
        ok(CHECK, "is_forgotten", store.is_forgotten(&a).await),
        format_args!("the subject is not forgotten"),
    );
    let forgotten_mark = ok(CHECK, "erasure_mark after a forget", store.erasure_mark().await);
    expect(CHECK, forgotten_mark != mark, format_args!("a forget left the erasure mark at {mark}"));
    for attempt in 0..2 {
        match store.key_or_create(&a).await {
            Err(crate::error::StoreError::SubjectForgotten { .. }) => {}
            other => expect(CHECK, false, format_args!("key_or_create #{attempt} of a forgotten subject: {other:?}")),
        }
    }
    expect(
        CHECK,
        ok(CHECK, "key after a refused create", store.key(&a).await).is_none(),
        format_args!("a refused create left a key"),
    );
    ok(CHECK, "key_or_create of another subject", store.key_or_create(&b).await);
    expect(
        CHECK,
        !ok(CHECK, "is_forgotten of another subject", store.is_forgotten(&b).await),
        format_args!("forgetting spread"),
    );
    expect(CHECK, ok(CHECK, "readmit", store.readmit(&a).await), format_args!("readmit found nothing"));
    let readmitted_mark = ok(CHECK, "erasure_mark after readmit", store.erasure_mark().await);
    expect(CHECK, readmitted_mark != forgotten_mark, format_args!("a readmit left the erasure mark unchanged"));
    expect(CHECK, !ok(CHECK, "second readmit", store.readmit(&a).await), format_args!("readmitted twice"));
    expect(
        CHECK,
        !ok(CHECK, "is_forgotten after readmit", store.is_forgotten(&a).await),
        format_args!("still forgotten"),
    );
    // The new key exists at once (ADR 0051): a subject without a key that
    // is not forgotten is one whose key was lost, never a re-admitted one.
    let made = ok(CHECK, "key right after readmit", store.key(&a).await).map(|k| k.id());
    expect(CHECK, made.is_some(), format_args!("readmit made no new key"));
    let key = ok(CHECK, "key_or_create after readmit", store.key_or_create(&a).await);
    expect_eq(CHECK, "key_or_create after readmit", &Some(key.id()), &made);
    expect_eq(CHECK, "key after readmit", &ok(CHECK, "key", store.key(&a).await).map(|k| k.id()), &Some(key.id()));
}

/// `readmit` of a subject that is not forgotten changes nothing: it
/// returns `false`, the subject keeps its key (data sealed with it stays
/// readable) and the erasure mark does not move; a subject never seen
/// gets no key from it.
pub async fn readmit_keeps_a_live_key<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::readmit_keeps_a_live_key";
    let (a, b) = (subject(), subject());
    let key = ok(CHECK, "key_or_create", store.key_or_create(&a).await);
    let mark = ok(CHECK, "erasure_mark", store.erasure_mark().await);
    expect(
        CHECK,
        !ok(CHECK, "readmit of a live subject", store.readmit(&a).await),
        format_args!("readmitted a live subject"),
    );
    let kept = ok(CHECK, "key after readmit of a live subject", store.key(&a).await).map(|k| k.id());
    expect_eq(CHECK, "the live subject's key after readmit", &kept, &Some(key.id()));
    expect_eq(
        CHECK,
        "erasure_mark after a readmit that did nothing",
        &ok(CHECK, "erasure_mark", store.erasure_mark().await),
        &mark,
    );
    expect(
        CHECK,
        !ok(CHECK, "readmit of an unknown subject", store.readmit(&b).await),
        format_args!("readmitted a stranger"),
    );
    expect(
        CHECK,
        ok(CHECK, "key of an unknown subject", store.key(&b).await).is_none(),
        format_args!("readmit made a key for a stranger"),
    );
}

/// Streams recorded for a subject come back sorted and without
/// duplicates, survive forgetting the subject, and are the subject's own.
pub async fn streams_per_subject<S: KeyStore>(store: S) {
    const CHECK: &str = "key_store::streams_per_subject";
    let (a, b) = (subject(), subject());
    let stream = |category: &str, id: &str| crate::stream::StreamId::new(category, id).expect("a valid stream id");
    let none = ok(CHECK, "streams_of a new subject", store.streams_of(&a).await);
    expect(CHECK, none.is_empty(), format_args!("a new subject has streams: {none:?}"));
    ok(
        CHECK,
        "record_streams",
        store.record_streams(&a, &[stream("Invoice", "inv-1"), stream("Customer", "c-1")]).await,
    );
    ok(CHECK, "record_streams again", store.record_streams(&a, &[stream("Customer", "c-1")]).await);
    ok(CHECK, "record_streams of nothing", store.record_streams(&a, &[]).await);
    ok(CHECK, "record_streams of another subject", store.record_streams(&b, &[stream("Customer", "c-2")]).await);
    let expected = vec![stream("Customer", "c-1"), stream("Invoice", "inv-1")];
    expect_eq(CHECK, "streams_of", &ok(CHECK, "streams_of", store.streams_of(&a).await), &expected);
    ok(CHECK, "delete_key", store.delete_key(&a).await);
    expect_eq(CHECK, "streams_of after forgetting", &ok(CHECK, "streams_of", store.streams_of(&a).await), &expected);
    expect_eq(
        CHECK,
        "streams_of another subject",
        &ok(CHECK, "streams_of", store.streams_of(&b).await),
        &vec![stream("Customer", "c-2")],
    );
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
