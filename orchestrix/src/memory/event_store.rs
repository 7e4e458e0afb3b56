//! The in-memory [`EventStore`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use async_trait::async_trait;
use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::idempotency::answer_retry;
use crate::query::AppendCondition;
use crate::store::{
    first_conflict, validate_append, validate_append_if, validate_append_many, EventFilter, EventStore, EventStream,
    ExpectedVersion, StreamAppend,
};
use crate::stream::StreamId;

/// How many events a reader copies (as `Arc`s) under one short read lock.
const CHUNK: usize = 256;

/// How many log entries a filtered reader scans under one read lock, so that
/// a selective filter over a long log never holds the lock for long.
const SCAN: usize = 4 * 1024;

/// An event store held in memory: the reference behaviour of [`EventStore`].
///
/// - Appends are atomic per batch and checked against the
///   [`ExpectedVersion`] under one write lock (a multi-stream append checks
///   every part and writes them all under the same single lock); events keep
///   their ids, and get stream versions from 1 and global positions from 1,
///   both without gaps.
/// - Event ids are unique: an append whose ids are all stored (as
///   consecutive events of its stream) is answered with the stored events,
///   one with some stored is [`StoreError::DuplicateEventId`] (ADR 0027);
///   the ids are checked first, under the same lock.
/// - Reads are lazy: they copy 256 `Arc`s at a time under a short read lock,
///   never the whole log, and never hold a lock across an `.await`. A read
///   ends at the end the stream (or log) had when the read began.
/// - Subscriptions catch up from the log, then wait on a
///   [`tokio::sync::watch`] of the head position; since they always read
///   from the log itself, an append that races with the switch from
///   catching up to following live is neither missed nor delivered twice.
///   A subscription ends when it is dropped, or once every handle to the
///   store has been dropped.
///
/// Cloning is cheap and every clone shares the same log. Nothing is
/// durable: the events live as long as the last clone.
///
/// ```
/// use orchestrix::memory::InMemoryEventStore;
/// use orchestrix::{store::{EventStore, ExpectedVersion}, StreamId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrix::StoreError> {
/// let store = InMemoryEventStore::new();
/// let stream = StreamId::new("Account", "42")?;
/// store.append(&stream, ExpectedVersion::NoStream, vec![]).await?;
/// assert_eq!(store.stream_version(&stream).await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemoryEventStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    log: RwLock<Log>,
    /// The position of the last event; subscribers wait on its changes.
    head: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Self { log: RwLock::default(), head: watch::Sender::new(0) }
    }
}

/// The maps of the log (std's randomly seeded SipHash: no hashing crate in
/// the minimal build, ADR 0039).
type FastMap<K, V> = HashMap<K, V>;

#[derive(Debug, Default)]
struct Log {
    /// The global log: the event at position `p` is at index `p - 1`.
    events: Vec<Arc<RecordedEvent>>,
    /// Per stream, the log index of each event: version `v` is at `v - 1`.
    streams: FastMap<StreamId, Vec<usize>>,
    /// The log index of each event id (ids are unique across the store).
    ids: FastMap<Uuid, usize>,
}

impl Shared {
    // A panic cannot leave the log half-written (every check happens before
    // the first push), so a poisoned lock is safe to keep using.
    fn read(&self) -> RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    /// Moves the watched head forward to `head`. Called outside the lock;
    /// two racing appends may notify out of order, so the head only ever
    /// moves forward.
    ///
    /// With no subscription, nothing is sent (the send takes a lock and
    /// wakes waiters): a subscription begun after the check below reads
    /// the log after this append was pushed, so it sees the append anyway,
    /// and it is woken by the next append's send.
    fn advance_head(&self, head: u64) {
        if self.head.receiver_count() == 0 {
            return;
        }
        self.head.send_if_modified(|current| {
            let advanced = head > *current;
            if advanced {
                *current = head;
            }
            advanced
        });
    }
}

impl Log {
    /// The version of the last event of `stream`.
    fn version(&self, stream: &StreamId) -> Option<u64> {
        self.streams.get(stream).map(|indexes| to_u64(indexes.len()))
    }

    /// The answer to an append of `parts` some of whose ids are stored
    /// ([`crate::idempotency::answer_retry`]); `Ok(None)` if none is.
    fn retried(&self, parts: &[(&StreamId, &[NewEvent])]) -> Result<Option<Vec<Vec<Arc<RecordedEvent>>>>, StoreError> {
        let stored = parts.iter().flat_map(|(_, events)| events.iter()).any(|event| self.ids.contains_key(&event.id));
        if !stored {
            return Ok(None);
        }
        answer_retry(parts, |id| self.ids.get(&id).map(|&index| Arc::clone(&self.events[index])))
    }

