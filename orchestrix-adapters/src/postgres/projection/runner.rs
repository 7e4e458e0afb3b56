//! The transactional runner: batches, transactions, outages, fences; the
//! core's delivery for everything around a failing event.

use std::fmt;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use orchestrix::error::BoxError;
use orchestrix::projection::control::{Held, PauseGate};
use orchestrix::projection::dead_letters::{DeadLetterRequest, RebuildRequest};
use orchestrix::projection::delivery::{
    handle_span, report_position, skippable, Behind, Delivered, Delivery, DeliveryError, Failure, Target,
};
use orchestrix::projection::{ProjectionError, ProjectionState, RunnerControl};
use orchestrix::store::{CheckpointStore, DeadLetter, DeadLetterStore, EventFilter, EventStore, EventStream};
use orchestrix::{envelope::RecordedEvent, retry::RetryPolicy, StoreError};
use sqlx::PgConnection;
use tracing::Instrument;

use super::{PgProjection, PgProjectionOptions};
use crate::common::map_err;
use crate::postgres::{PgLease, PgStore};

/// Why a batch did not commit.
#[derive(Debug)]
pub(super) enum BatchError {
    /// The database went away; resume from the checkpoint after a pause.
    Unavailable(StoreError),
    /// Another runner moved the checkpoint; resume from it.
    Fenced,
    /// The projection failed on the event at this index of the batch.
    Handler(usize, BoxError),
    /// Anything else: the projection stops with it.
    Fatal(StoreError),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(error) => write!(f, "the database is unavailable: {error}"),
            Self::Fenced => f.write_str("another runner moved the checkpoint"),
            Self::Handler(_, error) => write!(f, "the projection failed: {error}"),
            Self::Fatal(error) => write!(f, "{error}"),
        }
    }
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

impl From<BatchError> for Failure<BatchError> {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Handler(_, error) => Failure::Handler(error),
            other => Failure::Interrupted(other),
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

pub(super) struct Runner<P> {
    pub(super) store: PgStore,
    pub(super) name: String,
    pub(super) projection: P,
    pub(super) options: PgProjectionOptions,
    pub(super) delivery: Delivery,
    pub(super) control: RunnerControl,
    pub(super) outages: u32,
    /// Set when a batch was interrupted by an outage: pause before resuming.
    pub(super) needs_pause: bool,
    /// The projection's control record (ADR 0050).
    pub(super) gate: PauseGate,
}

/// The transactional runner's [`Target`]: each event in a transaction of
/// its own that also moves the checkpoint from `checkpoint`.
struct Tx<'a, P> {
    store: &'a PgStore,
    projection: &'a mut P,
    name: &'a str,
    checkpoint: Option<u64>,
}

impl<P: PgProjection> Target for Tx<'_, P> {
    type Interrupt = BatchError;

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), Failure<BatchError>> {
        let mut tx = self.store.begin().await.map_err(BatchError::from)?;
        self.projection.handle(&mut tx, event).await.map_err(|error| BatchError::Handler(0, error))?;
        self.store
            .save_checkpoint_in(&mut tx, self.name, self.checkpoint, event.global_position)
            .await
            .map_err(BatchError::from)?;
        tx.commit().await.map_err(|e| BatchError::from(map_err(e)))?;
        Ok(())
    }

    async fn park(&mut self, _: &dyn DeadLetterStore, letter: &DeadLetter) -> Result<(), Failure<BatchError>> {
        let mut tx = self.store.begin().await.map_err(BatchError::from)?;
        park_in(self.store, &mut tx, letter).await?;
        let position = letter.event.global_position;
        self.store.save_checkpoint_in(&mut tx, self.name, self.checkpoint, position).await.map_err(BatchError::from)?;
        tx.commit().await.map_err(|e| BatchError::from(map_err(e)))?;
        Ok(())
    }

    async fn apply_parked(&mut self, _: &dyn DeadLetterStore, letter: &DeadLetter) -> Result<(), Failure<BatchError>> {
        let mut tx = self.store.begin().await.map_err(BatchError::from)?;
        self.projection.handle(&mut tx, &letter.event).await.map_err(|error| BatchError::Handler(0, error))?;
        sqlx::query(&self.store.inner.sql.dl_remove)
            .bind(letter.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| BatchError::from(map_err(e)))?;
        tx.commit().await.map_err(|e| BatchError::from(map_err(e)))?;
        Ok(())
    }
}

