//! The ports: the traits every storage and messaging adapter implements.
//!
//! The in-memory adapters in [`crate::memory`] define the reference
//! behaviour; the conformance suite in `orchestrix::testing::conformance`
//! checks any other implementation against it.
//!
//! `Arc<T>` and `Box<T>` implement every port that `T` implements, `T`
//! unsized too: an `Arc<dyn EventStore>` is an [`EventStore`], and goes
//! wherever a store does (a [`crate::tenant::TenantStore`], the
//! application builder). Every method is forwarded, default ones included;
//! a method added to a port must be added to its list in `store/forward.rs`.
//!
//! # The adapter contract
//!
//! An event store adapter receives [`NewEvent`]s
//! ([`crate::envelope`]) and, before it writes anything, calls
//! [`validate_append`] (one stream), [`validate_append_many`] or
//! [`validate_append_if`] (several streams, with or without a condition),
//! so that every backend refuses the same input with the same
//! [`StoreError::InvalidInput`]; [`validate_event_ids`] is the id check they
//! include. [`first_conflict`] names the part that lost a multi-stream
//! race. An adapter with stricter type names calls
//! [`crate::event::validate_event_type`] before its own rules. A
//! constructor that keeps a store takes it generically and keeps a given
//! `Arc<dyn _>` as it is with [`shared`] (ADR 0030).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::personal::DataKey;
pub use crate::query::EventFilter;
use crate::query::{AppendCondition, Query};
pub use crate::stream::ExpectedVersion;
use crate::stream::StreamId;

mod control;
mod dead_letter;

pub use control::{ConsumerControl, PauseAck};
pub use dead_letter::{DeadLetter, DeadLetterQuery, DeadLetterStore};
mod forward;
pub use forward::shared;
mod listing;
pub use listing::{StreamListing, StreamSummary};
mod snapshots;
pub use snapshots::{snapshot_then_tail, Snapshot, SnapshotAndTail, SnapshotStore};
mod validate;
pub use validate::{first_conflict, validate_append, validate_append_if, validate_append_many, validate_event_ids};

/// A boxed future that is `Send`: what a port method returns when it is
/// not an `async fn` (one that borrows several arguments for its answer).
pub type BoxFuture<'a, T> = futures_util::future::BoxFuture<'a, T>;

/// A lazily read sequence of stored events.
pub type EventStream<'a> = Pin<Box<dyn Stream<Item = Result<Arc<RecordedEvent>, StoreError>> + Send + 'a>>;

/// One stream's part of an atomic multi-stream append
/// ([`EventStore::append_many`]): the stream, what its version must be, and
/// the events to append to it.
///
/// A part with no events is a *guard*: its expectation must hold for the
/// whole call to succeed, and it writes nothing.
///
/// ```
/// use orchestrix::store::StreamAppend;
/// use orchestrix::{store::ExpectedVersion, StreamId};
///
/// let part = StreamAppend::new(StreamId::new("Account", "1").unwrap(), ExpectedVersion::Exact(3), vec![]);
/// assert!(part.is_guard());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
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

// The parts of the filter that look at stored events live beside the
// port, so that `query` stays below `envelope` and `store` (ADR 0035).
impl EventFilter {
    /// Whether `event` passes: its type and its tags.
    pub fn matches_event(&self, event: &RecordedEvent) -> bool {
        self.matches(&event.event_type) && self.has_tags(&event.metadata.tags)
    }

    /// `events` without those that lack one of the filter's tags (errors
    /// pass): for a store whose query evaluates the types but not the tags.
    pub fn retain_tagged<'a>(&self, events: EventStream<'a>) -> EventStream<'a> {
        use futures_util::StreamExt as _;
        if self.tags().is_empty() {
            return events;
        }
        let filter = self.clone();
        Box::pin(events.filter(move |item| {
            let keep = item.as_ref().map_or(true, |event| filter.has_tags(&event.metadata.tags));
            std::future::ready(keep)
        }))
    }
}