    /// Appends `events` to `stream`, whose version is `actual` (checked by
    /// the caller), at the end of the log.
    fn push(
        &mut self,
        stream: &StreamId,
        actual: Option<u64>,
        events: Vec<NewEvent>,
        recorded_at: chrono::DateTime<Utc>,
    ) -> Vec<Arc<RecordedEvent>> {
        if events.is_empty() {
            return Vec::new();
        }
        let first_version = actual.unwrap_or(0) + 1;
        let first_index = self.events.len();
        let indexes = self.streams.entry(stream.clone()).or_default();
        let mut recorded = Vec::with_capacity(events.len());
        self.events.reserve(events.len());
        indexes.reserve(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let index = first_index + offset;
            self.ids.insert(event.id, index);
            let event = Arc::new(RecordedEvent {
                id: event.id,
                stream: stream.clone(),
                stream_version: first_version + to_u64(offset),
                global_position: to_u64(index) + 1,
                recorded_at,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
            });
            self.events.push(Arc::clone(&event));
            indexes.push(index);
            recorded.push(event);
        }
        recorded
    }
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64")
}

/// The log index of the first position above `after`.
fn to_index_after(after: u64) -> usize {
    usize::try_from(after).unwrap_or(usize::MAX)
}

/// The log index of a 1-based position or version; `0` reads from the start.
fn to_index(position: u64) -> usize {
    usize::try_from(position.saturating_sub(1)).unwrap_or(usize::MAX)
}

/// Copies up to [`CHUNK`] matching events from `*next` (an index) towards
/// `end`, scanning at most [`SCAN`] entries, and advances `*next`.
fn global_chunk(log: &Log, next: &mut usize, end: usize, filter: &EventFilter, out: &mut Vec<Arc<RecordedEvent>>) {
    let end = end.min(log.events.len());
    if *next >= end {
        return;
    }
    if filter.is_all() {
        let stop = end.min(*next + CHUNK);
        out.extend(log.events[*next..stop].iter().cloned());
        *next = stop;
        return;
    }
    let stop = end.min(*next + SCAN);
    for (index, event) in log.events[*next..stop].iter().enumerate() {
        if filter.matches_event(event) {
            out.push(Arc::clone(event));
            if out.len() == CHUNK {
                *next += index + 1;
                return;
            }
        }
    }
    *next = stop;
}

/// A lazy read of one stream, a chunk at a time.
struct StreamReader<'a> {
    shared: &'a Shared,
    stream: &'a StreamId,
    next: usize,
    end: Option<usize>,
    buffer: std::vec::IntoIter<Arc<RecordedEvent>>,
}

impl Iterator for StreamReader<'_> {
    type Item = Result<Arc<RecordedEvent>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(event) = self.buffer.next() {
            return Some(Ok(event));
        }
        let chunk: Vec<_> = {
            let log = self.shared.read();
            let indexes = log.streams.get(self.stream)?;
            let end = *self.end.get_or_insert(indexes.len());
            if self.next >= end {
                return None;
            }
            let stop = end.min(self.next + CHUNK);
            let chunk = indexes[self.next..stop].iter().map(|&i| Arc::clone(&log.events[i])).collect();
            self.next = stop;
            chunk
        };
        self.buffer = chunk.into_iter();
        self.buffer.next().map(Ok)
    }
}

/// A lazy filtered read of the global log, a chunk at a time.
struct GlobalReader<'a> {
    shared: &'a Shared,
    filter: &'a EventFilter,
    next: usize,
    end: Option<usize>,
    buffer: std::vec::IntoIter<Arc<RecordedEvent>>,
}

impl Iterator for GlobalReader<'_> {
    type Item = Result<Arc<RecordedEvent>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.buffer.next() {
                return Some(Ok(event));
            }
            let mut chunk = Vec::new();
            {
                let log = self.shared.read();
                let end = *self.end.get_or_insert(log.events.len());
                if self.next >= end {
                    return None;
                }
                global_chunk(&log, &mut self.next, end, self.filter, &mut chunk);
            }
            self.buffer = chunk.into_iter();
        }
    }
}

/// The state of a live subscription.
struct Subscription {
    shared: Weak<Shared>,
    head: watch::Receiver<u64>,
    filter: EventFilter,
    next: usize,
}

impl Subscription {
    /// The next chunk of matching events (never empty), waiting for
    /// appends when caught up; `None` once the store is gone. The stream
    /// hands out a chunk's events without polling this again (ADR 0055).
    async fn next_chunk(&mut self) -> Option<Vec<Arc<RecordedEvent>>> {
        loop {
            // Mark the head as seen *before* reading the log: an append that
            // lands after the read below then still wakes `changed()`.
            self.head.borrow_and_update();
            let (chunk, caught_up) = {
                let shared = self.shared.upgrade()?;
                let log = shared.read();
                let mut chunk = Vec::new();
                global_chunk(&log, &mut self.next, usize::MAX, &self.filter, &mut chunk);
                let caught_up = self.next >= log.events.len();
                (chunk, caught_up)
            };
            if !chunk.is_empty() {
                return Some(chunk);
            } else if caught_up && self.head.changed().await.is_err() {
                // Every handle to the store is gone: nothing more can come.
                return None;
            }
        }
    }
}

/// A subscription's events: those of the chunk in hand, then the next
/// chunk's. Only an empty hand polls the subscription.
struct Chunked {
    chunks: futures_util::stream::BoxStream<'static, Vec<Arc<RecordedEvent>>>,
    buffer: std::vec::IntoIter<Arc<RecordedEvent>>,
}

