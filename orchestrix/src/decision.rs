//! Appends to several streams at once, all or nothing: a [`Decision`] is
//! the one builder for it, typed per aggregate, written unconditionally by
//! [`Orchestrix::append_many`] (each stream checked against its own
//! [`ExpectedVersion`], ADR 0018), by [`Orchestrix::execute_decision`]
//! (load the aggregates, decide, append, and again on a conflict, applied
//! once per command id), or under a condition by
//! [`Orchestrix::decide`] and [`Orchestrix::append_decision`]
//! (consistency by query, ADR 0023): read the events a [`Query`] selects,
//! decide, append with the [`AppendCondition`] that the read implies, and
//! on a [`StoreError::ConditionFailed`] do it all again.
//!
//! ```
//! use orchestrix::prelude::*;
//! use orchestrix::query::{Query, QueryItem};
//! use orchestrix::{app::CommandOptions, decision::Decision, envelope::Envelope, store::ExpectedVersion};
//!
//! #[event]
//! #[derive(Debug, Clone)]
//! pub enum StudentEvent {
//!     Subscribed {
//!         #[event(tag = "course")]
//!         course_id: String,
//!         #[event(tag = "student")]
//!         student_id: String,
//!     },
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("refused")]
//! pub struct Refused;
//!
//! /// Written only through decisions: it has no commands.
//! #[aggregate(event = StudentEvent, error = Refused, id = String)]
//! #[derive(Debug, Default)]
//! pub struct Student { courses: usize }
//!
//! impl Student {
//!     fn apply(&mut self, _: &StudentEvent) {
//!         self.courses += 1;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Orchestrix::builder().in_memory().aggregate::<Student>().build()?;
//! // At most two students per course, across every student's stream.
//! let query = Query::new([QueryItem::of::<StudentEvent>().tag("course", "c1")]);
//! for student in ["s1", "s2", "s3"] {
//!     let outcome = app
//!         .decide(query.clone(), CommandOptions::default(), |model: &[Envelope<StudentEvent>]| {
//!             if model.len() >= 2 {
//!                 return Err("the course is full");
//!             }
//!             let event = StudentEvent::Subscribed { course_id: "c1".into(), student_id: student.into() };
//!             Ok(Decision::new().append::<Student>(student.to_owned(), ExpectedVersion::Any, [event]))
//!         })
//!         .await;
//!     assert_eq!(outcome.is_ok(), student != "s3");
//! }
//! assert_eq!(app.load::<Student>("s1".to_owned()).await?.state.courses, 1);
//! # Ok(())
//! # }
//! ```

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;

use futures_util::TryStreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::app::{CommandOptions, Orchestrix};
use crate::envelope::{Envelope, Metadata, NewEvent, RecordedEvent};
use crate::error::{CommandError, Error, StoreError};
use crate::event::Event;
use crate::query::{AppendCondition, Query};
use crate::repository::Repository;
use crate::store::{ExpectedVersion, StreamAppend};
use crate::stream::StreamId;

/// What a decision read: the matching events, decoded, and the condition
/// that an append based on them must meet.
#[derive(Debug, Clone)]
pub struct DecisionModel<E> {
    /// The events that matched the query, in global order.
    pub events: Vec<Envelope<E>>,
    /// The query and the last position read: append with it.
    pub condition: AppendCondition,
}

