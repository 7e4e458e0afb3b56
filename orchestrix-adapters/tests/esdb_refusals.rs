//! What EventSourcingDB refuses, and how the adapter reports it (ADR 0028),
//! through API v1 and through API v2: a full store is not a conflict (and
//! not retried), refusals of input are `InvalidInput` with the server's
//! explanation, hostile names cannot change an EventQL query, and subjects
//! with awkward characters survive the percent-encoding end to end.

#![cfg(feature = "eventsourcingdb")]

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use orchestrix::memory::InMemoryEventStore;
use orchestrix::query::{AppendCondition, Query, QueryItem};
use orchestrix::store::{EventFilter, ExpectedVersion, StreamAppend};
use orchestrix::{envelope::NewEvent, store::EventStore, StoreError, StreamId};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbError, EsdbStore};
use orchestrix_esdb_test_server::{Faults, TestServer, TestServerOptions};
use serde_json::value::RawValue;

mod esdb_support;

esdb_support::for_both_apis!(
    a_full_store_is_a_typed_error_that_is_not_retried,
    a_refused_request_is_invalid_input_with_the_servers_explanation,
    types_eventsourcingdb_refuses_are_invalid_input_before_any_write,
    hostile_type_names_cannot_change_a_condition_or_a_read_by_query,
    subjects_with_awkward_characters_round_trip_through_every_read,
);

async fn setup(options: TestServerOptions) -> (TestServer, EsdbStore) {
    let server = TestServer::start(options).await.unwrap();
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    server.take_requests();
    (server, store)
}

fn event(event_type: &str, n: usize) -> NewEvent {
    NewEvent::new(event_type, 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap())
}

fn writes(server: &TestServer) -> usize {
    server.take_requests().iter().filter(|(endpoint, _)| endpoint == "write-events").count()
}

/// The store holds 2 events; a third append with `Any` is refused at once
/// with `StoreFull` inside `Backend`, after one write: before the fix,
/// every 409 was a version conflict and `Any` retried 64 times.
async fn a_full_store_is_a_typed_error_that_is_not_retried(options: TestServerOptions) {
    let (server, store) = setup(TestServerOptions { capacity: Some(2), ..options }).await;
    let stream = StreamId::new("Account", "1").unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![event("Deposited", 1), event("Deposited", 2)]).await.unwrap();
    server.take_requests();
    let error = store.append(&stream, ExpectedVersion::Any, vec![event("Deposited", 3)]).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("not Backend: {error:?}") };
    let full = source.downcast_ref::<EsdbError>().expect("an EsdbError");
    assert!(matches!(full, EsdbError::StoreFull { detail } if detail.contains("capacity")), "{full:?}");
    assert_eq!(writes(&server), 1, "a full store is not retried");
    // The same through a multi-stream append and an exact expectation.
    let error = store
        .append_many(vec![StreamAppend::new(stream.clone(), ExpectedVersion::Exact(2), vec![event("Deposited", 3)])])
        .await
        .unwrap_err();
    assert!(matches!(&error, StoreError::Backend(s) if matches!(s.downcast_ref(), Some(EsdbError::StoreFull { .. }))));
    assert_eq!(writes(&server), 1);
    assert_eq!(server.len(), 2);
}

/// A 400 from the server (here injected on the write) is `InvalidInput`
/// carrying the server's text, not `Backend`; so is a schema the server
/// refuses as malformed.
async fn a_refused_request_is_invalid_input_with_the_servers_explanation(options: TestServerOptions) {
    let (server, store) = setup(options).await;
    let stream = StreamId::new("Account", "1").unwrap();
    server.set_faults(Faults { status: Some((400, 1)), ..Faults::default() });
    let error = store.append(&stream, ExpectedVersion::Any, vec![event("Deposited", 1)]).await.unwrap_err();
    assert!(matches!(&error, StoreError::InvalidInput(message) if message.contains("injected fault")), "{error:?}");
    let not_a_schema = serde_json::json!({ "type": 42 });
    let error = store.register_event_schema("Deposited", 1, &not_a_schema).await.unwrap_err();
    assert!(matches!(&error, StoreError::InvalidInput(message) if message.contains("schema")), "{error:?}");
}

/// `.`, `..` and names with empty segments pass the core's checks but
/// make an EventSourcingDB type the server refuses: the adapter refuses
/// them itself on every write path, before any request.
async fn types_eventsourcingdb_refuses_are_invalid_input_before_any_write(options: TestServerOptions) {
    let (server, store) = setup(options).await;
    let stream = StreamId::new("Account", "1").unwrap();
    for bad in [".", "..", "a..b", ".a", "a.", "a b", "é"] {
        let error = store.append(&stream, ExpectedVersion::Any, vec![event(bad, 1)]).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{bad}: {error:?}");
        let error = store
            .append_many(vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event(bad, 1)])])
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{bad}: {error:?}");
        let condition = AppendCondition::new(Query::none(), None);
        let parts = vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event(bad, 1)])];
        let error = store.append_if(condition, parts).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{bad}: {error:?}");
        let error = store.register_event_schema(bad, 1, &serde_json::json!({"type": "object"})).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidInput(_)), "{bad}: {error:?}");
    }
    assert_eq!(writes(&server), 0);
    assert!(server.is_empty());
}

