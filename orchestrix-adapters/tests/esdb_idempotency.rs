//! Appends safe to retry and commands applied once on EventSourcingDB
//! (ADR 0027, ADR 0033), each through API v1 and through API v2: a write
//! whose acknowledgement was lost, retried with `Any`, is stored once; an
//! event written before the adapter kept ids reads with its derived id and
//! is found by it; one command executed twice with one command id through
//! `Orchestrix` records one event.

#![cfg(feature = "eventsourcingdb")]

use std::sync::Arc;

use eventsourcingdb::client::Client;
use eventsourcingdb::event::EventCandidate;
use futures_util::TryStreamExt;
use orchestrix::app::CommandOptions;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::prelude::*;
use orchestrix::repository::Repository;
use orchestrix::store::{EventStore, ExpectedVersion, StreamAppend};
use orchestrix::{StoreError, StreamId, Uuid};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};
use orchestrix_esdb_test_server::{Faults, TestServer, TestServerOptions};
use serde_json::value::RawValue;

mod esdb_support;

esdb_support::for_both_apis!(
    a_lost_acknowledgement_retried_with_any_is_stored_once,
    a_lost_acknowledgement_of_a_multi_stream_append_is_stored_once,
    events_written_before_ids_were_kept_read_with_their_derived_id,
    a_command_executed_twice_with_one_command_id_records_one_event,
);

async fn server_and_store(options: TestServerOptions) -> (TestServer, EsdbStore) {
    let server = TestServer::start(options).await.unwrap();
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    (server, store)
}

