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

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use orchestrix::error::{render_chain, BoxError};
use orchestrix::projection::{
    Poison, PoisonPolicy, ProjectionError, ProjectionHandle, ProjectionState, ProjectionStatus, RunnerControl,
};
use orchestrix::store::{CheckpointStore, DeadLetter, EventFilter, EventStore, EventStream};
use orchestrix::{RecordedEvent, RetryPolicy, StoreError};
use sqlx::PgConnection;
use tracing::Instrument;
use uuid::Uuid;

use super::{PgLease, PgStore};
use crate::common::map_err;

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
/// use orchestrix::{EventFilter, RecordedEvent};
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
}

/// How a transactional projection runs.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// commit) rolls back and resumes from there.
    pub fn spawn_projection<P: PgProjection>(
        &self,
        projection: P,
        options: PgProjectionOptions,
    ) -> ProjectionHandle<P> {
        let name = projection.name().into_owned();
        let span = tracing::info_span!("orchestrix.projection", projection = %name, transactional = true);
        let store = self.clone();
        ProjectionHandle::spawn_runner(name.clone(), move |control| {
            async move {
                let mut runner = Runner { store, projection, options, name, control, outages: 0, needs_pause: false };
                runner.run().await.map(|()| runner.projection)
            }
            .instrument(span)
        })
    }
}

/// Why a batch did not commit.
enum BatchError {
    /// The database went away; resume from the checkpoint after a pause.
    Unavailable(StoreError),
    /// Another runner moved the checkpoint; resume from it.
    Fenced,
    /// The projection failed on the event at this index of the batch.
    Handler(usize, BoxError),
    /// Anything else: the projection stops with it.
    Fatal(StoreError),
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::WrongExpectedVersion { .. } => Self::Fenced,
            other => Self::Fatal(other),
        }
    }
}

/// What ended one pass over the subscription.
enum Pass {
    /// Stop requested, or the log ended: the runner is done.
    Done,
    /// Resume from the committed checkpoint (after a pause if the database
    /// was unavailable).
    Resume { pause: bool },
}

struct Runner<P> {
    store: PgStore,
    projection: P,
    options: PgProjectionOptions,
    name: String,
    control: RunnerControl,
    outages: u32,
    /// Set when a batch was interrupted by an outage: pause before resuming.
    needs_pause: bool,
}

impl<P: PgProjection> Runner<P> {
    fn store_error(&self, source: StoreError) -> ProjectionError {
        ProjectionError::Store { projection: self.name.clone(), source }
    }

    async fn run(&mut self) -> Result<(), ProjectionError> {
        let mut lease = None;
        loop {
            if self.options.exclusive && lease.is_none() {
                lease = self.take_lease().await?;
                if lease.is_none() {
                    return Ok(()); // stopped while waiting for it
                }
            }
            match self.pass().await? {
                Pass::Done => return Ok(()),
                Pass::Resume { pause } => {
                    if pause && !self.pause().await {
                        return Ok(());
                    }
                    // After an outage the lease's connection may be gone,
                    // and with it the lease: take it again before going on.
                    if let Some(held) = lease.as_mut() {
                        if held.check().await.is_err() {
                            tracing::warn!(projection = %self.name, "lost the projection's lease; waiting for it again");
                            lease = None;
                        }
                    }
                }
            }
        }
    }

