//! Checks that a [`Repository`] never trusts a snapshot blindly (ADR 0006,
//! ADR 0026), over an adapter's [`EventStore`] and [`SnapshotStore`]
//! together: a snapshot past the stream's last event, of another schema
//! version, that does not decode, or of another stream is discarded, the
//! state rebuilt from the events, appends succeed afterwards, and the next
//! snapshot point's snapshot is the one used.
//!
//! Each check takes the two stores as a pair (for an adapter that is both,
//! two clones of one store), empty and used by nothing else. The
//! repository loads through [`EventStore::read_from_snapshot`], so every
//! check also covers an adapter's one-query answer to it (ADR 0054);
//! [`snapshot_and_tail_come_together`] checks that answer directly.

use std::num::NonZeroU64;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{expect_eq, fail, ok, within};
use crate::aggregate::Aggregate;
use crate::envelope::Metadata;
use crate::error::{DecodeErrorKind, Error, StoreError};
use crate::event::{Event, EventType};
use crate::repository::{Loaded, Repository};
use crate::store::{EventStore, ExpectedVersion, Snapshot, SnapshotStore};
use crate::stream::StreamId;

/// The checks' event: adds `n` to a tally.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Added {
    n: u64,
}

/// The stored type of [`Added`].
const ADDED: &str = "TallyAdded";

impl Event for Added {
    fn event_types() -> &'static [EventType] {
        const TYPES: [EventType; 1] = [EventType { name: ADDED, version: 1 }];
        &TYPES
    }

    fn event_type(&self) -> &'static str {
        ADDED
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        crate::event::encode_raw(self)
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        if event_type != ADDED {
            return Err(DecodeErrorKind::UnknownType);
        }
        crate::event::decode_versioned(data, schema_version, 1, &[])
    }
}

/// The checks' aggregate: a sum and a count of its events, snapshotted
/// every [`EVERY`] events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tally {
    sum: u64,
    count: u64,
}

/// How often a [`Tally`] takes a snapshot.
const EVERY: u64 = 5;

/// The error of [`Tally`]'s (absent) commands.
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl Aggregate for Tally {
    const NAME: &'static str = "Tally";
    const SNAPSHOT_EVERY: Option<NonZeroU64> = NonZeroU64::new(EVERY);
    const SNAPSHOT_VERSION: u32 = 1;
    type Id = String;
    type Event = Added;
    type Error = Never;

    fn apply(&mut self, event: &Added) {
        self.sum += event.n;
        self.count += 1;
    }

    fn snapshot_state(&self) -> Option<Result<Box<RawValue>, serde_json::Error>> {
        Some(crate::event::encode_raw(self))
    }

    fn restore_state(state: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        Some(serde_json::from_str(state.get()))
    }
}

/// The tally of events `1..=count` (`n` = 1, 2, …).
fn tally_of(count: u64) -> Tally {
    Tally { sum: count * (count + 1) / 2, count }
}

/// A fresh aggregate id.
fn fresh_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn stream_of(id: &String) -> StreamId {
    Repository::<Tally>::stream_id(id).expect("a valid stream id")
}

fn result<T>(check: &str, what: &str, result: Result<T, Error>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(check, format_args!("{what} returned an error: {error}")),
    }
}

/// The two stores of a check, shared by its repositories.
struct Stores {
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

impl Stores {
    fn new<E: EventStore, S: SnapshotStore>((events, snapshots): (E, S)) -> Self {
        Self { events: Arc::new(events), snapshots: Arc::new(snapshots) }
    }

    fn repository(&self) -> Repository<Tally> {
        Repository::new(Arc::clone(&self.events), Some(Arc::clone(&self.snapshots)))
    }

    /// The version of the latest snapshot of the tally `id`.
    async fn latest_snapshot(&self, check: &str, id: &String) -> Option<u64> {
        let found = within(check, "snapshot load", self.snapshots.load(&stream_of(id), None)).await;
        ok(check, "snapshot load", found).map(|snapshot| snapshot.version)
    }

