//! The in-process engine: one task per projection, catch-up then live,
//! checkpoints, outages.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::control::{Held, PauseGate};
use super::dead_letters::{DropOutcome, RebuildRequest, RetryOutcome};
use super::delivery::{
    handle_span, report_position, skippable, Delivered, Delivery, DeliveryError, Failure, Interval, Target,
};
use super::{
    Projection, ProjectionError, ProjectionHandle, ProjectionOptions, ProjectionState, ProjectionStatus, RunnerControl,
};
use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::retry::RetryPolicy;
use crate::store::{CheckpointStore, DeadLetterStore, EventStore};

/// Runs projections against an event store, keeping their checkpoints.
///
/// ```
/// # use orchestrix::projection::*;
/// # use orchestrix::memory::*;
/// # use orchestrix::{store::EventFilter, envelope::RecordedEvent, error::BoxError};
/// # #[derive(Default)] struct Counter { seen: u64 }
/// # #[orchestrix::async_trait]
/// # impl Projection for Counter {
/// #     fn name(&self) -> std::borrow::Cow<'static, str> { "counter".into() }
/// #     fn filter(&self) -> EventFilter { EventFilter::all() }
/// #     async fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> { self.seen += 1; Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = ProjectionEngine::new(InMemoryEventStore::new(), InMemoryCheckpointStore::new())
///     .with_dead_letters(InMemoryDeadLetterStore::new());
/// let handle = engine.spawn(Counter::default(), ProjectionOptions::default().poison(PoisonPolicy::Park));
/// let counter = handle.stop().await?;
/// assert_eq!(counter.seen, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ProjectionEngine {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) checkpoints: Arc<dyn CheckpointStore>,
    pub(super) dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

impl ProjectionEngine {
    /// An engine over an event store and a checkpoint store: any stores,
    /// shared ones (`Arc<dyn EventStore>`, `Arc<dyn CheckpointStore>`)
    /// included.
    pub fn new(events: impl EventStore, checkpoints: impl CheckpointStore) -> Self {
        let events = crate::store::shared::<_, dyn EventStore>(events, |store| Arc::new(store));
        let checkpoints = crate::store::shared::<_, dyn CheckpointStore>(checkpoints, |store| Arc::new(store));
        Self { events, checkpoints, dead_letters: None }
    }

    /// Adds the dead-letter store that
    /// [`PoisonPolicy::Park`](super::PoisonPolicy::Park) needs (a shared
    /// `Arc<dyn DeadLetterStore>` too).
    pub fn with_dead_letters(mut self, store: impl DeadLetterStore) -> Self {
        self.dead_letters = Some(crate::store::shared::<_, dyn DeadLetterStore>(store, |store| Arc::new(store)));
        self
    }

