//! The dead-letter port: where events that failed their consumers are
//! parked, and the queries its administration needs.
//!
//! Re-exported from [`crate::store`]; the semantics of parking (a stream's
//! later events parked behind its first dead letter, retries in stream
//! order) live in [`crate::projection::delivery`] and ADR 0025.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::stream::StreamId;

/// An event a consumer could not handle, parked so that it can go on.
///
/// A consumer that parks an event parks the later events of the same
/// stream behind it (see [`crate::projection::delivery`]): those letters
/// have `attempts == 0` and an `error` that names the letter they wait
/// behind. The letters of one stream, ordered by the event's
/// `global_position`, are the order in which a retry replays them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead letter's own id.
    pub id: Uuid,
    /// The projection, saga or consumer that failed.
    pub consumer: String,
    /// The event it failed on.
    pub event: RecordedEvent,
    /// The error, rendered with its sources (for a letter parked behind
    /// another of its stream, why it waits).
    pub error: String,
    /// How many times handling was attempted (0: parked behind an earlier
    /// letter of its stream without being tried).
    pub attempts: u32,
    /// When the event was parked.
    pub parked_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The letter `id` of `consumer`, which failed on `event` with `error`
    /// after `attempts` attempts and parked it at `parked_at`.
    pub fn new(
        id: Uuid,
        consumer: impl Into<String>,
        event: RecordedEvent,
        error: impl Into<String>,
        attempts: u32,
        parked_at: DateTime<Utc>,
    ) -> Self {
        Self { id, consumer: consumer.into(), event, error: error.into(), attempts, parked_at }
    }
}

/// Which dead letters a [`DeadLetterStore::query`], `count` or `purge`
/// selects: every condition that is set must hold.
///
/// ```
/// use orchestrix::store::DeadLetterQuery;
///
/// let mine = DeadLetterQuery::consumer("balances").reason("timeout");
/// assert_eq!(mine.consumer.as_deref(), Some("balances"));
/// assert!(DeadLetterQuery::all().stream.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterQuery {
    /// Only the letters of this consumer (projection, saga manager, worker).
    pub consumer: Option<String>,
    /// Only the letters whose event belongs to this stream.
    pub stream: Option<StreamId>,
    /// Only the letters whose `error` contains this text (case-sensitive).
    pub reason: Option<String>,
    /// Only the letters parked strictly before this instant.
    pub parked_before: Option<DateTime<Utc>>,
}

impl DeadLetterQuery {
    /// Every letter.
    pub fn all() -> Self {
        Self::default()
    }

    /// The letters of `consumer`.
    pub fn consumer(consumer: impl Into<String>) -> Self {
        Self { consumer: Some(consumer.into()), ..Self::default() }
    }

    /// Narrows to the letters of `stream`.
    #[must_use]
    pub fn stream(mut self, stream: StreamId) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Narrows to the letters whose error contains `text`.
    #[must_use]
    pub fn reason(mut self, text: impl Into<String>) -> Self {
        self.reason = Some(text.into());
        self
    }

    /// Narrows to the letters parked before `instant`.
    #[must_use]
    pub fn parked_before(mut self, instant: DateTime<Utc>) -> Self {
        self.parked_before = Some(instant);
        self
    }

    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.consumer.as_deref().is_none_or(|consumer| letter.consumer == consumer)
            && self.stream.as_ref().is_none_or(|stream| &letter.event.stream == stream)
            && self.reason.as_deref().is_none_or(|reason| letter.error.contains(reason))
            && self.parked_before.is_none_or(|before| letter.parked_at < before)
    }
}

/// Where events that failed their consumers are parked.
///
/// The query methods have default implementations on top of `list`,
/// `remove` and [`DeadLetterQuery::matches`], correct for any store; the
/// SQL adapters answer them with indexed queries instead.
#[async_trait]
pub trait DeadLetterStore: Send + Sync + Debug + 'static {
    /// Parks a dead letter (replacing one with the same id; a replaced
    /// letter keeps its place in the order of `list`).
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError>;

    /// The dead letters of `consumer` (or of every consumer), oldest first
    /// (by `parked_at`, then in the order they were first parked).
    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError>;

    /// One dead letter.
    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError>;

    /// Removes a dead letter; returns whether it existed.
    async fn remove(&self, id: Uuid) -> Result<bool, StoreError>;

    /// The letters `query` selects, in the order of
    /// [`DeadLetterStore::list`].
    async fn query(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        let letters = self.list(query.consumer.as_deref()).await?;
        Ok(letters.into_iter().filter(|letter| query.matches(letter)).collect())
    }

    /// How many letters `query` selects.
    async fn count(&self, query: &DeadLetterQuery) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.query(query).await?.len()).unwrap_or(u64::MAX))
    }

    /// Removes every letter `query` selects (for example everything parked
    /// before a date: [`DeadLetterQuery::parked_before`]); returns how many
    /// were removed. The events are not handled: a purge is a drop.
    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64, StoreError> {
        let mut removed = 0;
        for letter in self.query(query).await? {
            if self.remove(letter.id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
