//! Pausing the PostgreSQL transactional runner from another process
//! (ADR 0050): the lease holder pauses and acknowledges with its batch
//! committed, a standby that takes the lease starts paused, resume goes
//! on from the checkpoint with every event applied once, a rebuild
//! through the handle resets and replays in place, and a rebuild of a
//! paused projection is refused.

mod support;

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::envelope::RecordedEvent;
use orchestrix::error::BoxError;
use orchestrix::projection::{ProjectionError, ProjectionState};
use orchestrix::store::{CheckpointStore, ConsumerControl, EventFilter, EventStore, ExpectedVersion};
use orchestrix_adapters::postgres::{PgProjection, PgProjectionOptions, PgStore};
use sqlx::PgConnection;
use support::{event, stream};

const WAIT: Duration = Duration::from_secs(30);
/// Longer than a runner takes to read its record (500 ms).
const SETTLE: Duration = Duration::from_millis(1_200);

/// Writes every event it applies to a journal table, in the batch's
/// transaction.
struct Journal {
    table: String,
}

#[async_trait]
impl PgProjection for Journal {
    fn name(&self) -> Cow<'static, str> {
        "journal".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
        sqlx::query(&format!("INSERT INTO {} (version) VALUES ($1)", self.table))
            .bind(i64::try_from(event.stream_version)?)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("DELETE FROM {}", self.table)).execute(&mut *tx).await?;
        Ok(())
    }
}

async fn journal(store: &PgStore, table: &str) -> Vec<i64> {
    sqlx::query_scalar(&format!("SELECT version FROM {table} ORDER BY seq")).fetch_all(store.pool()).await.unwrap()
}

async fn append(store: &PgStore, from: u64, to: u64) {
    let events = (from..=to).map(|n| event("Noted", &format!(r#"{{"n":{n}}}"#))).collect();
    store.append(&stream("a"), ExpectedVersion::Any, events).await.unwrap();
}

async fn acknowledged(store: &PgStore) -> ConsumerControl {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(record) = store.load_control("journal").await.unwrap().filter(ConsumerControl::is_paused) {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a runner acknowledges the pause")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_pauses_a_standby_starts_paused_and_resume_applies_everything_once() {
    let Some(store) = support::pg_store().await else { return };
    let table = format!("\"{}\".journal_rows", store.config().schema());
    sqlx::raw_sql(&format!("CREATE TABLE {table} (seq bigserial PRIMARY KEY, version bigint NOT NULL)"))
        .execute(store.pool())
        .await
        .unwrap();
    append(&store, 1, 5).await;
    let options = PgProjectionOptions::default();
    let mut holder = store.spawn_projection(Journal { table: table.clone() }, options);
    holder.wait_caught_up(WAIT).await.unwrap();
    let mut standby = store.spawn_projection(Journal { table: table.clone() }, options);

    // Another process asks (through its own view of the store).
    let operator = store.clone();
    operator.request_pause("journal", true).await.unwrap();
    let record = acknowledged(&operator).await;
    let first = record.paused.unwrap();
    assert_eq!(first.position, CheckpointStore::load(&store, "journal").await.unwrap().unwrap());
    assert_eq!(holder.status().state, ProjectionState::Paused);
    append(&store, 6, 7).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(journal(&store, &table).await, vec![1, 2, 3, 4, 5], "nothing applied while paused");

    // The holder goes away; the standby takes the lease and starts paused.
    holder.stop().await.unwrap();
    let status = standby.pause(WAIT).await.unwrap();
    assert_eq!(status.state, ProjectionState::Paused);
    let record = acknowledged(&operator).await;
    assert_ne!(record.paused.unwrap().runner, first.runner, "the standby acknowledged");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(journal(&store, &table).await, vec![1, 2, 3, 4, 5], "the standby started paused");

    operator.request_pause("journal", false).await.unwrap();
    standby.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(journal(&store, &table).await, vec![1, 2, 3, 4, 5, 6, 7], "every event once, in order");
    assert_eq!(operator.load_control("journal").await.unwrap(), Some(ConsumerControl::new(false, None)));

    // The transactional runner rebuilds itself through its handle
    // (ADR 0050): the reset in one transaction, then a catch-up from 1 to
    // the same journal, and the checkpoint back where it was.
    let checkpoint = CheckpointStore::load(&store, "journal").await.unwrap();
    standby.rebuild().await.unwrap();
    append(&store, 8, 8).await;
    standby.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(journal(&store, &table).await, vec![1, 2, 3, 4, 5, 6, 7, 8], "reset, then every event once");
    let first: i64 =
        sqlx::query_scalar(&format!("SELECT min(seq) FROM {table}")).fetch_one(store.pool()).await.unwrap();
    assert!(first > 7, "the rows before the rebuild were deleted and written again (first row {first})");
    assert!(CheckpointStore::load(&store, "journal").await.unwrap() > checkpoint, "the checkpoint saved again");

    // A rebuild of a paused projection would wait for ever: refused.
    standby.pause(WAIT).await.unwrap();
    standby.stop().await.unwrap();
    let refused =
        store.rebuild_projection(Journal { table: table.clone() }, options, |_| {}).await.map(|_| ()).unwrap_err();
    assert!(matches!(refused, ProjectionError::Paused(_)), "{refused}");
    store.drop_schema().await.unwrap();
}
