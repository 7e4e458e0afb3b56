//! Delivery: how one event reaches a projection, in every runner.
//!
//! The in-process engine ([`super::ProjectionEngine`]), the PostgreSQL
//! transactional runner and the NATS worker differ in how they apply an
//! event (a plain call, a transaction that also moves the checkpoint, a
//! call followed by an ack) but not in what happens around it. That part
//! is here, once:
//!
//! - **Retries**: a failing event is tried again under the
//!   [`RetryPolicy`], in the span `orchestrix.projection.handle` (a child
//!   of the span that recorded the event), which records the attempts and
//!   the last error.
//! - **Poison**: when the retries run out, [`PoisonPolicy::Stop`] ends the
//!   projection with [`ProjectionError::Poison`] (unchanged: the event is
//!   not passed, a restart tries it again); [`PoisonPolicy::Park`] parks it
//!   in the [`DeadLetterStore`] and goes on.
//! - **Per-stream order** (ADR 0025): once an event of a stream is parked,
//!   the later events of that stream are parked *behind* it, untried
//!   (`attempts == 0`), while other streams go on. A stream is parked as
//!   long as the dead-letter store holds a letter of it for this consumer:
//!   the runner's memory is only a cache, checked against the store before
//!   an event of a cached stream is parked, so the state survives restarts
//!   and letters dropped through the store release their stream.
//! - **Metrics**: `orchestrix_dead_letters_total` per parked event, and the
//!   position and lag gauges ([`report_position`]).
//!
//! What a retry or a drop does with a parked stream is in
//! [`Delivery::retry`] and [`Delivery::drop_letter`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::{Poison, PoisonPolicy, ProjectionError};
use crate::envelope::RecordedEvent;
use crate::error::{render_chain, BoxError, StoreError};
use crate::retry::RetryPolicy;
use crate::store::{DeadLetter, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore};
use crate::stream::StreamId;
use crate::telemetry;
use crate::trace;

/// Why one attempt at an event (or at parking it) did not succeed.
#[derive(Debug)]
pub enum Failure<I> {
    /// The projection's handler failed: retried, then poison.
    Handler(BoxError),
    /// A port failed: the projection stops with it.
    Store(StoreError),
    /// The runner was interrupted (an outage, a fenced checkpoint): the
    /// delivery is abandoned and handed back to the runner as it was.
    Interrupted(I),
}

impl<I> From<StoreError> for Failure<I> {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Why a delivery ended without an outcome.
#[derive(Debug)]
pub enum DeliveryError<I> {
    /// The projection must stop with this error (poison under
    /// [`PoisonPolicy::Stop`], a port's error, no dead-letter store).
    Projection(ProjectionError),
    /// The runner's own interruption, from [`Failure::Interrupted`].
    Interrupted(I),
}

impl<I> From<ProjectionError> for DeliveryError<I> {
    fn from(error: ProjectionError) -> Self {
        Self::Projection(error)
    }
}

/// Where a runner applies events: the one thing runners do differently.
///
/// The methods return their futures unboxed (write them as `async fn` in
/// an impl, without `#[async_trait]`): a delivery awaits [`Target::apply`]
/// once per event, where a boxed future cost an allocation and an
/// indirect call each (ADR 0055).
pub trait Target: Send {
    /// How the runner is interrupted; shown to a caller whose retry it
    /// cut short.
    type Interrupt: fmt::Display + Send;

    /// Applies `event` once (for a transactional runner: in a transaction
    /// that also moves the checkpoint past it, committed).
    fn apply(&mut self, event: &RecordedEvent) -> impl Future<Output = Result<(), Failure<Self::Interrupt>>> + Send;

    /// Parks `letter` (for a transactional runner: in a transaction that
    /// also moves the checkpoint past its event).
    fn park(
        &mut self,
        store: &dyn DeadLetterStore,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), Failure<Self::Interrupt>>> + Send {
        async move { store.park(letter.clone()).await.map_err(Failure::Store) }
    }

