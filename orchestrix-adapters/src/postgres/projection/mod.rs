//! Transactional projections: a read model in the same PostgreSQL database
//! as the events, updated and checkpointed in one transaction per batch.
//!
//! The runner reads the global log from the projection's checkpoint, opens
//! one transaction per batch of events, hands it to the projection for
//! every event of the batch, moves the checkpoint inside the same
//! transaction ([`PgStore::save_checkpoint_in`], fenced) and commits. A
//! crash anywhere loses the whole batch or nothing, so every event's
//! effect on the read model happens exactly once, even for read models
//! that are not idempotent (counters, inserted rows).
//!
//! Retries, poison, dead letters in stream order and their retries and
//! drops are the core's [`orchestrix::projection::delivery`], the same as
//! in the engine; this runner only supplies the transactions (a parked
//! event's letter is written in the transaction that moves the
//! checkpoint past it; a retried event's effect and the removal of its
//! letter commit together).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::error::BoxError;
use orchestrix::projection::control::PauseGate;
use orchestrix::projection::delivery::Delivery;
use orchestrix::projection::{PoisonPolicy, Progress, ProjectionError, ProjectionHandle, ProjectionState};
use orchestrix::store::{CheckpointStore, DeadLetterStore, EventFilter, EventStore};
use orchestrix::{envelope::RecordedEvent, retry::RetryPolicy};
use sqlx::PgConnection;
use tracing::Instrument;

use super::PgStore;
use crate::common::map_err;

mod runner;

use runner::{lease_name, Runner};

/// A projection whose read model lives in the store's PostgreSQL database.
///
/// Each event is handled inside a transaction that also moves the
/// projection's checkpoint: write the read model through `tx` and nothing
/// else, and the effect is exactly once. Do not commit or roll back `tx`
/// yourself; return an error to roll the batch back.
///
/// ```no_run
/// use std::borrow::Cow;
/// use orchestrix::error::BoxError;
/// use orchestrix::{store::EventFilter, envelope::RecordedEvent};
/// use orchestrix_adapters::postgres::{PgProjection, PgProjectionOptions, PgStore};
///
/// /// Counts accounts per owner: not idempotent, and it need not be.
/// # #[allow(dead_code)]
/// struct AccountsPerOwner;
///
/// #[orchestrix::async_trait]
/// impl PgProjection for AccountsPerOwner {
///     fn name(&self) -> Cow<'static, str> {
///         "accounts_per_owner".into()
///     }
///
///     fn filter(&self) -> EventFilter {
///         EventFilter::types(["AccountOpened"])
///     }
///
///     async fn handle(&mut self, tx: &mut sqlx::PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
///         let data: serde_json::Value = serde_json::from_str(event.data.get())?;
///         sqlx::query(
///             "INSERT INTO accounts_per_owner (owner, n) VALUES ($1, 1) \
///              ON CONFLICT (owner) DO UPDATE SET n = accounts_per_owner.n + 1",
///         )
///         .bind(data["owner"].as_str().unwrap_or_default())
///         .execute(&mut *tx)
///         .await?;
///         Ok(())
///     }
/// }
///
/// # #[allow(dead_code)]
/// # async fn run(store: PgStore) -> Result<(), Box<dyn std::error::Error>> {
/// let handle = store.spawn_projection(AccountsPerOwner, PgProjectionOptions::default());
/// // ... later:
/// handle.stop().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait PgProjection: Send + Sync + 'static {
    /// The stable name: the key of the checkpoint, the lease and the dead
    /// letters.
    fn name(&self) -> Cow<'static, str>;

    /// Which events the projection wants; the store filters the rest out.
    fn filter(&self) -> EventFilter;

    /// Applies one event to the read model through `tx`, the batch's open
    /// transaction. An error rolls the batch back; the event is then
    /// retried alone under the runner's retry policy and, if it keeps
    /// failing, treated by its [`PoisonPolicy`].
    async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), BoxError>;

    /// Empties the read model through `tx` before a rebuild
    /// ([`PgStore::rebuild_projection`]); the same transaction forgets the
    /// checkpoint and the dead letters, so the reset is all or nothing.
    async fn reset(&mut self, _tx: &mut PgConnection) -> Result<(), BoxError> {
        Ok(())
    }
}

/// How a transactional projection runs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PgProjectionOptions {
    /// The most events one transaction carries (default 100). Larger
    /// batches commit less often; a failing event costs a rollback of its
    /// batch, after which the batch's events are handled one per
    /// transaction.
    pub batch_size: usize,
    /// How a failing event is retried, alone in its transaction, before it
    /// counts as poison (default: 3 attempts, 10 ms apart).
    pub retry: RetryPolicy,
    /// What to do with an event that keeps failing (default: stop). With
    /// [`PoisonPolicy::Park`] the dead letter is written in the same
    /// transaction that moves the checkpoint past the event.
    pub poison: PoisonPolicy,
    /// Whether to hold the lease `projection:<name>` (an advisory lock)
    /// while running, so that one runner per projection is active across
    /// processes and the others wait as standbys (default on). The
    /// checkpoint fence keeps the effect exactly once either way; the
    /// lease saves the work a second runner would roll back.
    pub exclusive: bool,
}

impl Default for PgProjectionOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            retry: RetryPolicy::fixed(3, Duration::from_millis(10)),
            poison: PoisonPolicy::Stop,
            exclusive: true,
        }
    }
}