    /// Waits for the projection's lease; `None` if stopped first.
    async fn take_lease(&mut self) -> Result<Option<PgLease>, ProjectionError> {
        let mut stop = self.control.stop_signal();
        let lease_name = format!("projection:{}", self.name);
        loop {
            match self.store.try_lease(&lease_name).await {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) => {}
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(projection = %self.name, %error, "cannot reach the database for the lease; retrying");
                }
                Err(error) => return Err(self.store_error(error)),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return Ok(None),
            }
        }
    }

    /// Sleeps after an outage, longer each time in a row; `false` if
    /// stopped meanwhile.
    async fn pause(&mut self) -> bool {
        self.outages += 1;
        let delay = RetryPolicy::exponential(u32::MAX, Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter(0.5)
            .delay_after(self.outages)
            .unwrap_or(Duration::from_secs(5));
        let mut stop = self.control.stop_signal();
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.control.is_stopping(),
            _ = stop.changed() => false,
        }
    }

    /// Loads the checkpoint, follows the log from there and commits batch
    /// after batch until told to stop or to resume.
    async fn pass(&mut self) -> Result<Pass, ProjectionError> {
        if self.control.is_stopping() {
            return Ok(Pass::Done);
        }
        let mut checkpoint = match CheckpointStore::load(&self.store, &self.name).await {
            Ok(checkpoint) => checkpoint,
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(projection = %self.name, %error, "cannot load the checkpoint; retrying");
                return Ok(Pass::Resume { pause: true });
            }
            Err(error) => return Err(self.store_error(error)),
        };
        let from = checkpoint.unwrap_or(0);
        self.control.report(|s| s.position = s.position.max(from));
        let mut events = self.store.subscribe(from + 1, self.projection.filter());
        let mut stop = self.control.stop_signal();
        loop {
            let first = if let Some(first) = events.next().now_or_never() {
                first
            } else {
                self.control.report(|s| s.state = ProjectionState::Live);
                tokio::select! {
                    first = events.next() => first,
                    _ = stop.changed() => return Ok(Pass::Done),
                }
            };
            let Some(first) = first else { return Ok(Pass::Done) };
            let (batch, error) = collect_batch(first, &mut events, self.options.batch_size);
            if !batch.is_empty() {
                match self.commit(checkpoint, &batch).await? {
                    Some(position) => checkpoint = Some(position),
                    None => return Ok(Pass::Resume { pause: std::mem::take(&mut self.needs_pause) }),
                }
                self.outages = 0;
            }
            match error {
                None => {}
                Some(StoreError::Unavailable(_)) => return Ok(Pass::Resume { pause: true }),
                Some(error) => return Err(self.store_error(error)),
            }
            if self.control.is_stopping() {
                return Ok(Pass::Done);
            }
        }
    }

    /// Commits `batch` (or, when an event of it fails, its events one by
    /// one). Returns the new checkpoint, or `None` when the runner must
    /// resume from the committed checkpoint.
    async fn commit(
        &mut self,
        checkpoint: Option<u64>,
        batch: &[RecordedEvent],
    ) -> Result<Option<u64>, ProjectionError> {
        match self.try_batch(checkpoint, batch).await {
            Ok(()) => {
                self.reported(batch.len(), 0, batch);
                Ok(batch.last().map(|e| e.global_position))
            }
            Err(BatchError::Handler(index, error)) if batch.len() > 1 => {
                tracing::debug!(projection = %self.name, position = batch[index].global_position, %error,
                    "batch rolled back; handling its events one per transaction");
                let mut checkpoint = checkpoint;
                for event in batch {
                    match self.commit_alone(checkpoint, event).await? {
                        Some(position) => checkpoint = Some(position),
                        None => return Ok(None),
                    }
                }
                Ok(checkpoint)
            }
            Err(BatchError::Handler(_, error)) => self.after_failure(checkpoint, &batch[0], error, 1).await,
            Err(error) => self.interrupted(error),
        }
    }

    /// Handles one event in its own transaction, with retries.
    async fn commit_alone(
        &mut self,
        checkpoint: Option<u64>,
        event: &RecordedEvent,
    ) -> Result<Option<u64>, ProjectionError> {
        match self.try_batch(checkpoint, std::slice::from_ref(event)).await {
            Ok(()) => {
                self.reported(1, 0, std::slice::from_ref(event));
                Ok(Some(event.global_position))
            }
            Err(BatchError::Handler(_, error)) => self.after_failure(checkpoint, event, error, 1).await,
            Err(error) => self.interrupted(error),
        }
    }

    /// Retries a failed event alone; parks it or stops when retries run out.
    async fn after_failure(
        &mut self,
        checkpoint: Option<u64>,
        event: &RecordedEvent,
        mut error: BoxError,
        mut attempts: u32,
    ) -> Result<Option<u64>, ProjectionError> {
        while let Some(delay) = self.options.retry.delay_after(attempts) {
            tracing::debug!(projection = %self.name, position = event.global_position, attempts, %error, "retrying");
            tokio::time::sleep(delay).await;
            attempts += 1;
            match self.try_batch(checkpoint, std::slice::from_ref(event)).await {
                Ok(()) => {
                    self.reported(1, 0, std::slice::from_ref(event));
                    return Ok(Some(event.global_position));
                }
                Err(BatchError::Handler(_, again)) => error = again,
                Err(other) => return self.interrupted(other),
            }
        }
        let rendered = render_chain(&*error);
        tracing::warn!(projection = %self.name, position = event.global_position, event_type = %event.event_type,
            error = %rendered, "poison event");
        match self.options.poison {
            PoisonPolicy::Stop => Err(ProjectionError::Poison(Box::new(Poison {
                projection: self.name.clone(),
                position: event.global_position,
                stream: event.stream.clone(),
                stream_version: event.stream_version,
                event_type: event.event_type.clone(),
                error: rendered,
                attempts,
            }))),
            PoisonPolicy::Park => {
                let letter = DeadLetter {
                    id: Uuid::now_v7(),
                    consumer: self.name.clone(),
                    event: event.clone(),
                    error: rendered,
                    attempts,
                    parked_at: Utc::now(),
                };
                match self.park(checkpoint, &letter).await {
                    Ok(()) => {
                        metrics::counter!(orchestrix::telemetry::DEAD_LETTERS_TOTAL, "projection" => self.name.clone())
                            .increment(1);
                        self.reported(0, 1, std::slice::from_ref(event));
                        Ok(Some(event.global_position))
                    }
                    Err(error) => self.interrupted(error),
                }
            }
        }
    }

    /// What to do after a batch that neither committed nor failed in the
    /// projection: resume (`Ok(None)`) or stop with the error.
    fn interrupted(&mut self, error: BatchError) -> Result<Option<u64>, ProjectionError> {
        match error {
            BatchError::Unavailable(error) => {
                tracing::warn!(projection = %self.name, %error, "database unavailable; resuming from the checkpoint");
                self.needs_pause = true;
                Ok(None)
            }
            BatchError::Fenced => {
                tracing::warn!(projection = %self.name, "another runner moved the checkpoint; resuming from it");
                Ok(None)
            }
            BatchError::Fatal(error) => Err(self.store_error(error)),
            BatchError::Handler(_, error) => Err(self.store_error(StoreError::Backend(error))),
        }
    }

    /// One transaction: every event of `batch`, then the checkpoint.
    async fn try_batch(&mut self, checkpoint: Option<u64>, batch: &[RecordedEvent]) -> Result<(), BatchError> {
        let mut tx = self.store.begin().await?;
        for (index, event) in batch.iter().enumerate() {
            let span = handle_span(&self.name, event);
            if let Err(error) = self.projection.handle(&mut tx, event).instrument(span.clone()).await {
                span.record("error", tracing::field::display(&error));
                span.record("otel.status_code", "ERROR");
                // Dropping `tx` rolls it back.
                return Err(BatchError::Handler(index, error));
            }
        }
        let last = batch.last().map_or(0, |e| e.global_position);
        self.store.save_checkpoint_in(&mut tx, &self.name, checkpoint, last).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    /// Parks `letter` and moves the checkpoint past its event, in one
    /// transaction.
    async fn park(&self, checkpoint: Option<u64>, letter: &DeadLetter) -> Result<(), BatchError> {
        let mut tx = self.store.begin().await?;
        super::ports::park_query(&self.store.inner.sql.dl_park, letter)?.execute(&mut *tx).await.map_err(map_err)?;
        self.store.save_checkpoint_in(&mut tx, &self.name, checkpoint, letter.event.global_position).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    fn reported(&self, handled: usize, parked: usize, batch: &[RecordedEvent]) {
        let Some(last) = batch.last() else { return };
        let (handled, parked) = (u64::try_from(handled).unwrap_or(0), u64::try_from(parked).unwrap_or(0));
        self.control.report(|s| {
            *s = ProjectionStatus {
                state: s.state.clone(),
                position: last.global_position,
                handled: s.handled + handled,
                parked: s.parked + parked,
            };
        });
        #[allow(clippy::cast_precision_loss)] // positions far below 2^52 in practice; a gauge
        metrics::gauge!(orchestrix::telemetry::PROJECTION_POSITION, "projection" => self.name.clone())
            .set(last.global_position as f64);
        let age = (Utc::now() - last.recorded_at).as_seconds_f64().max(0.0);
        metrics::gauge!(orchestrix::telemetry::PROJECTION_LAG_SECONDS, "projection" => self.name.clone()).set(age);
    }
}

/// `first` and then every event that is ready at once, up to `max`; an
/// error ends the batch and is returned beside it.
fn collect_batch(
    first: Result<std::sync::Arc<RecordedEvent>, StoreError>,
    events: &mut EventStream<'static>,
    max: usize,
) -> (Vec<RecordedEvent>, Option<StoreError>) {
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(item) = next.take() {
        match item {
            Ok(event) => batch.push(std::sync::Arc::unwrap_or_clone(event)),
            Err(error) => return (batch, Some(error)),
        }
        if batch.len() < max {
            next = events.next().now_or_never().flatten();
        }
    }
    (batch, None)
}

/// The span of one event's handling, a child of the span that recorded the
/// event when its metadata carries a trace context.
fn handle_span(projection: &str, event: &RecordedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "orchestrix.projection.handle",
        projection,
        event_type = %event.event_type,
        global_position = event.global_position,
        stream = %event.stream,
        stream_version = event.stream_version,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    orchestrix::trace::set_parent_from(&span, &event.metadata);
    span
}
