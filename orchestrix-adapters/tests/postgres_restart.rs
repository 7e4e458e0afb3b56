//! A PostgreSQL server restart while commands are written and projections
//! run: nothing acknowledged is lost, the projections resume by
//! themselves, the at-least-once projection ends equal to a replay and the
//! transactional one counts every event exactly once.
//!
//! **This test restarts the PostgreSQL server**, so it runs only when
//! `ORCHESTRIX_PG_RESTART` holds the shell command that restarts it (CI sets
//! it, for example `pg_ctlcluster --skip-systemctl-redirect 15 main restart`);
//! it is its own test binary so that no other test of this crate runs
//! while the server is down.
#![cfg(feature = "postgres")]

mod support;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::error::BoxError;
use orchestrix::projection::{Projection, ProjectionEngine, ProjectionOptions};
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    StoreError, StreamId,
};
use orchestrix_adapters::postgres::{PgProjection, PgProjectionOptions, PgStore};
use serde_json::value::RawValue;

fn restart_command() -> Option<String> {
    match std::env::var("ORCHESTRIX_PG_RESTART") {
        Ok(command) if !command.is_empty() => Some(command),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ORCHESTRIX_PG_RESTART is not set, but CI is: the restart test must run in CI"
            );
            eprintln!(
                "skipped: this test restarts PostgreSQL; set ORCHESTRIX_PG_RESTART to the command that does it \
                 (e.g. `pg_ctlcluster --skip-systemctl-redirect 15 main restart`)"
            );
            None
        }
    }
}

/// At-least-once: remembers every position it was handed.
#[derive(Clone, Default)]
struct Positions(Arc<Mutex<BTreeSet<u64>>>);

#[orchestrix::async_trait]
impl Projection for Positions {
    fn name(&self) -> Cow<'static, str> {
        "positions".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.0.lock().unwrap().insert(event.global_position);
        Ok(())
    }
}

/// Exactly once: a counter and a row per event in the same database.
struct Counter {
    table: String,
}

#[orchestrix::async_trait]
impl PgProjection for Counter {
    fn name(&self) -> Cow<'static, str> {
        "counter".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, tx: &mut sqlx::PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
        sqlx::query(&format!("UPDATE {} SET n = n + 1", self.table)).execute(&mut *tx).await?;
        sqlx::query(&format!("INSERT INTO {}_seen VALUES ($1)", self.table))
            .bind(i64::try_from(event.global_position)?)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Written", 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap())
}

/// Appends one event per new stream until `stop`, retrying through the
/// outage; returns the positions of the acknowledged events.
async fn write(store: PgStore, stop: Arc<tokio::sync::Notify>) -> (Vec<u64>, u64) {
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    for n in 0.. {
        let stream = StreamId::new("Restart", format!("s{n}")).unwrap();
        match store.append(&stream, ExpectedVersion::NoStream, vec![event(n)]).await {
            Ok(recorded) => acknowledged.push(recorded[0].global_position),
            Err(StoreError::Unavailable(_) | StoreError::Backend(_)) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
        tokio::select! {
            () = &mut stopped => break,
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
    (acknowledged, refused)
}

#[cfg_attr(
    not(all(orchestrix_pg, orchestrix_pg_restart)),
    ignore = "needs ORCHESTRIX_PG_URL and ORCHESTRIX_PG_RESTART (the command that restarts that PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_survived_by_writers_and_projections() {
    let Some(command) = restart_command() else { return };
    let Some(store) = support::pg_store().await else { return };
    let table = format!("\"{}\".counter", store.config().schema());
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (n bigint NOT NULL); INSERT INTO {table} VALUES (0); \
         CREATE TABLE {table}_seen (p bigint PRIMARY KEY)"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    let engine = ProjectionEngine::new(store.clone(), store.clone());
    let positions = Positions::default();
    let mut at_least_once = engine.spawn(positions.clone(), ProjectionOptions::default().checkpoint_every(10));
    let mut exactly_once =
        store.spawn_projection(Counter { table: table.clone() }, PgProjectionOptions::default().batch_size(10));
    let stop = Arc::new(tokio::sync::Notify::new());
    let writer = tokio::spawn(write(store.clone(), Arc::clone(&stop)));

    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = positions.0.lock().unwrap().len();
    let started = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT pg_postmaster_start_time()")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let first_start = started().await;
    let status = tokio::process::Command::new("sh").arg("-c").arg(&command).status().await.unwrap();
    assert!(status.success(), "`{command}` failed: {status}");
    assert_ne!(started().await, first_start, "`{command}` did not restart the server");
    // Keep writing after the restart, then stop.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.notify_one();
    let (acknowledged, refused) = writer.await.unwrap();
    println!("{} events acknowledged, {refused} appends refused during the restart", acknowledged.len());
    assert!(before > 0, "the projections ran before the restart");

    let log: Vec<u64> =
        store.read_all(0, &EventFilter::all()).map(|e| e.unwrap().global_position).collect::<Vec<_>>().await;
    assert!(acknowledged.iter().all(|p| log.binary_search(p).is_ok()), "an acknowledged event is missing");
    assert!(log.len() > before, "events were written after the restart");
    let head = *log.last().unwrap();

    let wait = Duration::from_mins(1);
    let reached = at_least_once.wait_for_position(head, wait).await.unwrap();
    assert_eq!(reached.position, head, "the at-least-once projection did not resume: {reached:?}");
    let reached = exactly_once.wait_for_position(head, wait).await.unwrap();
    assert_eq!(reached.position, head, "the transactional projection did not resume: {reached:?}");
    at_least_once.stop().await.expect("the at-least-once projection survived");
    exactly_once.stop().await.expect("the transactional projection survived");

    let seen: Vec<u64> = positions.0.lock().unwrap().iter().copied().collect();
    assert_eq!(seen, log, "the at-least-once read model equals a replay");
    let n: i64 = sqlx::query_scalar(&format!("SELECT n FROM {table}")).fetch_one(store.pool()).await.unwrap();
    assert_eq!(usize::try_from(n).unwrap(), log.len(), "every event counted exactly once");
    store.drop_schema().await.unwrap();
}
