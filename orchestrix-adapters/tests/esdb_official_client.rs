//! The test server driven by the official `eventsourcingdb` client crate:
//! where the official client and our test server disagree, the test server
//! is wrong. Also checks that events our adapter writes read back through
//! the official client as plain CloudEvents.

#![cfg(feature = "eventsourcingdb")]

use eventsourcingdb::client::request_options::ReadEventsOptions;
use eventsourcingdb::client::Client;
use eventsourcingdb::client::Precondition;
use eventsourcingdb::event::EventCandidate;
use futures_util::StreamExt;
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use serde_json::json;

mod esdb_support;

esdb_support::for_both_apis!(
    the_official_client_pings_writes_with_preconditions_and_reads,
    events_written_by_the_adapter_read_back_through_the_official_client,
    every_event_carries_a_hash_chain_the_official_client_verifies,
    eventql_queries_and_the_eventql_precondition_work_with_the_official_client,
    registered_schemas_are_enforced_as_the_official_client_expects,
    the_official_client_speaks_the_version_the_server_offers,
);

/// The official client probes `GET /api/v2/system/ping` and then speaks
/// v2 to a server that offers it, v1 to one that does not: every request
/// after the probe goes to the version the server offers, with the
/// methods the official client uses (reads are `QUERY` in v2).
async fn the_official_client_speaks_the_version_the_server_offers(options: TestServerOptions) {
    let v2 = options.offer_v2;
    let (server, client) = server_and_client(options).await;
    client.ping().await.unwrap();
    client.verify_api_token().await.unwrap();
    client.write_events(vec![candidate("/accounts/1", 1)], vec![]).await.unwrap();
    assert_eq!(read(&client, "/accounts", true).await.len(), 1);
    let requests = server.take_http_requests();
    let seen: Vec<(&str, &str)> = requests.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    let expected: &[(&str, &str)] = if v2 {
        &[
            ("GET", "/api/v2/system/ping"),
            ("GET", "/api/v2/system/ping"),
            ("POST", "/api/v2/system/verify-token"),
            ("POST", "/api/v2/data/write-events"),
            ("QUERY", "/api/v2/data/read-events"),
        ]
    } else {
        &[
            ("GET", "/api/v2/system/ping"),
            ("GET", "/api/v1/ping"),
            ("POST", "/api/v1/verify-api-token"),
            ("POST", "/api/v1/write-events"),
            ("POST", "/api/v1/read-events"),
        ]
    };
    assert_eq!(seen, expected);
}

/// A test server and the official client on it. The client finds out the
/// API version itself; [`the_official_client_speaks_the_version_the_server_offers`]
/// checks that it finds the one the server offers.
async fn server_and_client(options: TestServerOptions) -> (TestServer, Client) {
    let server = TestServer::start(options).await.unwrap();
    let url = url::Url::parse(&format!("{}/", server.url().trim_end_matches('/'))).unwrap();
    let client = Client::new(url, server.token());
    (server, client)
}

fn candidate(subject: &str, n: u64) -> EventCandidate {
    EventCandidate::builder()
        .source("https://bank.example")
        .subject(subject)
        .ty("com.example.bank.deposited")
        .data(json!({ "amount": n }))
        .build()
}

async fn read(client: &Client, subject: &str, recursive: bool) -> Vec<eventsourcingdb::event::Event> {
    let options = ReadEventsOptions { recursive, ..ReadEventsOptions::default() };
    let stream = client.read_events(subject, Some(options)).await.unwrap();
    stream.map(|event| event.unwrap()).collect().await
}

async fn the_official_client_pings_writes_with_preconditions_and_reads(options: TestServerOptions) {
    let (_server, client) = server_and_client(options).await;
    client.ping().await.unwrap();
    client.verify_api_token().await.unwrap();

    let written = client
        .write_events(vec![candidate("/accounts/1", 1)], vec![Precondition::is_subject_pristine("/accounts/1", None)])
        .await
        .unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].subject(), "/accounts/1");
    assert_eq!(written[0].ty(), "com.example.bank.deposited");

    // The same precondition again: the subject is no longer pristine.
    let refused = client
        .write_events(vec![candidate("/accounts/1", 2)], vec![Precondition::is_subject_pristine("/accounts/1", None)])
        .await;
    assert!(refused.is_err(), "a failed precondition is an error for the official client");

    let on_id = Precondition::is_subject_on_event_id("/accounts/1", written[0].id(), None);
    client.write_events(vec![candidate("/accounts/1", 3)], vec![on_id]).await.unwrap();
    client.write_events(vec![candidate("/accounts/2", 4)], vec![]).await.unwrap();

    let one = read(&client, "/accounts/1", false).await;
    assert_eq!(one.iter().map(|e| e.data()["amount"].clone()).collect::<Vec<_>>(), [json!(1), json!(3)]);
    let all = read(&client, "/", true).await;
    assert_eq!(all.len(), 3, "nothing from the refused write");
    let ids: Vec<u64> = all.iter().map(|e| e.id().parse().unwrap()).collect();
    assert_eq!(ids, [0, 1, 2], "ids are assigned by the server, in order from 0");
}