/// Events for several streams, appended all together or not at all: the
/// way to keep an invariant that spans aggregates (a transfer that debits
/// one account and credits another) without a saga.
///
/// - **Typed per aggregate**: [`Decision::append`] names the aggregate
///   type and its id; the stream (`A::NAME` / id) and the event type
///   follow. [`Decision::append_to_stream`] is for streams that belong to
///   no aggregate type.
/// - **Expectations**: each stream is checked against its
///   [`ExpectedVersion`] (usually [`crate::repository::Loaded::expected_version`] of
///   the state the decision was based on; [`ExpectedVersion::Any`] when a
///   query's condition guards the decision instead). [`Decision::guard`]
///   adds a stream without events, which only has to be at its version.
///   Naming a stream again adds its events after the earlier ones; two
///   different expectations (other than `Any`) for one stream are an error.
/// - **No `Result` while building**: an id that is not a valid stream id
///   or an event that does not serialize is kept, and returned by the
///   append, which then writes nothing. So a decision reads as one chain
///   inside a `decide` closure, without converting errors.
/// - **Encoded once**: each event is serialized, with its tags, when it is
///   added ([`NewEvent::encode`], the encoder the repository uses too); the
///   append adds the metadata of its [`CommandOptions`].
///
/// ```
/// use orchestrix::prelude::*;
/// use orchestrix::{app::CommandOptions, decision::Decision, store::ExpectedVersion};
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub enum AccountEvent { Opened { owner: String }, Debited { amount: u64 }, Credited { amount: u64 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("refused")]
/// pub struct Refused;
///
/// #[aggregate(event = AccountEvent, error = Refused)]
/// #[derive(Debug, Default)]
/// pub struct Account { balance: u64 }
///
/// impl Account {
///     fn apply(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Opened { .. } => {}
///             AccountEvent::Debited { amount } => self.balance -= amount,
///             AccountEvent::Credited { amount } => self.balance += amount,
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Orchestrix::builder().in_memory().build()?;
/// let (alice, bob) = (orchestrix::Uuid::now_v7(), orchestrix::Uuid::now_v7());
/// let opened = Decision::new()
///     .append::<Account>(alice, ExpectedVersion::NoStream, [AccountEvent::Opened { owner: "Alice".into() }, AccountEvent::Credited { amount: 50 }])
///     .append::<Account>(bob, ExpectedVersion::NoStream, [AccountEvent::Opened { owner: "Bob".into() }]);
/// app.append_many(opened, CommandOptions::default()).await?;
///
/// // A transfer: both accounts change, or neither does.
/// let (from, to) = (app.load::<Account>(alice).await?, app.load::<Account>(bob).await?);
/// assert!(from.state.balance >= 20);
/// let transfer = || {
///     Decision::new()
///         .append::<Account>(alice, from.expected_version(), [AccountEvent::Debited { amount: 20 }])
///         .append::<Account>(bob, to.expected_version(), [AccountEvent::Credited { amount: 20 }])
/// };
/// let recorded = app.append_many(transfer(), CommandOptions::default()).await?;
/// assert_eq!(recorded[1][0].stream_version, 2);
///
/// // Built on a stale state: a lost race, and nothing is written.
/// let error = app.append_many(transfer(), CommandOptions::default()).await.unwrap_err();
/// assert!(error.is_conflict());
/// assert_eq!(app.load::<Account>(bob).await?.state.balance, 20);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Decision {
    parts: Vec<StreamAppend>,
    /// The first problem met while building, returned by the append.
    error: Option<Error>,
}

impl Decision {
    /// Appends nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `events` for the aggregate `id` of type `A`, whose stream must
    /// be at `expected`. The events are encoded now; an id that is not a
    /// valid stream id, or an event that does not serialize, fails the
    /// append later (nothing is written).
    pub fn append<A: Aggregate>(
        self,
        id: impl Borrow<A::Id>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = impl Borrow<A::Event>>,
    ) -> Self {
        let stream = Repository::<A>::stream_id(id).map_err(Error::from);
        self.add(stream, expected, NewEvent::encode_all::<A::Event>(events, &Metadata::default()))
    }

    /// Adds a guard: the aggregate `id` of type `A` must be at `expected`
    /// for the whole append to succeed; nothing is written to it.
    pub fn guard<A: Aggregate>(self, id: impl Borrow<A::Id>, expected: ExpectedVersion) -> Self {
        self.append::<A>(id, expected, std::iter::empty::<A::Event>())
    }

    /// Adds `events` to `stream`, a stream that belongs to no aggregate
    /// type, which must be at `expected`.
    pub fn append_to_stream<E: Event>(
        self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = impl Borrow<E>>,
    ) -> Self {
        self.add(Ok(stream), expected, NewEvent::encode_all::<E>(events, &Metadata::default()))
    }

    /// Adds a guard on `stream`: it must be at `expected`.
    pub fn guard_stream(self, stream: StreamId, expected: ExpectedVersion) -> Self {
        self.add(Ok(stream), expected, Ok(Vec::new()))
    }

