//! Group commit on PostgreSQL (ADR 0024): concurrent appends share one
//! statement, and each keeps its own atomicity, check and outcome.
//!
//! Every race here uses `with_group_commit(1)`: the first append of a
//! `join_all` takes the only statement slot and runs alone; the others,
//! polled in the same turn, queue and then share one statement. So the
//! appends of a race commit in at most two transactions, which the tests
//! read off the positions (`xid8 << 20 | index`, ADR 0008).
#![cfg(feature = "postgres")]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::{envelope::NewEvent, StoreError, StreamId};
use orchestrix_adapters::postgres::PgStore;
use support::{event, stream};

fn events(count: usize, tag: &str) -> Vec<NewEvent> {
    (0..count).map(|i| event("Opened", &format!("{{\"tag\":\"{tag}\",\"i\":{i}}}"))).collect()
}

type Append = (StreamId, ExpectedVersion, Vec<NewEvent>);
type Outcome = Result<Vec<Arc<RecordedEvent>>, StoreError>;

/// Runs `appends` concurrently, in one task, and returns their outcomes in
/// order.
async fn race(store: &PgStore, appends: Vec<Append>) -> Vec<Outcome> {
    join_all(appends.iter().map(|(stream, expected, events)| store.append(stream, *expected, events.clone()))).await
}

/// What identifies a recorded event, for comparing reads with appends.
/// (The data is compared parsed: jsonb does not keep the text's layout.)
fn keys(events: &[Arc<RecordedEvent>]) -> Vec<(uuid::Uuid, String, u64, u64, serde_json::Value, String)> {
    events
        .iter()
        .map(|e| {
            let data = serde_json::from_str(e.data.get()).expect("stored data is JSON");
            (e.id, e.stream.to_string(), e.stream_version, e.global_position, data, e.recorded_at.to_rfc3339())
        })
        .collect()
}

/// The transactions (`position >> 20`) that wrote `recorded`.
fn transactions<'a>(recorded: impl IntoIterator<Item = &'a Arc<RecordedEvent>>) -> BTreeSet<u64> {
    recorded.into_iter().map(|event| event.global_position >> 20).collect()
}

