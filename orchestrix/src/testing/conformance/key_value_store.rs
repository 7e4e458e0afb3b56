//! Checks of [`KeyValueStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs.
//! [`super::key_value_store()`] runs them all.

use bytes::Bytes;

use super::support::{expect_eq, ok, within};
use crate::store::KeyValueStore;

async fn get<S: KeyValueStore>(check: &str, store: &S, key: &str) -> Option<Bytes> {
    ok(check, "get", within(check, "get", store.get(key)).await)
}

async fn put<S: KeyValueStore>(check: &str, store: &S, key: &str, value: impl Into<Bytes>) {
    ok(check, "put", within(check, "put", store.put(key, value.into())).await);
}

async fn delete<S: KeyValueStore>(check: &str, store: &S, key: &str) -> bool {
    ok(check, "delete", within(check, "delete", store.delete(key)).await)
}

async fn keys<S: KeyValueStore>(check: &str, store: &S, prefix: &str) -> Vec<String> {
    ok(check, "keys", within(check, "keys", store.keys(prefix)).await)
}

/// Get of a missing key is `None`; put, overwrite and delete behave, and
/// delete says whether the key existed.
pub async fn get_put_overwrite_delete<S: KeyValueStore>(store: S) {
    const CHECK: &str = "key_value_store::get_put_overwrite_delete";
    expect_eq(CHECK, "value of a missing key", &get(CHECK, &store, "account:1").await, &None);
    put(CHECK, &store, "account:1", "first").await;
    expect_eq(CHECK, "value after put", &get(CHECK, &store, "account:1").await, &Some(Bytes::from("first")));
    put(CHECK, &store, "account:1", "second").await;
    expect_eq(CHECK, "value after overwrite", &get(CHECK, &store, "account:1").await, &Some(Bytes::from("second")));
    expect_eq(CHECK, "delete of an existing key", &delete(CHECK, &store, "account:1").await, &true);
    expect_eq(CHECK, "value after delete", &get(CHECK, &store, "account:1").await, &None);
    expect_eq(CHECK, "delete of a missing key", &delete(CHECK, &store, "account:1").await, &false);
}

/// `keys(prefix)` returns exactly the keys starting with the prefix, sorted
/// byte-wise; SQL wildcards and unicode in keys are plain characters.
pub async fn keys_by_prefix_sorted<S: KeyValueStore>(store: S) {
    const CHECK: &str = "key_value_store::keys_by_prefix_sorted";
    let all = [
        "order:2",
        "order:10",
        "order:1",
        "orders",
        "order",
        "Order:1",
        "order:_x",
        "order%",
        "order:%",
        "order:é",
        "order:🦀",
        "order:'; --",
        "other:1",
    ];
    for key in all {
        put(CHECK, &store, key, key.as_bytes().to_vec()).await;
    }
    let mut expected: Vec<String> = all.iter().filter(|k| k.starts_with("order:")).map(|k| (*k).to_owned()).collect();
    expected.sort();
    expect_eq(CHECK, "keys with prefix `order:`", &keys(CHECK, &store, "order:").await, &expected);
    expect_eq(CHECK, "keys with prefix `order%`", &keys(CHECK, &store, "order%").await, &vec!["order%".to_owned()]);
    expect_eq(CHECK, "keys with prefix `order:_`", &keys(CHECK, &store, "order:_").await, &vec!["order:_x".to_owned()]);
    expect_eq(CHECK, "keys with prefix `nothing`", &keys(CHECK, &store, "nothing").await, &Vec::<String>::new());
    let mut everything: Vec<String> = all.iter().map(|k| (*k).to_owned()).collect();
    everything.sort();
    expect_eq(CHECK, "keys with the empty prefix", &keys(CHECK, &store, "").await, &everything);
    for key in all {
        expect_eq(
            CHECK,
            &format!("value of {key:?}"),
            &get(CHECK, &store, key).await,
            &Some(Bytes::from(key.as_bytes().to_vec())),
        );
    }
}

/// Values are bytes: every byte value, an empty value (which is not a
/// missing one) and a 1 MiB value round-trip.
pub async fn binary_values<S: KeyValueStore>(store: S) {
    const CHECK: &str = "key_value_store::binary_values";
    let every_byte: Vec<u8> = (0..=255).collect();
    let large: Vec<u8> = (0..1024 * 1024).map(|i: u32| u8::try_from(i % 251).expect("below 256")).collect();
    put(CHECK, &store, "bytes", every_byte.clone()).await;
    put(CHECK, &store, "empty", Bytes::new()).await;
    put(CHECK, &store, "large", large.clone()).await;
    expect_eq(CHECK, "every byte value", &get(CHECK, &store, "bytes").await, &Some(Bytes::from(every_byte)));
    expect_eq(CHECK, "an empty value", &get(CHECK, &store, "empty").await, &Some(Bytes::new()));
    expect_eq(CHECK, "a 1 MiB value", &get(CHECK, &store, "large").await.map(|v| v.len()), &Some(large.len()));
    expect_eq(CHECK, "a 1 MiB value's bytes", &get(CHECK, &store, "large").await, &Some(Bytes::from(large)));
}
