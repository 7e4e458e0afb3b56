//! The ports: the traits every storage and messaging adapter implements.
//!
//! The in-memory adapters in [`crate::memory`] define the reference
//! behaviour; the conformance suite in `orchestrix::testing::conformance`
//! checks any other implementation against it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::query::{AppendCondition, Query};
use crate::stream::StreamId;

mod dead_letter;

pub use dead_letter::{DeadLetter, DeadLetterQuery, DeadLetterStore};

/// A lazily read sequence of stored events.
pub type EventStream<'a> = Pin<Box<dyn Stream<Item = Result<Arc<RecordedEvent>, StoreError>> + Send + 'a>>;

/// What an append expects of the stream's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version; `Exact(0)` is the
    /// same as [`ExpectedVersion::NoStream`].
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` satisfies this
    /// expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match (self, actual) {
            (Self::Any, _) | (Self::NoStream | Self::Exact(0), None) => true,
            (Self::Exact(v), Some(a)) => v == a,
            _ => false,
        }
    }
}

/// Which events a global read or subscription delivers.
///
/// ```
/// use orchestrix::EventFilter;
///
/// let all = EventFilter::all();
/// assert!(all.matches("Anything"));
/// let some = EventFilter::types(["AccountOpened", "AccountClosed"]);
/// assert!(some.matches("AccountOpened") && !some.matches("AccountDeposited"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    event_types: Option<Vec<String>>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of the given type names.
    pub fn types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut types: Vec<String> = types.into_iter().map(Into::into).collect();
        types.sort_unstable();
        types.dedup();
        Self { event_types: Some(types) }
    }

    /// The type names, or `None` for every type.
    pub fn event_types(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// Whether an event of this type passes.
    pub fn matches(&self, event_type: &str) -> bool {
        self.event_types.as_ref().is_none_or(|types| types.binary_search_by(|t| t.as_str().cmp(event_type)).is_ok())
    }
}

/// One stream's part of an atomic multi-stream append
/// ([`EventStore::append_many`]): the stream, what its version must be, and
/// the events to append to it.
///
/// A part with no events is a *guard*: its expectation must hold for the
/// whole call to succeed, and it writes nothing.
///
/// ```
/// use orchestrix::store::StreamAppend;
/// use orchestrix::{ExpectedVersion, StreamId};
///
/// let part = StreamAppend::new(StreamId::new("Account", "1").unwrap(), ExpectedVersion::Exact(3), vec![]);
/// assert!(part.is_guard());
/// ```
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the stream's version must be.
    pub expected: ExpectedVersion,
    /// The events, in order; empty for a guard.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// One stream's part of a multi-stream append.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self { stream, expected, events }
    }

    /// Whether this part only checks its expectation (it has no events).
    pub fn is_guard(&self) -> bool {
        self.events.is_empty()
    }
}

/// Checks the input of [`EventStore::append_many`] before anything is
/// stored: every event type is valid ([`crate::validate_event_type`]) and no
/// stream appears twice. Every adapter calls it first.
///
/// ```
/// use orchestrix::store::{validate_append_many, StreamAppend};
/// use orchestrix::{ExpectedVersion, StoreError, StreamId};
///
/// let stream = StreamId::new("Account", "1").unwrap();
/// let twice = [
///     StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![]),
///     StreamAppend::new(stream, ExpectedVersion::Any, vec![]),
/// ];
/// assert!(matches!(validate_append_many(&twice), Err(StoreError::InvalidInput(_))));
/// ```
pub fn validate_append_many(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(appends.len());
    for append in appends {
        if !seen.insert(&append.stream) {
            return Err(StoreError::InvalidInput(format!(
                "stream `{}` appears more than once in one multi-stream append; put all of its events in one part",
                crate::stream::truncate_for_message(&append.stream.to_string())
            )));
        }
        for event in &append.events {
            crate::envelope::validate_event_type(&event.event_type)?;
        }
    }
    Ok(())
}

/// The first part of a multi-stream append, in the call's order, whose
/// expectation `actual` (the streams' current versions, in the same order)
/// does not admit, as the error [`EventStore::append_many`] returns.
pub fn first_conflict(appends: &[StreamAppend], actual: &[Option<u64>]) -> Option<StoreError> {
    appends.iter().zip(actual).find(|(append, &actual)| !append.expected.admits(actual)).map(|(append, &actual)| {
        StoreError::WrongExpectedVersion { stream: append.stream.clone(), expected: append.expected, actual }
    })
}