fn event(text: &str) -> NewEvent {
    NewEvent::new("Noted", 1, RawValue::from_string(format!(r#"{{"text":"{text}"}}"#)).unwrap())
}

async fn stream_of(store: &EsdbStore, stream: &StreamId) -> Vec<Arc<RecordedEvent>> {
    store.read_stream(stream, 0).try_collect().await.unwrap()
}

fn ids(events: &[Arc<RecordedEvent>]) -> Vec<Uuid> {
    events.iter().map(|event| event.id).collect()
}

async fn a_lost_acknowledgement_retried_with_any_is_stored_once(options: TestServerOptions) {
    let (server, store) = server_and_store(options).await;
    let stream = StreamId::new("Account", "1").unwrap();
    store.append(&stream, ExpectedVersion::NoStream, vec![event("opened")]).await.unwrap();
    let events = vec![event("a"), event("b")];
    let sent: Vec<Uuid> = events.iter().map(|event| event.id).collect();

    // The server writes, the answer is lost: the client sees a failure.
    server.set_faults(Faults { lose_write_answers: 1, ..Faults::default() });
    let error = store.append(&stream, ExpectedVersion::Any, events.clone()).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(stream_of(&store, &stream).await.len(), 3, "the write was carried out");

    // The retry is answered with the stored events and writes nothing.
    let retried = store.append(&stream, ExpectedVersion::Any, events.clone()).await.unwrap();
    assert_eq!(ids(&retried), sent);
    assert_eq!(retried.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [2, 3]);
    let stored = stream_of(&store, &stream).await;
    assert_eq!(stored.len(), 3, "one copy");
    assert_eq!(ids(&stored[1..]), sent);
    // So is a retry with the expectation the first attempt had.
    let exact = store.append(&stream, ExpectedVersion::Exact(1), events).await.unwrap();
    assert_eq!(ids(&exact), sent);
    assert_eq!(stream_of(&store, &stream).await.len(), 3);
    // read_event finds them by their ids.
    let found = store.read_event(sent[1]).await.unwrap().expect("stored");
    assert_eq!((found.stream.clone(), found.stream_version), (stream.clone(), 3));
    assert!(store.read_event(Uuid::now_v7()).await.unwrap().is_none());
}

async fn a_lost_acknowledgement_of_a_multi_stream_append_is_stored_once(options: TestServerOptions) {
    let (server, store) = server_and_store(options).await;
    let (from, to) = (StreamId::new("Account", "1").unwrap(), StreamId::new("Account", "2").unwrap());
    let appends = || {
        vec![
            StreamAppend::new(from.clone(), ExpectedVersion::Any, vec![event("out")]),
            StreamAppend::new(to.clone(), ExpectedVersion::Any, vec![event("in")]),
        ]
    };
    let first = appends();
    let sent: Vec<Uuid> = first.iter().map(|part| part.events[0].id).collect();
    server.set_faults(Faults { lose_write_answers: 1, ..Faults::default() });
    let error = store.append_many(first.clone()).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let retried = store.append_many(first).await.unwrap();
    assert_eq!(retried.iter().map(|part| part[0].id).collect::<Vec<_>>(), sent);
    assert_eq!(ids(&stream_of(&store, &from).await), [sent[0]]);
    assert_eq!(ids(&stream_of(&store, &to).await), [sent[1]]);
    // One of the ids again, with a new event: refused, nothing written.
    let mut partial = appends();
    partial[0].events[0].id = sent[0];
    let error = store.append_many(partial).await.unwrap_err();
    assert!(error.is_duplicate_event_id(), "{error:?}");
    assert_eq!(stream_of(&store, &to).await.len(), 1);
}

async fn events_written_before_ids_were_kept_read_with_their_derived_id(options: TestServerOptions) {
    let (server, store) = server_and_store(options).await;
    // An envelope without `eventId`, as the adapter wrote before ADR 0033.
    let url = url::Url::parse(&format!("{}/", server.url().trim_end_matches('/'))).unwrap();
    let client = Client::new(url, server.token());
    let old = EventCandidate::builder()
        .source("https://orchestrix.rs")
        .subject("/Account/1")
        .ty("io.orchestrix.Noted.v1")
        .data(serde_json::json!({ "streamVersion": 1, "data": { "text": "old" } }))
        .build();
    client.write_events(vec![old], vec![]).await.unwrap();
    let stream = StreamId::new("Account", "1").unwrap();
    let read = stream_of(&store, &stream).await;
    assert_eq!(read.len(), 1);
    let derived = read[0].id;
    assert_eq!(derived.get_version_num(), 7);
    // The same id on every read, and read_event finds the event by it.
    assert_eq!(stream_of(&store, &stream).await[0].id, derived);
    let found = store.read_event(derived).await.unwrap().expect("found by its derived id");
    assert_eq!(found.global_position, read[0].global_position);
    // New events after it keep their own ids.
    let new = event("new");
    let appended = store.append(&stream, ExpectedVersion::Exact(1), vec![new.clone()]).await.unwrap();
    assert_eq!(appended[0].id, new.id);
    assert_eq!(ids(&stream_of(&store, &stream).await), [derived, new.id]);
}

#[event]
#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Incremented { by: u64 },
}

#[aggregate(event = CounterEvent, error = std::convert::Infallible)]
#[derive(Debug, Default)]
struct Counter {
    total: u64,
}

impl Counter {
    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Incremented { by } = event;
        self.total += by;
    }
}

#[derive(Debug, Clone)]
struct Start;

#[derive(Debug, Clone)]
struct Increment {
    by: u64,
}

#[command_handler]
impl Counter {
    fn start(_: Start) -> Result<CounterEvent, std::convert::Infallible> {
        Ok(CounterEvent::Incremented { by: 0 })
    }

    fn increment(&self, cmd: Increment) -> Result<CounterEvent, std::convert::Infallible> {
        Ok(CounterEvent::Incremented { by: cmd.by })
    }
}

async fn a_command_executed_twice_with_one_command_id_records_one_event(options: TestServerOptions) {
    let (_server, store) = server_and_store(options).await;
    let app = || Orchestrix::builder().event_store(store.clone()).aggregate::<Counter>().build().unwrap();
    let (first_app, other_app) = (app(), app());
    let (counter, command) = (Uuid::now_v7(), Uuid::now_v7());
    let with_id = || CommandOptions::default().command_id(command);
    first_app.execute(counter, Start).await.unwrap();
    let first = first_app.execute_with(counter, Increment { by: 5 }, with_id()).await.unwrap();
    let again = first_app.execute_with(counter, Increment { by: 5 }, with_id()).await.unwrap();
    // Another process (an empty cache) asks the store.
    let elsewhere = other_app.execute_with(counter, Increment { by: 5 }, with_id()).await.unwrap();
    for repeat in [&again, &elsewhere] {
        assert_eq!(repeat.version, first.version);
        assert_eq!(
            repeat.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            first.events.iter().map(|e| e.id).collect::<Vec<_>>()
        );
    }
    let stream = Repository::<Counter>::stream_id(counter).unwrap();
    let stored = stream_of(&store, &stream).await;
    assert_eq!(stored.len(), 2, "started, and one event for one command id");
    assert_eq!(stored[1].id, orchestrix::idempotency::command_event_id(command, 0));
    assert_eq!(other_app.load::<Counter>(&counter).await.unwrap().state.total, 5);
    // Another command id is another command.
    let next = CommandOptions::default().command_id(Uuid::now_v7());
    other_app.execute_with(counter, Increment { by: 5 }, next).await.unwrap();
    assert_eq!(stream_of(&store, &stream).await.len(), 3);
}