impl futures_core::Stream for Chunked {
    type Item = Result<Arc<RecordedEvent>, StoreError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.buffer.next() {
                return std::task::Poll::Ready(Some(Ok(event)));
            }
            match std::task::ready!(self.chunks.poll_next_unpin(cx)) {
                Some(chunk) => self.buffer = chunk.into_iter(),
                None => return std::task::Poll::Ready(None),
            }
        }
    }
}

impl InMemoryEventStore {
    /// A multi-stream append under the write lock, checked against
    /// `condition` (if any) and the parts' expectations.
    fn append_checked(
        &self,
        condition: Option<&AppendCondition>,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let recorded: Vec<Vec<Arc<RecordedEvent>>> = {
            let mut guard = self.shared.write();
            let log = &mut *guard;
            let parts: Vec<_> = appends.iter().map(|append| (&append.stream, append.events.as_slice())).collect();
            if let Some(answer) = log.retried(&parts)? {
                return Ok(answer);
            }
            if let Some(condition) = condition.filter(|condition| !condition.query.is_empty()) {
                let from = condition.after.map_or(0, to_index_after);
                if let Some(event) = log
                    .events
                    .get(from..)
                    .unwrap_or_default()
                    .iter()
                    .find(|event| condition.violated_by(event.global_position, &event.event_type, event.tags()))
                {
                    return Err(StoreError::ConditionFailed {
                        position: event.global_position,
                        after: condition.after,
                    });
                }
            }

            let actual: Vec<Option<u64>> = appends.iter().map(|append| log.version(&append.stream)).collect();
            if let Some(conflict) = first_conflict(&appends, &actual) {
                return Err(conflict);
            }
            let recorded_at = Utc::now();
            appends
                .into_iter()
                .zip(actual)
                .map(|(append, actual)| log.push(&append.stream, actual, append.events, recorded_at))
                .collect()
        };
        let head = recorded.iter().flatten().map(|event| event.global_position).max().unwrap_or(0);
        self.shared.advance_head(head);
        Ok(recorded)
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        validate_append(&events)?;
        let recorded = {
            let mut guard = self.shared.write();
            let log = &mut *guard;
            if let Some(mut answer) = log.retried(&[(stream, &events)])? {
                return Ok(answer.pop().unwrap_or_default());
            }
            let actual = log.version(stream);
            if !expected.admits(actual) {
                return Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual });
            }
            if events.is_empty() {
                return Ok(Vec::new());
            }
            log.push(stream, actual, events, Utc::now())
        };
        self.shared.advance_head(recorded.last().map_or(0, |event| event.global_position));
        Ok(recorded)
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_many(&appends)?;
        self.append_checked(None, appends)
    }

    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_if(&condition, &appends)?;
        self.append_checked(Some(&condition), appends)
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        let reader = StreamReader {
            shared: &self.shared,
            stream,
            next: to_index(from_version),
            end: None,
            buffer: Vec::new().into_iter(),
        };
        stream::iter(reader).boxed()
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let reader = GlobalReader {
            shared: &self.shared,
            filter,
            next: to_index(from_position),
            end: None,
            buffer: Vec::new().into_iter(),
        };
        stream::iter(reader).boxed()
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        let subscription = Subscription {
            shared: Arc::downgrade(&self.shared),
            head: self.shared.head.subscribe(),
            filter,
            next: to_index(from_position),
        };
        let chunks = stream::unfold(subscription, |mut subscription| async move {
            let chunk = subscription.next_chunk().await?;
            Some((chunk, subscription))
        });
        Chunked { chunks: chunks.boxed(), buffer: Vec::new().into_iter() }.boxed()
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        let log = self.shared.read();
        Ok(log.ids.get(&id).map(|&index| Arc::clone(&log.events[index])))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        Ok(self.shared.read().streams.get(stream).map(|indexes| to_u64(indexes.len())))
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        let len = self.shared.read().events.len();
        Ok((len > 0).then(|| to_u64(len)))
    }
}

/// Re-tagging ([`crate::retag`]): replaces the stored events' `Arc`s under
/// the write lock, all changes or none; readers holding an event keep the
/// copy they read.
#[async_trait]
impl crate::retag::Retag for InMemoryEventStore {
    async fn replace_tags(&self, mut changes: Vec<crate::retag::TagChange>) -> Result<(), StoreError> {
        crate::retag::normalize_tag_changes(&mut changes)?;
        let mut guard = self.shared.write();
        let log = &mut *guard;
        let index = |position: u64| usize::try_from(position).ok().and_then(|p| p.checked_sub(1));
        if let Some(missing) =
            changes.iter().find(|change| index(change.position).is_none_or(|i| i >= log.events.len()))
        {
            return Err(StoreError::InvalidInput(format!(
                "no event at global position {} to re-tag",
                missing.position
            )));
        }
        for change in changes {
            let slot = &mut log.events[index(change.position).unwrap_or_default()];
            let mut event = RecordedEvent::clone(slot);
            event.metadata.tags = change.tags;
            *slot = Arc::new(event);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "event_store/tests.rs"]
mod tests;