/// The event log: append with optimistic concurrency, read a stream, read
/// and follow the global log.
///
/// # What an append refuses
///
/// Nothing stored may be unreadable, and every backend refuses the same
/// input the same way: before anything is stored, every append
/// ([`EventStore::append`], [`EventStore::append_many`],
/// [`EventStore::append_if`]) refuses with [`StoreError::InvalidInput`]
/// an event whose
///
/// - type is empty, `.`, `..`, longer than
///   [`MAX_EVENT_TYPE_LEN`](crate::event::MAX_EVENT_TYPE_LEN) or holds NUL;
/// - data holds a string (or object key) that is not Unicode text (a lone
///   surrogate escape, `"\ud800"`) or holds NUL (`"\u0000"`), a number
///   that does not fit an `f64`, or nests arrays and objects deeper than
///   [`MAX_JSON_DEPTH`](crate::envelope::MAX_JSON_DEPTH);
/// - metadata holds NUL, or a tag that conditions would refuse
///   ([`crate::query::validate_tag`]: empty, over
///   [`MAX_TAG_LEN`](crate::query::MAX_TAG_LEN) bytes, NUL).
///
/// Adapters call [`validate_append`], [`validate_append_many`] or
/// [`validate_append_if`] first; a backend's own stricter rules (such as
/// EventSourcingDB's character set for types) come on top.
///
/// # What a read gives back
///
/// An event's data and metadata come back as **equal JSON values**, not
/// as equal bytes: PostgreSQL's jsonb reorders object keys, drops
/// insignificant whitespace, keeps only the last of duplicate keys and
/// may respell a number (`1e2` as `100`). Objects compare without regard
/// to key order, numbers by their value. Compare payloads as values
/// (`serde_json::Value`, or a typed decode), never as text.
///
/// Tags select events for consistency queries only if the event carries
/// them: events written before a tag existed, or written without
/// [`NewEvent::encode`], have none, and no [`crate::query::Query`] with a
/// tag sees them (see [`crate::query`], "Untagged events").
#[async_trait]
pub trait EventStore: Send + Sync + Debug + 'static {
    /// Appends `events` to `stream` atomically if the stream's version
    /// matches `expected`, and returns them as recorded.
    ///
    /// Either every event is stored or none is. A mismatch is
    /// [`StoreError::WrongExpectedVersion`]. An empty batch checks the
    /// expectation and stores nothing.
    ///
    /// **Safe to retry** (ADR 0027, [`crate::idempotency`]): event ids are
    /// unique across the store. If every event's id is already stored, as
    /// consecutive events of `stream` in this order, the append is a retry
    /// of one that was stored: it returns the stored events and writes
    /// nothing, whatever `expected` says now. If only some are, or they
    /// are stored elsewhere, it is [`StoreError::DuplicateEventId`] and
    /// writes nothing. Two events with one id are
    /// [`StoreError::InvalidInput`].
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
    ///   [`StoreError::InvalidInput`], as is an invalid event type or an
    ///   event id used twice (see [`validate_append_many`]), before
    ///   anything is stored.
    /// - **Safe to retry** like [`EventStore::append`]: a call whose ids
    ///   are all stored, each part's as consecutive events of its stream,
    ///   returns the stored events per part and writes nothing (guards
    ///   are not checked again); some ids stored is
    ///   [`StoreError::DuplicateEventId`].
    ///
    /// There is deliberately no default implementation: a loop of
    /// [`EventStore::append`]s is not atomic, and an adapter that cannot make
    /// it atomic must say so with an error rather than half-write.
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError>;

    /// Reads `stream` from `from_version` (inclusive) in version order.
    /// A stream that does not exist yields nothing.
    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a>;

    /// The latest snapshot of `stream` in `snapshots` (with `at_or_before`,
    /// the latest not above it, as [`SnapshotStore::load`]) and the
    /// stream's events from **that snapshot's own version** (inclusive) on;
    /// from version 1 when there is no snapshot or it is at version 0. How
    /// a [`Repository`](crate::repository::Repository) loads an aggregate
    /// (ADR 0054).
    ///
    /// The snapshot comes back as stored, unchecked: the caller decides
    /// whether to trust it (ADR 0006, ADR 0026). Reading from its own
    /// version lets the caller tell a snapshot past the stream's last
    /// event (the events start after it, or there are none) without
    /// another round trip; a caller that discards the snapshot reads the
    /// stream again from version 1.
    ///
    /// The default makes the two calls ([`snapshot_then_tail`]). A store
    /// that keeps snapshots beside its events overrides it to answer in
    /// one query when `snapshots` is that same store (the SQL adapters:
    /// the store itself or a clone of it), so that a load costs one round
    /// trip, and falls back to the two calls for any other snapshot store.
    /// The answer must be the same either way.
    fn read_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        at_or_before: Option<u64>,
        snapshots: &'a dyn SnapshotStore,
    ) -> BoxFuture<'a, Result<SnapshotAndTail<'a>, StoreError>> {
        Box::pin(snapshot_then_tail(self, stream, at_or_before, snapshots))
    }

    /// Reads the global log from `from_position` (inclusive) in position
    /// order, keeping the events `filter` passes, up to the current end.
    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a>;

    /// Reads the global log from `from_position` like [`EventStore::read_all`],
    /// then follows it: new events arrive as they are committed. A reader
    /// never sees an event at a position lower than one it has already seen.
    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static>;

    /// The stored event whose id is `id`, if any: how the command bus
    /// tells whether a command id was already applied (ADR 0027).
    ///
    /// The default is correct but slow: it reads the whole global log.
    /// Adapters with an index on the event id override it.
    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        use futures_util::StreamExt as _;
        /// Every event: a `static`, so the read can borrow it.
        static ALL: EventFilter = EventFilter::all();
        let mut events = self.read_all(0, &ALL);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.id == id {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// The version of the last event of `stream`, or `None` if it has none.
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError>;

    /// The position of the last event in the global log, or `None` if empty.
    async fn head_position(&self) -> Result<Option<u64>, StoreError>;

    /// A page of the store's streams, in `(aggregate type, aggregate id)`
    /// order (bytewise), with each one's version, event count and last
    /// position: what `orchestrix streams` shows (ADR 0041). The next page
    /// starts [`StreamListing::after`] the last stream of this one; a page
    /// shorter than the limit is the last.
    ///
    /// The default reads the whole global log for each page (and holds a
    /// summary per admitted stream meanwhile); adapters with a grouped
    /// query override it.
    async fn list_streams(&self, listing: &StreamListing) -> Result<Vec<StreamSummary>, StoreError> {
        listing::list_by_reading(self, listing).await
    }

    /// How many data subjects this store has forgotten since it was made
    /// (in this process): a number that changes whenever personal data
    /// read from it earlier may have been erased since. Caches of state
    /// built from its events (the application's aggregate cache) drop
    /// their entries when it changes (ADR 0031). Stores that erase nothing
    /// keep the default, 0; a wrapper forwards its inner store's.
    fn erasure_generation(&self) -> u64 {
        0
    }

    /// Declares event types whose fields are marked personal
    /// (`#[event(personal(..))]`) and will be appended through this store.
    /// The application calls it at [`build`](crate::app::OrchestrixBuilder::build)
    /// with the events of every registered aggregate, so that marking a
    /// field personal is enough: a store that encrypts personal data
    /// ([`crate::crypto::CryptoStore`]) registers them as its `register`
    /// does and returns `true`; a wrapper forwards to its inner store.
    /// Every other store keeps the default, `false`: it stores those
    /// fields as they are, and the application logs a warning naming
    /// them.
    fn declare_personal_data(&self, data: &'static [crate::personal::PersonalData]) -> bool {
        let _ = data;
        false
    }

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
        static ALL: EventFilter = EventFilter::all();
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
    /// - **Safe to retry** like [`EventStore::append_many`]: a call whose
    ///   ids are all stored is answered with the stored events, even
    ///   though its own events now break its condition.
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

/// Where consumers of the global log remember how far they got.
#[async_trait]
pub trait CheckpointStore: Send + Sync + Debug + 'static {
    /// The last position `consumer` finished, if any.
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError>;

    /// Records that `consumer` finished everything up to `position`.
    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError>;

    /// Forgets `consumer`'s checkpoint, so it starts again from the
    /// beginning. Its control record ([`CheckpointStore::load_control`])
    /// stays: a paused projection stays paused through a rebuild.
    async fn delete(&self, consumer: &str) -> Result<(), StoreError>;

    /// `consumer`'s control record (ADR 0050): whether a pause is
    /// requested and acknowledged; `None` if nobody ever asked.
    ///
    /// The default is `None`: a store that keeps no control records
    /// never pauses anyone (and refuses [`CheckpointStore::request_pause`]).
    async fn load_control(&self, consumer: &str) -> Result<Option<ConsumerControl>, StoreError> {
        let _ = consumer;
        Ok(None)
    }

    /// Asks every runner of `consumer` to pause (`true`) or to go on
    /// (`false`), durably: a runner that starts later obeys too. A request
    /// that changes the record's [`ConsumerControl::pause_requested`]
    /// also clears its acknowledgement, in one write; one that repeats the
    /// current request changes nothing.
    ///
    /// The default refuses with [`StoreError::Unsupported`].
    async fn request_pause(&self, consumer: &str, pause: bool) -> Result<(), StoreError> {
        let _ = (consumer, pause);
        Err(StoreError::Unsupported(format!(
            "{} keeps no control records: projections cannot be paused through it (ADR 0050)",
            std::any::type_name::<Self>()
        )))
    }

    /// A runner's side of the record: `Some(ack)` records that it paused
    /// (only while a pause is requested: returns whether it was
    /// recorded), `None` clears any acknowledgement (returns `true`).
    /// Never touches [`ConsumerControl::pause_requested`].
    ///
    /// The default refuses with [`StoreError::Unsupported`].
    async fn acknowledge_pause(&self, consumer: &str, ack: Option<PauseAck>) -> Result<bool, StoreError> {
        let _ = (consumer, ack);
        Err(StoreError::Unsupported(format!("{} keeps no control records (ADR 0050)", std::any::type_name::<Self>())))
    }
}