    /// How many streams the decision appends to or guards.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether nothing is appended or checked.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.error.is_none()
    }

    /// The parts, for [`crate::store::EventStore::append_many`] or
    /// [`crate::store::EventStore::append_if`] (their events without the metadata
    /// an [`Orchestrix`] append adds), or the first problem met while
    /// building.
    pub fn into_parts(self) -> Result<Vec<StreamAppend>, Error> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.parts),
        }
    }

    /// Adds a part, merged into the stream's part if it has one; keeps the
    /// first error instead.
    fn add(
        mut self,
        stream: Result<StreamId, Error>,
        expected: ExpectedVersion,
        events: Result<Vec<NewEvent>, Error>,
    ) -> Self {
        if self.error.is_some() {
            return self;
        }
        let added = stream.and_then(|stream| Ok((stream, events?)));
        let (stream, events) = match added {
            Ok(added) => added,
            Err(error) => {
                self.error = Some(error);
                return self;
            }
        };
        let Some(part) = self.parts.iter_mut().find(|part| part.stream == stream) else {
            self.parts.push(StreamAppend::new(stream, expected, events));
            return self;
        };
        match (part.expected, expected) {
            (_, ExpectedVersion::Any) => {}
            (ExpectedVersion::Any, _) => part.expected = expected,
            (before, now) if before == now => {}
            (before, now) => {
                self.error = Some(Error::Store(StoreError::InvalidInput(format!(
                    "stream `{stream}` is expected at {before} and at {now} in one decision; give it one expectation"
                ))));
                return self;
            }
        }
        part.events.extend(events);
        self
    }
}