async fn grouped_store() -> Option<PgStore> {
    support::pg_store_with(|config| config.with_group_commit(1)).await
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_a_statement_and_read_back_as_returned() {
    let Some(store) = grouped_store().await else { return };
    let appends: Vec<Append> = (0..24)
        .map(|i| (stream(&format!("new-{i}")), ExpectedVersion::NoStream, events(i % 3 + 1, &format!("n{i}"))))
        .collect();
    let outcomes = race(&store, appends.clone()).await;
    let recorded: Vec<Vec<Arc<RecordedEvent>>> =
        outcomes.into_iter().map(|outcome| outcome.expect("a new stream never conflicts")).collect();

    // Two transactions for 24 appends: the first alone, the rest as one group.
    let all = recorded.iter().flatten();
    assert_eq!(transactions(all).len(), 2, "the queued appends did not share a statement");

    for ((target, _, sent), written) in appends.iter().zip(&recorded) {
        assert_eq!(written.len(), sent.len());
        for (version, (event, sent)) in (1..).zip(written.iter().zip(sent)) {
            assert_eq!(&event.stream, target);
            assert_eq!(event.stream_version, version);
            assert_eq!(event.data.get(), sent.data.get(), "an append returns its events as sent");
        }
        // An append's events are consecutive in the global log.
        for pair in written.windows(2) {
            assert_eq!(pair[1].global_position, pair[0].global_position + 1);
        }
    }

    // Within the group, appends are written in the order of their stream
    // names (ADR 0024), so that two groups never wait in a cycle.
    let mut grouped: Vec<&Vec<Arc<RecordedEvent>>> = recorded[1..].iter().collect();
    grouped.sort_by_key(|written| written[0].global_position);
    let names: Vec<String> = grouped.iter().map(|written| written[0].stream.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // The log holds exactly what the appends returned, in position order.
    let mut returned: Vec<Arc<RecordedEvent>> = recorded.into_iter().flatten().collect();
    returned.sort_by_key(|event| event.global_position);
    let read: Vec<Arc<RecordedEvent>> =
        store.read_all(1, &EventFilter::all()).map(|event| event.expect("readable")).collect().await;
    assert_eq!(keys(&read), keys(&returned));
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_ahead_of_the_stream_is_left_out_and_the_others_commit() {
    let Some(store) = grouped_store().await else { return };
    for name in ["ahead", "fresh"] {
        store.append(&stream(name), ExpectedVersion::NoStream, events(2, name)).await.unwrap();
    }
    let mut appends: Vec<Append> = vec![
        (stream("first"), ExpectedVersion::NoStream, events(1, "first")),
        // Version 3 does not exist: the group's statement leaves this out.
        (stream("ahead"), ExpectedVersion::Exact(3), events(2, "too early")),
        (stream("fresh"), ExpectedVersion::Exact(2), events(2, "on time")),
    ];
    appends.extend((0..5).map(|i| (stream(&format!("new-{i}")), ExpectedVersion::NoStream, events(1, "new"))));
    let mut outcomes = race(&store, appends).await.into_iter();

    let first = outcomes.next().unwrap().unwrap();
    match outcomes.next().unwrap() {
        Err(StoreError::WrongExpectedVersion { stream: s, expected, actual }) => {
            assert_eq!(s, stream("ahead"));
            assert_eq!(expected, ExpectedVersion::Exact(3));
            assert_eq!(actual, Some(2));
        }
        other => panic!("an expectation ahead of the stream must conflict, got {other:?}"),
    }
    let rest: Vec<Vec<Arc<RecordedEvent>>> = outcomes.map(Result::unwrap).collect();
    assert_eq!(rest[0].iter().map(|e| e.stream_version).collect::<Vec<_>>(), [3, 4]);
    // The group still committed once, apart from the first append.
    let grouped = transactions(rest.iter().flatten());
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert!(grouped.is_disjoint(&transactions(&first)));
    assert_eq!(store.stream_version(&stream("ahead")).await.unwrap(), Some(2));
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_racing_inside_a_group_get_the_outcomes_they_would_alone() {
    let Some(store) = grouped_store().await else { return };
    store.append(&stream("stale"), ExpectedVersion::NoStream, events(2, "stale")).await.unwrap();
    let mut appends: Vec<Append> = vec![(stream("first"), ExpectedVersion::NoStream, events(1, "first"))];
    // Two creations of one stream: one wins, one conflicts.
    appends.push((stream("twice"), ExpectedVersion::NoStream, events(2, "a")));
    appends.push((stream("twice"), ExpectedVersion::NoStream, events(1, "b")));
    // A stale expectation: version 2 exists already.
    appends.push((stream("stale"), ExpectedVersion::Exact(1), events(1, "late")));
    // Five appends to one stream at any version: all land, in some order.
    appends.extend((0..5).map(|i| (stream("hot"), ExpectedVersion::Any, events(1, &format!("any{i}")))));
    appends.extend((0..5).map(|i| (stream(&format!("new-{i}")), ExpectedVersion::NoStream, events(1, "new"))));
    let outcomes = race(&store, appends).await;

    let twice: Vec<&Outcome> = outcomes[1..3].iter().collect();
    let won: Vec<_> = twice.iter().filter(|outcome| outcome.is_ok()).collect();
    assert_eq!(won.len(), 1, "exactly one creation wins: {twice:?}");
    let lost = twice.iter().find(|outcome| outcome.is_err()).unwrap();
    assert!(matches!(lost, Err(StoreError::WrongExpectedVersion { actual: Some(_), .. })), "{lost:?}");
    let stored: Vec<_> = store.read_stream(&stream("twice"), 1).map(Result::unwrap).collect().await;
    let winner = won[0].as_ref().unwrap();
    assert_eq!(stored.len(), winner.len(), "the loser wrote nothing");
    assert_eq!(keys(&stored), keys(winner));

    assert!(matches!(outcomes[3], Err(StoreError::WrongExpectedVersion { actual: Some(2), .. })), "{:?}", outcomes[3]);
    assert_eq!(store.stream_version(&stream("stale")).await.unwrap(), Some(2));

    let mut hot: Vec<u64> = outcomes[4..9].iter().map(|outcome| outcome.as_ref().unwrap()[0].stream_version).collect();
    hot.sort_unstable();
    assert_eq!(hot, [1, 2, 3, 4, 5]);
    for outcome in &outcomes[9..] {
        assert_eq!(outcome.as_ref().unwrap()[0].stream_version, 1);
    }
    assert_eq!(store.stream_version(&stream("hot")).await.unwrap(), Some(5));
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_the_server_refuses_fails_alone() {
    let Some(store) = grouped_store().await else { return };
    let mut appends: Vec<Append> = vec![
        (stream("first"), ExpectedVersion::NoStream, events(1, "first")),
        // jsonb cannot hold U+0000: the server refuses the group's statement.
        (stream("nul"), ExpectedVersion::NoStream, vec![event("Nul", r#"{"s":"a\u0000b"}"#)]),
    ];
    appends.extend((0..5).map(|i| (stream(&format!("new-{i}")), ExpectedVersion::NoStream, events(2, "new"))));
    let outcomes = race(&store, appends).await;
    assert!(matches!(outcomes[1], Err(StoreError::InvalidInput(_))), "{:?}", outcomes[1]);
    assert_eq!(store.stream_version(&stream("nul")).await.unwrap(), None);
    for (i, outcome) in outcomes[2..].iter().enumerate() {
        assert_eq!(outcome.as_ref().unwrap().len(), 2);
        assert_eq!(store.stream_version(&stream(&format!("new-{i}"))).await.unwrap(), Some(2));
    }
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_abandoned_while_it_waits_for_a_group_is_not_written() {
    let Some(store) = grouped_store().await else { return };
    // An open transaction holds version 1 of `blocked` in the unique index,
    // so the append that takes the only slot waits for it.
    let blocker = hold_first_version(&store, "blocked").await;

    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.append(&stream("blocked"), ExpectedVersion::Any, events(1, "waits")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // This one queues behind it; its caller gives up.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        store.append(&stream("abandoned"), ExpectedVersion::NoStream, events(1, "gone")),
    )
    .await;
    assert!(abandoned.is_err(), "the append should still be waiting for the slot: {abandoned:?}");

    blocker.rollback().await.unwrap();
    let written = waiting.await.unwrap().expect("the held version was rolled back");
    assert_eq!(written[0].stream_version, 1);
    // A later append takes the slot and runs; the abandoned one is gone.
    store.append(&stream("later"), ExpectedVersion::NoStream, events(1, "later")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.stream_version(&stream("abandoned")).await.unwrap(), None);
    store.drop_schema().await.unwrap();
}

/// Opens a transaction that holds version 1 of `Account/<id>` in the
/// unique index, so that an append creating that stream waits for it.
async fn hold_first_version(store: &PgStore, id: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut blocker = store.pool().begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO \"{}\".events (global_position, event_id, category, aggregate_id, stream_version, \
         event_type, schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, \
         gen_random_uuid(), 'Account', $1, 1, 'Held', 1, '{{}}', '{{}}', now())",
        store.config().schema()
    ))
    .bind(id)
    .execute(&mut *blocker)
    .await
    .unwrap();
    blocker
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_on_a_lock_holds_the_others_back_only_briefly() {
    // Two slots: one append waits on a lock in the first; another, alone
    // in the queue, starts the second slot after a short wait.
    let Some(store) = support::pg_store_with(|config| config.with_group_commit(2)).await else { return };
    let blocker = hold_first_version(&store, "blocked").await;
    let stuck = {
        let store = store.clone();
        tokio::spawn(async move { store.append(&stream("blocked"), ExpectedVersion::Any, events(1, "waits")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let passed = tokio::time::timeout(
        Duration::from_secs(5),
        store.append(&stream("free"), ExpectedVersion::NoStream, events(1, "passes")),
    )
    .await;
    let written = passed.expect("the second slot took the waiting append").expect("a new stream");
    assert_eq!(written[0].stream_version, 1);
    assert!(!stuck.is_finished(), "the first append is still held by the lock");
    blocker.rollback().await.unwrap();
    assert_eq!(stuck.await.unwrap().unwrap()[0].stream_version, 1);
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_group_commit_off_every_append_is_its_own_transaction() {
    let Some(store) = support::pg_store_with(|config| config.with_group_commit(0)).await else { return };
    let appends: Vec<Append> =
        (0..12).map(|i| (stream(&format!("new-{i}")), ExpectedVersion::NoStream, events(1, "alone"))).collect();
    let recorded: Vec<Arc<RecordedEvent>> =
        race(&store, appends).await.into_iter().flat_map(|outcome| outcome.unwrap()).collect();
    assert_eq!(transactions(&recorded).len(), 12);
    store.drop_schema().await.unwrap();
}

/// The recorder of this test binary (metrics has one global recorder).
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        orchestrix_adapters::postgres::describe_metrics();
        handle
    })
}

/// The value of the sample `name` (no labels) in a Prometheus exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sizes_and_appends_sent_back_alone_are_metrics() {
    use orchestrix_adapters::postgres::{GROUP_COMMIT_ALONE_TOTAL, GROUP_COMMIT_APPENDS};
    let handle = prometheus();
    let Some(store) = grouped_store().await else { return };
    let before = handle.render();

    // A group of 9 that commits.
    let appends: Vec<Append> =
        (0..10).map(|i| (stream(&format!("ok-{i}")), ExpectedVersion::NoStream, events(1, "ok"))).collect();
    for outcome in race(&store, appends).await {
        outcome.unwrap();
    }
    // A group of 6 that a stale expectation sends back alone, all of it.
    store.append(&stream("stale"), ExpectedVersion::NoStream, events(2, "stale")).await.unwrap();
    let mut appends: Vec<Append> = vec![(stream("first"), ExpectedVersion::NoStream, events(1, "first"))];
    appends.push((stream("stale"), ExpectedVersion::Exact(1), events(1, "late")));
    appends.extend((0..5).map(|i| (stream(&format!("back-{i}")), ExpectedVersion::NoStream, events(1, "back"))));
    let outcomes = race(&store, appends).await;
    assert!(outcomes[1].is_err());

    let after = handle.render();
    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    // Other tests of this binary may record meanwhile: at least ours.
    assert!(grew(&format!("{GROUP_COMMIT_APPENDS}_count")) >= 2.0, "{after}");
    assert!(grew(&format!("{GROUP_COMMIT_APPENDS}_sum")) >= 15.0, "{after}");
    assert!(grew(GROUP_COMMIT_ALONE_TOTAL) >= 6.0, "{after}");
    assert!(after.contains(&format!("# HELP {GROUP_COMMIT_APPENDS} ")), "described: {after}");
    store.drop_schema().await.unwrap();
}