/// A small durable key-value map, for read models and process state.
///
/// Values are [`Bytes`] (re-exported as `orchestrix::bytes::Bytes`, so no
/// dependency of your own is needed): a `Vec<u8>`, a `String` or a
/// `&'static [u8]` converts with `.into()`.
///
/// ```
/// use orchestrix::memory::InMemoryKeyValueStore;
/// use orchestrix::{bytes::Bytes, store::KeyValueStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrix::StoreError> {
/// let store = InMemoryKeyValueStore::new();
/// store.put("greeting", b"hello".to_vec().into()).await?;
/// assert_eq!(store.get("greeting").await?, Some(Bytes::from_static(b"hello")));
/// # Ok(())
/// # }
/// ```
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
/// use, deleted to make the subject's personal data unreadable for good;
/// beside them, which subjects were forgotten and which streams hold each
/// subject's personal data (ADR 0031).
///
/// Implementations must never log, print or return key material except
/// through [`DataKey`], whose `Debug` shows only its id; and deleting must
/// really delete (no soft delete, no archive table), since a kept copy
/// defeats the shredding. The record of a forgotten subject holds its id
/// and no key material.
#[async_trait]
pub trait KeyStore: Send + Sync + Debug + 'static {
    /// The current key of `subject`, or `None` if it has none (never had
    /// one, or it was forgotten). A forgotten subject has no key even if a
    /// create raced with its deletion.
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError>;

    /// The current key of `subject`, creating one if it has none. Two
    /// concurrent calls for one subject return the same key. A forgotten
    /// subject gets no key: [`StoreError::SubjectForgotten`], until
    /// [`KeyStore::readmit`].
    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError>;

    /// Forgets `subject`: deletes its key and records that it was
    /// forgotten, so that [`KeyStore::key_or_create`] refuses it from now
    /// on. Returns whether it had a key. Data encrypted with the key can
    /// never be read again, not even after [`KeyStore::readmit`].
    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError>;

    /// Re-admits a forgotten subject (one who came back and gave its data
    /// anew): deletes any key a create racing with the forget left behind
    /// and makes the subject's new key at once, which does not open the
    /// data written before the subject was forgotten. Returns whether the
    /// subject was forgotten; a subject that is not changes nothing (its
    /// key stays). So a subject without a key that is not forgotten is one
    /// whose key was lost (ADR 0051).
    async fn readmit(&self, subject: &str) -> Result<bool, StoreError>;

    /// Whether `subject` was forgotten and not re-admitted since.
    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError>;

    /// Records that `streams` hold personal data of `subject` (idempotent).
    /// The crypto store calls it before it appends such data, so the
    /// record is never behind the events.
    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError>;

    /// The streams recorded for `subject`, sorted. Forgetting keeps them,
    /// so a clean-up can run again.
    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError>;

    /// A number that changes whenever a subject is forgotten or re-admitted
    /// (in any process using this store): the crypto store polls it to
    /// learn of another process's `forget` (ADR 0031). Only equality
    /// matters.
    async fn erasure_mark(&self) -> Result<u64, StoreError>;
}

/// A message carried by a [`MessageBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

    /// The same message with `headers` in place of its own.
    #[must_use]
    pub fn with_headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.headers = headers;
        self
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