/// Writes `letter` inside `tx`.
async fn park_in(store: &PgStore, tx: &mut PgConnection, letter: &DeadLetter) -> Result<(), BatchError> {
    crate::postgres::ports::park_query(&store.inner.sql.dl_park, letter)?.execute(&mut *tx).await.map_err(map_err)?;
    Ok(())
}

impl<P: PgProjection> Runner<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn store_error(&self, source: StoreError) -> ProjectionError {
        ProjectionError::Store { projection: self.name().to_owned(), source }
    }

    pub(super) async fn run(&mut self) -> Result<(), ProjectionError> {
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
                            tracing::warn!(projection = %self.name(), "lost the projection's lease; waiting for it again");
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
        let lease_name = lease_name(self.name());
        loop {
            match self.store.try_lease(&lease_name).await {
                Ok(Some(lease)) => return Ok(Some(lease)),
                Ok(None) => {}
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(projection = %self.name(), %error, "cannot reach the database for the lease; retrying");
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

    /// Loads the checkpoint and the parked streams, follows the log from
    /// there and commits batch after batch until told to stop or to resume.
    async fn pass(&mut self) -> Result<Pass, ProjectionError> {
        if self.control.is_stopping() {
            return Ok(Pass::Done);
        }
        let loaded = match CheckpointStore::load(&self.store, self.name()).await {
            Ok(checkpoint) => self.delivery.load_parked().await.map(|()| checkpoint),
            Err(error) => Err(error),
        };
        let mut checkpoint = match loaded {
            Ok(checkpoint) => checkpoint,
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(projection = %self.name(), %error, "cannot load the checkpoint; retrying");
                return Ok(Pass::Resume { pause: true });
            }
            Err(error) => return Err(self.store_error(error)),
        };
        let from = checkpoint.unwrap_or(0);
        self.control.report(|s| s.position = s.position.max(from));
        // A projection whose record says paused starts paused.
        if self.gate.pause_requested().await {
            return self.hold(checkpoint).await;
        }
        let filter = self.projection.filter();
        let mut events = self.store.subscribe(from + 1, filter.clone());
        let mut stop = self.control.stop_signal();
        let mut wanted = self.control.wanted_signal();
        let mut nudge = self.control.nudge_signal();
        let mut read_control = false;
        loop {
            if std::mem::take(&mut read_control) && self.gate.pause_requested().await {
                // Every batch is committed: no transaction, no cursor held.
                drop(events);
                return self.hold(checkpoint).await;
            }
            let first = if let Some(first) = events.next().now_or_never() {
                first
            } else {
                self.control.report(|s| s.state = ProjectionState::Live);
                let behind = *wanted.borrow_and_update() > checkpoint.unwrap_or(0);
                tokio::select! {
                    first = events.next() => first,
                    _ = stop.changed() => return Ok(Pass::Done),
                    _ = wanted.changed() => continue,
                    () = tokio::time::sleep_until(self.gate.next_check()) => {
                        read_control = true;
                        continue;
                    }
                    _ = nudge.changed() => {
                        read_control = true;
                        continue;
                    }
                    () = tokio::time::sleep(Duration::from_millis(10)), if behind => {
                        match self.advance(checkpoint, &filter).await {
                            Ok(Some(position)) => checkpoint = Some(position),
                            Ok(None) => {}
                            Err(error) => return self.resume_after(error),
                        }
                        continue;
                    }
                    request = self.control.request() => {
                        if let Some(end) = self.serve_request(request, checkpoint).await {
                            return end;
                        }
                        continue;
                    }
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
            read_control = self.gate.due(tokio::time::Instant::now());
            while let Some(request) = self.control.try_request() {
                if let Some(end) = self.serve_request(request, checkpoint).await {
                    return end;
                }
            }
        }
    }

    /// Serves a request of the handle between two batches, at the
    /// committed `checkpoint`: a rebuild ([`Runner::rebuild`]), or a
    /// dead-letter request with the transactional target. `Some` ends the
    /// pass with what it returns.
    async fn serve_request(
        &mut self,
        request: DeadLetterRequest,
        checkpoint: Option<u64>,
    ) -> Option<Result<Pass, ProjectionError>> {
        let request = match request.into_rebuild() {
            Ok(rebuild) => return Some(self.rebuild(rebuild).await),
            Err(request) => request,
        };
        let mut target = Tx { store: &self.store, projection: &mut self.projection, name: &self.name, checkpoint };
        // Field by field: `target` borrows the projection, `delivery` is apart.
        match serve(&mut self.delivery, &mut target, request).await {
            Ok(()) => None,
            Err(error) => Some(self.resume_after(error)),
        }
    }

    /// Rebuilds in place on the handle's request, between two batches
    /// (ADR 0050): resets the read model, deletes the checkpoint and purges
    /// the dead letters in one transaction ([`PgStore::start_over`]),
    /// reports position 0, answers, and ends the pass: the next one
    /// reloads the checkpoint (none: from position 1) and the parked
    /// streams. A failed reset changed nothing; it is answered and the
    /// runner goes on from its checkpoint.
    async fn rebuild(&mut self, rebuild: RebuildRequest) -> Result<Pass, ProjectionError> {
        tracing::info!(projection = %self.name, "rebuilding on request");
        match self.store.start_over(&mut self.projection, &self.name).await {
            Ok(()) => {
                self.control.report(|s| {
                    s.position = 0;
                    s.state = ProjectionState::CatchingUp;
                });
                rebuild.answer(Ok(()));
            }
            Err(error) => rebuild.answer(Err(error)),
        }
        Ok(Pass::Resume { pause: false })
    }

    /// Holds the runner paused at its committed `checkpoint` (ADR 0050);
    /// on resume, the next pass reloads the checkpoint and the parked
    /// streams.
    async fn hold(&mut self, checkpoint: Option<u64>) -> Result<Pass, ProjectionError> {
        let mut target = Tx { store: &self.store, projection: &mut self.projection, name: &self.name, checkpoint };
        let held = self.gate.hold(&mut self.control, &mut self.delivery, &mut target, checkpoint.unwrap_or(0)).await;
        match held {
            Held::Stopped => Ok(Pass::Done),
            Held::Interrupted(error) => self.resume_after(error),
            Held::Rebuild(rebuild) => self.rebuild(rebuild).await,
            // Resumed (and whatever a later version adds): a new pass.
            _ => Ok(Pass::Resume { pause: false }),
        }
    }

    /// What a pass does after `error` interrupted it outside a batch.
    fn resume_after(&mut self, error: BatchError) -> Result<Pass, ProjectionError> {
        match self.interrupted(error)? {
            Some(_) => Ok(Pass::Resume { pause: false }),
            None => Ok(Pass::Resume { pause: std::mem::take(&mut self.needs_pause) }),
        }
    }

    /// Moves the checkpoint over the events the filter leaves out, while a
    /// caller waits for a position above it (see
    /// [`orchestrix::projection::delivery::skippable`]).
    async fn advance(&mut self, checkpoint: Option<u64>, filter: &EventFilter) -> Result<Option<u64>, BatchError> {
        let from = checkpoint.unwrap_or(0);
        let Some(to) = skippable(&self.store, filter, from, 10_000).await? else { return Ok(None) };
        let mut tx = self.store.begin().await?;
        self.store.save_checkpoint_in(&mut tx, self.name(), checkpoint, to).await?;
        tx.commit().await.map_err(map_err)?;
        self.control.report(|s| s.position = s.position.max(to));
        Ok(Some(to))
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
            Ok((handled, parked)) => {
                self.reported(handled, parked, batch);
                Ok(batch.last().map(|e| e.global_position))
            }
            Err(BatchError::Handler(index, error)) => {
                tracing::debug!(projection = %self.name(), position = batch[index].global_position, %error,
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
            Err(error) => self.interrupted(error),
        }
    }

    /// Delivers one event in its own transaction (the core's delivery:
    /// retries, poison, parking in stream order).
    async fn commit_alone(
        &mut self,
        checkpoint: Option<u64>,
        event: &RecordedEvent,
    ) -> Result<Option<u64>, ProjectionError> {
        let span = handle_span(&self.name, event);
        let mut target = Tx { store: &self.store, projection: &mut self.projection, name: &self.name, checkpoint };
        let delivered = self.delivery.deliver(&mut target, event, &span).await;
        match delivered {
            Ok(Delivered::Handled) => {
                self.reported(1, 0, std::slice::from_ref(event));
                Ok(Some(event.global_position))
            }
            Ok(Delivered::AlreadyParked) => Ok(checkpoint),
            Ok(_) => {
                self.reported(0, 1, std::slice::from_ref(event));
                Ok(Some(event.global_position))
            }
            Err(DeliveryError::Projection(error)) => Err(error),
            Err(DeliveryError::Interrupted(error)) => self.interrupted(error),
        }
    }

    /// What to do after a batch that neither committed nor failed in the
    /// projection: resume (`Ok(None)`) or stop with the error.
    fn interrupted(&mut self, error: BatchError) -> Result<Option<u64>, ProjectionError> {
        match error {
            BatchError::Unavailable(error) => {
                tracing::warn!(projection = %self.name(), %error, "database unavailable; resuming from the checkpoint");
                self.needs_pause = true;
                Ok(None)
            }
            BatchError::Fenced => {
                tracing::warn!(projection = %self.name(), "another runner moved the checkpoint; resuming from it");
                Ok(None)
            }
            BatchError::Fatal(error) => Err(self.store_error(error)),
            BatchError::Handler(_, error) => Err(self.store_error(StoreError::Backend(error))),
        }
    }

    /// One transaction: every event of `batch` (those of parked streams
    /// parked behind their streams' letters instead), then the checkpoint.
    /// Returns how many were handled and parked.
    async fn try_batch(
        &mut self,
        checkpoint: Option<u64>,
        batch: &[RecordedEvent],
    ) -> Result<(usize, usize), BatchError> {
        let mut tx = self.store.begin().await?;
        let (mut handled, mut parked) = (0, 0);
        for (index, event) in batch.iter().enumerate() {
            match self.delivery.behind(event).await? {
                Some(Behind::Park(letter)) => {
                    park_in(&self.store, &mut tx, &letter).await?;
                    parked += 1;
                    continue;
                }
                Some(Behind::AlreadyParked) => continue,
                None => {}
            }
            let span = handle_span(&self.name, event);
            if let Err(error) = self.projection.handle(&mut tx, event).instrument(span.clone()).await {
                span.record("error", tracing::field::display(&error));
                span.record("otel.status_code", "ERROR");
                // Dropping `tx` rolls it back.
                return Err(BatchError::Handler(index, error));
            }
            handled += 1;
        }
        let last = batch.last().map_or(0, |e| e.global_position);
        self.store.save_checkpoint_in(&mut tx, self.name(), checkpoint, last).await?;
        tx.commit().await.map_err(map_err)?;
        Ok((handled, parked))
    }

    fn reported(&self, handled: usize, parked: usize, batch: &[RecordedEvent]) {
        let Some(last) = batch.last() else { return };
        let (handled, parked) = (u64::try_from(handled).unwrap_or(0), u64::try_from(parked).unwrap_or(0));
        self.control.report(|s| {
            s.position = last.global_position;
            s.handled += handled;
            s.parked += parked;
        });
        report_position(self.name(), last.global_position, None, Some(last));
    }
}

/// Serves a dead-letter request with the transactional target.
async fn serve<P: PgProjection>(
    delivery: &mut Delivery,
    target: &mut Tx<'_, P>,
    request: DeadLetterRequest,
) -> Result<(), BatchError> {
    delivery.serve(target, request).await
}

/// The advisory lease a runner of projection `name` holds.
pub(super) fn lease_name(name: &str) -> String {
    format!("projection:{name}")
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
