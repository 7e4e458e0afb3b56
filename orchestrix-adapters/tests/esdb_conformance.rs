//! The core's conformance suite against the EventSourcingDB adapter, each
//! check on a fresh test server on a random localhost port.

#![cfg(feature = "eventsourcingdb-test-server")]

use orchestrix_adapters::eventsourcingdb::test_server::{TestServer, TestServerOptions};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};

/// A store on a fresh, empty test server. The server lives as long as the
/// test's runtime.
async fn fresh_store() -> EsdbStore {
    let server = TestServer::start(TestServerOptions::default()).await.expect("the test server starts");
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.expect("the adapter connects");
    std::mem::forget(server);
    store
}

orchestrix::conformance_tests!(event_store, fresh_store().await);
orchestrix::conformance_tests!(snapshot_store, fresh_store().await);
