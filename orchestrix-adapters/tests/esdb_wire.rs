//! Wire-format tests: the exact JSON the adapter sends to EventSourcingDB,
//! recorded by the test server; through API v1 (the tests without a
//! prefix) and through API v2 (`v2_...`: methods, paths and bodies).

#![cfg(feature = "eventsourcingdb")]

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, ExpectedVersion, Snapshot, SnapshotStore};
use orchestrix::{envelope::NewEvent, store::EventStore, Metadata, StreamId, Uuid};
use orchestrix_adapters::eventsourcingdb::{ApiVersion, EsdbConfig, EsdbStore};
use orchestrix_esdb_test_server::{RecordedRequest, TestServer, TestServerOptions};
use serde_json::value::RawValue;

async fn setup() -> (TestServer, EsdbStore) {
    setup_with(TestServerOptions::default()).await
}

async fn setup_with(options: TestServerOptions) -> (TestServer, EsdbStore) {
    let server = TestServer::start(options).await.unwrap();
    let config = EsdbConfig::new(server.url(), server.token())
        .with_source("https://bank.example")
        .with_type_prefix("com.example.bank");
    let store = EsdbStore::connect(config).await.unwrap();
    server.take_requests();
    (server, store)
}

fn event(event_type: &str, version: u32, data: &str, metadata: Metadata) -> NewEvent {
    NewEvent::new(event_type, version, RawValue::from_string(data.to_owned()).unwrap()).with_metadata(metadata)
}

