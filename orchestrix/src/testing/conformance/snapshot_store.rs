//! Checks of [`SnapshotStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs.
//! [`super::snapshot_store()`] runs them all.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::support::{expect_eq, ok, unique_stream, within};
use crate::store::{Snapshot, SnapshotStore};
use crate::stream::StreamId;

/// A timestamp with whole microseconds, which every backend stores exactly.
fn micros(offset_seconds: i64) -> DateTime<Utc> {
    let now = Utc::now().timestamp_micros();
    DateTime::from_timestamp_micros(now + offset_seconds * 1_000_000).expect("a valid timestamp")
}

fn snapshot(stream: &StreamId, version: u64, state: &str) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        version,
        schema_version: 3,
        state: RawValue::from_string(state.to_owned()).expect("fixture state is valid JSON"),
        taken_at: micros(i64::try_from(version).expect("small")),
    }
}

/// The fields that must round-trip.
fn fields(snapshot: Option<&Snapshot>) -> Option<(StreamId, u64, u32, String, DateTime<Utc>)> {
    snapshot.map(|s| (s.stream.clone(), s.version, s.schema_version, s.state.get().to_owned(), s.taken_at))
}

async fn load<S: SnapshotStore>(
    check: &str,
    store: &S,
    stream: &StreamId,
    at_or_before: Option<u64>,
) -> Option<Snapshot> {
    ok(check, "load", within(check, "load", store.load(stream, at_or_before)).await)
}

async fn save<S: SnapshotStore>(check: &str, store: &S, snapshot: Snapshot) {
    ok(check, "save", within(check, "save", store.save(snapshot)).await);
}

/// A missing stream has no snapshot; after saves, `load(stream, None)`
/// returns the one with the highest version with every field intact.
pub async fn save_and_load_latest<S: SnapshotStore>(store: S) {
    const CHECK: &str = "snapshot_store::save_and_load_latest";
    let stream = unique_stream("Account");
    expect_eq(
        CHECK,
        "snapshot of a stream without any",
        &fields(load(CHECK, &store, &stream, None).await.as_ref()),
        &None,
    );
    let ten = snapshot(&stream, 10, r#"{"balance":10,"owner":"Ada 🦀 \"q\""}"#);
    let five = snapshot(&stream, 5, r#"{"balance":5}"#);
    save(CHECK, &store, ten.clone()).await;
    save(CHECK, &store, five).await;
    let latest = load(CHECK, &store, &stream, None).await;
    expect_eq(CHECK, "latest snapshot (saved out of order)", &fields(latest.as_ref()), &fields(Some(&ten)));
}

/// `load(stream, Some(v))` returns the latest snapshot whose version is not
/// above `v`, or none.
pub async fn load_at_or_before<S: SnapshotStore>(store: S) {
    const CHECK: &str = "snapshot_store::load_at_or_before";
    let stream = unique_stream("Account");
    for version in [5, 10, 15] {
        save(CHECK, &store, snapshot(&stream, version, &format!("{{\"v\":{version}}}"))).await;
    }
    for (at_or_before, expected) in [
        (0, None),
        (4, None),
        (5, Some(5)),
        (9, Some(5)),
        (10, Some(10)),
        (14, Some(10)),
        (15, Some(15)),
        (u64::MAX, Some(15)),
    ] {
        let found = load(CHECK, &store, &stream, Some(at_or_before)).await.map(|s| s.version);
        expect_eq(CHECK, &format!("version of the snapshot at or before {at_or_before}"), &found, &expected);
    }
}

/// Saving at a version that already has a snapshot replaces it.
pub async fn save_replaces_at_the_same_version<S: SnapshotStore>(store: S) {
    const CHECK: &str = "snapshot_store::save_replaces_at_the_same_version";
    let stream = unique_stream("Account");
    save(CHECK, &store, snapshot(&stream, 7, r#"{"old":true}"#)).await;
    let new = Snapshot { schema_version: 4, ..snapshot(&stream, 7, r#"{"new":true}"#) };
    save(CHECK, &store, new.clone()).await;
    expect_eq(
        CHECK,
        "latest snapshot after a replace",
        &fields(load(CHECK, &store, &stream, None).await.as_ref()),
        &fields(Some(&new)),
    );
    expect_eq(
        CHECK,
        "snapshot at 7 after a replace",
        &fields(load(CHECK, &store, &stream, Some(7)).await.as_ref()),
        &fields(Some(&new)),
    );
}

/// `delete` removes every snapshot of one stream and no other; deleting a
/// stream without snapshots is fine.
pub async fn delete_removes_a_streams_snapshots<S: SnapshotStore>(store: S) {
    const CHECK: &str = "snapshot_store::delete_removes_a_streams_snapshots";
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    for version in [1, 2] {
        save(CHECK, &store, snapshot(&a, version, "{}")).await;
        save(CHECK, &store, snapshot(&b, version, "{}")).await;
    }
    ok(CHECK, "delete", within(CHECK, "delete", store.delete(&a)).await);
    expect_eq(
        CHECK,
        "latest snapshot of the deleted stream",
        &load(CHECK, &store, &a, None).await.map(|s| s.version),
        &None,
    );
    expect_eq(
        CHECK,
        "older snapshot of the deleted stream",
        &load(CHECK, &store, &a, Some(1)).await.map(|s| s.version),
        &None,
    );
    expect_eq(
        CHECK,
        "latest snapshot of the other stream",
        &load(CHECK, &store, &b, None).await.map(|s| s.version),
        &Some(2),
    );
    ok(
        CHECK,
        "delete of a stream without snapshots",
        within(CHECK, "delete", store.delete(&unique_stream("Account"))).await,
    );
    ok(CHECK, "second delete", within(CHECK, "delete", store.delete(&a)).await);
}

/// Streams differing only by category or case keep separate snapshots.
pub async fn streams_are_independent<S: SnapshotStore>(store: S) {
    const CHECK: &str = "snapshot_store::streams_are_independent";
    let id = uuid::Uuid::now_v7().to_string();
    let streams = [
        StreamId::new("Account", id.as_str()).expect("valid"),
        StreamId::new("account", id.as_str()).expect("valid"),
        StreamId::new("Order", id.as_str()).expect("valid"),
        StreamId::new("Account", format!("{id}'; --")).expect("valid"),
    ];
    for (i, stream) in streams.iter().enumerate() {
        let version = u64::try_from(i).expect("small") + 1;
        save(CHECK, &store, snapshot(stream, version, &format!("{{\"i\":{i}}}"))).await;
    }
    for (i, stream) in streams.iter().enumerate() {
        let found = load(CHECK, &store, stream, None).await;
        let expected = (u64::try_from(i).expect("small") + 1, format!("{{\"i\":{i}}}"));
        expect_eq(
            CHECK,
            &format!("snapshot of `{stream}`"),
            &found.map(|s| (s.version, s.state.get().to_owned())),
            &Some(expected),
        );
    }
}