/// The event log: append with optimistic concurrency, read a stream, read
/// and follow the global log.
#[async_trait]
pub trait EventStore: Send + Sync + Debug + 'static {
    /// Appends `events` to `stream` atomically if the stream's version
    /// matches `expected`, and returns them as recorded.
    ///
    /// Either every event is stored or none is. A mismatch is
    /// [`StoreError::WrongExpectedVersion`]. An empty batch checks the
    /// expectation and stores nothing.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError>;

    /// Appends to several streams atomically, each part checked against its
    /// own [`ExpectedVersion`], and returns the recorded events per part, in
    /// the order of `appends`.
    ///
    /// - **All or nothing**: if any part's expectation fails, nothing of any
    ///   part is stored, and the error is
    ///   [`StoreError::WrongExpectedVersion`] naming the first part (in the
    ///   order of `appends`) whose stream's version does not match.
    /// - **Global order**: the events of one call take consecutive places in
    ///   the global log (no other append's event lies between them), part
    ///   by part in the order of `appends`, each part's events in order. A
    ///   subscriber sees all of them or, before the call commits, none.
    /// - A part with no events is a guard: its expectation must hold, and it
    ///   writes nothing. An empty `appends` stores nothing.
    /// - A stream that appears in two parts is refused with
    ///   [`StoreError::InvalidInput`], as is an invalid event type (see
    ///   [`validate_append_many`]), before anything is stored.
    ///
    /// There is deliberately no default implementation: a loop of
    /// [`EventStore::append`]s is not atomic, and an adapter that cannot make
    /// it atomic must say so with an error rather than half-write.
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError>;

    /// Reads `stream` from `from_version` (inclusive) in version order.
    /// A stream that does not exist yields nothing.
    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a>;

    /// Reads the global log from `from_position` (inclusive) in position
    /// order, keeping the events `filter` passes, up to the current end.
    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a>;

    /// Reads the global log from `from_position` like [`EventStore::read_all`],
    /// then follows it: new events arrive as they are committed. A reader
    /// never sees an event at a position lower than one it has already seen.
    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static>;

    /// The version of the last event of `stream`, or `None` if it has none.
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError>;

    /// The position of the last event in the global log, or `None` if empty.
    async fn head_position(&self) -> Result<Option<u64>, StoreError>;

    /// Reads the events that match `query` from `from_position`
    /// (inclusive) in position order, up to the current end: the decision
    /// model of a command with consistency by query (ADR 0023). The
    /// position of the last event it yields is the `after` of the
    /// [`AppendCondition`] that guards the command's append.
    ///
    /// The default reads the whole global log and keeps the events that
    /// match; adapters with a tag index override it.
    fn read_by_query<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a> {
        use futures_util::StreamExt as _;
        /// Every event: a `static`, so the read can borrow it for `'a`.
        static ALL: EventFilter = EventFilter { event_types: None };
        if query.is_empty() {
            return Box::pin(futures_util::stream::empty());
        }
        Box::pin(self.read_all(from_position, &ALL).filter(move |item| {
            let keep = item.as_ref().map_or(true, |event| query.matches(&event.event_type, event.tags()));
            std::future::ready(keep)
        }))
    }

    /// Appends like [`EventStore::append_many`], but only if `condition`
    /// holds: no event matching its query has a global position above its
    /// `after` (ADR 0023).
    ///
    /// - **All or nothing** with the parts' own expectations: if the
    ///   condition fails, nothing is stored and the error is
    ///   [`StoreError::ConditionFailed`] naming the first offending
    ///   position; a failed expectation is
    ///   [`StoreError::WrongExpectedVersion`] as for `append_many`.
    /// - **No write skew**: of two concurrent conditional appends where the
    ///   events of each match the query of the other, at most one succeeds.
    /// - Events appended through [`EventStore::append`] or
    ///   [`EventStore::append_many`] are seen by the check once committed;
    ///   adapters that serialize writers (memory, SQLite) also order them
    ///   against it, PostgreSQL orders only conditional appends (ADR 0023).
    ///
    /// The default refuses with [`StoreError::Unsupported`]: an adapter
    /// that does not check the condition must never ignore it.
    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let _ = (condition, appends);
        Err(StoreError::Unsupported(format!(
            "{} does not implement conditional appends (consistency by query)",
            std::any::type_name::<Self>()
        )))
    }
}

/// Checks the input of [`EventStore::append_if`] before anything is stored:
/// the parts as [`validate_append_many`] does, the tags of every event, and
/// the condition's query ([`Query::validate`]).
pub fn validate_append_if(condition: &AppendCondition, appends: &[StreamAppend]) -> Result<(), StoreError> {
    validate_append_many(appends)?;
    for event in appends.iter().flat_map(|append| &append.events) {
        for tag in event.tags() {
            crate::query::validate_tag(tag)?;
        }
    }
    condition.query.validate()
}

