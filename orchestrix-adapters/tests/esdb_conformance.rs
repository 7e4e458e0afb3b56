//! The core's conformance suite against the EventSourcingDB adapter, each
//! check on a fresh test server on a random localhost port: once through
//! API v1 (a server that offers v1 only) and once through API v2 (a server
//! that offers v2 only).

#![cfg(feature = "eventsourcingdb")]

use orchestrix_adapters::eventsourcingdb::{ApiVersion, EsdbConfig, EsdbStore};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};

/// A store on a fresh, empty test server, which speaks `expected`. The
/// server lives as long as the test's runtime.
async fn fresh_store(options: TestServerOptions, expected: ApiVersion) -> EsdbStore {
    let server = TestServer::start(options).await.expect("the test server starts");
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.expect("the adapter connects");
    assert_eq!(store.api_version(), expected);
    std::mem::forget(server);
    store
}

/// The ports the adapter implements, on stores made by `$make`.
macro_rules! esdb_conformance {
    ($make:expr) => {
        orchestrix::conformance_tests!(event_store, $make);
        orchestrix::conformance_tests!(snapshot_store, $make);
        orchestrix::conformance_tests!(snapshot_trust, {
            let store = $make;
            (store.clone(), store)
        });
        orchestrix::conformance_tests!(consistency_by_query, $make);
    };
}

mod v1 {
    use super::*;

    esdb_conformance!(fresh_store(TestServerOptions::default(), ApiVersion::V1).await);
}

mod v2 {
    use super::*;

    esdb_conformance!(fresh_store(TestServerOptions::v2_only(), ApiVersion::V2).await);
}