    /// Stores a snapshot of the tally `id` directly.
    async fn plant(&self, check: &str, snapshot: Snapshot) {
        ok(check, "snapshot save", within(check, "snapshot save", self.snapshots.save(snapshot)).await);
    }

    /// Writes events `1..=count` to the tally `id`, without snapshots.
    async fn seed(&self, check: &str, id: &String, from: u64, to: u64) {
        let batch = (from..=to)
            .map(|n| crate::envelope::NewEvent::encode(&Added { n }, Metadata::default()).expect("encodes"))
            .collect();
        let expected = if from == 1 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(from - 1) };
        ok(check, "seed append", within(check, "append", self.events.append(&stream_of(id), expected, batch)).await);
    }
}

/// Appends events numbered up to `to` the way a command does (expecting
/// the version `loaded` says), and takes a snapshot at a snapshot point.
async fn command(check: &str, repository: &Repository<Tally>, id: &String, loaded: &mut Loaded<Tally>, to: u64) {
    let before = loaded.version;
    let events: Vec<Added> = (before + 1..=to).map(|n| Added { n }).collect();
    let expected = loaded.expected_version();
    let records = within(check, "save", repository.save(id, expected, &events, &Metadata::default())).await;
    let records = result(check, &format!("an append expecting {expected:?}"), records);
    for event in &events {
        loaded.state.apply(event);
    }
    loaded.version = records.last().map_or(before, |record| record.stream_version);
    if Repository::<Tally>::snapshot_due(before, loaded.version) {
        let saved = within(check, "save_snapshot", repository.save_snapshot(id, &loaded.state, loaded.version)).await;
        expect_eq(check, "a snapshot was taken", &result(check, "save_snapshot", saved), &true);
    }
}

async fn load(check: &str, repository: &Repository<Tally>, id: &String) -> Loaded<Tally> {
    result(check, "load", within(check, "load", repository.load(id)).await)
}

/// A snapshot of the tally `id` at `version` with `state` and
/// `schema_version`.
fn snapshot(id: &String, version: u64, schema_version: u32, state: &str) -> Snapshot {
    Snapshot {
        stream: stream_of(id),
        version,
        schema_version,
        state: RawValue::from_string(state.to_owned()).expect("fixture state is JSON"),
        taken_at: Utc::now(),
    }
}

/// The state of [`tally_of`]`(count)` as snapshot JSON.
fn state_of(count: u64) -> String {
    serde_json::to_string(&tally_of(count)).expect("a tally serializes")
}

/// The shared ending of every check: `loaded` (of a stream with `count`
/// events) is the events' state, not from a snapshot; a command appends
/// across the next snapshot point (on a ghost version it would conflict
/// forever); its snapshot is the latest, and the next load starts from it.
async fn expect_rebuilt_then_healed(
    check: &str,
    stores: &Stores,
    repository: &Repository<Tally>,
    id: &String,
    mut loaded: Loaded<Tally>,
    count: u64,
) {
    expect_eq(check, "the version after discarding the snapshot", &loaded.version, &count);
    expect_eq(check, "the state rebuilt from the events", &loaded.state, &tally_of(count));
    expect_eq(check, "the snapshot the load started from", &loaded.from_snapshot, &None);
    let next_point = (count / EVERY + 1) * EVERY;
    command(check, repository, id, &mut loaded, next_point).await;
    expect_eq(
        check,
        "the latest snapshot after the next snapshot point",
        &stores.latest_snapshot(check, id).await,
        &Some(next_point),
    );
    let reloaded = load(check, repository, id).await;
    expect_eq(check, "the snapshot the next load starts from", &reloaded.from_snapshot, &Some(next_point));
    expect_eq(check, "the state of the next load", &reloaded.state, &tally_of(next_point));
}