    /// Applies a parked event and removes its letter (a transactional
    /// runner does both in one transaction and leaves the checkpoint
    /// alone). By default: [`Target::apply`], then remove; if the removal
    /// fails after the event was applied, a later retry applies it again
    /// (at least once, as everywhere outside a transaction).
    fn apply_parked(
        &mut self,
        store: &dyn DeadLetterStore,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), Failure<Self::Interrupt>>> + Send {
        async move {
            self.apply(&letter.event).await?;
            store.remove(letter.id).await.map_err(Failure::Store)?;
            Ok(())
        }
    }
}

/// What became of a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivered {
    /// The projection handled it.
    Handled,
    /// It kept failing and was parked: its stream is parked from now on.
    Parked,
    /// Its stream is parked, so it was parked behind the stream's earlier
    /// letters without being tried.
    ParkedBehind,
    /// It is already parked (delivered again after a restart): nothing done.
    AlreadyParked,
}

impl Delivered {
    /// Whether the event is in the dead-letter store now.
    pub fn is_parked(self) -> bool {
        !matches!(self, Self::Handled)
    }
}

/// What to do with an event of a stream that may be parked.
#[derive(Debug, Clone)]
pub enum Behind {
    /// Park this letter behind the stream's earlier ones.
    Park(Box<DeadLetter>),
    /// The event is parked already.
    AlreadyParked,
}

/// The delivery state of one running projection: its name, policies, the
/// dead-letter store and the streams it knows to be parked. See the
/// [module](self) docs.
#[derive(Debug)]
pub struct Delivery {
    pub(super) name: String,
    retry: RetryPolicy,
    poison: PoisonPolicy,
    pub(super) dead_letters: Option<Arc<dyn DeadLetterStore>>,
    /// Streams that had a letter when last seen: a cache of the store.
    pub(super) parked: HashSet<StreamId>,
}