/// A stored snapshot: an aggregate's state at one version of its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream version the state includes.
    pub version: u64,
    /// The schema version of `state`; a snapshot whose schema version is
    /// not the code's is ignored and rebuilt.
    pub schema_version: u32,
    /// The serialized state.
    pub state: Box<RawValue>,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
}

/// Where aggregate snapshots are kept.
#[async_trait]
pub trait SnapshotStore: Send + Sync + Debug + 'static {
    /// Stores a snapshot, replacing one at the same stream and version.
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// The latest snapshot of `stream`, or with `at_or_before`, the latest
    /// one whose version is not above it.
    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError>;

    /// Deletes every snapshot of `stream`.
    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError>;
}

/// Where consumers of the global log remember how far they got.
#[async_trait]
pub trait CheckpointStore: Send + Sync + Debug + 'static {
    /// The last position `consumer` finished, if any.
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError>;

    /// Records that `consumer` finished everything up to `position`.
    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError>;

    /// Forgets `consumer`'s checkpoint, so it starts again from the beginning.
    async fn delete(&self, consumer: &str) -> Result<(), StoreError>;
}

/// A small durable key-value map, for read models and process state.
#[async_trait]
pub trait KeyValueStore: Send + Sync + Debug + 'static {
    /// The value under `key`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// Stores `value` under `key`, replacing any previous one.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;

    /// Removes `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Every key that starts with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Where the per-subject keys of crypto-shredding live
/// ([`crate::crypto`]): one AES-256 key per data subject, created on first
/// use, deleted to make the subject's personal data unreadable for good.
///
/// Implementations must never log, print or return key material except
/// through [`DataKey`](crate::crypto::DataKey), whose `Debug` shows only
/// its id; and deleting must really delete (no soft delete, no archive
/// table), since a kept copy defeats the shredding.
#[async_trait]
pub trait KeyStore: Send + Sync + Debug + 'static {
    /// The current key of `subject`, or `None` if it has none (never had
    /// one, or it was deleted).
    async fn key(&self, subject: &str) -> Result<Option<crate::crypto::DataKey>, StoreError>;

    /// The current key of `subject`, creating one if it has none. Two
    /// concurrent calls for one subject return the same key.
    async fn key_or_create(&self, subject: &str) -> Result<crate::crypto::DataKey, StoreError>;

    /// Deletes the key of `subject`; returns whether it had one. Data
    /// encrypted with it can never be read again; a later
    /// [`KeyStore::key_or_create`] makes a new key, which does not open the
    /// old data.
    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError>;
}

/// A message carried by a [`MessageBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Dot-separated subject, for example `orchestrix.events.Account`.
    pub subject: String,
    /// The payload.
    pub payload: Bytes,
    /// Headers carried beside the payload.
    pub headers: BTreeMap<String, String>,
}

impl Message {
    /// A message without headers.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { subject: subject.into(), payload: payload.into(), headers: BTreeMap::new() }
    }
}

/// A stream of bus messages.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<Message, StoreError>> + Send>>;

/// Publishes messages to subscribers, possibly in other processes.
///
/// Subjects are dot-separated tokens; a subscription pattern may use `*`
/// for exactly one token and a final `>` for one or more (as NATS does).
#[async_trait]
pub trait MessageBus: Send + Sync + Debug + 'static {
    /// Publishes a message to everyone subscribed to a matching pattern.
    async fn publish(&self, message: Message) -> Result<(), StoreError>;

    /// Receives every message published after this call whose subject
    /// matches `pattern`.
    async fn subscribe(&self, pattern: &str) -> Result<MessageStream, StoreError>;
}

/// Whether `subject` matches a NATS-style `pattern` (`*` one token, a final
/// `>` one or more tokens).
///
/// ```
/// use orchestrix::store::subject_matches;
///
/// assert!(subject_matches("events.*.opened", "events.account.opened"));
/// assert!(subject_matches("events.>", "events.account.opened"));
/// assert!(!subject_matches("events.*", "events.account.opened"));
/// ```
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_admits() {
        assert!(ExpectedVersion::Any.admits(None));
        assert!(ExpectedVersion::Any.admits(Some(3)));
        assert!(ExpectedVersion::NoStream.admits(None));
        assert!(!ExpectedVersion::NoStream.admits(Some(1)));
        assert!(ExpectedVersion::Exact(0).admits(None));
        assert!(ExpectedVersion::Exact(3).admits(Some(3)));
        assert!(!ExpectedVersion::Exact(3).admits(Some(2)));
        assert!(!ExpectedVersion::Exact(3).admits(None));
    }

    #[test]
    fn subjects() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("*.b", "x.b"));
    }
}