/// A snapshot whose version is past the stream's last event (a restored
/// backup) is discarded and deleted; the state is rebuilt from the events,
/// `load_at` ignores it too, and appends succeed.
pub async fn snapshot_past_the_head_is_discarded<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::snapshot_past_the_head_is_discarded";
    let stores = Stores::new(stores);
    let repository = stores.repository();
    let id = fresh_id();
    stores.seed(CHECK, &id, 1, 3).await;
    stores.plant(CHECK, snapshot(&id, 10, Tally::SNAPSHOT_VERSION, &state_of(10))).await;
    let at = result(CHECK, "load_at", within(CHECK, "load_at", repository.load_at(&id, 10)).await);
    expect_eq(
        CHECK,
        "load_at(10) of a stream at 3",
        &(at.version, at.state, at.from_snapshot),
        &(3, tally_of(3), None),
    );
    expect_eq(CHECK, "the snapshots after the discard", &stores.latest_snapshot(CHECK, &id).await, &None);
    stores.plant(CHECK, snapshot(&id, 10, Tally::SNAPSHOT_VERSION, &state_of(10))).await;
    let loaded = load(CHECK, &repository, &id).await;
    expect_eq(CHECK, "the snapshots after the discard", &stores.latest_snapshot(CHECK, &id).await, &None);
    expect_rebuilt_then_healed(CHECK, &stores, &repository, &id, loaded, 3).await;
}

/// A stream deleted and re-created shorter than its old snapshot: the
/// first load discards the old snapshot, so that once the new stream grows
/// past the old snapshot's version, the old state never comes back.
pub async fn recreated_stream_never_gets_the_old_snapshot<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::recreated_stream_never_gets_the_old_snapshot";
    let stores = Stores::new(stores);
    let repository = stores.repository();
    let id = fresh_id();
    // The old incarnation's snapshot at 4, of a different history.
    stores.plant(CHECK, snapshot(&id, 4, Tally::SNAPSHOT_VERSION, r#"{"sum":1000,"count":4}"#)).await;
    stores.plant(CHECK, snapshot(&id, 2, Tally::SNAPSHOT_VERSION, r#"{"sum":500,"count":2}"#)).await;
    stores.seed(CHECK, &id, 1, 2).await;
    let loaded = load(CHECK, &repository, &id).await;
    expect_eq(CHECK, "the re-created stream's state", &(loaded.version, loaded.state), &(2, tally_of(2)));
    stores.seed(CHECK, &id, 3, 4).await;
    let grown = load(CHECK, &repository, &id).await;
    expect_eq(
        CHECK,
        "the state once the re-created stream reached the old snapshot's version",
        &(grown.version, grown.state.clone(), grown.from_snapshot),
        &(4, tally_of(4), None),
    );
    expect_rebuilt_then_healed(CHECK, &stores, &repository, &id, grown, 4).await;
}

/// A snapshot of another schema version than the code's is discarded, the
/// state rebuilt, and the next snapshot point's snapshot used.
pub async fn snapshot_of_another_schema_is_discarded<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::snapshot_of_another_schema_is_discarded";
    let stores = Stores::new(stores);
    let repository = stores.repository();
    let id = fresh_id();
    stores.seed(CHECK, &id, 1, 7).await;
    stores.plant(CHECK, snapshot(&id, 5, Tally::SNAPSHOT_VERSION + 1, &state_of(5))).await;
    let loaded = load(CHECK, &repository, &id).await;
    expect_rebuilt_then_healed(CHECK, &stores, &repository, &id, loaded, 7).await;
}

/// A snapshot whose state does not decode (a field of the wrong type, an
/// unknown field, not an object) is discarded and the state rebuilt.
pub async fn undecodable_snapshot_is_discarded<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::undecodable_snapshot_is_discarded";
    let stores = Stores::new(stores);
    let repository = stores.repository();
    for state in [r#"{"sum":"many","count":5}"#, r#"{"sum":15,"count":5,"owner":"x"}"#, r#""a tally""#] {
        let id = fresh_id();
        stores.seed(CHECK, &id, 1, 6).await;
        stores.plant(CHECK, snapshot(&id, 5, Tally::SNAPSHOT_VERSION, state)).await;
        let loaded = load(CHECK, &repository, &id).await;
        expect_rebuilt_then_healed(CHECK, &stores, &repository, &id, loaded, 6).await;
    }
}

/// A snapshot store that answers a load with another stream's snapshot (a
/// misfiled or colliding key): the repository notices the stream.
#[derive(Debug)]
struct Misfiled {
    inner: Arc<dyn SnapshotStore>,
    other: StreamId,
}

#[async_trait]
impl SnapshotStore for Misfiled {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save(snapshot).await
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        match self.inner.load(&self.other, at_or_before).await? {
            Some(snapshot) => Ok(Some(snapshot)),
            None => self.inner.load(stream, at_or_before).await,
        }
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.inner.delete(stream).await
    }
}

