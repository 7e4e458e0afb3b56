//! Running projections: catch-up, live follow, checkpoints, retries,
//! poison events, rebuilds.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::Projection;
use crate::envelope::RecordedEvent;
use crate::error::{render_chain as render, BoxError, StoreError};
use crate::retry::RetryPolicy;
use crate::store::{CheckpointStore, DeadLetter, DeadLetterStore, EventStore};
use crate::stream::StreamId;
use crate::telemetry;
use crate::trace;

/// What a projection does with an event it still cannot handle after its
/// retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoisonPolicy {
    /// Stop the projection with [`ProjectionError::Poison`]; its checkpoint
    /// stays before the event, so a restart tries it again.
    #[default]
    Stop,
    /// Park the event in the dead-letter store with its error and go on.
    Park,
}

/// How a projection runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectionOptions {
    /// What to do with an event that keeps failing.
    pub poison: PoisonPolicy,
    /// How to retry a failing event before it counts as poison.
    pub retry: RetryPolicy,
    /// Save the checkpoint at least every this many events (it is also
    /// saved every [`ProjectionOptions::checkpoint_interval`] while busy,
    /// once the projection has caught up with the log and the log stayed
    /// quiet for 20 ms, and when the projection stops). Each save is a
    /// write to the checkpoint store (a durable commit in the SQL
    /// adapters), so a small value slows catch-up; a large one means more
    /// events handled again after a crash (delivery is at least once).
    pub checkpoint_every: u64,
    /// Save the checkpoint at least this often while events keep coming,
    /// however few: a slow projection's crash redelivers at most this
    /// much work.
    pub checkpoint_interval: Duration,
}

impl Default for ProjectionOptions {
    /// Stop on poison, 3 attempts 10 ms apart, a checkpoint every 10,000
    /// events or every second, whichever comes first.
    fn default() -> Self {
        Self {
            poison: PoisonPolicy::Stop,
            retry: RetryPolicy::fixed(3, Duration::from_millis(10)),
            // Each save is a synchronous commit on the SQL adapters: 100
            // events cost PostgreSQL catch-up five times its speed, 1,000
            // still a third of it (ADR 13). 10,000 events are a few
            // milliseconds of catch-up to redeliver after a crash; the
            // interval bounds it for slow projections.
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

impl ProjectionOptions {
    /// Sets the poison policy.
    pub fn poison(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many events may pass between two saves of the
    /// checkpoint while busy (at least 1).
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets how much time may pass between two saves of the checkpoint
    /// while busy.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }
}

/// The event a projection could not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// The projection.
    pub projection: String,
    /// The event's global position.
    pub position: u64,
    /// The event's stream.
    pub stream: StreamId,
    /// The event's version in its stream.
    pub stream_version: u64,
    /// The event's type.
    pub event_type: String,
    /// The handler's last error, with its sources.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
}

/// Why a projection stopped or a projection operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// An event kept failing and the policy is [`PoisonPolicy::Stop`].
    #[error(
        "projection `{}` stopped at event `{}` (position {}, `{}` version {}) after {} attempts: {}",
        .0.projection, .0.event_type, .0.position, .0.stream, .0.stream_version, .0.attempts, .0.error
    )]
    Poison(Box<Poison>),
    /// A port failed.
    #[error("projection `{projection}`: {source}")]
    Store {
        /// The projection.
        projection: String,
        /// The port's error.
        #[source]
        source: StoreError,
    },
    /// The policy is [`PoisonPolicy::Park`] but the engine has no dead-letter store.
    #[error("projection `{0}` parks poison events, but the engine has no dead-letter store; add one with `ProjectionEngine::with_dead_letters`")]
    NoDeadLetterStore(String),
    /// The read model could not be reset for a rebuild.
    #[error("projection `{projection}` could not reset its read model: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// The projection's error.
        #[source]
        source: BoxError,
    },
    /// The projection's runner does not offer this operation.
    #[error("projection `{projection}`: its runner does not support {operation}")]
    Unsupported {
        /// The projection.
        projection: String,
        /// What was asked.
        operation: &'static str,
    },
    /// The projection's task panicked or was aborted.
    #[error("projection `{0}` ended abnormally: {1}")]
    Ended(String, String),
}

