//! The core's conformance suite against the SQLite adapter, each check on
//! a private in-memory database (the file-backed behaviour, WAL and
//! cross-instance wake-ups are tested in `sqlite.rs`).
#![cfg(feature = "sqlite")]

use orchestrix_adapters::sqlite::SqliteStore;

orchestrix::conformance_tests!(every_store_port, SqliteStore::in_memory().await.expect("an in-memory store"));
