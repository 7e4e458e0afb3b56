//! Loading and saving aggregates: snapshot plus tail, time travel,
//! optimistic concurrency.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::envelope::{Envelope, Metadata, NewEvent, RecordedEvent};
use crate::error::{Error, StoreError};
use crate::store::{EventStore, EventStream, ExpectedVersion, Snapshot, SnapshotStore};
use crate::stream::StreamId;
use crate::telemetry;

/// An aggregate's state at a version of its stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state after applying every event up to `version`.
    pub state: A,
    /// The version of the last applied event (0: no event, the aggregate
    /// does not exist).
    pub version: u64,
    /// The version of the snapshot the load started from, if any.
    pub from_snapshot: Option<u64>,
}

impl<A> Loaded<A> {
    /// Whether the aggregate has any event.
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// What an append that builds on this state expects:
    /// [`ExpectedVersion::NoStream`] at version 0, else
    /// [`ExpectedVersion::Exact`] of the version.
    pub fn expected_version(&self) -> ExpectedVersion {
        if self.version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(self.version)
        }
    }
}

/// Loads and saves aggregates of type `A`.
///
/// Every method that names an aggregate takes its id as
/// `impl Borrow<A::Id>`, as the whole application does: pass it owned
/// (`id`) or borrowed (`&id`).
///
/// A load starts from the latest snapshot and applies the events after it.
/// Snapshots are never trusted blindly (ADR 0006, ADR 0026): a snapshot
///
/// - of another stream than the one asked for (a misfiled or colliding
///   key),
/// - of another schema version than the code's
///   ([`Aggregate::SNAPSHOT_VERSION`]),
/// - that no longer deserializes, or
/// - whose version is past the stream's last event (a restored backup, a
///   stream deleted and re-created shorter, a snapshot from a buggy
///   release)
///
/// is discarded with a warning and a count in
/// `orchestrix_snapshot_loads_total` (outcome `foreign`, `stale` or
/// `past_head`), and the state is rebuilt from the events. A snapshot past
/// the head is also deleted with every other snapshot of its stream
/// ([`SnapshotStore::delete`]): they describe a history the stream no
/// longer has, and once the stream grew past them they would look valid
/// again. The others are superseded by the snapshot the next snapshot
/// point takes.
///
/// The check costs no extra round trip: the tail is read from the
/// snapshot's own version instead of the one after it, and the snapshot
/// is past the head exactly when that event is missing. The snapshot and
/// its tail come from one call, [`EventStore::read_from_snapshot`]: one
/// query on the SQL stores when their snapshot store is the event store
/// (or a clone of it), so a load is one round trip (ADR 0054).
///
/// What it cannot see: a stream deleted and re-created that has already
/// grown past an old snapshot's version before the next load. Whoever
/// deletes a stream must delete its snapshots too.
pub struct Repository<A> {
    /// `A::NAME`, shared by every stream id the repository builds.
    category: Arc<str>,
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            category: Arc::clone(&self.category),
            events: Arc::clone(&self.events),
            snapshots: self.snapshots.clone(),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &self.category)
            .field("events", &self.events)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over an event store and, optionally, a snapshot store.
    pub fn new(events: Arc<dyn EventStore>, snapshots: Option<Arc<dyn SnapshotStore>>) -> Self {
        Self { category: Arc::from(A::NAME), events, snapshots, aggregate: PhantomData }
    }

    /// The stream of the aggregate with this id: `A::NAME` / `id`.
    pub fn stream_id(id: impl Borrow<A::Id>) -> Result<StreamId, StoreError> {
        Ok(StreamId::new(A::NAME, id.borrow().to_string())?)
    }

    /// [`Repository::stream_id`] for the load and save paths: the
    /// category is shared and a short id is formatted on the stack.
    fn stream(&self, id: &A::Id) -> Result<StreamId, StoreError> {
        Ok(StreamId::from_display(&self.category, id)?)
    }

    /// The current state: latest usable snapshot plus the events after it.
    pub async fn load(&self, id: impl Borrow<A::Id>) -> Result<Loaded<A>, Error> {
        self.load_until(id.borrow(), None, |_| true).await
    }

    /// The state right after the event at `version` (time travel). A
    /// version past the end gives the current state.
    pub async fn load_at(&self, id: impl Borrow<A::Id>, version: u64) -> Result<Loaded<A>, Error> {
        self.load_until(id.borrow(), Some(version), |_| true).await
    }

    /// The state made of every event recorded at or before `time`.
    ///
    /// Snapshots are not used: they do not say when their events happened.
    pub async fn load_as_of(&self, id: impl Borrow<A::Id>, time: DateTime<Utc>) -> Result<Loaded<A>, Error> {
        let stream = self.stream(id.borrow())?;
        let mut loaded = Loaded { state: A::default(), version: 0, from_snapshot: None };
        self.apply_tail(&stream, &mut loaded, None, false, |event| event.recorded_at <= time).await?;
        Ok(loaded)
    }

    /// Every event of the aggregate, decoded, in order.
    pub async fn history(&self, id: impl Borrow<A::Id>) -> Result<Vec<Envelope<A::Event>>, Error> {
        let stream = self.stream(id.borrow())?;
        let mut records = self.events.read_stream(&stream, 1);
        let mut history = Vec::new();
        while let Some(record) = records.next().await {
            history.push(record?.to_envelope()?);
        }
        Ok(history)
    }

    /// Applies to `loaded` the events recorded after its version: brings a
    /// cached state up to date.
    pub async fn catch_up(&self, id: impl Borrow<A::Id>, loaded: &mut Loaded<A>) -> Result<(), Error> {
        let stream = self.stream(id.borrow())?;
        self.apply_tail(&stream, loaded, None, false, |_| true).await?;
        Ok(())
    }

    /// Appends `events` if the stream is still at `expected`, and returns
    /// them as recorded. A mismatch is [`StoreError::WrongExpectedVersion`].
    /// The events get new UUID v7 ids.
    pub async fn save(
        &self,
        id: impl Borrow<A::Id>,
        expected: ExpectedVersion,
        events: &[A::Event],
        metadata: &Metadata,
    ) -> Result<Vec<Arc<RecordedEvent>>, Error> {
        self.save_with_ids(id.borrow(), expected, events, metadata, |_| uuid::Uuid::now_v7()).await
    }

    /// [`Repository::save`] with the id of each event (by its index in
    /// `events`) from `event_id`: the same ids make a retry of the save
    /// safe (ADR 0027; the command bus passes
    /// [`crate::idempotency::command_event_id`]).
    pub async fn save_with_ids(
        &self,
        id: impl Borrow<A::Id>,
        expected: ExpectedVersion,
        events: &[A::Event],
        metadata: &Metadata,
        event_id: impl Fn(u32) -> uuid::Uuid + Send,
    ) -> Result<Vec<Arc<RecordedEvent>>, Error> {
        let id = id.borrow();
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "orchestrix.append",
                aggregate = A::NAME,
                aggregate_id = %id,
                expected_version = ?expected,
                event_count = events.len(),
                event_type = tracing::field::Empty,
                version = tracing::field::Empty,
                global_position = tracing::field::Empty,
                error = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let result = async {
            let stream = self.stream(id)?;
            let batch = NewEvent::encode_all_with_ids::<A::Event>(events, metadata, &event_id)?;
            if !span.is_disabled() {
                span.record("event_type", event_types(&batch));
            }
            // Through the trait object itself: `Arc<dyn EventStore>`'s own
            // (forwarding) impl would box the call's future a second time.
            Ok((*self.events).append(&stream, expected, batch).await?)
        }
        .instrument(span.clone())
        .await;
        match &result {
            Ok(records) => {
                if let (Some(first), Some(last)) = (records.first(), records.last()) {
                    span.record("version", last.stream_version);
                    span.record("global_position", first.global_position);
                }
            }
            Err(error) => record_error(&span, error),
        }
        result
    }

    /// Stores a snapshot of `state` at `version`. Returns `false` when the
    /// aggregate does not take snapshots or there is no snapshot store.
    pub async fn save_snapshot(&self, id: impl Borrow<A::Id>, state: &A, version: u64) -> Result<bool, Error> {
        let id = id.borrow();
        let (Some(snapshots), Some(serialized)) = (&self.snapshots, state.snapshot_state()) else {
            return Ok(false);
        };
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "orchestrix.snapshot",
                aggregate = A::NAME,
                aggregate_id = %id,
                version,
                error = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let result = async {
            let state = serialized.map_err(|source| Error::Serialize { what: "a snapshot", source })?;
            let snapshot = Snapshot {
                stream: self.stream(id)?,
                version,
                schema_version: A::SNAPSHOT_VERSION,
                state,
                taken_at: Utc::now(),
            };
            (**snapshots).save(snapshot).await?;
            Ok(true)
        }
        .instrument(span.clone())
        .await;
        if let Err(error) = &result {
            record_error(&span, error);
        }
        result
    }

    /// Whether a save that moved the stream from `before` to `after` crosses
    /// a multiple of [`Aggregate::SNAPSHOT_EVERY`].
    pub fn snapshot_due(before: u64, after: u64) -> bool {
        A::SNAPSHOT_EVERY.is_some_and(|every| before / every.get() != after / every.get())
    }

    async fn load_until(
        &self,
        id: &A::Id,
        until_version: Option<u64>,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<Loaded<A>, Error> {
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "orchestrix.load",
                aggregate = A::NAME,
                aggregate_id = %id,
                snapshot_version = tracing::field::Empty,
                version = tracing::field::Empty,
                error = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let result = async {
            let stream = self.stream(id)?;
            let fresh = || Loaded { state: A::default(), version: 0, from_snapshot: None };
            let Some(snapshots) = self.snapshots.as_ref().filter(|_| A::SNAPSHOT_EVERY.is_some()) else {
                let mut loaded = fresh();
                self.apply_tail(&stream, &mut loaded, until_version, false, &keep).await?;
                return Ok(loaded);
            };
            // One call for the snapshot and the events from its version
            // on: one query where the event store keeps the snapshots
            // (ADR 0054).
            let (snapshot, tail) = (*self.events).read_from_snapshot(&stream, until_version, &**snapshots).await?;
            let Some(snapshot) = snapshot else {
                // No snapshot: the tail is the whole stream.
                telemetry::snapshot_load(A::NAME, "miss");
                let mut loaded = fresh();
                self.apply_records(&stream, &mut loaded, tail, until_version, false, &keep).await?;
                return Ok(loaded);
            };
            let snapshot_version = snapshot.version;
            let Some(mut loaded) = Self::trusted(&stream, &snapshot, until_version) else {
                // Not to be trusted: the events from the start instead.
                drop(tail);
                let mut loaded = fresh();
                self.apply_tail(&stream, &mut loaded, until_version, false, &keep).await?;
                return Ok(loaded);
            };
            if self.apply_records(&stream, &mut loaded, tail, until_version, true, &keep).await? {
                telemetry::snapshot_load(A::NAME, "hit");
                return Ok(loaded);
            }
            self.discard_past_head(&stream, snapshot_version).await;
            let mut loaded = fresh();
            self.apply_tail(&stream, &mut loaded, until_version, false, &keep).await?;
            Ok(loaded)
        }
        .instrument(span.clone())
        .await;
        match &result {
            Ok(loaded) => {
                if let Some(snapshot) = loaded.from_snapshot {
                    span.record("snapshot_version", snapshot);
                }
                span.record("version", loaded.version);
            }
            Err(error) => record_error(&span, error),
        }
        result
    }

    /// `snapshot` (the latest at or before `at_or_before`) as a
    /// [`Loaded`] to go on from (not yet checked against the stream's
    /// head), or `None` when it cannot be trusted: of another stream, at a
    /// version the load did not ask for, of another schema version, or not
    /// decodable (each a warning and a count).
    fn trusted(stream: &StreamId, snapshot: &Snapshot, at_or_before: Option<u64>) -> Option<Loaded<A>> {
        if snapshot.stream != *stream {
            tracing::warn!(
                %stream,
                snapshot_stream = %snapshot.stream,
                version = snapshot.version,
                "ignoring a snapshot the store returned for another stream; rebuilding from events"
            );
            telemetry::snapshot_load(A::NAME, "foreign");
            return None;
        }
        if snapshot.version == 0 || at_or_before.is_some_and(|until| snapshot.version > until) {
            tracing::warn!(%stream, version = snapshot.version, ?at_or_before, "ignoring a snapshot at a version the load did not ask for; rebuilding from events");
            telemetry::snapshot_load(A::NAME, "foreign");
            return None;
        }
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            tracing::warn!(
                %stream,
                version = snapshot.version,
                snapshot_schema = snapshot.schema_version,
                code_schema = A::SNAPSHOT_VERSION,
                "ignoring a snapshot of another schema version; rebuilding from events"
            );
            telemetry::snapshot_load(A::NAME, "stale");
            return None;
        }
        match A::restore_state(&snapshot.state) {
            Some(Ok(state)) => Some(Loaded { state, version: snapshot.version, from_snapshot: Some(snapshot.version) }),
            Some(Err(error)) => {
                tracing::warn!(%stream, version = snapshot.version, %error, "ignoring a snapshot that does not deserialize; rebuilding from events");
                telemetry::snapshot_load(A::NAME, "stale");
                None
            }
            None => None,
        }
    }

    /// Forgets the snapshots of `stream` after its snapshot at `version`
    /// turned out to lie past the stream's last event. A failure to delete
    /// is logged: the load goes on from the events regardless.
    async fn discard_past_head(&self, stream: &StreamId, version: u64) {
        tracing::warn!(
            %stream,
            version,
            "ignoring and deleting a snapshot past the stream's last event (a restored backup, or a stream re-created); rebuilding from events"
        );
        telemetry::snapshot_load(A::NAME, "past_head");
        if let Some(snapshots) = &self.snapshots {
            if let Err(error) = (**snapshots).delete(stream).await {
                tracing::warn!(%stream, %error, "could not delete the snapshots past the stream's last event");
            }
        }
    }

    /// Applies the events after `loaded.version` (up to `until_version`,
    /// while `keep` holds), read from the store. With `anchored` (the
    /// state came from a snapshot), the read starts at `loaded.version`
    /// itself; see [`Repository::apply_records`].
    async fn apply_tail(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        until_version: Option<u64>,
        anchored: bool,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<bool, Error> {
        let anchored = anchored && loaded.version > 0;
        if !anchored && until_version.is_some_and(|until| until <= loaded.version) {
            return Ok(true);
        }
        let records = self.events.read_stream(stream, if anchored { loaded.version } else { loaded.version + 1 });
        self.apply_records(stream, loaded, records, until_version, anchored, keep).await
    }

    /// Applies `records` (the stream read from `loaded.version`, with
    /// `anchored`, else from the version after it) up to `until_version`,
    /// while `keep` holds. With `anchored` (the state came from a
    /// snapshot), returns `false`, applying nothing, when the first record
    /// is not the event at `loaded.version`: the snapshot is past the
    /// stream's head.
    async fn apply_records(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        mut records: EventStream<'_>,
        until_version: Option<u64>,
        anchored: bool,
        keep: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<bool, Error> {
        let anchored = anchored && loaded.version > 0;
        if anchored {
            match records.next().await.transpose()? {
                Some(record) if record.stream_version == loaded.version => {}
                _ => return Ok(false),
            }
        }
        while let Some(record) = records.next().await {
            let record = record?;
            if until_version.is_some_and(|until| record.stream_version > until) || !keep(&record) {
                break;
            }
            if record.stream_version != loaded.version + 1 {
                return Err(StoreError::Corrupt {
                    stream: stream.clone(),
                    version: record.stream_version,
                    reason: format!("expected version {} next; the stream has a gap", loaded.version + 1),
                }
                .into());
            }
            loaded.state.apply(&record.decode()?);
            loaded.version = record.stream_version;
        }
        Ok(true)
    }
}

/// The event types of a batch, comma-separated when they differ.
fn event_types(batch: &[NewEvent]) -> String {
    let mut types: Vec<&str> = Vec::with_capacity(batch.len());
    for event in batch {
        if !types.contains(&event.event_type.as_str()) {
            types.push(&event.event_type);
        }
    }
    types.join(",")
}

/// Records a failure on a span: the message, and an error status.
fn record_error(span: &tracing::Span, error: &Error) {
    span.record("error", tracing::field::display(error));
    span.record("otel.status_code", "ERROR");
}

impl<A> Repository<A> {
    /// The event store this repository reads and writes.
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.events
    }
}
