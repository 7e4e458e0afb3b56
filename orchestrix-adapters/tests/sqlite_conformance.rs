//! The core's conformance suite against the SQLite adapter, each check on
//! a private in-memory database (the file-backed behaviour, WAL and
//! cross-instance wake-ups are tested in `sqlite.rs`).
#![cfg(feature = "sqlite")]

use orchestrix_adapters::sqlite::SqliteStore;

orchestrix::conformance_tests!(event_store, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(consistency_by_query, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(snapshot_store, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(retag, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(snapshot_trust, {
    let store = SqliteStore::in_memory().await.expect("an in-memory store");
    (store.clone(), store)
});
orchestrix::conformance_tests!(checkpoint_store, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(key_value_store, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(dead_letter_store, SqliteStore::in_memory().await.expect("an in-memory store"));
orchestrix::conformance_tests!(key_store, SqliteStore::in_memory().await.expect("an in-memory store"));