/// A snapshot of another stream, returned by a confused snapshot store, is
/// discarded and the state rebuilt from the stream's own events.
pub async fn snapshot_of_another_stream_is_discarded<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::snapshot_of_another_stream_is_discarded";
    let stores = Stores::new(stores);
    let (id, other) = (fresh_id(), fresh_id());
    stores.seed(CHECK, &id, 1, 3).await;
    stores.seed(CHECK, &other, 1, 3).await;
    stores.plant(CHECK, snapshot(&other, 3, Tally::SNAPSHOT_VERSION, r#"{"sum":600,"count":3}"#)).await;
    let misfiled: Arc<dyn SnapshotStore> =
        Arc::new(Misfiled { inner: Arc::clone(&stores.snapshots), other: stream_of(&other) });
    let repository = Repository::<Tally>::new(Arc::clone(&stores.events), Some(misfiled));
    let loaded = load(CHECK, &repository, &id).await;
    expect_eq(
        CHECK,
        "the state despite another stream's snapshot",
        &(loaded.version, loaded.state, loaded.from_snapshot),
        &(3, tally_of(3), None),
    );
}

/// A valid snapshot is used, and `load_at` before it replays events only.
pub async fn valid_snapshot_is_used<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::valid_snapshot_is_used";
    let stores = Stores::new(stores);
    let repository = stores.repository();
    let id = fresh_id();
    let mut loaded = load(CHECK, &repository, &id).await;
    command(CHECK, &repository, &id, &mut loaded, 5).await;
    command(CHECK, &repository, &id, &mut loaded, 7).await;
    let reloaded = load(CHECK, &repository, &id).await;
    expect_eq(
        CHECK,
        "a load after a snapshot point",
        &(reloaded.version, reloaded.state, reloaded.from_snapshot),
        &(7, tally_of(7), Some(5)),
    );
    let at = result(CHECK, "load_at", within(CHECK, "load_at", repository.load_at(&id, 5)).await);
    expect_eq(
        CHECK,
        "load_at the snapshot's version",
        &(at.version, at.state, at.from_snapshot),
        &(5, tally_of(5), Some(5)),
    );
    let before = result(CHECK, "load_at", within(CHECK, "load_at", repository.load_at(&id, 4)).await);
    expect_eq(
        CHECK,
        "load_at before the snapshot",
        &(before.version, before.state, before.from_snapshot),
        &(4, tally_of(4), None),
    );
}

/// What [`EventStore::read_from_snapshot`] gave: the snapshot's version,
/// schema version and state, and the versions of the tail's events.
type Answer = (Option<(u64, u32, serde_json::Value)>, Vec<u64>);

/// Calls [`EventStore::read_from_snapshot`] for the tally `id` and reads
/// the tail to its end; every event must be of the tally's stream.
async fn read_from_snapshot(check: &str, stores: &Stores, id: &String, at_or_before: Option<u64>) -> Answer {
    use futures_util::StreamExt as _;
    let stream = stream_of(id);
    let answer = within(check, "read_from_snapshot", async {
        let (snapshot, tail) = stores.events.read_from_snapshot(&stream, at_or_before, &*stores.snapshots).await?;
        Ok::<_, StoreError>((snapshot, tail.collect::<Vec<_>>().await))
    })
    .await;
    let (snapshot, events) = ok(check, "read_from_snapshot", answer);
    let mut versions = Vec::with_capacity(events.len());
    for event in events {
        let event = ok(check, "an event of the tail", event);
        expect_eq(check, "the stream of an event of the tail", &event.stream, &stream);
        versions.push(event.stream_version);
    }
    let snapshot = snapshot.map(|snapshot| {
        expect_eq(check, "the stream of the snapshot", &snapshot.stream, &stream);
        let state = serde_json::from_str(snapshot.state.get()).expect("a stored state is JSON");
        (snapshot.version, snapshot.schema_version, state)
    });
    (snapshot, versions)
}