/// Where a projection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionState {
    /// Reading events recorded before it started.
    CatchingUp,
    /// Caught up; waiting for new events.
    Live,
    /// Stopped on request.
    Stopped,
    /// Stopped by an error.
    Failed(String),
}

/// A snapshot of a running projection's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// Where it is.
    pub state: ProjectionState,
    /// The position of the last event it handled or parked.
    pub position: u64,
    /// Events handled since it started.
    pub handled: u64,
    /// Events parked since it started.
    pub parked: u64,
}

/// Progress of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Events handled so far.
    pub events_done: u64,
    /// The position of the last event handled.
    pub position: u64,
    /// The head of the log when the rebuild started: where it will stop.
    pub head: u64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

impl Progress {
    /// Events handled per second so far.
    pub fn rate(&self) -> f64 {
        per_second(self.events_done, self.elapsed)
    }

    /// How far through the log, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.head == 0 {
            1.0
        } else {
            ratio(self.position, self.head)
        }
    }

    /// The estimated time left, from the rate at which positions pass.
    pub fn eta(&self) -> Option<Duration> {
        let rate = per_second(self.position, self.elapsed);
        (rate > 0.0).then(|| Duration::from_secs_f64(ratio(self.head.saturating_sub(self.position), 1) / rate))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} events, {:.1}%, {:.0} events/s", self.events_done, self.fraction() * 100.0, self.rate())?;
        match self.eta() {
            Some(eta) => write!(f, ", about {:.1} s left", eta.as_secs_f64()),
            None => Ok(()),
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        ratio(count, 1) / secs
    } else {
        0.0
    }
}

