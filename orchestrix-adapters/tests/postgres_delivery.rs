//! The delivery scenarios (`orchestrix::testing::delivery`, ADR 0025)
//! against the PostgreSQL transactional runner, and its rebuild.

mod support;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::error::BoxError;
use orchestrix::projection::{PoisonPolicy, ProjectionError};
use orchestrix::testing::delivery::{self, Capabilities, Faults, Harness, Running};
use orchestrix::{
    envelope::RecordedEvent,
    retry::RetryPolicy,
    store::{DeadLetterStore, EventFilter, EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::postgres::{PgProjection, PgProjectionOptions, PgStore};
use sqlx::PgConnection;

/// The scenario projection: its journal is a table written through the
/// batch's transaction, so a rolled-back batch leaves no trace.
struct Scenario {
    name: String,
    faults: Faults,
    journal: String,
}

#[async_trait]
impl PgProjection for Scenario {
    fn name(&self) -> Cow<'static, str> {
        self.name.clone().into()
    }

    fn filter(&self) -> EventFilter {
        delivery::filter()
    }

    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
        self.faults.check(event)?;
        sqlx::query(&format!("INSERT INTO {} (consumer, category, id, version) VALUES ($1, $2, $3, $4)", self.journal))
            .bind(&self.name)
            .bind(event.stream.category())
            .bind(event.stream.id())
            .bind(i64::try_from(event.stream_version)?)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(&format!("DELETE FROM {} WHERE consumer = $1", self.journal))
            .bind(&self.name)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

struct Pg {
    store: PgStore,
    journal: String,
}

impl Pg {
    async fn new() -> Option<Self> {
        let store = support::pg_store().await?;
        let journal = format!("\"{}\".journal", store.config().schema());
        sqlx::raw_sql(&format!(
            "CREATE TABLE {journal} (seq bigserial PRIMARY KEY, consumer text NOT NULL, category text NOT NULL, \
             id text NOT NULL, version bigint NOT NULL)"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        Some(Self { store, journal })
    }

    fn projection(&self, name: &str, faults: Faults) -> Scenario {
        Scenario { name: name.to_owned(), faults, journal: self.journal.clone() }
    }
}

fn options() -> PgProjectionOptions {
    PgProjectionOptions::default().poison(PoisonPolicy::Park).retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
}

#[async_trait]
impl Harness for Pg {
    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        Arc::new(self.store.clone())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_rebuild(true)
    }

    async fn start(&self, name: &str, faults: Faults) -> Box<dyn Running> {
        Box::new(self.store.spawn_projection(self.projection(name, faults), options()))
    }

    async fn rebuild(&self, name: &str, faults: Faults) -> Result<u64, ProjectionError> {
        let (_, done) = self.store.rebuild_projection(self.projection(name, faults), options(), |_| {}).await?;
        Ok(done.position)
    }

    async fn journal(&self, name: &str) -> Vec<(StreamId, u64)> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT category, id, version FROM {} WHERE consumer = $1 ORDER BY seq",
            self.journal
        ))
        .bind(name)
        .fetch_all(self.store.pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(category, id, version)| (StreamId::new(category, id).unwrap(), u64::try_from(version).unwrap()))
            .collect()
    }
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactional_runner_passes_the_delivery_scenarios() {
    let Some(pg) = Pg::new().await else { return };
    delivery::run_all(&pg).await;
    pg.store.drop_schema().await.unwrap();
}

/// A rebuild is one call: the read model, checkpoint and dead letters are
/// reset together, everything is replayed up to the head (here an event
/// the projection leaves out), and a running projection is refused.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_projection_rebuilds_in_one_call() {
    let Some(pg) = Pg::new().await else { return };
    let (faults, a) = (Faults::default(), support::stream("rebuilt"));
    let types = [delivery::HANDLED, delivery::HANDLED, delivery::HANDLED, delivery::IGNORED];
    let events = types.iter().map(|t| support::event(t, "{}")).collect();
    pg.store.append(&a, ExpectedVersion::NoStream, events).await.unwrap();
    faults.fail(&a, 3);
    let mut running = pg.store.spawn_projection(pg.projection("rebuilt", faults.clone()), options());
    running.wait_caught_up(Duration::from_secs(20)).await.unwrap();
    let refused = pg.store.rebuild_projection(pg.projection("rebuilt", faults.clone()), options(), |_| {}).await;
    assert!(matches!(refused, Err(ProjectionError::Running(_))), "a running projection is not rebuilt");
    running.stop().await.unwrap();
    assert_eq!(pg.journal("rebuilt").await.len(), 2);
    assert_eq!(pg.store.list(Some("rebuilt")).await.unwrap().len(), 1);

    faults.heal(&a, 3);
    let mut reports = 0;
    let (_, done) =
        pg.store.rebuild_projection(pg.projection("rebuilt", faults), options(), |_| reports += 1).await.unwrap();
    let head = pg.store.head_position().await.unwrap().unwrap();
    assert!(done.position >= head, "the rebuild passed the head: {done:?}");
    assert!(reports >= 1);
    let versions: Vec<u64> = pg.journal("rebuilt").await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(versions, vec![1, 2, 3], "the read model was reset and replayed once");
    assert!(pg.store.list(Some("rebuilt")).await.unwrap().is_empty(), "the old dead letters are gone");
    pg.store.drop_schema().await.unwrap();
}
