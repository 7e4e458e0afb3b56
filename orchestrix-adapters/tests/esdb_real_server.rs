//! The conformance suite against a real EventSourcingDB, when
//! `ORCHESTRIX_ESDB_URL` and `ORCHESTRIX_ESDB_TOKEN` are set; otherwise the
//! test prints that it was skipped and passes.
//!
//! The adapter speaks the API version it finds (v2 where the server offers
//! it, else v1) and prints it. `ORCHESTRIX_ESDB_API=v1` (or `v2`) makes it
//! speak that version instead, to run the checks through v1 on a server
//! that offers both.
//!
//! The conformance checks expect an empty store: each gets a type prefix
//! of its own, which the adapter reads alone, so they also run on a used
//! server. So does the schema and EventQL check.

#![cfg(feature = "eventsourcingdb")]

use futures_util::TryStreamExt;
use orchestrix::prelude::*;
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion},
    StoreError, StreamId,
};
use orchestrix_adapters::eventsourcingdb::{ApiVersion, EsdbConfig, EsdbError, EsdbStore, TOKEN_ENV, URL_ENV};

/// The variable that makes the tests speak one API version.
const API_ENV: &str = "ORCHESTRIX_ESDB_API";

/// A store on the real server: connected (so the version is probed and the
/// token verified), then speaking the version `ORCHESTRIX_ESDB_API` names,
/// if it names one.
async fn store(config: EsdbConfig) -> EsdbStore {
    let store = EsdbStore::connect(config.clone()).await.unwrap();
    let forced = match std::env::var(API_ENV).as_deref() {
        Ok("v1") => Some(ApiVersion::V1),
        Ok("v2") => Some(ApiVersion::V2),
        Ok(other) => panic!("{API_ENV} is {other:?}; set it to `v1` or `v2`, or unset it"),
        Err(_) => None,
    };
    let store = match forced {
        Some(version) => {
            let forced = EsdbStore::unchecked(config, version).unwrap();
            forced.verify_api_token().await.unwrap();
            forced
        }
        None => store,
    };
    eprintln!("speaking EventSourcingDB API {:?} at {}", store.api_version(), store.api_url());
    store
}

#[cfg_attr(
    not(orchestrix_esdb),
    ignore = "needs ORCHESTRIX_ESDB_URL and ORCHESTRIX_ESDB_TOKEN (a real EventSourcingDB server)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_a_real_server() {
    if std::env::var(URL_ENV).is_err() || std::env::var(TOKEN_ENV).is_err() {
        eprintln!("skipped: set {URL_ENV} and {TOKEN_ENV} to run against a real EventSourcingDB");
        return;
    }
    // A real server cannot be emptied between the checks, so each check
    // gets a store with a type prefix of its own: the adapter reads only
    // events of its prefix, so every check starts on what looks like an
    // empty store, also on a server that was used before.
    let fresh = || async {
        let prefix = format!("io.orchestrix.check{}", uuid::Uuid::now_v7().simple());
        store(EsdbConfig::from_env().unwrap().with_type_prefix(prefix)).await
    };
    // Idempotent appends included (ADR 0033): `e.data.eventId` in an
    // `isEventQlQueryTrue` precondition meets a real server here.
    orchestrix::testing::conformance::event_store(fresh).await;
    orchestrix::testing::conformance::snapshot_store(fresh).await;
    // Where the EventQL the adapter writes for consistency by query meets a
    // real server (ADR 23): `CONTAINS` on the envelope's tags (missing on
    // untagged events), byte-wise string ranges on types, `COUNT() == n`
    // in an `isEventQlQueryTrue` precondition, rows in log order.
    orchestrix::testing::conformance::consistency_by_query(fresh).await;
}

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
enum ProbeEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

/// The assumptions ADR 12 lists about schemas and EventQL: a real server
/// accepts schemars' schemas, gives them back unchanged (so registering
/// twice succeeds), refuses data that violates them with an error the adapter
/// recognises (v1: a 409; v2: the error `event-schema-violated`), and
/// answers a simple EventQL query.
#[cfg_attr(
    not(orchestrix_esdb),
    ignore = "needs ORCHESTRIX_ESDB_URL and ORCHESTRIX_ESDB_TOKEN (a real EventSourcingDB server)"
)]
#[tokio::test]
async fn schemas_and_eventql_against_a_real_server() {
    if std::env::var(URL_ENV).is_err() || std::env::var(TOKEN_ENV).is_err() {
        eprintln!("skipped: set {URL_ENV} and {TOKEN_ENV} to run against a real EventSourcingDB");
        return;
    }
    let prefix = format!("io.orchestrix.probe{}", uuid::Uuid::now_v7().simple());
    let store = store(EsdbConfig::from_env().unwrap().with_type_prefix(prefix.clone())).await;
    store.register_event_schemas::<ProbeEvent>().await.unwrap();
    store.register_event_schemas::<ProbeEvent>().await.unwrap();

    let stream = StreamId::new("Probe", uuid::Uuid::now_v7().to_string()).unwrap();
    let opened = ProbeEvent::Opened { owner: "Ada".into() };
    let new = |event_type: &str, data: Box<serde_json::value::RawValue>| NewEvent::new(event_type, 1, data);
    store.append(&stream, ExpectedVersion::NoStream, vec![new("ProbeOpened", opened.encode().unwrap())]).await.unwrap();
    let wrong = serde_json::value::RawValue::from_string(r#"{"amount":"ten"}"#.to_owned()).unwrap();
    let error = store.append(&stream, ExpectedVersion::Exact(1), vec![new("ProbeDeposited", wrong)]).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected a backend error, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::SchemaViolated { .. })), "{error:?}");

    let query = format!(r#"FROM e IN events WHERE e.type == "{prefix}.ProbeOpened.v1" PROJECT INTO e"#);
    let rows: Vec<serde_json::Value> = store.run_eventql_query(&query).try_collect().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}
