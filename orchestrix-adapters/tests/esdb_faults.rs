//! Faults and token hygiene: a broken-off observation, garbage lines, a
//! slow server, 5xx answers, a wrong token, a server that is not
//! EventSourcingDB; each through API v1 and through API v2. And API
//! version negotiation.

#![cfg(feature = "eventsourcingdb")]

use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, ExpectedVersion};
use orchestrix::{envelope::NewEvent, store::EventStore, StoreError, StreamId};
use orchestrix_adapters::eventsourcingdb::{ApiVersion, EsdbConfig, EsdbError, EsdbStore};
use orchestrix_esdb_test_server::{Faults, TestServer, TestServerOptions};
use serde_json::value::RawValue;

mod esdb_support;

esdb_support::for_both_apis!(
    an_observation_broken_off_mid_line_resumes_without_loss_or_duplicates,
    a_garbage_line_is_a_typed_error_and_the_subscription_resumes,
    heartbeats_are_skipped_and_a_silent_server_is_reconnected,
    a_5xx_is_unavailable_and_writes_nothing_and_subscriptions_retry,
    a_slow_server_times_out_as_unavailable,
    a_conflict_is_typed_and_writes_nothing,
    the_token_never_shows_in_debug_output_or_errors,
    a_server_without_the_eventsourcingdb_header_is_refused,
    an_unreachable_server_is_unavailable,
);

const TOKEN: &str = "very-secret-token-4711";

async fn server(options: TestServerOptions) -> TestServer {
    TestServer::start(TestServerOptions { token: TOKEN.to_owned(), ..options }).await.unwrap()
}

fn config(server: &TestServer) -> EsdbConfig {
    EsdbConfig::new(server.url(), TOKEN).with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
}

fn numbered(n: usize) -> NewEvent {
    NewEvent::new("Deposited", 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap())
}

async fn fill(store: &EsdbStore, count: usize) {
    let stream = StreamId::new("Account", "1").unwrap();
    store.append(&stream, ExpectedVersion::Any, (0..count).map(numbered).collect()).await.unwrap();
}

async fn next_positions(subscription: &mut orchestrix::store::EventStream<'static>, count: usize) -> (Vec<u64>, usize) {
    let (mut positions, mut errors) = (Vec::new(), 0);
    while positions.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.expect("stalled").expect("ended")
        {
            Ok(event) => positions.push(event.global_position),
            Err(_) => errors += 1,
        }
    }
    (positions, errors)
}

async fn expect_quiet(subscription: &mut orchestrix::store::EventStream<'static>) {
    let extra = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
    assert!(extra.is_err(), "unexpected item: {extra:?}");
}

async fn an_observation_broken_off_mid_line_resumes_without_loss_or_duplicates(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let store = EsdbStore::connect(config(&server)).await.unwrap();
    fill(&store, 10).await;
    server.set_faults(Faults { break_observe_after: Some(4), ..Faults::default() });
    let mut subscription = store.subscribe(0, EventFilter::all());
    let (positions, errors) = next_positions(&mut subscription, 10).await;
    assert_eq!(positions, (1..=10).collect::<Vec<_>>());
    assert_eq!(errors, 0, "a dropped connection is retried silently");
    fill(&store, 1).await;
    assert_eq!(next_positions(&mut subscription, 1).await.0, vec![11]);
    expect_quiet(&mut subscription).await;
}

async fn a_garbage_line_is_a_typed_error_and_the_subscription_resumes(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let store = EsdbStore::connect(config(&server)).await.unwrap();
    fill(&store, 6).await;
    server.set_faults(Faults { garbage_after: Some(2), ..Faults::default() });
    let mut subscription = store.subscribe(0, EventFilter::all());
    let mut items = Vec::new();
    while items.iter().filter(|i: &&Result<u64, String>| i.is_ok()).count() < 6 {
        let item = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
        items.push(item.map(|e| e.global_position).map_err(|e| {
            assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
            e.to_string()
        }));
    }
    let positions: Vec<u64> = items.iter().filter_map(|i| i.as_ref().ok().copied()).collect();
    assert_eq!(positions, (1..=6).collect::<Vec<_>>());
    let errors: Vec<&String> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    assert_eq!(errors.len(), 1, "{items:?}");
    assert!(errors[0].contains("malformed stream line"), "{}", errors[0]);
    assert!(items[2].is_err(), "the error comes where the garbage was: {items:?}");
    expect_quiet(&mut subscription).await;
}