impl Orchestrix {
    /// Appends `decision` atomically through
    /// [`EventStore::append_many`](crate::store::EventStore::append_many): all or
    /// nothing, each stream checked against its own expected version, the
    /// events consecutive in the global log. Every event carries the
    /// metadata of `options` (correlation, causation, tenant, trace
    /// context, headers), like the events of a command, and its own tags.
    ///
    /// Returns the recorded events per stream, in the order the streams
    /// were first added. A failed expectation is
    /// [`StoreError::WrongExpectedVersion`] naming the first failing
    /// stream ([`Error::is_conflict`] is true); nothing is retried, since
    /// the caller decided on the states it loaded: load again, decide
    /// again, and append again. A problem met while building the decision
    /// is returned before anything is written.
    pub async fn append_many(
        &self,
        decision: Decision,
        options: CommandOptions,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, Error> {
        self.append_parts(None, decision, options).await
    }

    /// Appends `decision` like [`Orchestrix::append_many`], and only if
    /// `condition` still holds (consistency by query, ADR 0023). A failed
    /// condition is [`StoreError::ConditionFailed`] inside [`Error::Store`]
    /// ([`Error::is_conflict`] is true).
    pub async fn append_decision(
        &self,
        condition: AppendCondition,
        decision: Decision,
        options: CommandOptions,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, Error> {
        self.append_parts(Some(condition), decision, options).await
    }

    /// Reads the decision model of `query`: every matching event, decoded
    /// as `E`, and the [`AppendCondition`] (the query and the last position
    /// read) to append with.
    pub async fn read_decision<E: Event>(&self, query: Query) -> Result<DecisionModel<E>, Error> {
        let records: Vec<Arc<RecordedEvent>> = self.event_store().read_by_query(&query, 0).try_collect().await?;
        let after = records.last().map(|record| record.global_position);
        let events = records.iter().map(RecordedEvent::to_envelope::<E>).collect::<Result<Vec<_>, _>>()?;
        Ok(DecisionModel { events, condition: AppendCondition::new(query, after) })
    }

    /// Read, decide, append, and again on a conflict: reads the events of
    /// `query`, calls `decide` with them, and appends what it decided with
    /// the condition that nothing matching `query` arrived meanwhile. If
    /// something did ([`StoreError::ConditionFailed`]) or a stream's
    /// expectation failed, it starts over, under the application's
    /// [`crate::retry::RetryPolicy`] (like commands on a version conflict); once
    /// the attempts are used up, the last conflict is returned
    /// ([`CommandError::is_conflict`] is true).
    ///
    /// `decide` may run several times, so it must not have side effects;
    /// its error is returned as [`CommandError::Rejected`], a problem in
    /// the decision it built as [`CommandError::Framework`] (not retried).
    /// Returns the recorded events of every part, in order.
    ///
    /// With a command id in `options`, a second call with the same id
    /// (a retry whose first call did append) returns the events the first
    /// one recorded without deciding again (ADR 0027).
    pub async fn decide<E, R, F>(
        &self,
        query: Query,
        options: CommandOptions,
        mut decide: F,
    ) -> Result<Vec<Arc<RecordedEvent>>, CommandError<R>>
    where
        E: Event,
        F: FnMut(&[Envelope<E>]) -> Result<Decision, R>,
    {
        if let Some(events) = self.applied(options.command_id).await? {
            return Ok(events);
        }
        for attempts in 1.. {
            let outcome = async {
                let model = self.read_decision::<E>(query.clone()).await?;
                let decision = decide(&model.events).map_err(CommandError::Rejected)?;
                if decision.is_empty() {
                    return Ok(Vec::new());
                }
                let recorded = self.append_decision(model.condition, decision, options.clone()).await?;
                Ok(recorded.into_iter().flatten().collect())
            };
            if let Some(outcome) = self.settle(outcome.await, options.command_id, attempts).await? {
                return outcome;
            }
        }
        unreachable!("the retry policy bounds the attempts")
    }

    /// Load, decide, append several aggregates at once, and again on a
    /// conflict: the multi-stream counterpart of [`Orchestrix::execute`].
    /// `decide` gets the application (a cheap clone), loads what it needs
    /// (`app.load::<A>(id)`), checks its rules and returns the
    /// [`Decision`] to append with the versions it loaded
    /// ([`Loaded::expected_version`](crate::repository::Loaded::expected_version)).
    /// If a stream moved meanwhile, it runs again on the new states, under
    /// the application's [`crate::retry::RetryPolicy`]; once the attempts
    /// are used up, the last conflict is returned
    /// ([`CommandError::is_conflict`] is true). An empty decision appends
    /// nothing and returns no events.
    ///
    /// With a command id in `options` (a retried HTTP request, a
    /// redelivered message), the command is applied once (ADR 0027): a
    /// call whose command id was already applied returns the events the
    /// first call recorded **without running `decide`**, so a rule that
    /// the first call's own events now break (the seat is taken already)
    /// does not turn the retry into a rejection. The same look-up runs
    /// after every lost race and before returning a refusal (the states
    /// `decide` read may hold a racing duplicate's events), so duplicates
    /// racing each other also end with one write and the same answer.
    ///
    /// `decide` may run several times: it must not have side effects
    /// beyond reading. Return a domain refusal as
    /// `Err(CommandError::Rejected(..))`; a failed load converts with `?`.
    /// The future it returns owns what it uses (`move`), so the call can
    /// run in a spawned task or an HTTP handler.
    ///
    /// ```
    /// use orchestrix::prelude::*;
    /// use orchestrix::{app::CommandOptions, decision::Decision, Uuid};
    ///
    /// #[event]
    /// #[derive(Debug, Clone)]
    /// pub enum SeatEvent { Booked { by: String } }
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("the seat is taken")]
    /// pub struct Taken;
    ///
    /// #[aggregate(event = SeatEvent, error = Taken)]
    /// #[derive(Debug, Default)]
    /// pub struct Seat { taken: bool }
    ///
    /// impl Seat {
    ///     fn apply(&mut self, _: &SeatEvent) { self.taken = true; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = Orchestrix::builder().in_memory().aggregate::<Seat>().build()?;
    /// let (left, right) = (Uuid::now_v7(), Uuid::now_v7());
    /// let book_pair = move |app: Orchestrix| async move {
    ///     let (a, b) = (app.load::<Seat>(left).await?, app.load::<Seat>(right).await?);
    ///     if a.state.taken || b.state.taken {
    ///         return Err(CommandError::Rejected(Taken));
    ///     }
    ///     Ok(Decision::new()
    ///         .append::<Seat>(left, a.expected_version(), [SeatEvent::Booked { by: "ada".into() }])
    ///         .append::<Seat>(right, b.expected_version(), [SeatEvent::Booked { by: "ada".into() }]))
    /// };
    /// // The same request twice (a client retrying after a timeout):
    /// let request = orchestrix::idempotency::command_id_from_key("book", "req-7");
    /// let options = CommandOptions::default().command_id(request);
    /// let first = app.execute_decision(options.clone(), book_pair).await?;
    /// let again = app.execute_decision(options, book_pair).await?;
    /// let ids = |events: &[std::sync::Arc<orchestrix::envelope::RecordedEvent>]| {
    ///     events.iter().map(|event| event.id).collect::<Vec<_>>()
    /// };
    /// assert_eq!(ids(&again), ids(&first)); // applied once, answered twice
    /// assert_eq!(app.load::<Seat>(left).await?.version, 1);
    /// // Another request for the same seats is refused.
    /// let other = app.execute_decision(CommandOptions::default(), book_pair).await;
    /// assert!(matches!(other, Err(CommandError::Rejected(Taken))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute_decision<R, F, Fut>(
        &self,
        options: CommandOptions,
        mut decide: F,
    ) -> Result<Vec<Arc<RecordedEvent>>, CommandError<R>>
    where
        F: FnMut(Orchestrix) -> Fut,
        Fut: Future<Output = Result<Decision, CommandError<R>>>,
    {
        if let Some(events) = self.applied(options.command_id).await? {
            return Ok(events);
        }
        for attempts in 1.. {
            let outcome = async {
                let decision = decide(self.clone()).await?;
                if decision.is_empty() {
                    return Ok(Vec::new());
                }
                let recorded = self.append_many(decision, options.clone()).await?;
                Ok(recorded.into_iter().flatten().collect())
            };
            if let Some(outcome) = self.settle(outcome.await, options.command_id, attempts).await? {
                return outcome;
            }
        }
        unreachable!("the retry policy bounds the attempts")
    }