/// Runs projections against an event store, keeping their checkpoints.
///
/// ```
/// # use orchestrix::projection::*;
/// # use orchestrix::memory::*;
/// # use orchestrix::{EventFilter, RecordedEvent, error::BoxError};
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
    events: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
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

    /// Adds the dead-letter store that [`PoisonPolicy::Park`] needs (a
    /// shared `Arc<dyn DeadLetterStore>` too).
    pub fn with_dead_letters(mut self, store: impl DeadLetterStore) -> Self {
        self.dead_letters = Some(crate::store::shared::<_, dyn DeadLetterStore>(store, |store| Arc::new(store)));
        self
    }

    /// The dead-letter store, to list or drop dead letters.
    pub fn dead_letters(&self) -> Option<&Arc<dyn DeadLetterStore>> {
        self.dead_letters.as_ref()
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &Arc<dyn CheckpointStore> {
        &self.checkpoints
    }

    /// Runs `projection` in its own task: catch up from its checkpoint,
    /// then follow the log until stopped. Projections spawned side by side
    /// progress independently: a slow one holds back only itself.
    pub fn spawn<P: Projection>(&self, projection: P, options: ProjectionOptions) -> ProjectionHandle<P> {
        let name = projection.name().into_owned();
        let (requests, requests_rx) = mpsc::channel(16);
        let engine = self.clone();
        let task_name = name.clone();
        let span = tracing::info_span!("orchestrix.projection", projection = %name);
        let mut handle = ProjectionHandle::spawn_runner(name, move |control| {
            async move {
                let mut runner =
                    Runner { engine, projection, options, name: Cow::Owned(task_name), control, requests: requests_rx };
                runner.run().await.map(|()| runner.projection)
            }
            .instrument(span)
        });
        handle.requests = Some(requests);
        handle
    }

    /// Rebuilds `projection` from the beginning of the log: resets its read
    /// model, forgets its checkpoint, replays every event up to the head as
    /// it was when the rebuild started, and saves the checkpoint there.
    /// `progress` is called about every 250 ms and once at the end.
    pub async fn rebuild<P: Projection>(
        &self,
        projection: &mut P,
        options: ProjectionOptions,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Progress, ProjectionError> {
        let name = projection.name();
        let store_error = |source| ProjectionError::Store { projection: name.to_string(), source };
        projection.reset().await.map_err(|source| ProjectionError::Reset { projection: name.to_string(), source })?;
        self.checkpoints.delete(&name).await.map_err(store_error)?;
        let head = self.events.head_position().await.map_err(store_error)?.unwrap_or(0);
        let filter = projection.filter();
        let mut events = self.events.read_all(1, &filter);
        let started = Instant::now();
        let mut report = Progress { events_done: 0, position: 0, head, elapsed: Duration::ZERO };
        let mut last_report = started;
        // Events since the last save: positions need not be consecutive
        // (PostgreSQL's jump at every transaction), so they are counted.
        let mut unsaved = 0;
        while let Some(event) = events.next().await {
            let event = event.map_err(store_error)?;
            if event.global_position > head {
                break;
            }
            self.deliver(projection, &name, &event, &options).await?;
            report.events_done += 1;
            report.position = event.global_position;
            unsaved += 1;
            if unsaved >= options.checkpoint_every {
                self.checkpoints.save(&name, report.position).await.map_err(store_error)?;
                unsaved = 0;
            }
            if last_report.elapsed() >= Duration::from_millis(250) {
                last_report = Instant::now();
                report.elapsed = started.elapsed();
                progress(&report);
            }
        }
        report.position = report.position.max(head);
        self.checkpoints.save(&name, report.position).await.map_err(store_error)?;
        report.elapsed = started.elapsed();
        progress(&report);
        Ok(report)
    }

    /// Hands a parked event to `projection` again. On success the dead
    /// letter is removed and `true` returned; on failure it stays parked
    /// with the new error and attempt count, and `false` is returned.
    pub async fn retry_dead_letter<P: Projection>(
        &self,
        projection: &mut P,
        id: Uuid,
    ) -> Result<bool, ProjectionError> {
        let name = projection.name();
        let store_error = |source| ProjectionError::Store { projection: name.to_string(), source };
        let store = self.dead_letters.as_ref().ok_or_else(|| ProjectionError::NoDeadLetterStore(name.to_string()))?;
        let Some(mut letter) = store.get(id).await.map_err(store_error)? else {
            return Err(store_error(StoreError::InvalidInput(format!("no dead letter with id {id}"))));
        };
        let span = handle_span(&name, &letter.event);
        match projection.handle(&letter.event).instrument(span).await {
            Ok(()) => {
                store.remove(id).await.map_err(store_error)?;
                Ok(true)
            }
            Err(error) => {
                letter.attempts += 1;
                letter.error = render(&*error);
                store.park(letter).await.map_err(store_error)?;
                Ok(false)
            }
        }
    }

    /// Handles one event with retries; parks or fails it when they run out.
    /// Returns whether the event was parked.
    async fn deliver<P: Projection>(
        &self,
        projection: &mut P,
        name: &str,
        event: &RecordedEvent,
        options: &ProjectionOptions,
    ) -> Result<bool, ProjectionError> {
        let span = handle_span(name, event);
        if span.is_disabled() {
            // Nobody listens: no span to enter at every poll.
            return self.deliver_in_span(projection, name, event, options, &span).await;
        }
        let result = self.deliver_in_span(projection, name, event, options, &span).instrument(span.clone()).await;
        if let Err(error) = &result {
            span.record("error", tracing::field::display(error));
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn deliver_in_span<P: Projection>(
        &self,
        projection: &mut P,
        name: &str,
        event: &RecordedEvent,
        options: &ProjectionOptions,
        span: &tracing::Span,
    ) -> Result<bool, ProjectionError> {
        let mut attempt = 1;
        let error = loop {
            match projection.handle(event).await {
                Ok(()) => return Ok(false),
                Err(error) => match options.retry.delay_after(attempt) {
                    Some(delay) => {
                        tracing::debug!(position = event.global_position, attempt, %error, "handler failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => break error,
                },
            }
        };
        let rendered = render(&*error);
        span.record("attempts", attempt);
        if options.poison == PoisonPolicy::Park {
            span.record("error", rendered.as_str());
        }
        tracing::warn!(position = event.global_position, event_type = %event.event_type, error = %rendered, "poison event");
        match options.poison {
            PoisonPolicy::Stop => Err(ProjectionError::Poison(Box::new(Poison {
                projection: name.to_owned(),
                position: event.global_position,
                stream: event.stream.clone(),
                stream_version: event.stream_version,
                event_type: event.event_type.clone(),
                error: rendered,
                attempts: attempt,
            }))),
            PoisonPolicy::Park => {
                let store =
                    self.dead_letters.as_ref().ok_or_else(|| ProjectionError::NoDeadLetterStore(name.to_owned()))?;
                let letter = DeadLetter {
                    id: Uuid::now_v7(),
                    consumer: name.to_owned(),
                    event: event.clone(),
                    error: rendered,
                    attempts: attempt,
                    parked_at: Utc::now(),
                };
                store
                    .park(letter)
                    .await
                    .map_err(|source| ProjectionError::Store { projection: name.to_owned(), source })?;
                metrics::counter!(telemetry::DEAD_LETTERS_TOTAL, "projection" => name.to_owned()).increment(1);
                Ok(true)
            }
        }
    }
}

/// The span of one event's handling by a projection, a child of the span
/// that recorded the event when its metadata carries a trace context.
fn handle_span(projection: &str, event: &RecordedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "orchestrix.projection.handle",
        projection,
        event_type = %event.event_type,
        global_position = event.global_position,
        stream = %event.stream,
        stream_version = event.stream_version,
        attempts = tracing::field::Empty,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    trace::set_parent_from(&span, &event.metadata);
    span
}

/// How long a projection's log must stay quiet before it saves the
/// checkpoint of what it handled since the last save (besides every
/// [`ProjectionOptions::checkpoint_every`] events, and when it stops).
const IDLE_SAVE_AFTER: Duration = Duration::from_millis(20);

/// The longest wait between two attempts while a store is unavailable.
const OUTAGE_MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a projection waits after `attempts` failed attempts while its
/// stores are unavailable: exponential from 50 ms up to
/// [`OUTAGE_MAX_DELAY`], half-jittered, for as long as the outage lasts.
fn outage_delay(attempts: u32) -> Duration {
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

/// Saves a projection's checkpoint, waiting out an unavailable store.
async fn save_checkpoint(
    engine: &ProjectionEngine,
    name: &str,
    stop: &watch::Receiver<bool>,
    position: u64,
) -> Result<(), ProjectionError> {
    outlast(name, stop, || engine.checkpoints.save(name, position))
        .await
        .map_err(|source| ProjectionError::Store { projection: name.to_owned(), source })
}

/// Saves the checkpoint at `position` unless it is already `saved` there.
async fn save_if_moved(
    engine: &ProjectionEngine,
    name: &str,
    stop: &watch::Receiver<bool>,
    position: u64,
    saved: u64,
) -> Result<(), ProjectionError> {
    if position == saved {
        Ok(())
    } else {
        save_checkpoint(engine, name, stop, position).await
    }
}

enum Request {
    RetryDeadLetter(Uuid, oneshot::Sender<Result<bool, ProjectionError>>),
}

struct Runner<P> {
    engine: ProjectionEngine,
    projection: P,
    options: ProjectionOptions,
    name: Cow<'static, str>,
    control: RunnerControl,
    requests: mpsc::Receiver<Request>,
}

impl<P: Projection> Runner<P> {
    fn store_error(&self, source: StoreError) -> ProjectionError {
        ProjectionError::Store { projection: self.name.to_string(), source }
    }

    async fn run(&mut self) -> Result<(), ProjectionError> {
        let start = outlast(&self.name, &self.control.stop, || self.engine.checkpoints.load(&self.name))
            .await
            .map_err(|e| self.store_error(e))?;
        let start = start.unwrap_or(0);
        let (mut position, mut saved, mut handled, mut parked) = (start, start, 0, 0);
        let mut outages = 0;
        // Events since the last save, counted: positions need not be
        // consecutive (PostgreSQL's jump at every transaction).
        let mut unsaved = 0;
        let mut saved_at = tokio::time::Instant::now();
        self.control.status.send_modify(|s| s.position = start);
        let mut events = self.engine.events.subscribe(start + 1, self.projection.filter());
        loop {
            let next = if let Some(next) = events.next().now_or_never() {
                next
            } else {
                // Nothing ready: report (cheap), and save the checkpoint
                // once the log stays quiet for a moment. Saving at once
                // made a catch-up commit whenever the reader got ahead of
                // the rows arriving from the database (many times a
                // second): the idle save now waits IDLE_SAVE_AFTER.
                self.control.status.send_modify(|s| {
                    *s = ProjectionStatus { state: ProjectionState::Live, position, handled, parked };
                });
                self.report_lag(position, Some(0), None);
                tokio::select! {
                    next = events.next() => next,
                    () = tokio::time::sleep(IDLE_SAVE_AFTER), if position != saved => {
                        save_checkpoint(&self.engine, &self.name, &self.control.stop, position).await?;
                        saved = position;
                        unsaved = 0;
                        saved_at = tokio::time::Instant::now();
                        continue;
                    }
                    _ = self.control.stop.changed() => {
                        return save_if_moved(&self.engine, &self.name, &self.control.stop, position, saved).await;
                    }
                    Some(request) = self.requests.recv() => {
                        self.serve(request).await;
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
                    tracing::warn!(projection = %self.name, %error, ?delay, "event store unavailable; resubscribing");
                    drop(events);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = self.control.stop.changed() => return save_if_moved(&self.engine, &self.name, &self.control.stop, position, saved).await,
                    }
                    events = self.engine.events.subscribe(position + 1, self.projection.filter());
                    continue;
                }
                Err(error) => return Err(self.store_error(error)),
            };
            outages = 0;
            match self.engine.deliver(&mut self.projection, &self.name, &event, &self.options).await {
                Ok(true) => parked += 1,
                Ok(false) => handled += 1,
                Err(error) => {
                    // Keep the progress made before the poison event.
                    save_if_moved(&self.engine, &self.name, &self.control.stop, position, saved).await?;
                    return Err(error);
                }
            }
            position = event.global_position;
            unsaved += 1;
            let due =
                unsaved >= self.options.checkpoint_every || saved_at.elapsed() >= self.options.checkpoint_interval;
            if due {
                save_checkpoint(&self.engine, &self.name, &self.control.stop, position).await?;
                saved = position;
                unsaved = 0;
                saved_at = tokio::time::Instant::now();
                self.control.status.send_modify(|s| {
                    s.position = position;
                    s.handled = handled;
                    s.parked = parked;
                });
                let head = self.engine.events.head_position().await.ok().flatten();
                self.report_lag(position, head.map(|h| h.saturating_sub(position)), Some(&event));
                if self.control.is_stopping() {
                    return Ok(());
                }
                while let Ok(request) = self.requests.try_recv() {
                    self.serve(request).await;
                }
            }
        }
        save_if_moved(&self.engine, &self.name, &self.control.stop, position, saved).await
    }

    fn report_lag(&self, position: u64, behind: Option<u64>, last: Option<&RecordedEvent>) {
        let name = self.name.to_string();
        #[allow(clippy::cast_precision_loss)] // positions far below 2^52
        metrics::gauge!(telemetry::PROJECTION_POSITION, "projection" => name.clone()).set(position as f64);
        if let Some(behind) = behind {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(telemetry::PROJECTION_LAG_EVENTS, "projection" => name.clone()).set(behind as f64);
        }
        let age = last.map_or(0.0, |event| (Utc::now() - event.recorded_at).as_seconds_f64().max(0.0));
        metrics::gauge!(telemetry::PROJECTION_LAG_SECONDS, "projection" => name).set(age);
    }

    async fn serve(&mut self, request: Request) {
        match request {
            Request::RetryDeadLetter(id, reply) => {
                let result = self.engine.retry_dead_letter(&mut self.projection, id).await;
                let _ = reply.send(result);
            }
        }
    }
}

/// Controls a projection running in its own task.
pub struct ProjectionHandle<P> {
    name: String,
    status: watch::Receiver<ProjectionStatus>,
    stop: watch::Sender<bool>,
    requests: Option<mpsc::Sender<Request>>,
    task: JoinHandle<Result<P, ProjectionError>>,
}

/// What a projection runner reports through and listens to: the other end
/// of a [`ProjectionHandle`].
///
/// The engine's runner uses it, and so can an adapter that runs
/// projections its own way (the PostgreSQL adapter's transactional
/// runner does), so that every running projection is controlled through
/// the same handle. See [`ProjectionHandle::spawn_runner`].
#[derive(Debug)]
pub struct RunnerControl {
    status: watch::Sender<ProjectionStatus>,
    stop: watch::Receiver<bool>,
}

impl RunnerControl {
    /// Changes the status the handle sees.
    pub fn report(&self, update: impl FnOnce(&mut ProjectionStatus)) {
        self.status.send_modify(update);
    }

    /// The status as last reported.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Whether the handle asked the runner to stop (or was dropped).
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow() || self.status.is_closed()
    }

    /// A receiver that changes when the handle asks the runner to stop, for
    /// `tokio::select!`: `_ = stop.changed() => ...` (an error means the
    /// handle was dropped, which also means stop).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

impl<P> fmt::Debug for ProjectionHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<P: Send + 'static> ProjectionHandle<P> {
    /// Runs `run` in its own task as a projection named `name`, and returns
    /// the handle that controls it. `run` reports its progress and learns
    /// that it should stop through the [`RunnerControl`] it is given; when
    /// it returns, the handle's state becomes
    /// [`ProjectionState::Stopped`] or [`ProjectionState::Failed`].
    ///
    /// For adapters that run projections their own way;
    /// [`ProjectionEngine::spawn`] is the usual way to run one.
    /// [`ProjectionHandle::retry_dead_letter`] is not available on such a
    /// handle.
    pub fn spawn_runner<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(RunnerControl) -> Fut,
        Fut: std::future::Future<Output = Result<P, ProjectionError>> + Send + 'static,
    {
        let name = name.into();
        let (status_tx, status) =
            watch::channel(ProjectionStatus { state: ProjectionState::CatchingUp, position: 0, handled: 0, parked: 0 });
        let (stop, stop_rx) = watch::channel(false);
        let reporter = status_tx.clone();
        let work = run(RunnerControl { status: status_tx, stop: stop_rx });
        let task = tokio::spawn(async move {
            let result = work.await;
            reporter.send_modify(|s| {
                s.state = match &result {
                    Ok(_) => ProjectionState::Stopped,
                    Err(error) => ProjectionState::Failed(error.to_string()),
                };
            });
            result
        });
        Self { name, status, stop, requests: None, task }
    }

    /// The projection's progress.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Waits until the projection has handled (or parked) the event at
    /// `position` or a later one, or has stopped.
    pub async fn wait_for_position(&mut self, position: u64) -> ProjectionStatus {
        let reached = self
            .status
            .wait_for(|s| {
                s.position >= position || matches!(s.state, ProjectionState::Stopped | ProjectionState::Failed(_))
            })
            .await;
        let reached = reached.map(|status| status.clone()).ok();
        reached.unwrap_or_else(|| self.status())
    }

    /// Hands a parked event to the running projection again (between two
    /// events); see [`ProjectionEngine::retry_dead_letter`].
    pub async fn retry_dead_letter(&self, id: Uuid) -> Result<bool, ProjectionError> {
        let (reply, answer) = oneshot::channel();
        let ended = || ProjectionError::Ended(self.name.clone(), "the projection is not running".into());
        let Some(requests) = &self.requests else {
            return Err(ProjectionError::Unsupported {
                projection: self.name.clone(),
                operation: "retrying a dead letter through its handle",
            });
        };
        requests.send(Request::RetryDeadLetter(id, reply)).await.map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Asks the projection to stop after the event in hand, saves its
    /// checkpoint, and returns it.
    pub async fn stop(self) -> Result<P, ProjectionError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for the projection to end by itself (the store closed its
    /// subscription, or an error stopped it).
    pub async fn join(self) -> Result<P, ProjectionError> {
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(ProjectionError::Ended(self.name, error.to_string())),
        }
    }

    /// Kills the task at once, as a crash would: no checkpoint is saved.
    pub fn abort(self) {
        self.task.abort();
    }
}