async fn heartbeats_are_skipped_and_a_silent_server_is_reconnected(options: TestServerOptions) {
    let lively = server(TestServerOptions { heartbeat: Duration::from_millis(30), ..options.clone() }).await;
    let store = EsdbStore::connect(config(&lively).with_heartbeat_timeout(Duration::from_secs(2))).await.unwrap();
    let mut subscription = store.subscribe(0, EventFilter::all());
    expect_quiet(&mut subscription).await; // several heartbeats pass, nothing is delivered
    fill(&store, 2).await;
    assert_eq!(next_positions(&mut subscription, 2).await, (vec![1, 2], 0));

    // A server slower than the heartbeat timeout: the subscription reconnects, silently.
    let quiet = server(TestServerOptions { heartbeat: Duration::from_mins(1), ..options }).await;
    let store = EsdbStore::connect(config(&quiet).with_heartbeat_timeout(Duration::from_millis(100))).await.unwrap();
    let mut subscription = store.subscribe(0, EventFilter::all());
    let reader = tokio::spawn(async move { next_positions(&mut subscription, 1).await });
    tokio::time::sleep(Duration::from_millis(350)).await;
    fill(&store, 1).await;
    assert_eq!(reader.await.unwrap(), (vec![1], 0));
    let observations = quiet.take_requests().into_iter().filter(|(e, _)| e == "observe-events").count();
    assert!(observations >= 2, "expected reconnections, saw {observations} observation(s)");
}

async fn a_5xx_is_unavailable_and_writes_nothing_and_subscriptions_retry(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let store = EsdbStore::connect(config(&server)).await.unwrap();
    let stream = StreamId::new("Account", "1").unwrap();
    server.set_faults(Faults { status: Some((503, 1)), ..Faults::default() });
    let error = store.append(&stream, ExpectedVersion::Any, vec![numbered(0)]).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(server.is_empty());
    fill(&store, 2).await;
    server.set_faults(Faults { status: Some((500, 3)), ..Faults::default() });
    let mut subscription = store.subscribe(0, EventFilter::all());
    assert_eq!(next_positions(&mut subscription, 2).await, (vec![1, 2], 0));
}

async fn a_slow_server_times_out_as_unavailable(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let store = EsdbStore::connect(config(&server).with_request_timeout(Duration::from_millis(100))).await.unwrap();
    server.set_faults(Faults { delay: Some(Duration::from_millis(500)), ..Faults::default() });
    let error = store.stream_version(&StreamId::new("Account", "1").unwrap()).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("did not answer within"), "{error}");
}

async fn a_conflict_is_typed_and_writes_nothing(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let store = EsdbStore::connect(config(&server)).await.unwrap();
    fill(&store, 2).await;
    let stream = StreamId::new("Account", "1").unwrap();
    let error = store.append(&stream, ExpectedVersion::Exact(1), vec![numbered(9)]).await.unwrap_err();
    assert!(
        matches!(error, StoreError::WrongExpectedVersion { expected: ExpectedVersion::Exact(1), actual: Some(2), .. }),
        "{error:?}"
    );
    assert_eq!(server.len(), 2);
}

async fn the_token_never_shows_in_debug_output_or_errors(options: TestServerOptions) {
    let server = server(options.clone()).await;
    let config = config(&server);
    assert!(!format!("{config:?}").contains(TOKEN));
    let store = EsdbStore::connect(config.clone()).await.unwrap();
    assert!(!format!("{store:?}").contains(TOKEN));

    let wrong = EsdbConfig::new(server.url(), format!("{TOKEN}-wrong"));
    let error = EsdbStore::connect(wrong).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected Backend, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::Unauthorized)), "{error:?}");
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
    }

    // A 401 in the middle of work is the same typed error, token-free.
    let unchecked = EsdbStore::unchecked(EsdbConfig::new(server.url(), "nope-4711"), store.api_version()).unwrap();
    let error = unchecked.head_position().await.unwrap_err();
    assert!(!format!("{error:?} {error}").contains("nope-4711"), "{error:?}");
    assert!(error.to_string().contains("401"), "{error}");
}

