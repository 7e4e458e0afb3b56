//! SQLite-specific behaviour: a durable WAL file, several store instances
//! on one file, wake-ups, corrupt rows and table prefixes.
#![cfg(feature = "sqlite")]

use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::{envelope::NewEvent, Metadata, StoreError, StreamId};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use serde_json::value::RawValue;

fn event(data: &str) -> NewEvent {
    NewEvent::new("Happened", 1, RawValue::from_string(data.to_owned()).expect("valid JSON"))
        .with_metadata(Metadata::default().with_header("k", "v"))
}

fn stream(id: &str) -> StreamId {
    StreamId::new("Account", id).expect("a valid stream id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_is_durable_and_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let recorded = {
        let store = SqliteStore::open(&path, SqliteConfig::default()).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
        assert_eq!(mode, "wal");
        let recorded = store
            .append(
                &stream("1"),
                ExpectedVersion::NoStream,
                vec![event(r#"{"a":1}"#), event(r#"{"big":18446744073709551615}"#)],
            )
            .await
            .unwrap();
        store.pool().close().await;
        recorded
    };
    let store = SqliteStore::open(&path, SqliteConfig::default()).await.unwrap();
    let read: Vec<_> = store.read_stream(&stream("1"), 1).map(Result::unwrap).collect().await;
    assert_eq!(read.len(), 2);
    for (found, expected) in read.iter().zip(&recorded) {
        assert_eq!(found.id, expected.id);
        assert_eq!(found.global_position, expected.global_position);
        assert_eq!(found.recorded_at, expected.recorded_at);
        assert_eq!(found.data.get(), expected.data.get(), "SQLite keeps the data byte-equal");
        assert_eq!(found.metadata, expected.metadata);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_file_serialize_appends_and_wake_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let config = SqliteConfig::default().with_poll_interval(Duration::from_millis(20));
    let a = SqliteStore::open(&path, config.clone()).await.unwrap();
    let b = SqliteStore::open(&path, config).await.unwrap();
    let mut subscription = b.subscribe(0, EventFilter::all());
    let target = stream("shared");
    let tasks: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .append(&target, ExpectedVersion::Any, vec![event(&format!("{{\"s\":{n},\"i\":{i}}}"))])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let versions: Vec<u64> = a.read_stream(&target, 1).map(|e| e.unwrap().stream_version).collect().await;
    assert_eq!(versions, (1..=50).collect::<Vec<_>>());
    // The subscription on b sees a's appends too (by polling), in order.
    let mut positions = Vec::new();
    for _ in 0..50 {
        let e = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.unwrap().unwrap().unwrap();
        positions.push(e.global_position);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    // Exact races across instances: one winner.
    let (ra, rb) = tokio::join!(
        a.append(&target, ExpectedVersion::Exact(50), vec![event("{}")]),
        b.append(&target, ExpectedVersion::Exact(50), vec![event("{}")]),
    );
    assert_eq!(usize::from(ra.is_ok()) + usize::from(rb.is_ok()), 1);
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(matches!(loser, Err(StoreError::WrongExpectedVersion { actual: Some(51), .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_typed_errors_naming_stream_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), SqliteConfig::default()).await.unwrap();
    let target = stream("corrupt");
    store.append(&target, ExpectedVersion::NoStream, vec![event("{}")]).await.unwrap();
    sqlx::query(
        "INSERT INTO orchestrix_events (event_id, category, aggregate_id, stream_version, event_type, schema_version, \
         data, metadata, recorded_at) VALUES ('0190a6c2-0000-7000-8000-000000000000', 'Account', 'corrupt', 2, 'X', 1, \
         '{not json', '{}', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let items: Vec<_> = store.read_stream(&target, 1).collect().await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    match &items[1] {
        Err(StoreError::Corrupt { stream, version, reason }) => {
            assert_eq!((stream, *version), (&target, 2));
            assert!(reason.contains("JSON"), "{reason}");
        }
        other => panic!("expected Corrupt, found {other:?}"),
    }
    let all: Vec<_> = store.read_all(0, &EventFilter::all()).collect().await;
    assert!(matches!(all.last(), Some(Err(StoreError::Corrupt { version: 2, .. }))));
    let mut subscription = store.subscribe(0, EventFilter::all());
    assert!(subscription.next().await.unwrap().is_ok());
    assert!(matches!(subscription.next().await, Some(Err(StoreError::Corrupt { .. }))));
    assert!(subscription.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_are_validated_and_isolate_tables() {
    for bad in ["x; DROP TABLE y; --", "Upper", "1x", "a-b", "ü", "quote\"", &"p".repeat(33)] {
        assert!(matches!(SqliteConfig::new(bad), Err(StoreError::InvalidInput(_))), "{bad:?} was accepted");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let one = SqliteStore::open(&path, SqliteConfig::new("one_").unwrap()).await.unwrap();
    let two = SqliteStore::open(&path, SqliteConfig::new("two_").unwrap()).await.unwrap();
    one.append(&stream("x"), ExpectedVersion::NoStream, vec![event("{}")]).await.unwrap();
    assert_eq!(two.stream_version(&stream("x")).await.unwrap(), None);
    assert_eq!(one.stream_version(&stream("x")).await.unwrap(), Some(1));
    let sql = orchestrix_adapters::sqlite::migration_sql(&SqliteConfig::new("two_").unwrap());
    assert!(sql.contains("CREATE TABLE IF NOT EXISTS two_events"));
}

#[path = "../../orchestrix/tests/support/erasure.rs"]
mod erasure;

/// After `forget`, no copy the framework keeps on SQLite holds the
/// subject's plaintext: key tables, snapshots, dead letters, saga data,
/// cached aggregates (ADR 0031; the scenario is shared with the in-memory
/// and PostgreSQL runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_erases_every_copy_on_sqlite() {
    let store = SqliteStore::in_memory().await.unwrap();
    erasure::forget_erases_every_copy(erasure::Stores {
        events: store.clone(),
        keys: std::sync::Arc::new(store.clone()),
        snapshots: std::sync::Arc::new(store.clone()),
        dead_letters: std::sync::Arc::new(store.clone()),
        checkpoints: std::sync::Arc::new(store),
    })
    .await;
}