impl Delivery {
    /// The delivery of the projection (or consumer) `name`.
    pub fn new(
        name: impl Into<String>,
        retry: RetryPolicy,
        poison: PoisonPolicy,
        dead_letters: Option<Arc<dyn DeadLetterStore>>,
    ) -> Self {
        Self { name: name.into(), retry, poison, dead_letters, parked: HashSet::new() }
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dead-letter store, if any.
    pub fn dead_letters(&self) -> Option<&Arc<dyn DeadLetterStore>> {
        self.dead_letters.as_ref()
    }

    /// Reads which streams are parked from the dead-letter store: call it
    /// when the runner starts (and when a worker takes over a partition).
    pub async fn load_parked(&mut self) -> Result<(), StoreError> {
        self.parked.clear();
        if let Some(store) = &self.dead_letters {
            let letters = store.query(&DeadLetterQuery::consumer(self.name.clone())).await?;
            self.parked.extend(letters.into_iter().map(|letter| letter.event.stream));
        }
        Ok(())
    }

    /// Whether `stream` is known to be parked (the store has the last word:
    /// see [`Delivery::behind`]).
    pub fn may_be_parked(&self, stream: &StreamId) -> bool {
        self.parked.contains(stream)
    }

    /// The letters of `stream` for this projection, oldest event first.
    pub(super) async fn stream_letters(
        &self,
        store: &dyn DeadLetterStore,
        stream: &StreamId,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters = store.query(&DeadLetterQuery::consumer(self.name.clone()).stream(stream.clone())).await?;
        letters.sort_by_key(|letter| letter.event.global_position);
        Ok(letters)
    }

    /// Whether `event` must be parked behind its stream's letters, asked
    /// of the store when the stream is cached as parked. An event at or
    /// before the stream's first letter is not: it was delivered before
    /// that letter was parked and comes again after a restart, so it is
    /// handled as before. A stream without letters left is released.
    pub async fn behind(&mut self, event: &RecordedEvent) -> Result<Option<Behind>, StoreError> {
        if !self.parked.contains(&event.stream) {
            return Ok(None);
        }
        let Some(store) = self.dead_letters.clone() else { return Ok(None) };
        let letters = self.stream_letters(&*store, &event.stream).await?;
        let Some(head) = letters.first() else {
            self.parked.remove(&event.stream);
            return Ok(None);
        };
        if letters.iter().any(|letter| letter.event.id == event.id) {
            return Ok(Some(Behind::AlreadyParked));
        }
        if event.global_position <= head.event.global_position {
            return Ok(None);
        }
        Ok(Some(Behind::Park(Box::new(DeadLetter {
            id: Uuid::now_v7(),
            consumer: self.name.clone(),
            event: event.clone(),
            error: format!(
                "parked behind dead letter {} (`{}` at position {}) of stream `{}`: a stream's events wait for its \
                 first dead letter to be retried or dropped",
                head.id, head.event.event_type, head.event.global_position, event.stream
            ),
            attempts: 0,
            parked_at: Utc::now(),
        }))))
    }

    /// Delivers `event` to `target` inside `span` (usually
    /// [`handle_span`]): parked behind its stream's letters if the stream
    /// is parked; else applied with retries, then stopped on or parked as
    /// poison.
    pub async fn deliver<T: Target>(
        &mut self,
        target: &mut T,
        event: &RecordedEvent,
        span: &tracing::Span,
    ) -> Result<Delivered, DeliveryError<T::Interrupt>> {
        // No parked stream (the usual case): nothing to ask the store.
        if !self.parked.is_empty() {
            match self.behind(event).await.map_err(|e| self.store_error(e))? {
                Some(Behind::AlreadyParked) => return Ok(Delivered::AlreadyParked),
                Some(Behind::Park(letter)) => {
                    self.park_with(target, &letter).await?;
                    return Ok(Delivered::ParkedBehind);
                }
                None => {}
            }
        }
        let mut attempt = 1;
        let error = loop {
            let result = if span.is_disabled() {
                target.apply(event).await
            } else {
                target.apply(event).instrument(span.clone()).await
            };
            match result {
                Ok(()) => return Ok(Delivered::Handled),
                Err(Failure::Handler(error)) => match self.retry.delay_after(attempt) {
                    Some(delay) => {
                        tracing::debug!(parent: span, attempt, error = %render_chain(&*error), "handler failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => break error,
                },
                Err(Failure::Store(error)) => return Err(self.store_error(error).into()),
                Err(Failure::Interrupted(interrupt)) => return Err(DeliveryError::Interrupted(interrupt)),
            }
        };
        let rendered = render_chain(&*error);
        span.record("attempts", attempt);
        span.record("error", rendered.as_str());
        span.record("otel.status_code", "ERROR");
        tracing::warn!(parent: span, position = event.global_position, event_type = %event.event_type,
            error = %rendered, "poison event");
        match self.poison {
            PoisonPolicy::Stop => Err(ProjectionError::Poison(Box::new(Poison {
                projection: self.name.clone(),
                position: event.global_position,
                stream: event.stream.clone(),
                stream_version: event.stream_version,
                event_type: event.event_type.clone(),
                error: rendered,
                attempts: attempt,
            }))
            .into()),
            PoisonPolicy::Park => {
                let letter = DeadLetter {
                    id: Uuid::now_v7(),
                    consumer: self.name.clone(),
                    event: event.clone(),
                    error: rendered,
                    attempts: attempt,
                    parked_at: Utc::now(),
                };
                self.park_with(target, &letter).await?;
                Ok(Delivered::Parked)
            }
        }
    }

    /// Parks `letter` through `target` and marks its stream parked.
    pub(super) async fn park_with<T: Target>(
        &mut self,
        target: &mut T,
        letter: &DeadLetter,
    ) -> Result<(), DeliveryError<T::Interrupt>> {
        let store = self.dead_letters.clone().ok_or_else(|| ProjectionError::NoDeadLetterStore(self.name.clone()))?;
        match target.park(&*store, letter).await {
            Ok(()) => {}
            Err(Failure::Interrupted(interrupt)) => return Err(DeliveryError::Interrupted(interrupt)),
            Err(Failure::Store(error)) => return Err(self.store_error(error).into()),
            Err(Failure::Handler(error)) => return Err(self.store_error(StoreError::Backend(error)).into()),
        }
        self.parked.insert(letter.event.stream.clone());
        telemetry::dead_letter(&self.name);
        Ok(())
    }

    pub(super) fn store_error(&self, source: StoreError) -> ProjectionError {
        ProjectionError::Store { projection: self.name.clone(), source }
    }
}

/// The span of one event's handling by a projection, a child of the span
/// that recorded the event when its metadata carries a trace context.
///
/// When no subscriber takes `INFO` spans (none is installed, or its level
/// is lower), it is [`tracing::Span::none`], made without building the
/// span's fields: that costs nothing per event, where a disabled span
/// still costs its fields (some 300 instructions an event, about a third
/// of what the engine adds to the handler).
pub fn handle_span(projection: &str, event: &RecordedEvent) -> tracing::Span {
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
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

/// Notices that an interval has passed without reading the clock at every
/// event: a clock read costs more than a fast handler (some 100 ns on a
/// virtual machine, against tens of nanoseconds for the plain loop the
/// engine is measured against; ADR 0055).
///
/// [`Interval::tick`] looks at the clock after a stride of events, which
/// starts at 1 and doubles (up to 64) while a stride takes less than an
/// sixteenth of the interval, and halves when it takes more than an
/// eighth. So while events take about as long as the ones before them,
/// the interval is noticed within an eighth of it; a handler that turns
/// slow all at once is noticed after at most the rest of one stride.
#[derive(Debug)]
pub(super) struct Interval {
    every: Duration,
    started: Instant,
    checked: Instant,
    /// Events until the next look at the clock.
    countdown: u32,
    /// Events between two looks at the clock.
    stride: u32,
}

impl Interval {
    /// The longest stride: at most this many events between two looks.
    const MAX_STRIDE: u32 = 64;

    /// An interval of `every`, starting now.
    pub(super) fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self { every, started: now, checked: now, countdown: 1, stride: 1 }
    }

    /// Starts the interval again, now.
    pub(super) fn restart(&mut self) {
        *self = Self::new(self.every);
    }

    /// When the clock was last looked at (by [`Interval::new`],
    /// [`Interval::restart`] or [`Interval::tick`]): a reading at most one
    /// stride old, for other cadences that must not read the clock per
    /// event (the runner's look at its control record, ADR 0050).
    pub(super) fn last_look(&self) -> Instant {
        self.checked
    }

    /// Counts one event; whether the interval has passed since the start
    /// (as far as the last look at the clock tells).
    #[inline]
    pub(super) fn tick(&mut self) -> bool {
        self.countdown -= 1;
        if self.countdown > 0 {
            return false;
        }
        let now = Instant::now();
        if now.duration_since(self.started) >= self.every {
            self.checked = now;
            self.countdown = 1;
            return true;
        }
        let stride_took = now.duration_since(self.checked);
        self.checked = now;
        let aim = self.every / 8;
        if stride_took * 2 <= aim {
            self.stride = (self.stride * 2).min(Self::MAX_STRIDE);
        } else if stride_took > aim {
            self.stride = (self.stride / 2).max(1);
        }
        self.countdown = self.stride;
        false
    }
}

/// Sets a projection's position and lag gauges: its position, how many
/// events behind the head it is (if known), and the age of the last event
/// it handled (0 when none is given: caught up).
pub fn report_position(projection: &str, position: u64, behind: Option<u64>, last: Option<&RecordedEvent>) {
    let age = last.map_or(0.0, |event| (Utc::now() - event.recorded_at).as_seconds_f64().max(0.0));
    telemetry::projection_position(projection, position, behind, age);
}

/// How far an idle projection at `position` may move over events it does
/// not handle: the position of the last event after `position`, up to the
/// store's head, before the first one `filter` matches (at most `limit`
/// events looked at). `None`: nothing to skip.
///
/// A projection's subscription delivers only the events it handles, so
/// without this its position stays at the last of them, and a wait for
/// the head of the log (an event of another type) would never end. The
/// store's global read is gap-free (no event appears later below one it
/// returned), so the events it returns before the first match can be
/// passed for good; the first match is left for the subscription.
pub async fn skippable(
    events: &dyn EventStore,
    filter: &EventFilter,
    position: u64,
    limit: usize,
) -> Result<Option<u64>, StoreError> {
    use futures_util::StreamExt;

    let Some(head) = events.head_position().await? else { return Ok(None) };
    if head <= position {
        return Ok(None);
    }
    let all = EventFilter::all();
    let mut read = events.read_all(position + 1, &all);
    let mut skip_to = None;
    let mut seen = 0;
    while let Some(event) = read.next().await {
        let event = event?;
        if event.global_position > head || filter.matches_event(&event) {
            break;
        }
        skip_to = Some(event.global_position);
        seen += 1;
        if seen >= limit {
            break;
        }
    }
    Ok(skip_to)
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