async fn events_written_by_the_adapter_read_back_through_the_official_client(options: TestServerOptions) {
    let (server, client) = server_and_client(options).await;
    let config = EsdbConfig::new(server.url(), server.token())
        .with_source("https://bank.example")
        .with_type_prefix("com.example.bank");
    let store = EsdbStore::connect(config).await.unwrap();
    let stream = StreamId::new("Account", "42").unwrap();
    let event = NewEvent::new(
        "AccountOpened",
        1,
        serde_json::value::RawValue::from_string(r#"{"owner":"Ada"}"#.into()).unwrap(),
    );
    store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();

    let events = read(&client, "/Account/42", false).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].ty(), "com.example.bank.AccountOpened.v1");
    assert_eq!(events[0].subject(), "/Account/42");
    assert_eq!(events[0].data()["data"], json!({ "owner": "Ada" }), "the event data inside the adapter's envelope");
}

async fn every_event_carries_a_hash_chain_the_official_client_verifies(options: TestServerOptions) {
    let v2 = options.offer_v2;
    let (server, client) = server_and_client(options).await;
    let traced = EventCandidate::builder()
        .source("https://bank.example")
        .subject("/accounts/3")
        .ty("com.example.bank.deposited")
        .data(json!({ "amount": 7, "note": "spaced  out ✓" }))
        .traceinfo(eventsourcingdb::event::TraceInfo::WithState {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "rojo=00f067aa0ba902b7".into(),
        })
        .build();
    client.write_events(vec![candidate("/accounts/1", 1), candidate("/accounts/2", 2)], vec![]).await.unwrap();
    client.write_events(vec![traced], vec![]).await.unwrap();
    // And events the adapter writes, with its envelope.
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    let event = NewEvent::new(
        "AccountOpened",
        1,
        serde_json::value::RawValue::from_string(r#"{"owner": "Ada",  "n": 1.50}"#.into()).unwrap(),
    );
    store.append(&StreamId::new("Account", "1").unwrap(), ExpectedVersion::NoStream, vec![event]).await.unwrap();

    let events = read(&client, "/", true).await;
    assert_eq!(events.len(), 4);
    let mut predecessor = "0".repeat(64);
    for event in &events {
        event.verify_hash().unwrap_or_else(|e| panic!("event {}: {e}", event.id()));
        // A server with API v2 (EventSourcingDB 1.3 on) writes hashes of
        // version 2; one that offers v1 only (1.2) hashes of version 1,
        // without a prefix. The official client verifies both.
        if v2 {
            assert!(event.hash().starts_with("esdb:hash:v2:"), "{}", event.hash());
        } else {
            assert!(
                event.hash().len() == 64 && event.hash().bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                event.hash()
            );
        }
        assert_eq!(event.predecessorhash(), predecessor, "event {} chains to the one before", event.id());
        event.hash().clone_into(&mut predecessor);
    }
    assert_eq!(events[2].traceparent(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

async fn eventql_queries_and_the_eventql_precondition_work_with_the_official_client(options: TestServerOptions) {
    use eventsourcingdb::error::{code, ClientError};
    let (_server, client) = server_and_client(options).await;
    client.write_events(vec![candidate("/accounts/1", 1), candidate("/accounts/2", 2)], vec![]).await.unwrap();

    let rows: Vec<serde_json::Value> = client
        .run_eventql_query(r#"FROM e IN events WHERE e.subject == "/accounts/2" PROJECT INTO e"#)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["data"], json!({ "amount": 2 }));
    let empty: Vec<_> = client
        .run_eventql_query("FROM e IN events ORDER BY e.time DESC TOP 100 PROJECT INTO e")
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(empty.len(), 2);

    // "No event of this type on /accounts/3 yet": holds once, then not.
    let no_withdrawal = Precondition::is_eventql_query_true(
        r#"FROM e IN events WHERE e.type == "com.example.bank.withdrawn" AND e.subject == "/accounts/3" PROJECT INTO COUNT() == 0"#,
    );
    let withdrawn = || {
        EventCandidate::builder()
            .source("https://bank.example")
            .subject("/accounts/3")
            .ty("com.example.bank.withdrawn")
            .data(json!({ "amount": 1 }))
            .build()
    };
    client.write_events(vec![withdrawn()], vec![no_withdrawal]).await.unwrap();
    let again = Precondition::is_eventql_query_true(
        r#"FROM e IN events WHERE e.type == "com.example.bank.withdrawn" AND e.subject == "/accounts/3" PROJECT INTO COUNT() == 0"#,
    );
    match client.write_events(vec![withdrawn()], vec![again]).await {
        Err(ClientError::DbApiError(error)) => assert_eq!(error.code, code::PRECONDITION_VIOLATED, "{error}"),
        other => panic!("expected a violated precondition, got {other:?}"),
    }
    assert_eq!(read(&client, "/accounts/3", false).await.len(), 1, "nothing from the refused write");
}

async fn registered_schemas_are_enforced_as_the_official_client_expects(options: TestServerOptions) {
    use eventsourcingdb::error::{code, ClientError};
    let (_server, client) = server_and_client(options).await;
    let schema = json!({
        "type": "object",
        "properties": { "amount": { "type": "integer" } },
        "required": ["amount"],
    });
    client.register_event_schema("com.example.bank.deposited", &schema).await.unwrap();
    match client.register_event_schema("com.example.bank.deposited", &schema).await {
        Err(ClientError::DbApiError(error)) => assert_eq!(error.code, code::EVENT_SCHEMA_ALREADY_REGISTERED),
        other => panic!("expected an already registered schema, got {other:?}"),
    }
    assert_eq!(client.read_event_type("com.example.bank.deposited").await.unwrap().schema, Some(schema));

    client.write_events(vec![candidate("/accounts/1", 1)], vec![]).await.unwrap();
    let wrong = EventCandidate::builder()
        .source("https://bank.example")
        .subject("/accounts/1")
        .ty("com.example.bank.deposited")
        .data(json!({ "amount": "one" }))
        .build();
    match client.write_events(vec![wrong], vec![]).await {
        Err(ClientError::DbApiError(error)) => assert_eq!(error.code, code::EVENT_SCHEMA_VIOLATED, "{error}"),
        other => panic!("expected a schema violation, got {other:?}"),
    }
    assert_eq!(read(&client, "/accounts/1", false).await.len(), 1);
}

/// Recursive preconditions exist in v2 only: the test server checks them
/// over the subject and every subject below it, as the official client
/// expects, and `isSubjectPopulated` holds once a subject has an event.
#[tokio::test]
async fn recursive_preconditions_hold_over_the_subjects_below_through_v2() {
    use eventsourcingdb::client::PreconditionOptions;
    use eventsourcingdb::error::{code, ClientError};
    let (_server, client) = server_and_client(TestServerOptions::v2_only()).await;
    let recursive = || Some(PreconditionOptions { recursive: true });
    client
        .write_events(
            vec![candidate("/accounts/1", 1)],
            vec![Precondition::is_subject_pristine("/accounts", recursive())],
        )
        .await
        .unwrap();
    match client
        .write_events(
            vec![candidate("/accounts/2", 2)],
            vec![Precondition::is_subject_pristine("/accounts", recursive())],
        )
        .await
    {
        Err(ClientError::DbApiError(error)) => assert_eq!(error.code, code::PRECONDITION_VIOLATED, "{error}"),
        other => panic!("expected a violated precondition, got {other:?}"),
    }
    // Not recursive, `/accounts` itself has no event.
    client
        .write_events(vec![candidate("/accounts/2", 2)], vec![Precondition::is_subject_pristine("/accounts", None)])
        .await
        .unwrap();
    let latest = read(&client, "/accounts/2", false).await;
    let on_latest = Precondition::is_subject_on_event_id("/accounts", latest[0].id(), recursive());
    let populated = Precondition::is_subject_populated("/accounts", recursive());
    client.write_events(vec![candidate("/accounts/3", 3)], vec![on_latest, populated]).await.unwrap();
    assert_eq!(read(&client, "/accounts", true).await.len(), 3);
}