/// The state of `count` events as the JSON value a snapshot holds.
fn state_value(count: u64) -> serde_json::Value {
    serde_json::to_value(tally_of(count)).expect("a tally serializes")
}

/// [`EventStore::read_from_snapshot`] answers as a snapshot load and a
/// read of the stream from the snapshot's own version would, however the
/// store answers it (two calls, or one query): no snapshot gives the whole
/// stream; a snapshot comes back as stored (another schema version too:
/// checking it is the caller's) with the events from its version on, also
/// past a store's page (600 events); `at_or_before` picks the latest not
/// above it; a snapshot past the head comes with no events, a snapshot at
/// version 0 with the whole stream, and a stream with neither gives
/// nothing.
pub async fn snapshot_and_tail_come_together<E: EventStore, S: SnapshotStore>(stores: (E, S)) {
    const CHECK: &str = "snapshot_trust::snapshot_and_tail_come_together";
    let stores = Stores::new(stores);
    let id = fresh_id();
    stores.seed(CHECK, &id, 1, 7).await;
    let all: Vec<u64> = (1..=7).collect();
    expect_eq(CHECK, "no snapshot", &read_from_snapshot(CHECK, &stores, &id, None).await, &(None, all.clone()));
    stores.plant(CHECK, snapshot(&id, 5, Tally::SNAPSHOT_VERSION, &state_of(5))).await;
    stores.plant(CHECK, snapshot(&id, 3, Tally::SNAPSHOT_VERSION + 1, &state_of(3))).await;
    expect_eq(
        CHECK,
        "the latest snapshot and the events from its version",
        &read_from_snapshot(CHECK, &stores, &id, None).await,
        &(Some((5, Tally::SNAPSHOT_VERSION, state_value(5))), vec![5, 6, 7]),
    );
    expect_eq(
        CHECK,
        "the latest snapshot at or before 4, of another schema version",
        &read_from_snapshot(CHECK, &stores, &id, Some(4)).await,
        &(Some((3, Tally::SNAPSHOT_VERSION + 1, state_value(3))), vec![3, 4, 5, 6, 7]),
    );
    expect_eq(
        CHECK,
        "at or before 2, below every snapshot",
        &read_from_snapshot(CHECK, &stores, &id, Some(2)).await,
        &(None, all),
    );

    let long = fresh_id();
    stores.seed(CHECK, &long, 1, 600).await;
    stores.plant(CHECK, snapshot(&long, 2, Tally::SNAPSHOT_VERSION, &state_of(2))).await;
    expect_eq(
        CHECK,
        "a tail of 599 events",
        &read_from_snapshot(CHECK, &stores, &long, None).await,
        &(Some((2, Tally::SNAPSHOT_VERSION, state_value(2))), (2..=600).collect()),
    );

    let short = fresh_id();
    stores.seed(CHECK, &short, 1, 3).await;
    stores.plant(CHECK, snapshot(&short, 10, Tally::SNAPSHOT_VERSION, &state_of(10))).await;
    expect_eq(
        CHECK,
        "a snapshot past the stream's last event",
        &read_from_snapshot(CHECK, &stores, &short, None).await,
        &(Some((10, Tally::SNAPSHOT_VERSION, state_value(10))), Vec::new()),
    );

    let zero = fresh_id();
    stores.seed(CHECK, &zero, 1, 2).await;
    stores.plant(CHECK, snapshot(&zero, 0, Tally::SNAPSHOT_VERSION, &state_of(0))).await;
    expect_eq(
        CHECK,
        "a snapshot at version 0",
        &read_from_snapshot(CHECK, &stores, &zero, None).await,
        &(Some((0, Tally::SNAPSHOT_VERSION, state_value(0))), vec![1, 2]),
    );

    let empty = fresh_id();
    expect_eq(
        CHECK,
        "a stream with neither",
        &read_from_snapshot(CHECK, &stores, &empty, None).await,
        &(None, Vec::new()),
    );
}
