//! Commands decided by query (consistency by query, ADR 0023): read the
//! events a [`Query`] selects, decide, append with the
//! [`AppendCondition`] that the read implies, and on a
//! [`StoreError::ConditionFailed`] do it all again.
//!
//! ```
//! use orchestrix::prelude::*;
//! use orchestrix::query::{Query, QueryItem};
//! use orchestrix::{CommandOptions, Decision, Envelope, StreamId};
//!
//! #[event]
//! #[derive(Debug, Clone)]
//! pub enum CourseEvent {
//!     Subscribed {
//!         #[event(tag = "course")]
//!         course_id: String,
//!         #[event(tag = "student")]
//!         student_id: String,
//!     },
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Orchestrix::builder().in_memory().build()?;
//! // At most two students per course, across every student's stream.
//! let query = Query::new([QueryItem::of::<CourseEvent>().tag("course", "c1")]);
//! for student in ["s1", "s2", "s3"] {
//!     let outcome = app
//!         .decide(query.clone(), CommandOptions::default(), |model: &[Envelope<CourseEvent>]| {
//!             if model.len() >= 2 {
//!                 return Err("the course is full");
//!             }
//!             let event = CourseEvent::Subscribed { course_id: "c1".into(), student_id: student.into() };
//!             let stream = StreamId::new("Student", student).map_err(|_| "bad id")?;
//!             Decision::new().append(stream, [event]).map_err(|_| "bad event")
//!         })
//!         .await;
//!     assert_eq!(outcome.is_ok(), student != "s3");
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::app::{CommandOptions, Orchestrix};
use crate::envelope::{Envelope, NewEvent, RecordedEvent};
use crate::error::{CommandError, Error, StoreError};
use crate::event::Event;
use crate::query::{AppendCondition, Query};
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

/// The events a decision appends, each to its stream.
///
/// Events of one stream are appended in order after whatever the stream
/// holds ([`ExpectedVersion::Any`]): the condition, not the stream's
/// version, guards the decision. A stream may also be given an
/// expectation of its own with [`Decision::expect`].
#[derive(Debug, Default)]
pub struct Decision {
    parts: Vec<StreamAppend>,
}

impl Decision {
    /// Appends nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `events` to `stream`, encoded with their tags.
    pub fn append<E: Event>(mut self, stream: StreamId, events: impl IntoIterator<Item = E>) -> Result<Self, Error> {
        let mut encoded = Vec::new();
        for event in events {
            encoded.push(
                NewEvent::encode(&event, crate::envelope::Metadata::default())
                    .map_err(|source| Error::Serialize { what: "an event", source })?,
            );
        }
        match self.parts.iter_mut().find(|part| part.stream == stream) {
            Some(part) => part.events.extend(encoded),
            None => self.parts.push(StreamAppend::new(stream, ExpectedVersion::Any, encoded)),
        }
        Ok(self)
    }

    /// Requires `stream` to be at `expected` as well (checked atomically
    /// with the condition).
    pub fn expect(mut self, stream: StreamId, expected: ExpectedVersion) -> Self {
        match self.parts.iter_mut().find(|part| part.stream == stream) {
            Some(part) => part.expected = expected,
            None => self.parts.push(StreamAppend::new(stream, expected, Vec::new())),
        }
        self
    }

    /// Whether nothing is appended or checked.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The parts, for [`crate::EventStore::append_if`].
    pub fn into_parts(self) -> Vec<StreamAppend> {
        self.parts
    }
}

impl Orchestrix {
    /// Reads the decision model of `query`: every matching event, decoded
    /// as `E`, and the [`AppendCondition`] (the query and the last position
    /// read) to append with.
    pub async fn read_decision<E: Event>(&self, query: Query) -> Result<DecisionModel<E>, Error> {
        let records: Vec<Arc<RecordedEvent>> = self.event_store().read_by_query(&query, 0).try_collect().await?;
        let after = records.last().map(|record| record.global_position);
        let events = records.iter().map(RecordedEvent::to_envelope::<E>).collect::<Result<Vec<_>, _>>()?;
        Ok(DecisionModel { events, condition: AppendCondition::new(query, after) })
    }

    /// Appends `decision` if `condition` still holds, with the metadata of
    /// `options` on every event (the events' own tags kept). A failed
    /// condition is [`StoreError::ConditionFailed`] inside [`Error::Store`].
    ///
    /// With a command id in `options`, the events' ids derive from it
    /// ([`crate::idempotency::command_event_id`], across the parts in
    /// order): a retry with the same command id is answered with the
    /// stored events (ADR 0027).
    pub async fn append_decision(
        &self,
        condition: AppendCondition,
        decision: Decision,
        options: CommandOptions,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, Error> {
        let given = options.command_id;
        let (_, metadata) = options.resolve();
        let mut event_ids = (0..)
            .map(|index| given.map_or_else(uuid::Uuid::now_v7, |id| crate::idempotency::command_event_id(id, index)));
        let parts = decision
            .parts
            .into_iter()
            .map(|mut part| {
                for event in &mut part.events {
                    let tags = std::mem::take(&mut event.metadata.tags);
                    event.metadata = metadata.clone().with_tags(tags);
                    event.id = event_ids.next().unwrap_or_else(uuid::Uuid::now_v7);
                }
                part
            })
            .collect();
        Ok(self.event_store().append_if(condition, parts).await?)
    }

    /// Read, decide, append, and again on a conflict: reads the events of
    /// `query`, calls `decide` with them, and appends what it decided with
    /// the condition that nothing matching `query` arrived meanwhile. If
    /// something did ([`StoreError::ConditionFailed`]) or a stream's
    /// expectation failed, it starts over, under the application's
    /// [`crate::RetryPolicy`] (like commands on a version conflict); once
    /// the attempts are used up, the last conflict is returned.
    ///
    /// `decide` may run several times, so it must not have side effects;
    /// its error is returned as [`CommandError::Rejected`]. Returns the
    /// recorded events of every part, in order.
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
        let policy = self.retry_policy();
        if let Some(command_id) = options.command_id {
            let applied = crate::idempotency::command_events(&**self.event_store(), command_id).await?;
            if !applied.is_empty() {
                return Ok(applied);
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let model = self.read_decision::<E>(query.clone()).await?;
            let decision = decide(&model.events).map_err(CommandError::Rejected)?;
            if decision.is_empty() {
                return Ok(Vec::new());
            }
            match self.append_decision(model.condition, decision, options.clone()).await {
                Ok(recorded) => return Ok(recorded.into_iter().flatten().collect()),
                Err(Error::Store(
                    error @ (StoreError::ConditionFailed { .. } | StoreError::WrongExpectedVersion { .. }),
                )) => {
                    let delay = policy.delay_after(attempt);
                    crate::telemetry::conflict("decision", delay.is_some());
                    match delay {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(CommandError::Framework(Error::Store(error))),
                    }
                }
                Err(error) => return Err(CommandError::Framework(error)),
            }
        }
    }
}