    /// The events of the command `command_id` if it was applied before
    /// (none without a command id: a fresh one cannot have been used).
    async fn applied(&self, command_id: Option<uuid::Uuid>) -> Result<Option<Vec<Arc<RecordedEvent>>>, Error> {
        let Some(command_id) = command_id else { return Ok(None) };
        let events = crate::idempotency::command_events(&**self.event_store(), command_id).await?;
        Ok((!events.is_empty()).then_some(events))
    }

    /// What the retry loop of decisions does with the outcome of attempt
    /// number `attempts`: a conflict waits as the retry policy says and
    /// returns `None` (try again) or gives up with it; a refusal is
    /// returned unless the command turns out applied (the state the
    /// attempt read may hold a racing duplicate's events). Before either,
    /// a command id is looked up again: a racing duplicate may have won.
    async fn settle<R>(
        &self,
        outcome: Result<Vec<Arc<RecordedEvent>>, CommandError<R>>,
        command_id: Option<uuid::Uuid>,
        attempts: u32,
    ) -> Result<Option<Result<Vec<Arc<RecordedEvent>>, CommandError<R>>>, Error> {
        match outcome {
            Err(CommandError::Framework(error)) if error.is_conflict() => {
                if let Some(events) = self.applied(command_id).await? {
                    return Ok(Some(Ok(events)));
                }
                let delay = self.retry_policy().delay_after(attempts);
                crate::telemetry::conflict("decision", delay.is_some());
                match delay {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        Ok(None)
                    }
                    None => Ok(Some(Err(CommandError::Framework(error)))),
                }
            }
            Err(CommandError::Rejected(refusal)) => Ok(Some(match self.applied(command_id).await? {
                Some(events) => Ok(events),
                None => Err(CommandError::Rejected(refusal)),
            })),
            outcome => Ok(Some(outcome)),
        }
    }

    /// The one write path of decisions: stamps the metadata of `options`
    /// on every event (keeping its tags), then appends, under `condition`
    /// if there is one.
    async fn append_parts(
        &self,
        condition: Option<AppendCondition>,
        decision: Decision,
        options: CommandOptions,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, Error> {
        let mut parts = decision.into_parts()?;
        // A command id the caller gave makes the events' ids derive from it
        // (across the parts, in order), so that a retry with the same
        // options is answered with the stored events (ADR 0027).
        let given = options.command_id;
        let (command_id, mut metadata) = options.resolve();
        let span = tracing::info_span!(
            "orchestrix.append_many",
            %command_id,
            parts = parts.len(),
            event_count = parts.iter().map(|part| part.events.len()).sum::<usize>(),
            conditional = condition.is_some(),
            trace_id = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        crate::app::adopt_trace(&span, &metadata);
        span.in_scope(|| crate::trace::inject_into(&mut metadata));
        for (index, event) in (0..).zip(parts.iter_mut().flat_map(|part| &mut part.events)) {
            // The tags were computed when the event was encoded.
            let tags = std::mem::take(&mut event.metadata.tags);
            event.metadata = Metadata { tags, ..metadata.clone() };
            if let Some(given) = given {
                event.id = crate::idempotency::command_event_id(given, index);
            }
        }
        let counts: Vec<(String, usize)> =
            parts.iter().map(|part| (part.stream.category().to_owned(), part.events.len())).collect();
        let store = self.event_store();
        let result = match condition {
            None => store.append_many(parts).instrument(span.clone()).await,
            Some(condition) => store.append_if(condition, parts).instrument(span.clone()).await,
        };
        match &result {
            Ok(_) => {
                for (category, count) in counts.into_iter().filter(|&(_, count)| count > 0) {
                    crate::telemetry::events_appended(category, count);
                }
            }
            Err(error) => {
                span.record("error", tracing::field::display(error));
            }
        }
        Ok(result?)
    }
}