/// The precondition every write carries (ADR 0033): no stored event of the
/// prefix `com.example.bank` carries one of `ids`.
fn no_stored_ids(ids: &[Uuid]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| format!(r#"e.data.eventId == "{id}""#)).collect();
    let query = format!(
        r#"FROM e IN events WHERE (e.type >= "com.example.bank." AND e.type < "com.example.bank/") AND ({}) PROJECT INTO COUNT() == 0"#,
        ids.join(" OR ")
    );
    format!(r#"{{"type":"isEventQlQueryTrue","payload":{{"query":{}}}}}"#, serde_json::to_string(&query).unwrap())
}

fn bodies(server: &TestServer, endpoint: &str) -> Vec<String> {
    server.take_requests().into_iter().filter(|(e, _)| e == endpoint).map(|(_, body)| body).collect()
}

#[tokio::test]
async fn a_first_append_reads_the_subject_then_writes_with_is_subject_pristine() {
    let (server, store) = setup().await;
    let stream = StreamId::new("Account", "42/a b").unwrap();
    let correlation = Uuid::parse_str("0190d6f2-7e8a-7cc0-8000-000000000001").unwrap();
    let metadata = Metadata::default()
        .with_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("rojo=00f067aa0ba902b7".to_owned()))
        .with_correlation_id(correlation)
        .with_tenant("acme")
        .with_header("k", "v");
    let opened = event("AccountOpened", 2, r#"{"owner":"Ada"}"#, metadata);
    let id = opened.id;
    store.append(&stream, ExpectedVersion::NoStream, vec![opened]).await.unwrap();
    let requests = server.take_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].0, "read-events");
    assert_eq!(
        requests[0].1,
        r#"{"subject":"/Account/42%2Fa%20b","options":{"recursive":false,"order":"antichronological"}}"#
    );
    assert_eq!(requests[1].0, "write-events");
    assert_eq!(
        requests[1].1,
        [
            r#"{"events":[{"source":"https://bank.example","subject":"/Account/42%2Fa%20b","type":"com.example.bank.AccountOpened.v2","#,
            &format!(r#""data":{{"eventId":"{id}","streamVersion":1,"data":{{"owner":"Ada"}},"#),
            r#""metadata":{"correlation_id":"0190d6f2-7e8a-7cc0-8000-000000000001","tenant":"acme","headers":{"k":"v"}}},"#,
            r#""traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"rojo=00f067aa0ba902b7"}],"#,
            r#""preconditions":[{"type":"isSubjectPristine","payload":{"subject":"/Account/42%2Fa%20b"}},"#,
            &no_stored_ids(&[id]),
            "]}",
        ]
        .concat()
    );
}

#[tokio::test]
async fn an_exact_append_names_the_last_event_id_and_sends_no_id_or_time() {
    let (server, store) = setup().await;
    let stream = StreamId::new("Account", "1").unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event("Opened", 1, "{}", Metadata::default())])
        .await
        .unwrap();
    server.take_requests();
    let deposited = event("Deposited", 1, r#"{"amount":5}"#, Metadata::default());
    let id = deposited.id;
    store.append(&stream, ExpectedVersion::Exact(1), vec![deposited]).await.unwrap();
    let writes = bodies(&server, "write-events");
    assert_eq!(
        writes,
        vec![[
            r#"{"events":[{"source":"https://bank.example","subject":"/Account/1","type":"com.example.bank.Deposited.v1","#,
            &format!(r#""data":{{"eventId":"{id}","streamVersion":2,"data":{{"amount":5}}}}}}],"#),
            r#""preconditions":[{"type":"isSubjectOnEventId","payload":{"subject":"/Account/1","eventId":"0"}},"#,
            &no_stored_ids(&[id]),
            "]}",
        ]
        .concat()]
    );
    // The server's id and time are not sent (the event's own id is, in `data`).
    assert!(!writes[0].contains("\"id\"") && !writes[0].contains("\"time\""));
}

#[tokio::test]
async fn a_subscription_observes_the_root_recursively_from_a_lower_bound() {
    let (server, store) = setup().await;
    let stream = StreamId::new("Account", "1").unwrap();
    let events = (0..3).map(|n| event("Deposited", 1, &format!(r#"{{"n":{n}}}"#), Metadata::default())).collect();
    store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    server.take_requests();
    let mut subscription = store.subscribe(3, EventFilter::all());
    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!(first.global_position, 3);
    assert_eq!(
        bodies(&server, "observe-events"),
        vec![r#"{"subject":"/","options":{"recursive":true,"lowerBound":{"type":"inclusive","id":"2"}}}"#.to_owned()]
    );
    let filter = EventFilter::all();
    let all: Vec<_> = store.read_all(2, &filter).collect().await;
    assert_eq!(all.len(), 2);
    assert_eq!(
        bodies(&server, "read-events"),
        vec![r#"{"subject":"/","options":{"recursive":true,"lowerBound":{"type":"inclusive","id":"1"}}}"#.to_owned()]
    );
}

#[tokio::test]
async fn snapshots_are_events_below_the_stream_read_from_the_latest_deletion() {
    let (server, store) = setup().await;
    let stream = StreamId::new("Account", "1").unwrap();
    let taken_at = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456Z").unwrap().to_utc();
    let state = RawValue::from_string(r#"{"balance": 5}"#.to_owned()).unwrap();
    store.save(Snapshot::new(stream.clone(), 7, 2, state, taken_at)).await.unwrap();
    let loaded = store.load(&stream, None).await.unwrap().unwrap();
    assert_eq!(loaded.state.get(), r#"{"balance": 5}"#, "the state reads back byte for byte");
    let requests = server.take_requests();
    assert_eq!(
        requests[0].1,
        concat!(
            r#"{"events":[{"source":"https://bank.example","subject":"/Account/1/snapshots","type":"com.example.bank.snapshot-taken.v1","#,
            r#""data":{"version":7,"schemaVersion":2,"state":"{\"balance\": 5}","takenAt":"2025-01-02T03:04:05.123456Z"}}],"preconditions":[]}"#
        )
    );
    assert_eq!(
        requests[1].1,
        concat!(
            r#"{"subject":"/Account/1/snapshots","options":{"recursive":false,"fromLatestEvent":"#,
            r#"{"subject":"/Account/1/snapshots","type":"com.example.bank.snapshots-deleted.v1","ifEventIsMissing":"read-everything"}}}"#
        )
    );
}

#[tokio::test]
async fn schemas_are_registered_under_the_versioned_type() {
    let (server, store) = setup().await;
    let schema = serde_json::json!({"type": "object"});
    store.register_event_schema("AccountOpened", 3, &schema).await.unwrap();
    assert_eq!(
        bodies(&server, "register-event-schema"),
        vec![r#"{"eventType":"com.example.bank.AccountOpened.v3","schema":{"type":"object"}}"#.to_owned()]
    );
}

/// Without the TLS feature, an https URL is refused up front, with the
/// feature to enable named.
#[cfg(not(feature = "eventsourcingdb-tls"))]
#[tokio::test]
async fn an_https_url_without_the_tls_feature_names_the_feature() {
    let error = EsdbStore::connect(EsdbConfig::new("https://127.0.0.1:1", "secret")).await.unwrap_err();
    assert!(
        matches!(&error, orchestrix::StoreError::InvalidInput(m) if m.contains("eventsourcingdb-tls")),
        "{error:?}"
    );
}

/// The method, path and body of each request, with whether it carried the
/// token.
fn http(server: &TestServer) -> Vec<(String, String, bool, String)> {
    server
        .take_http_requests()
        .into_iter()
        .map(|RecordedRequest { method, path, with_token, body }| (method, path, with_token, body))
        .collect()
}

fn request(method: &str, path: &str, with_token: bool, body: &str) -> (String, String, bool, String) {
    (method.to_owned(), path.to_owned(), with_token, body.to_owned())
}

#[tokio::test]
async fn v2_connect_probes_then_pings_without_the_token_and_verifies_it_without_a_body() {
    let server = TestServer::start(TestServerOptions::v2_only()).await.unwrap();
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    assert_eq!(store.api_version(), ApiVersion::V2);
    assert_eq!(store.api_url(), format!("{}/api/v2", server.url()));
    assert_eq!(
        http(&server),
        [
            request("GET", "/api/v2/system/ping", false, ""),
            request("GET", "/api/v2/system/ping", false, ""),
            request("POST", "/api/v2/system/verify-token", true, ""),
        ]
    );
    // A server without v2: the probe's 404, then v1 throughout.
    let server = TestServer::start(TestServerOptions::default()).await.unwrap();
    EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    assert_eq!(
        http(&server),
        [
            request("GET", "/api/v2/system/ping", false, ""),
            request("GET", "/api/v1/ping", false, ""),
            request("POST", "/api/v1/verify-api-token", true, "{}"),
        ]
    );
}

#[tokio::test]
async fn v2_appends_query_the_subject_then_post_the_write_with_its_preconditions() {
    let (server, store) = setup_with(TestServerOptions::v2_only()).await;
    let stream = StreamId::new("Account", "1").unwrap();
    let (opened, deposited) =
        (event("Opened", 1, "{}", Metadata::default()), event("Deposited", 1, r#"{"amount":5}"#, Metadata::default()));
    let ids = [opened.id, deposited.id];
    store.append(&stream, ExpectedVersion::NoStream, vec![opened]).await.unwrap();
    store.append(&stream, ExpectedVersion::Exact(1), vec![deposited]).await.unwrap();
    let read = r#"{"subject":"/Account/1","options":{"recursive":false,"order":"antichronological"}}"#;
    assert_eq!(
        http(&server),
        [
            request("QUERY", "/api/v2/data/read-events", true, read),
            request(
                "POST",
                "/api/v2/data/write-events",
                true,
                &[
                    r#"{"events":[{"source":"https://bank.example","subject":"/Account/1","type":"com.example.bank.Opened.v1","#,
                    &format!(r#""data":{{"eventId":"{}","streamVersion":1,"data":{{}}}}}}],"#, ids[0]),
                    r#""preconditions":[{"type":"isSubjectPristine","payload":{"subject":"/Account/1"}},"#,
                    &no_stored_ids(&ids[..1]),
                    "]}",
                ]
                .concat()
            ),
            request("QUERY", "/api/v2/data/read-events", true, read),
            request(
                "POST",
                "/api/v2/data/write-events",
                true,
                &[
                    r#"{"events":[{"source":"https://bank.example","subject":"/Account/1","type":"com.example.bank.Deposited.v1","#,
                    &format!(r#""data":{{"eventId":"{}","streamVersion":2,"data":{{"amount":5}}}}}}],"#, ids[1]),
                    r#""preconditions":[{"type":"isSubjectOnEventId","payload":{"subject":"/Account/1","eventId":"0"}},"#,
                    &no_stored_ids(&ids[1..]),
                    "]}",
                ]
                .concat()
            ),
        ]
    );
}

#[tokio::test]
async fn v2_snapshots_write_without_a_preconditions_field_and_read_with_query() {
    let (server, store) = setup_with(TestServerOptions::v2_only()).await;
    let stream = StreamId::new("Account", "1").unwrap();
    let taken_at = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z").unwrap().to_utc();
    let state = RawValue::from_string("{}".to_owned()).unwrap();
    store.save(Snapshot::new(stream.clone(), 1, 1, state, taken_at)).await.unwrap();
    assert!(store.load(&stream, None).await.unwrap().is_some());
    assert_eq!(
        http(&server),
        [
            request(
                "POST",
                "/api/v2/data/write-events",
                true,
                concat!(
                    r#"{"events":[{"source":"https://bank.example","subject":"/Account/1/snapshots","type":"com.example.bank.snapshot-taken.v1","#,
                    r#""data":{"version":1,"schemaVersion":1,"state":"{}","takenAt":"2025-01-02T03:04:05Z"}}]}"#
                )
            ),
            request(
                "QUERY",
                "/api/v2/data/read-events",
                true,
                concat!(
                    r#"{"subject":"/Account/1/snapshots","options":{"recursive":false,"fromLatestEvent":"#,
                    r#"{"subject":"/Account/1/snapshots","type":"com.example.bank.snapshots-deleted.v1","ifEventIsMissing":"read-everything"}}}"#
                )
            ),
        ]
    );
}

#[tokio::test]
async fn v2_observes_schemas_and_eventql_with_their_paths_and_bodies() {
    let (server, store) = setup_with(TestServerOptions::v2_only()).await;
    let stream = StreamId::new("Account", "1").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![event("Opened", 1, "{}", Metadata::default())]).await.unwrap();
    server.take_http_requests();
    let mut subscription = store.subscribe(1, EventFilter::all());
    assert_eq!(subscription.next().await.unwrap().unwrap().global_position, 1);
    drop(subscription);
    let schema = serde_json::json!({"type": "object"});
    store.register_event_schema("Opened", 1, &schema).await.unwrap();
    // Again: the server says it is registered already, the adapter reads it back.
    store.register_event_schema("Opened", 1, &schema).await.unwrap();
    let rows: Vec<_> = store.run_eventql_query("FROM e IN events PROJECT INTO COUNT()").collect().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(*rows[0].as_ref().unwrap(), serde_json::json!(1));
    let register = r#"{"schema":{"type":"object"},"type":"com.example.bank.Opened.v1"}"#;
    let requests = http(&server);
    assert_eq!(
        requests,
        [
            request("QUERY", "/api/v2/data/observe-events", true, r#"{"subject":"/","options":{"recursive":true}}"#),
            request("POST", "/api/v2/data/register-event-schema", true, register),
            request("POST", "/api/v2/data/register-event-schema", true, register),
            request("QUERY", "/api/v2/data/read-event-type", true, r#"{"type":"com.example.bank.Opened.v1"}"#),
            request(
                "QUERY",
                "/api/v2/data/run-eventql-query",
                true,
                r#"{"query":"FROM e IN events PROJECT INTO COUNT()"}"#
            ),
        ]
    );
}
