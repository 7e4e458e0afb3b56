//! The conformance suite against a real EventSourcingDB, when
//! `ORCHESTRIX_ESDB_URL` and `ORCHESTRIX_ESDB_TOKEN` are set; otherwise the
//! test prints that it was skipped and passes.
//!
//! The conformance checks expect an empty store, so point it at a fresh
//! server. The schema and EventQL check uses a type prefix of its own
//! per run, so it also runs on a used server.

#![cfg(feature = "eventsourcingdb")]

use futures_util::TryStreamExt;
use orchestrix::prelude::*;
use orchestrix::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbError, EsdbStore, TOKEN_ENV, URL_ENV};

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

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
enum ProbeEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

/// The assumptions ADR 12 lists about schemas and EventQL: a real server
/// accepts schemars' schemas, gives them back unchanged (so registering
/// twice succeeds), refuses data that violates them with a 409 the adapter
/// recognises, and answers a simple EventQL query.
#[tokio::test]
async fn schemas_and_eventql_against_a_real_server() {
    if std::env::var(URL_ENV).is_err() || std::env::var(TOKEN_ENV).is_err() {
        eprintln!("skipped: set {URL_ENV} and {TOKEN_ENV} to run against a real EventSourcingDB");
        return;
    }
    let prefix = format!("io.orchestrix.probe{}", uuid::Uuid::now_v7().simple());
    let store = EsdbStore::connect(EsdbConfig::from_env().unwrap().with_type_prefix(prefix.clone())).await.unwrap();
    store.register_event_schemas::<ProbeEvent>().await.unwrap();
    store.register_event_schemas::<ProbeEvent>().await.unwrap();

    let stream = StreamId::new("Probe", uuid::Uuid::now_v7().to_string()).unwrap();
    let opened = ProbeEvent::Opened { owner: "Ada".into() };
    let new = |event_type: &str, data: Box<serde_json::value::RawValue>| NewEvent {
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: Metadata::default(),
    };
    store.append(&stream, ExpectedVersion::NoStream, vec![new("ProbeOpened", opened.encode().unwrap())]).await.unwrap();
    let wrong = serde_json::value::RawValue::from_string(r#"{"amount":"ten"}"#.to_owned()).unwrap();
    let error = store.append(&stream, ExpectedVersion::Exact(1), vec![new("ProbeDeposited", wrong)]).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected a backend error, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::SchemaViolated { .. })), "{error:?}");

    let query = format!(r#"FROM e IN events WHERE e.type == "{prefix}.ProbeOpened.v1" PROJECT INTO e"#);
    let rows: Vec<serde_json::Value> = store.run_eventql_query(&query).try_collect().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}
