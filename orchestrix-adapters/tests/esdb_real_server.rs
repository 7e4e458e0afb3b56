//! The conformance suite against a real EventSourcingDB, when
//! `ORCHESTRIX_ESDB_URL` and `ORCHESTRIX_ESDB_TOKEN` are set; otherwise the
//! test prints that it was skipped and passes.
//!
//! The checks expect an empty store, so point it at a fresh server.

#![cfg(feature = "eventsourcingdb")]

use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore, TOKEN_ENV, URL_ENV};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_a_real_server() {
    if std::env::var(URL_ENV).is_err() || std::env::var(TOKEN_ENV).is_err() {
        eprintln!("skipped: set {URL_ENV} and {TOKEN_ENV} to run against a real EventSourcingDB");
        return;
    }
    let config = EsdbConfig::from_env().unwrap();
    let store = EsdbStore::connect(config.clone()).await.unwrap();
    // One server for every check: the checks that look at the whole log
    // (head position, read_all from 0) need it to be fresh.
    orchestrix::testing::conformance::event_store(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
    orchestrix::testing::conformance::snapshot_store(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
}