async fn a_server_without_the_eventsourcingdb_header_is_refused(options: TestServerOptions) {
    let server = server(options.clone()).await;
    server.set_faults(Faults { no_server_header: true, ..Faults::default() });
    let error = EsdbStore::connect(config(&server)).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected Backend, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::NotEventSourcingDb { .. })), "{error:?}");
}

#[tokio::test]
async fn v2_is_spoken_where_the_server_offers_it_and_v1_where_not() {
    for (options, expected, prefix) in [
        (TestServerOptions::default(), ApiVersion::V1, "/api/v1/"),
        (TestServerOptions::v2_only(), ApiVersion::V2, "/api/v2/"),
        (TestServerOptions::both(), ApiVersion::V2, "/api/v2/"),
    ] {
        let server = server(options.clone()).await;
        let store = EsdbStore::connect(config(&server)).await.unwrap();
        assert_eq!(store.api_version(), expected, "{options:?}");
        assert!(store.api_url().ends_with(prefix.trim_end_matches('/')), "{}", store.api_url());
        fill(&store, 1).await;
        assert_eq!(store.head_position().await.unwrap(), Some(1));
        let requests = server.take_http_requests();
        // The probe, then everything through the version found.
        assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("GET", "/api/v2/system/ping"));
        for request in &requests[1..] {
            assert!(request.path.starts_with(prefix), "{options:?}: {request:?}");
        }
    }
}

/// A store told to speak a version the server does not offer fails with
/// the 404, typed, and the probe of `connect` is what avoids that.
#[tokio::test]
async fn a_version_the_server_does_not_offer_is_a_404() {
    let v2 = server(TestServerOptions::v2_only()).await;
    let store = EsdbStore::unchecked(config(&v2), ApiVersion::V1).unwrap();
    let error = store.head_position().await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected Backend, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::Status { status: 404, .. })), "{error:?}");
}

/// A probe answered by something that is not EventSourcingDB (a 200
/// without its `Server` header, a 5xx) is an error, not a guess at v1.
#[tokio::test]
async fn a_probe_that_tells_nothing_is_an_error() {
    let v2 = server(TestServerOptions::both()).await;
    v2.set_faults(Faults { no_server_header: true, ..Faults::default() });
    let error = EsdbStore::connect(config(&v2)).await.unwrap_err();
    let StoreError::Backend(source) = &error else { panic!("expected Backend, got {error:?}") };
    assert!(matches!(source.downcast_ref::<EsdbError>(), Some(EsdbError::NotEventSourcingDb { .. })), "{error:?}");
    v2.set_faults(Faults { delay: Some(Duration::from_millis(300)), ..Faults::default() });
    let error = EsdbStore::connect(config(&v2).with_request_timeout(Duration::from_millis(50))).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

async fn an_unreachable_server_is_unavailable(options: TestServerOptions) {
    let server = server(options).await;
    let url = server.url();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = EsdbStore::connect(EsdbConfig::new(url, TOKEN)).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// A v2 answer that ends before its `end` item broke off: a read to the
/// end of it ends with a transient error, not a shorter answer taken for
/// complete (v1 has no end item, so there the end of the body is the end
/// of the answer). Reads that stop at the first event (the last version
/// of a stream) do not wait for the end.
#[tokio::test]
async fn a_v2_answer_without_its_end_item_is_unavailable_not_short() {
    let server = server(TestServerOptions::v2_only()).await;
    let store = EsdbStore::connect(config(&server)).await.unwrap();
    fill(&store, 3).await;
    server.set_faults(Faults { no_end_item: true, ..Faults::default() });
    let stream = StreamId::new("Account", "1").unwrap();
    let read: Vec<_> = store.read_stream(&stream, 1).collect().await;
    assert_eq!(read.len(), 4, "three events, then the error: {read:?}");
    assert!(read[..3].iter().all(Result::is_ok), "{read:?}");
    let error = read[3].as_ref().unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("ended before its `end` item"), "{error}");
    server.set_faults(Faults::default());
    let read: Vec<_> = store.read_stream(&stream, 1).collect().await;
    assert!(read.len() == 3 && read.iter().all(Result::is_ok), "{read:?}");
}