impl PgProjectionOptions {
    /// Sets the most events per transaction (at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Sets the retry policy of a failing event.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the poison policy.
    pub fn poison(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// Sets whether the runner holds the projection's lease.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }
}

impl PgStore {
    /// Runs a transactional projection in its own task (see
    /// [`PgProjection`]): from its checkpoint, then live, one transaction
    /// per batch. Database outages (a restart, killed connections) are
    /// waited out and the projection resumes from its committed checkpoint;
    /// a runner that finds its checkpoint moved by another (a zombie's late
    /// commit) rolls back and resumes from there. Its dead letters are
    /// retried and dropped through the handle
    /// ([`ProjectionHandle::retry_dead_letter`] and its siblings), between
    /// two batches.
    pub fn spawn_projection<P: PgProjection>(
        &self,
        projection: P,
        options: PgProjectionOptions,
    ) -> ProjectionHandle<P> {
        let name = projection.name().into_owned();
        let span = tracing::info_span!("orchestrix.projection", projection = %name, transactional = true);
        let store = self.clone();
        let letters: Arc<dyn DeadLetterStore> = Arc::new(self.clone());
        let delivery = Delivery::new(name.clone(), options.retry, options.poison, Some(letters));
        let checkpoints: Arc<dyn CheckpointStore> = Arc::new(self.clone());
        let gate = PauseGate::new(name.clone(), Arc::clone(&checkpoints));
        let task_name = name.clone();
        ProjectionHandle::spawn_serving_runner(task_name, move |control| {
            async move {
                let mut runner = Runner {
                    store,
                    name,
                    projection,
                    options,
                    delivery,
                    control,
                    outages: 0,
                    needs_pause: false,
                    gate,
                };
                runner.run().await.map(|()| runner.projection)
            }
            .instrument(span)
        })
        .reading(Arc::new(self.clone()))
        .controlled_by(checkpoints)
    }

    /// Rebuilds a transactional projection from the beginning of the log,
    /// in one call: in one transaction, [`PgProjection::reset`] empties the
    /// read model and the projection's checkpoint and dead letters are
    /// forgotten (the letters were parked against the read model being
    /// thrown away; events that still fail are parked again under
    /// `options`); then the projection runs as
    /// [`PgStore::spawn_projection`] runs it, until it has passed the head
    /// of the log as it was when the rebuild started, and is stopped and
    /// handed back. `progress` is called about every 250 ms and once at the
    /// end.
    ///
    /// The projection must not be running: if its lease
    /// (`projection:<name>`) is held, the rebuild is refused with
    /// [`ProjectionError::Running`] before anything is touched; if it is
    /// paused (ADR 0050), with [`ProjectionError::Paused`]. Readers of
    /// the read model see it empty, then filling up, as with the engine's
    /// rebuild.
    pub async fn rebuild_projection<P: PgProjection>(
        &self,
        mut projection: P,
        options: PgProjectionOptions,
        mut progress: impl FnMut(&Progress),
    ) -> Result<(P, Progress), ProjectionError> {
        let name = projection.name().into_owned();
        let store_error = |source| ProjectionError::Store { projection: name.clone(), source };
        let Some(lease) = self.try_lease(&lease_name(&name)).await.map_err(store_error)? else {
            return Err(ProjectionError::Running(name));
        };
        // Its runner would start paused and the rebuild wait for ever.
        if CheckpointStore::load_control(self, &name).await.map_err(store_error)?.is_some_and(|c| c.pause_requested) {
            lease.release().await.map_err(store_error)?;
            return Err(ProjectionError::Paused(name));
        }
        let started = Instant::now();
        self.start_over(&mut projection, &name).await?;
        let head = self.head_position().await.map_err(store_error)?.unwrap_or(0);
        lease.release().await.map_err(store_error)?;
        let mut handle = self.spawn_projection(projection, options);
        let report = |status: &orchestrix::projection::ProjectionStatus| {
            Progress::new(status.handled + status.parked, status.position, head, started.elapsed())
        };
        let status = loop {
            match handle.wait_for_position(head, Duration::from_millis(250)).await {
                Ok(status) => break status,
                Err(ProjectionError::Timeout { .. }) => progress(&report(&handle.status())),
                Err(error) => return Err(error),
            }
        };
        if matches!(status.state, ProjectionState::Failed(_) | ProjectionState::Stopped) {
            handle.join().await?;
            return Err(ProjectionError::Ended(name, "the rebuild's runner ended before the head".into()));
        }
        let projection = handle.stop().await?;
        let done = report(&status);
        progress(&done);
        Ok((projection, done))
    }
}

impl PgStore {
    /// What every rebuild of a transactional projection does first, the
    /// store's ([`PgStore::rebuild_projection`]) and a running runner's
    /// (`ProjectionHandle::rebuild`, ADR 0050): in one transaction, resets
    /// the read model of `projection` (named `name`), deletes its
    /// checkpoint and purges its dead letters. All or nothing.
    pub(super) async fn start_over<P: PgProjection>(
        &self,
        projection: &mut P,
        name: &str,
    ) -> Result<(), ProjectionError> {
        let store_error = |source| ProjectionError::Store { projection: name.to_owned(), source };
        let mut tx = self.begin().await.map_err(store_error)?;
        projection
            .reset(&mut tx)
            .await
            .map_err(|source| ProjectionError::Reset { projection: name.to_owned(), source })?;
        for sql in [&self.inner.sql.checkpoint_delete, &self.inner.sql.dl_purge_consumer] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await.map_err(|e| store_error(map_err(e)))?;
        }
        tx.commit().await.map_err(|e| store_error(map_err(e)))
    }
}
