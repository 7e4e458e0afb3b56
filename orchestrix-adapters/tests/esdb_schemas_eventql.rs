//! Event schemas derived from Rust types (`#[event(schema)]`), registered
//! through the adapter and enforced by the test server; and EventQL passed
//! through the adapter, answered by the test server's EventQL subset.

#![cfg(feature = "eventsourcingdb")]

use futures_util::{StreamExt, TryStreamExt};
use orchestrix::prelude::*;
use orchestrix::{
    envelope::NewEvent,
    event::EventSchemas,
    store::{EventStore, ExpectedVersion},
    StoreError, StreamId,
};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbError, EsdbStore};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use serde_json::{json, value::RawValue};

mod esdb_support;

esdb_support::for_both_apis!(
    schemas_from_the_rust_types_are_registered_idempotently_and_enforced,
    a_schema_that_stored_events_violate_is_refused,
    registered_schemas_are_the_envelope_around_the_derived_data_schema,
    eventql_queries_pass_through_and_answer_rows,
    conditions_are_exact_where_eventql_cannot_spell_a_tag,
    conditions_cover_every_schema_version_and_nothing_else,
    a_query_for_any_event_ignores_snapshots
);

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened {
        owner: String,
        #[serde(rename = "overdraftLimit")]
        overdraft_limit: u64,
    },
    Deposited {
        amount: u64,
    },
    Closed,
}

async fn setup(options: TestServerOptions) -> (TestServer, EsdbStore) {
    let server = TestServer::start(options).await.unwrap();
    let config = EsdbConfig::new(server.url(), server.token()).with_type_prefix("com.example.bank");
    let store = EsdbStore::connect(config).await.unwrap();
    (server, store)
}

fn new_event(event: &AccountEvent) -> NewEvent {
    NewEvent::new(event.event_type().to_owned(), event.schema_version(), event.encode().unwrap())
}

fn raw_event(event_type: &str, data: &str) -> NewEvent {
    NewEvent::new(event_type, 1, RawValue::from_string(data.to_owned()).unwrap())
}

fn esdb_error(error: &StoreError) -> &EsdbError {
    let source = match error {
        StoreError::Backend(source) | StoreError::Unavailable(source) => source,
        other => panic!("not a backend error: {other:?}"),
    };
    source.downcast_ref::<EsdbError>().unwrap_or_else(|| panic!("not an EsdbError: {error:?}"))
}

