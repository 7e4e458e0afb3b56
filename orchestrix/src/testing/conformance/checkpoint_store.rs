//! Checks of [`CheckpointStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs.
//! [`super::checkpoint_store()`] runs them all.

use super::support::{expect_eq, ok, within};
use crate::store::CheckpointStore;

async fn load<S: CheckpointStore>(check: &str, store: &S, consumer: &str) -> Option<u64> {
    ok(check, "load", within(check, "load", store.load(consumer)).await)
}

async fn save<S: CheckpointStore>(check: &str, store: &S, consumer: &str, position: u64) {
    ok(check, "save", within(check, "save", store.save(consumer, position)).await);
}

/// A consumer that never saved has no checkpoint.
pub async fn missing_is_none<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::missing_is_none";
    expect_eq(CHECK, "checkpoint of an unknown consumer", &load(CHECK, &store, "never-saved").await, &None);
}

/// A save is read back, a later save overwrites it (even with a lower
/// position), and a delete forgets it.
pub async fn save_overwrite_delete<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::save_overwrite_delete";
    save(CHECK, &store, "projection", 0).await;
    expect_eq(CHECK, "checkpoint saved at 0", &load(CHECK, &store, "projection").await, &Some(0));
    save(CHECK, &store, "projection", 42).await;
    expect_eq(CHECK, "checkpoint after the first save", &load(CHECK, &store, "projection").await, &Some(42));
    save(CHECK, &store, "projection", u64::MAX).await;
    expect_eq(CHECK, "checkpoint at u64::MAX", &load(CHECK, &store, "projection").await, &Some(u64::MAX));
    save(CHECK, &store, "projection", 7).await;
    expect_eq(CHECK, "checkpoint after a lower save", &load(CHECK, &store, "projection").await, &Some(7));
    ok(CHECK, "delete", within(CHECK, "delete", store.delete("projection")).await);
    expect_eq(CHECK, "checkpoint after delete", &load(CHECK, &store, "projection").await, &None);
    ok(CHECK, "delete of an unknown consumer", within(CHECK, "delete", store.delete("never-saved")).await);
}

/// Many consumers, including ones with hostile or look-alike names, keep
/// independent checkpoints.
pub async fn consumers_are_independent<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::consumers_are_independent";
    let mut consumers: Vec<String> = (0..50).map(|i| format!("projection-{i}")).collect();
    consumers.extend(
        ["Projection-1", "projection-1 ", "'; DROP TABLE checkpoints; --", "ünïcødé 🦀", "a%", "a_"].map(String::from),
    );
    for (i, consumer) in consumers.iter().enumerate() {
        save(CHECK, &store, consumer, u64::try_from(i).expect("small") * 10).await;
    }
    ok(CHECK, "delete", within(CHECK, "delete", store.delete("projection-3")).await);
    for (i, consumer) in consumers.iter().enumerate() {
        let expected = (consumer != "projection-3").then(|| u64::try_from(i).expect("small") * 10);
        expect_eq(CHECK, &format!("checkpoint of {consumer:?}"), &load(CHECK, &store, consumer).await, &expected);
    }
}