    /// The dead-letter store, to count, list or purge dead letters.
    pub fn dead_letters(&self) -> Option<&Arc<dyn DeadLetterStore>> {
        self.dead_letters.as_ref()
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &Arc<dyn CheckpointStore> {
        &self.checkpoints
    }

    /// The delivery of `name` under `options`.
    pub(super) fn delivery(&self, name: &str, options: &ProjectionOptions) -> Delivery {
        Delivery::new(name, options.retry, options.poison, self.dead_letters.clone())
    }

    /// Runs `projection` in its own task: catch up from its checkpoint,
    /// then follow the log until stopped. Projections spawned side by side
    /// progress independently: a slow one holds back only itself.
    pub fn spawn<P: Projection>(&self, projection: P, options: ProjectionOptions) -> ProjectionHandle<P> {
        let name = projection.name().into_owned();
        let engine = self.clone();
        let delivery = self.delivery(&name, &options);
        let span = tracing::info_span!("orchestrix.projection", projection = %name);
        let gate = PauseGate::new(name.clone(), Arc::clone(&self.checkpoints));
        ProjectionHandle::spawn_serving_runner(name, move |control| {
            async move {
                let mut runner = Runner { engine, projection, options, delivery, control, gate };
                runner.run().await.map(|()| runner.projection)
            }
            .instrument(span)
        })
        .reading(Arc::clone(&self.events))
        .controlled_by(Arc::clone(&self.checkpoints))
    }

    /// Retries the stream of the parked event `id` with a projection that
    /// is not running (a running one: [`ProjectionHandle::retry_dead_letter`]);
    /// see [`Delivery::retry`] for the semantics.
    pub async fn retry_dead_letter<P: Projection>(
        &self,
        projection: &mut P,
        id: Uuid,
    ) -> Result<RetryOutcome, ProjectionError> {
        let mut delivery = self.delivery(&projection.name(), &ProjectionOptions::default());
        delivery.retry(&mut Handler(projection), id).await.map_err(never_interrupted)
    }

    /// Retries every parked stream of a projection that is not running;
    /// see [`Delivery::retry_all`].
    pub async fn retry_dead_letters<P: Projection>(&self, projection: &mut P) -> Result<RetryOutcome, ProjectionError> {
        let mut delivery = self.delivery(&projection.name(), &ProjectionOptions::default());
        delivery.retry_all(&mut Handler(projection)).await.map_err(never_interrupted)
    }

    /// Drops the parked event `id` of the projection `name` without
    /// handling it; see [`Delivery::drop_letter`]. A running projection
    /// notices by itself (it asks the store before parking behind a
    /// stream); [`ProjectionHandle::drop_dead_letter`] does the same
    /// through the runner.
    pub async fn drop_dead_letter(&self, name: &str, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.delivery(name, &ProjectionOptions::default()).drop_letter(id).await
    }
}

fn never_interrupted(error: DeliveryError<Infallible>) -> ProjectionError {
    match error {
        DeliveryError::Projection(error) => error,
        DeliveryError::Interrupted(never) => match never {},
    }
}

/// The engine's [`Target`]: a plain call of the projection's handler.
pub(super) struct Handler<'a, P>(pub(super) &'a mut P);

impl<P: Projection> Target for Handler<'_, P> {
    type Interrupt = Infallible;

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), Failure<Infallible>> {
        self.0.handle(event).await.map_err(Failure::Handler)
    }
}

/// How long a projection's log must stay quiet before it saves the
/// checkpoint of what it handled since the last save (besides every
/// [`ProjectionOptions::checkpoint_every`] events, and when it stops).
const IDLE_SAVE_AFTER: Duration = Duration::from_millis(20);

/// How often an idle projection looks for events to move over while a
/// caller waits for a position above its own.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// The most events one look moves over.
const PROBE_LIMIT: usize = 10_000;

/// The longest wait between two attempts while a store is unavailable.
const OUTAGE_MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a projection waits after `attempts` failed attempts while its
/// stores are unavailable: exponential from 50 ms up to
/// [`OUTAGE_MAX_DELAY`], half-jittered, for as long as the outage lasts.
pub(super) fn outage_delay(attempts: u32) -> Duration {
    RetryPolicy::exponential(u32::MAX, Duration::from_millis(50))
        .with_max_delay(OUTAGE_MAX_DELAY)
        .with_jitter(0.5)
        .delay_after(attempts)
        .unwrap_or(OUTAGE_MAX_DELAY)
}