async fn schemas_from_the_rust_types_are_registered_idempotently_and_enforced(options: TestServerOptions) {
    let (server, store) = setup(options).await;
    store.register_event_schemas::<AccountEvent>().await.unwrap();
    // Again, as at every start: the same schemas are already there.
    store.register_event_schemas::<AccountEvent>().await.unwrap();

    let stream = StreamId::new("Account", "1").unwrap();
    let opened = AccountEvent::Opened { owner: "Ada".into(), overdraft_limit: 100 };
    store.append(&stream, ExpectedVersion::NoStream, vec![new_event(&opened)]).await.unwrap();
    store.append(&stream, ExpectedVersion::Exact(1), vec![new_event(&AccountEvent::Closed)]).await.unwrap();

    // Data that does not match the Rust type's schema: the server refuses
    // it, the adapter says so with a typed error (not a concurrency
    // conflict), and nothing is written.
    let wrong = raw_event("AccountDeposited", r#"{"amount":"ten"}"#);
    let error = store.append(&stream, ExpectedVersion::Exact(2), vec![wrong]).await.unwrap_err();
    assert!(!error.is_conflict(), "{error:?}");
    match esdb_error(&error) {
        EsdbError::SchemaViolated { detail } => {
            assert!(detail.contains("com.example.bank.AccountDeposited.v1"), "{detail}");
        }
        other => panic!("expected SchemaViolated, got {other:?}"),
    }
    let missing = raw_event("AccountOpened", r#"{"owner":"Ada"}"#);
    let error = store.append(&stream, ExpectedVersion::Exact(2), vec![missing]).await.unwrap_err();
    assert!(matches!(esdb_error(&error), EsdbError::SchemaViolated { .. }), "{error:?}");
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(2));
    assert_eq!(server.len(), 2);

    // A different schema for a type that already has one is refused.
    let error = store.register_event_schema("AccountClosed", 1, &json!({"type": "object"})).await.unwrap_err();
    match esdb_error(&error) {
        EsdbError::SchemaConflict { event_type, registered } => {
            assert_eq!(event_type, "com.example.bank.AccountClosed.v1");
            assert!(registered.contains("streamVersion"), "{registered}");
        }
        other => panic!("expected SchemaConflict, got {other:?}"),
    }
}

async fn a_schema_that_stored_events_violate_is_refused(options: TestServerOptions) {
    let (_server, store) = setup(options).await;
    let stream = StreamId::new("Account", "2").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![raw_event("AccountDeposited", r#"{"amount":-5}"#)])
        .await
        .unwrap();
    let error = store.register_event_schemas::<AccountEvent>().await.unwrap_err();
    assert!(matches!(esdb_error(&error), EsdbError::SchemaViolated { .. }), "{error:?}");
}

async fn registered_schemas_are_the_envelope_around_the_derived_data_schema(options: TestServerOptions) {
    let (_server, store) = setup(options).await;
    store.register_event_schemas::<AccountEvent>().await.unwrap();
    let client = eventsourcingdb::client::Client::new(url(&store), "secret");
    let registered = client.read_event_type("com.example.bank.AccountOpened.v1").await.unwrap();
    let schema = registered.schema.expect("a schema is registered");
    let derived = &AccountEvent::event_schemas()[0].schema;
    assert_eq!(schema["properties"]["data"]["properties"], derived["properties"]);
    assert_eq!(schema["properties"]["data"]["required"], json!(["owner", "overdraftLimit"]));
    assert_eq!(schema["required"], json!(["streamVersion", "data"]));
}

fn url(store: &EsdbStore) -> url::Url {
    let base = store.api_url().trim_end_matches(store.api_version().prefix());
    url::Url::parse(&format!("{base}/")).unwrap()
}

async fn eventql_queries_pass_through_and_answer_rows(options: TestServerOptions) {
    let (_server, store) = setup(options).await;
    for (id, owner) in [("1", "Ada"), ("2", "Grace")] {
        let stream = StreamId::new("Account", id).unwrap();
        let opened = AccountEvent::Opened { owner: owner.into(), overdraft_limit: 0 };
        store.append(&stream, ExpectedVersion::NoStream, vec![new_event(&opened)]).await.unwrap();
        let deposited = AccountEvent::Deposited { amount: 10 };
        store.append(&stream, ExpectedVersion::Exact(1), vec![new_event(&deposited)]).await.unwrap();
    }

    let rows: Vec<serde_json::Value> = store
        .run_eventql_query(r#"FROM e IN events WHERE e.type == "com.example.bank.AccountOpened.v1" PROJECT INTO e"#)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["subject"], "/Account/1");
    assert_eq!(rows[1]["data"]["data"]["owner"], "Grace", "the event's data inside the adapter's envelope");

    let rows: Vec<serde_json::Value> = store
        .run_eventql_query(
            "FROM e IN events WHERE e.subject == '/Account/2' ORDER BY e.time DESC TOP 1 \
             PROJECT INTO { type: e.type, version: e.data.streamVersion }",
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows, [json!({"type": "com.example.bank.AccountDeposited.v1", "version": 2})]);

    let rows: Vec<serde_json::Value> =
        store.run_eventql_query("FROM e IN events PROJECT INTO COUNT()").try_collect().await.unwrap();
    assert_eq!(rows, [json!(4)]);

    // A query outside the supported subset is an error, not a wrong answer.
    let results: Vec<_> = store.run_eventql_query("FROM e IN events GROUP BY e.type PROJECT INTO e").collect().await;
    assert_eq!(results.len(), 1);
    // v1 refuses it with a 400, v2 with the error code `query-malformed`:
    // both a refusal of input, with the server's explanation (ADR 0028).
    match results[0].as_ref().unwrap_err() {
        StoreError::InvalidInput(message) => assert!(message.contains("query malformed"), "{message}"),
        other => panic!("expected the server's refusal as InvalidInput, got {other:?}"),
    }
}

fn tagged(event_type: &str, schema_version: u32, tags: &[&str]) -> NewEvent {
    let raw = raw_event(event_type, "{}");
    NewEvent::new(raw.event_type, schema_version, raw.data)
        .with_metadata(Metadata::default().with_tags(tags.iter().copied()))
}

fn part(id: &str, event: NewEvent) -> orchestrix::store::StreamAppend {
    orchestrix::store::StreamAppend::new(StreamId::new("Course", id).unwrap(), ExpectedVersion::Any, vec![event])
}

/// A tag with both kinds of quote and a backslash cannot be an EventQL
/// string literal without escapes, so the server-side filter leaves it out
/// and selects more: the adapter's own matching keeps the condition exact.
async fn conditions_are_exact_where_eventql_cannot_spell_a_tag(options: TestServerOptions) {
    use orchestrix::query::{AppendCondition, Query, QueryItem};
    let (_server, store) = setup(options).await;
    let (mine, other) = ("k:a\"'\\b", "k:a\"'\\c");
    let query = Query::new([QueryItem::types(["Subscribed"]).raw_tag(mine)]);
    store
        .append_if(AppendCondition::new(query.clone(), None), vec![part("1", tagged("Subscribed", 1, &[mine]))])
        .await
        .unwrap();
    // Selected by the filter, not matched by the query: the condition holds.
    store
        .append(&StreamId::new("Course", "2").unwrap(), ExpectedVersion::Any, vec![tagged("Subscribed", 1, &[other])])
        .await
        .unwrap();
    let read: Vec<_> = store.read_by_query(&query, 0).try_collect().await.unwrap();
    assert_eq!(
        read.iter().map(|r| (r.global_position, r.tags().to_vec())).collect::<Vec<_>>(),
        [(1, vec![mine.to_owned()])]
    );
    store
        .append_if(AppendCondition::new(query.clone(), Some(1)), vec![part("3", tagged("Subscribed", 1, &[mine]))])
        .await
        .unwrap();
    // A matching event above `after` fails it, naming its position.
    let error = store
        .append_if(AppendCondition::new(query, Some(1)), vec![part("4", tagged("Subscribed", 1, &[mine]))])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed { position: 3, after: Some(1) }), "{error:?}");
}

/// A query's type covers every schema version of it, and not a type whose
/// name merely starts the same; the adapter's own snapshots never count.
async fn conditions_cover_every_schema_version_and_nothing_else(options: TestServerOptions) {
    use orchestrix::query::{AppendCondition, Query, QueryItem};
    use orchestrix::store::SnapshotStore;
    let (_server, store) = setup(options).await;
    let query = Query::new([QueryItem::types(["Subscribed"]).tag("course", "c1")]);
    let holds = |after| AppendCondition::new(query.clone(), after);
    store
        .append(
            &StreamId::new("Course", "c1").unwrap(),
            ExpectedVersion::Any,
            vec![tagged("SubscribedLate", 1, &["course:c1"])],
        )
        .await
        .unwrap();
    store
        .append(&StreamId::new("Course", "c1").unwrap(), ExpectedVersion::Any, vec![tagged("Subscribed", 1, &[])])
        .await
        .unwrap();
    store
        .save(orchestrix::store::Snapshot::new(
            StreamId::new("Course", "c1").unwrap(),
            2,
            1,
            RawValue::from_string("{}".into()).unwrap(),
            chrono::Utc::now(),
        ))
        .await
        .unwrap();
    store.append_if(holds(None), vec![part("c2", tagged("Subscribed", 1, &["course:c2"]))]).await.unwrap();
    store
        .append(
            &StreamId::new("Course", "c1").unwrap(),
            ExpectedVersion::Any,
            vec![tagged("Subscribed", 3, &["course:c1"])],
        )
        .await
        .unwrap();
    let error =
        store.append_if(holds(None), vec![part("c3", tagged("Subscribed", 1, &["course:c1"]))]).await.unwrap_err();
    let head = store.head_position().await.unwrap().unwrap();
    assert!(matches!(error, StoreError::ConditionFailed { position, after: None } if position == head), "{error:?}");
    let read: Vec<_> = store.read_by_query(&query, 0).try_collect().await.unwrap();
    assert_eq!(read.iter().map(|r| (r.event_type.as_str(), r.schema_version)).collect::<Vec<_>>(), [("Subscribed", 3)]);
}

/// A query item for any event counts every stream event, never the
/// adapter's snapshots (stored as events on their own subjects).
async fn a_query_for_any_event_ignores_snapshots(options: TestServerOptions) {
    use orchestrix::query::{AppendCondition, Query, QueryItem};
    use orchestrix::store::SnapshotStore;
    let (_server, store) = setup(options).await;
    let query = Query::new([QueryItem::any()]);
    store
        .append_if(AppendCondition::new(query.clone(), None), vec![part("1", tagged("Defined", 1, &[]))])
        .await
        .unwrap();
    let snapshot = orchestrix::store::Snapshot::new(
        StreamId::new("Course", "1").unwrap(),
        1,
        1,
        RawValue::from_string("{}".into()).unwrap(),
        chrono::Utc::now(),
    );
    store.save(snapshot).await.unwrap();
    store
        .append_if(AppendCondition::new(query.clone(), Some(1)), vec![part("2", tagged("Defined", 1, &[]))])
        .await
        .unwrap();
    let read: Vec<_> = store.read_by_query(&query, 0).try_collect().await.unwrap();
    assert_eq!(read.iter().map(|r| r.global_position).collect::<Vec<_>>(), [1, 3]);
    let error = store
        .append_if(AppendCondition::new(query, Some(1)), vec![part("3", tagged("Defined", 1, &[]))])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed { position: 3, after: Some(1) }), "{error:?}");
}