/// Type names that would close the EventQL string and change the filter
/// if pasted unescaped. `append_if` must fail exactly where the in-memory
/// store fails, and `read_by_query` return what it returns.
async fn hostile_type_names_cannot_change_a_condition_or_a_read_by_query(options: TestServerOptions) {
    let (_server, store) = setup(options).await;
    let memory = InMemoryEventStore::new();
    let course = StreamId::new("Course", "c1").unwrap();
    let tagged = || {
        let mut e = event("Subscribed", 1);
        e.metadata.tags = vec!["course:c1".to_owned()];
        e
    };
    for s in [&store as &dyn EventStore, &memory] {
        s.append(&course, ExpectedVersion::Any, vec![tagged()]).await.unwrap();
    }
    let hostile = [
        r#"X.v") OR (e.type == "none"#,
        r#"X.v" AND false) OR (e.type == "#,
        "X.v')) AND false OR (('",
        "X\\\"",
        "X.v\" OR true OR \"",
    ];
    for name in hostile {
        // A legitimate item that matches the stored event, beside the hostile one.
        let query = Query::new([QueryItem::types([name]), QueryItem::types(["Subscribed"]).tag("course", "c1")]);
        for s in [&store as &dyn EventStore, &memory] {
            let condition = AppendCondition::new(query.clone(), None);
            let parts = vec![StreamAppend::new(course.clone(), ExpectedVersion::Any, vec![tagged()])];
            let error = s.append_if(condition, parts).await.unwrap_err();
            assert!(matches!(error, StoreError::ConditionFailed { position: 1, after: None }), "{name}: {error:?}");
            let read: Vec<u64> = s.read_by_query(&query, 0).map_ok(|e| e.global_position).try_collect().await.unwrap();
            assert_eq!(read, [1], "{name}");
        }
        // The hostile name alone selects nothing, on both stores: the append is allowed.
        let alone = Query::new([QueryItem::types([name])]);
        let read: Vec<u64> = store.read_by_query(&alone, 0).map_ok(|e| e.global_position).try_collect().await.unwrap();
        assert!(read.is_empty(), "{name}");
    }
}

/// Streams whose category and id hold `%`, `.`, `~`, spaces, `/` and
/// non-ASCII characters: written, then read back by stream, from the
/// global log, by a subscription and by query, each the same stream.
async fn subjects_with_awkward_characters_round_trip_through_every_read(options: TestServerOptions) {
    let (server, store) = setup(options).await;
    let streams = [
        StreamId::new("Account", "100%").unwrap(),
        StreamId::new("a.b", "..").unwrap(),
        StreamId::new("~home", "~").unwrap(),
        StreamId::new("with space", "a b/c").unwrap(),
        StreamId::new("Größe", "ünïcödé 🦀").unwrap(),
        StreamId::new("Account", "%2F").unwrap(),
    ];
    for (n, stream) in streams.iter().enumerate() {
        let mut e = event("Deposited", n);
        e.metadata.tags = vec![format!("n:{n}")];
        store.append(stream, ExpectedVersion::NoStream, vec![e]).await.unwrap();
    }
    let written = server.take_requests();
    for (_, body) in written.iter().filter(|(endpoint, _)| endpoint == "write-events") {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let subject = body["events"][0]["subject"].as_str().unwrap();
        assert_eq!(subject.matches('/').count(), 2, "two segments: {subject}");
        assert!(
            subject.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.~%".contains(&b)),
            "only unreserved characters and escapes: {subject}"
        );
    }
    for (n, stream) in streams.iter().enumerate() {
        let events: Vec<_> = store.read_stream(stream, 1).try_collect().await.unwrap();
        assert_eq!(events.len(), 1, "{stream}");
        assert_eq!(&events[0].stream, stream);
        assert_eq!(store.stream_version(stream).await.unwrap(), Some(1), "{stream}");
        let query = Query::new([QueryItem::types(["Deposited"]).raw_tag(format!("n:{n}"))]);
        let by_query: Vec<_> = store.read_by_query(&query, 0).try_collect().await.unwrap();
        assert_eq!(by_query.len(), 1);
        assert_eq!(&by_query[0].stream, stream);
    }
    let all: Vec<StreamId> =
        store.read_all(0, &EventFilter::all()).map_ok(|e| e.stream.clone()).try_collect().await.unwrap();
    assert_eq!(all, streams);
    let mut subscription = store.subscribe(0, EventFilter::all());
    for stream in &streams {
        let next = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&next.stream, stream);
    }
}