/// Runs `op` until it succeeds, retrying while the store is
/// [`StoreError::Unavailable`] (a database restart, a network cut) with
/// [`outage_delay`]. Other errors are returned at once; so is the
/// outage's error once `stop` is set.
async fn outlast<T, F, Fut>(name: &str, stop: &watch::Receiver<bool>, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempts = 0;
    loop {
        match op().await {
            Err(StoreError::Unavailable(error)) if !*stop.borrow() => {
                attempts += 1;
                let delay = outage_delay(attempts);
                tracing::warn!(projection = name, %error, ?delay, "store unavailable; retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Saves the checkpoint at the tally's position unless it is there
/// already, waiting out an unavailable store.
async fn save(
    checkpoints: &dyn CheckpointStore,
    name: &str,
    stop: &watch::Receiver<bool>,
    progress: &mut Tally,
) -> Result<(), ProjectionError> {
    if progress.position != progress.saved {
        outlast(name, stop, || checkpoints.save(name, progress.position))
            .await
            .map_err(|source| ProjectionError::Store { projection: name.to_owned(), source })?;
        progress.saved = progress.position;
    }
    progress.unsaved = 0;
    progress.interval.restart();
    Ok(())
}

struct Runner<P> {
    engine: ProjectionEngine,
    projection: P,
    options: ProjectionOptions,
    delivery: Delivery,
    control: RunnerControl,
    /// The projection's control record (ADR 0050).
    gate: PauseGate,
}

/// What a runner does after an event.
enum After {
    /// Go on with the next event.
    Next,
    /// Stop: the handle asked.
    Stop,
    /// Read the control record: it is due.
    Control,
    /// Follow the log again from the (reset) position: rebuilt.
    Rebuilt,
}

/// Where a running projection is: its position, the last save, counts.
struct Tally {
    position: u64,
    saved: u64,
    handled: u64,
    parked: u64,
    /// Events since the last save, counted: positions need not be
    /// consecutive (PostgreSQL's jump at every transaction).
    unsaved: u64,
    /// Since the last save: saves again after `checkpoint_interval`.
    interval: Interval,
}

impl Tally {
    /// At `start`, saved there, with these counts.
    fn at(start: u64, handled: u64, parked: u64, checkpoint_interval: std::time::Duration) -> Self {
        Self {
            position: start,
            saved: start,
            handled,
            parked,
            unsaved: 0,
            interval: Interval::new(checkpoint_interval),
        }
    }
}

impl<P: Projection> Runner<P> {
    fn name(&self) -> &str {
        self.delivery.name()
    }

    fn store_error(&self, source: StoreError) -> ProjectionError {
        ProjectionError::Store { projection: self.name().to_owned(), source }
    }

    fn report(&self, state: Option<ProjectionState>, progress: &Tally) {
        self.control.report(|s| {
            *s = ProjectionStatus {
                state: state.unwrap_or_else(|| s.state.clone()),
                position: progress.position,
                handled: progress.handled,
                parked: progress.parked,
            };
        });
    }

    /// Loads the checkpoint and the parked streams, waiting out an
    /// unavailable store; returns the position to start after.
    async fn start(&mut self, name: &str, stop: &watch::Receiver<bool>) -> Result<u64, ProjectionError> {
        let start = outlast(name, stop, || self.engine.checkpoints.load(name))
            .await
            .map_err(|e| self.store_error(e))?
            .unwrap_or(0);
        let mut attempts = 0;
        while let Err(error) = self.delivery.load_parked().await {
            match error {
                StoreError::Unavailable(_) if !self.control.is_stopping() => {
                    attempts += 1;
                    tokio::time::sleep(outage_delay(attempts)).await;
                }
                error => return Err(self.store_error(error)),
            }
        }
        Ok(start)
    }

    /// Delivers `event` (a poison event that stops the projection is
    /// returned, with the progress before it saved), then saves the
    /// checkpoint when due, reports, and serves waiting requests of the
    /// handle. Says whether to stop, or to read the
    /// control record (the same clock reading as the checkpoint's cadence:
    /// nothing per event reaches the store).
    async fn handle(
        &mut self,
        name: &str,
        stop: &watch::Receiver<bool>,
        progress: &mut Tally,
        event: &RecordedEvent,
    ) -> Result<After, ProjectionError> {
        let span = handle_span(name, event);
        match self.delivery.deliver(&mut Handler(&mut self.projection), event, &span).await {
            Ok(Delivered::Handled) => progress.handled += 1,
            Ok(_) => progress.parked += 1,
            Err(DeliveryError::Projection(error)) => {
                // Keep the progress made before the poison event.
                save(&*self.engine.checkpoints, name, stop, progress).await?;
                return Err(error);
            }
            Err(DeliveryError::Interrupted(never)) => match never {},
        }
        progress.position = event.global_position;
        progress.unsaved += 1;
        let timed = progress.interval.tick();
        let due = progress.unsaved >= self.options.checkpoint_every || timed;
        if due {
            save(&*self.engine.checkpoints, name, stop, progress).await?;
            self.report(None, progress);
            let head = self.engine.events.head_position().await.ok().flatten();
            report_position(name, progress.position, head.map(|h| h.saturating_sub(progress.position)), Some(event));
            if self.control.is_stopping() {
                return Ok(After::Stop);
            }
            while let Some(request) = self.control.try_request() {
                if self.serve(name, stop, progress, request).await? {
                    return Ok(After::Rebuilt);
                }
            }
        }
        Ok(if self.gate.due(progress.interval.last_look()) { After::Control } else { After::Next })
    }

    /// Serves a request of the handle between two events; whether it was
    /// a rebuild (ADR 0050), after which the caller follows the log again
    /// from the progress's position (0 once reset). A rebuild resets the
    /// read model, deletes the checkpoint and purges the dead letters
    /// ([`ProjectionEngine::start_over`]), then reloads the checkpoint and
    /// parked streams as they are now, whatever failed, and answers.
    async fn serve(
        &mut self,
        name: &str,
        stop: &watch::Receiver<bool>,
        progress: &mut Tally,
        request: super::dead_letters::DeadLetterRequest,
    ) -> Result<bool, ProjectionError> {
        match request.into_rebuild() {
            Ok(rebuild) => self.rebuild(name, stop, progress, rebuild).await.map(|()| true),
            Err(request) => {
                let Ok(()) = self.delivery.serve(&mut Handler(&mut self.projection), request).await;
                Ok(false)
            }
        }
    }

    /// Rebuilds here (ADR 0050); see [`Runner::serve`].
    async fn rebuild(
        &mut self,
        name: &str,
        stop: &watch::Receiver<bool>,
        progress: &mut Tally,
        rebuild: RebuildRequest,
    ) -> Result<(), ProjectionError> {
        tracing::info!(projection = %name, position = progress.position, "rebuilding on request");
        let reset = self.engine.start_over(&mut self.projection, name).await;
        match self.start(name, stop).await {
            Ok(start) => {
                *progress = Tally::at(start, progress.handled, progress.parked, self.options.checkpoint_interval);
                self.report(Some(ProjectionState::CatchingUp), progress);
                rebuild.answer(reset);
                Ok(())
            }
            Err(error) => {
                rebuild.answer(Err(reset.err().unwrap_or_else(|| {
                    ProjectionError::Ended(name.to_owned(), format!("reset, but could not start over: {error}"))
                })));
                Err(error)
            }
        }
    }

    /// Pauses here (ADR 0050): saves the checkpoint and holds until the
    /// pause is withdrawn (rebuilding first if asked meanwhile), then reloads the checkpoint (a rebuild may have
    /// moved it) and the parked streams (letters may have been retried or
    /// dropped). Returns whether the runner was stopped meanwhile. The
    /// caller has dropped its subscription.
    async fn pause_here(
        &mut self,
        name: &str,
        stop: &watch::Receiver<bool>,
        progress: &mut Tally,
    ) -> Result<bool, ProjectionError> {
        save(&*self.engine.checkpoints, name, stop, progress).await?;
        self.report(None, progress);
        let held = self
            .gate
            .hold(&mut self.control, &mut self.delivery, &mut Handler(&mut self.projection), progress.position)
            .await;
        match held {
            Held::Stopped => Ok(true),
            Held::Interrupted(never) => match never {},
            Held::Rebuild(rebuild) => self.rebuild(name, stop, progress, rebuild).await.map(|()| false),
            Held::Resumed => {
                let start = self.start(name, stop).await?;
                *progress = Tally::at(start, progress.handled, progress.parked, self.options.checkpoint_interval);
                self.report(Some(ProjectionState::CatchingUp), progress);
                Ok(false)
            }
        }
    }

    async fn run(&mut self) -> Result<(), ProjectionError> {
        let stop = self.control.stop_signal();
        let name = self.name().to_owned();
        let start = self.start(&name, &stop).await?;
        let mut progress = Tally::at(start, 0, 0, self.options.checkpoint_interval);
        let mut outages = 0;
        let mut stop = self.control.stop_signal();
        let mut wanted = self.control.wanted_signal();
        let mut nudge = self.control.nudge_signal();
        self.control.report(|s| s.position = start);
        // A projection whose record says paused starts paused.
        if self.gate.pause_requested().await && self.pause_here(&name, &stop, &mut progress).await? {
            return Ok(());
        }
        let filter = self.projection.filter();
        let mut events = self.engine.events.subscribe(progress.position + 1, filter.clone());
        let mut read_control = false;
        loop {
            if std::mem::take(&mut read_control) && self.gate.pause_requested().await {
                // Finish with the subscription: a paused runner holds no
                // cursor; it follows the log again from its checkpoint.
                drop(events);
                if self.pause_here(&name, &stop, &mut progress).await? {
                    return Ok(());
                }
                events = self.engine.events.subscribe(progress.position + 1, filter.clone());
                continue;
            }
            let next = if let Some(next) = events.next().now_or_never() {
                next
            } else {
                // Nothing ready: report (cheap), and save the checkpoint
                // once the log stays quiet for a moment (IDLE_SAVE_AFTER:
                // saving at once made a catch-up commit whenever the
                // reader got ahead of the rows arriving from the database).
                self.report(Some(ProjectionState::Live), &progress);
                report_position(&name, progress.position, Some(0), None);
                let behind = *wanted.borrow_and_update() > progress.position;
                tokio::select! {
                    next = events.next() => next,
                    () = tokio::time::sleep(IDLE_SAVE_AFTER), if progress.position != progress.saved => {
                        save(&*self.engine.checkpoints, &name, &stop, &mut progress).await?;
                        continue;
                    }
                    () = tokio::time::sleep(PROBE_EVERY), if behind => {
                        // A caller waits for a position above ours: move
                        // over the events our filter leaves out.
                        match skippable(&*self.engine.events, &filter, progress.position, PROBE_LIMIT).await {
                            Ok(Some(skip_to)) => progress.position = skip_to,
                            Ok(None) => {}
                            Err(error) => tracing::debug!(projection = %name, %error, "cannot look ahead; trying again"),
                        }
                        continue;
                    }
                    _ = wanted.changed() => continue,
                    () = tokio::time::sleep_until(self.gate.next_check()) => {
                        read_control = true;
                        continue;
                    }
                    _ = nudge.changed() => {
                        read_control = true;
                        continue;
                    }
                    _ = stop.changed() => return save(&*self.engine.checkpoints, &name, &stop, &mut progress).await,
                    request = self.control.request() => {
                        if self.serve(&name, &stop, &mut progress, request).await? {
                            drop(events);
                            events = self.engine.events.subscribe(progress.position + 1, filter.clone());
                        }
                        continue;
                    }
                }
            };
            let Some(event) = next else { break };
            let event = match event {
                Ok(event) => event,
                Err(StoreError::Unavailable(error)) => {
                    // The store went away (a restart, a network cut): wait,
                    // then follow the log again right after the last event
                    // handled. Nothing is skipped and nothing handled twice.
                    outages += 1;
                    let delay = outage_delay(outages);
                    tracing::warn!(projection = %name, %error, ?delay, "event store unavailable; resubscribing");
                    drop(events);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return save(&*self.engine.checkpoints, &name, &stop, &mut progress).await,
                    }
                    events = self.engine.events.subscribe(progress.position + 1, filter.clone());
                    continue;
                }
                Err(error) => return Err(self.store_error(error)),
            };
            outages = 0;
            if event.global_position <= progress.position {
                // Moved over already (a look ahead raced the subscription).
                continue;
            }
            match self.handle(&name, &stop, &mut progress, &event).await? {
                After::Next => {}
                After::Stop => return Ok(()),
                After::Control => read_control = true,
                After::Rebuilt => {
                    drop(events);
                    events = self.engine.events.subscribe(progress.position + 1, filter.clone());
                }
            }
        }
        save(&*self.engine.checkpoints, &name, &stop, &mut progress).await
    }
}
