//! Crypto-shredding: personal data encrypted per data subject, forgotten by
//! deleting the subject's key (ADR 0020).
//!
//! Events are immutable, yet a person may ask to be forgotten. Fields
//! marked `#[event(personal(subject = field))]` are stored encrypted with
//! AES-256-GCM under a key of their *data subject* (the value of the
//! `subject` field: a customer id, a user id) kept in a [`KeyStore`].
//! Deleting that key ([`CryptoStore::forget`]) makes every such field of
//! that subject unreadable forever, while the events, their other fields
//! and everything rebuilt from them still load.
//!
//! - **The placeholder**: a personal field whose key is gone reads back as
//!   JSON `null`, which is why the macro requires personal fields to be
//!   `Option<_>`: they decode as `None`. Aggregates, projections and sagas
//!   rebuilt after the deletion see `None` where the data was.
//! - **What is encrypted**: the JSON value of each personal field, bound
//!   (as AES-GCM associated data) to the event type, the field name, the
//!   subject and the key id, so a ciphertext cannot be moved to another
//!   field, event type or subject. A fresh 96-bit random nonce per value.
//!   A `null` value stays `null` (there is nothing to protect).
//! - **Stored form**: `{"$orchestrix.encrypted": {"key": <key id>,
//!   "subject": <subject>, "nonce": <base64>, "data": <base64>}}` in place
//!   of the field's value. The subject id stays readable: it is the
//!   pseudonym the key is filed under.
//! - **Where it happens**: [`CryptoStore`] wraps any [`EventStore`]. Appends
//!   encrypt the personal fields of the event types registered with
//!   [`CryptoStore::register`] or declared by an application built on the
//!   store (the events of its aggregates, at
//!   [`build`](crate::app::OrchestrixBuilder::build):
//!   [`EventStore::declare_personal_data`]); reads, global reads and subscriptions
//!   decrypt, looking the key up for every encrypted event (no cache, so
//!   a deletion takes effect on the next event read, even in a running
//!   subscription).
//! - **Keys never show**: [`DataKey`]'s `Debug` prints its id only; it has
//!   no `Display` and no `Serialize`; its material is zeroed on drop.
//!
//! **Forgetting** ([`CryptoStore::forget`], ADR 0031) erases every copy the
//! framework keeps, and returns an [`ErasureReport`] of what it erased:
//!
//! - the subject's key (personal fields read back as `null` from then on);
//!   the key store remembers the subject as forgotten, so writing its
//!   personal data again is refused with [`StoreError::SubjectForgotten`]
//!   rather than sealed under a fresh key; [`CryptoStore::readmit`] is the
//!   explicit call for a subject who comes back;
//! - the snapshots of every stream that holds the subject's personal data
//!   (the key store records subject → stream on every append that seals a
//!   field), in the snapshot stores given with
//!   [`CryptoStore::erase_snapshots_in`];
//! - the personal fields of the subject in dead letters of the stores
//!   given with [`CryptoStore::erase_dead_letters_in`] (set to `null`);
//!   better still, park through [`CryptoStore::seal_dead_letters`], and
//!   dead letters never hold personal data in clear;
//! - the aggregates an application keeps in memory: the store's
//!   [`EventStore::erasure_generation`] changes, and the application's
//!   cache drops its entries on the next command;
//! - saga data: register a saga with [`CryptoStore::register_saga`] and the
//!   personal fields of its data are sealed like an event's;
//! - read models you write: give them an [`ErasureHook`]
//!   ([`CryptoStore::on_forget`]), which `forget` calls with the subject
//!   and its streams.
//!
//! **What it does not cover**: data you copied out of the events into
//! places without a hook (a read model, an e-mail sent, a log line of your
//! own); fields you did not mark personal; event types that are neither
//! registered nor declared by an application (appended directly, written
//! in plain text). Database pages, WAL archives and
//! backups keep deleted keys until they are reclaimed or expire. Another
//! process's aggregate cache learns of a `forget` when its store polls the
//! key store ([`CryptoStore::refresh_erasures`], about every second while
//! it appends) or when a write of the forgotten data is refused; a
//! snapshot it takes in between can hold the data (ADR 0031).
//!
//! ```
//! use futures_util::StreamExt;
//! use orchestrix::crypto::CryptoStore;
//! use orchestrix::memory::{InMemoryEventStore, InMemoryKeyStore};
//! use orchestrix::prelude::*;
//! use orchestrix::{store::{EventStore, ExpectedVersion}, envelope::NewEvent, StreamId};
//!
//! #[event]
//! #[derive(Debug, Clone, PartialEq)]
//! pub enum CustomerEvent {
//!     Registered {
//!         customer_id: String,
//!         #[event(personal(subject = customer_id))]
//!         email: Option<String>,
//!     },
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = CryptoStore::new(InMemoryEventStore::new(), InMemoryKeyStore::new()).register::<CustomerEvent>();
//! let stream = StreamId::new("Customer", "c-1")?;
//! let registered = CustomerEvent::Registered { customer_id: "c-1".into(), email: Some("ada@example.com".into()) };
//! store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::encode(&registered, Metadata::default())?]).await?;
//!
//! // Stored encrypted; read back in clear through the store.
//! let raw = store.inner().read_stream(&stream, 1).next().await.unwrap()?;
//! assert!(!raw.data.get().contains("ada@example.com"));
//! let read = store.read_stream(&stream, 1).next().await.unwrap()?;
//! assert_eq!(read.decode::<CustomerEvent>()?, registered);
//!
//! // Forget the customer: the event still loads, the email is gone.
//! store.forget("c-1").await?;
//! let read = store.read_stream(&stream, 1).next().await.unwrap()?;
//! assert_eq!(read.decode::<CustomerEvent>()?, CustomerEvent::Registered { customer_id: "c-1".into(), email: None });
//! # Ok(())
//! # }
//! ```

mod dead_letters;
mod forget;
mod inspect;
mod seal;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use self::dead_letters::SealedDeadLetters;
pub use self::forget::{ErasureHook, ErasureReport, ERASED_IN_TEXT};
pub use self::inspect::{sealed_values, SealedValue, SealedValueError};
use self::seal::SealMode;
use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::event::Event;
pub use crate::personal::{required, DataKey, PersonalData, PersonalDataErased, PersonalField, KEY_LEN};
use crate::store::{
    DeadLetterStore, EventFilter, EventStore, EventStream, ExpectedVersion, KeyStore, SnapshotStore, StreamAppend,
};
use crate::stream::StreamId;

/// The key under which an encrypted value is stored in place of a
/// personal field's value.
pub const ENCRYPTED_MARKER: &str = "$orchestrix.encrypted";

/// The stored type of a saga's first event, whose `data` holds the saga's
/// data ([`crate::saga::SagaStarted`]).
const SAGA_STARTED: &str = "SagaStarted";

/// How many (subject, stream) pairs a store remembers having recorded,
/// to spare the key store a write per append; past it, it starts over.
const RECORDED_CAPACITY: usize = 16_384;

/// How often an append polls the key store for another process's `forget`
/// ([`CryptoStore::refresh_erasures`]).
pub const ERASURE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Which fields are personal: per stored event type, and per saga kind
/// (the fields of its data).
#[derive(Debug, Clone, Default)]
struct Registry {
    events: HashMap<&'static str, Vec<PersonalField>>,
    sagas: HashMap<&'static str, Vec<PersonalField>>,
}

/// Where `forget` erases besides the key, and what it keeps between calls.
#[derive(Default)]
struct Erasure {
    /// Bumped by every `forget` ([`EventStore::erasure_generation`]).
    generation: AtomicU64,
    snapshots: Vec<Arc<dyn SnapshotStore>>,
    dead_letters: Vec<Arc<dyn DeadLetterStore>>,
    hooks: Vec<Arc<dyn ErasureHook>>,
    /// (subject, stream) pairs already recorded in the key store.
    recorded: Mutex<HashSet<(String, StreamId)>>,
    /// When the key store's erasure mark was last polled, and its value.
    polled: Mutex<Option<(Instant, u64)>>,
}

/// An [`EventStore`] that encrypts the personal fields of registered event
/// types on the way in and decrypts them on the way out, and forgets data
/// subjects (see the [module documentation](self)).
///
/// Cloning is as cheap as cloning the inner store; clones share the
/// registrations, the erasure targets and the erasure generation. Register
/// everything before the first clone.
#[derive(Clone)]
pub struct CryptoStore<S> {
    inner: S,
    keys: Arc<dyn KeyStore>,
    personal: Arc<Registry>,
    /// Event types declared by applications built on this store
    /// ([`EventStore::declare_personal_data`]), beside the registered ones.
    declared: Arc<RwLock<HashMap<&'static str, &'static [PersonalField]>>>,
    erasure: Arc<Erasure>,
}

impl<S: fmt::Debug> fmt::Debug for CryptoStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&&str> = self.personal.events.keys().collect();
        types.sort_unstable();
        let mut sagas: Vec<&&str> = self.personal.sagas.keys().collect();
        sagas.sort_unstable();
        f.debug_struct("CryptoStore")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .field("personal_event_types", &types)
            .field("personal_sagas", &sagas)
            .field("erasure_generation", &self.erasure.generation.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl<S> CryptoStore<S> {
    /// Wraps `inner`, with subjects' keys in `keys`. Register the event
    /// types whose personal fields to encrypt with
    /// [`CryptoStore::register`].
    pub fn new(inner: S, keys: impl KeyStore) -> Self {
        Self {
            inner,
            keys: crate::store::shared::<_, dyn KeyStore>(keys, |keys| Arc::new(keys)),
            personal: Arc::default(),
            declared: Arc::default(),
            erasure: Arc::default(),
        }
    }

    /// Encrypts the personal fields of `E`'s stored types from now on.
    /// An application built on this store does it for the events of its
    /// registered aggregates ([`EventStore::declare_personal_data`]);
    /// register the event types you append otherwise (directly, or from a
    /// standalone handler).
    #[must_use]
    pub fn register<E: Event>(mut self) -> Self {
        let personal = Arc::make_mut(&mut self.personal);
        for data in E::personal_data() {
            personal.events.insert(data.event_type, data.fields.to_vec());
        }
        self
    }

    /// Encrypts the personal fields of the data of saga `S` (kept in its
    /// instances' `SagaStarted` events) from now on. Mark them on the data
    /// type as on an event: put `#[event]` on it and
    /// `#[event(personal(subject = field))]` on its personal fields (which
    /// must be `Option<_>`); after a `forget`, the instance's data shows
    /// `None` there, and a step that needs the value gets
    /// [`PersonalDataErased`] from [`required`].
    #[must_use]
    pub fn register_saga<G>(mut self) -> Self
    where
        G: crate::saga::Saga,
        G::Data: Event,
    {
        let fields = <G::Data as Event>::personal_data().iter().flat_map(|data| data.fields.iter().copied()).collect();
        Arc::make_mut(&mut self.personal).sagas.insert(G::NAME, fields);
        self
    }

    /// `forget` also deletes the snapshots of the forgotten subject's
    /// streams in `snapshots` (give the application's snapshot store).
    #[must_use]
    pub fn erase_snapshots_in(mut self, snapshots: Arc<dyn SnapshotStore>) -> Self {
        self.erasure_mut().snapshots.push(snapshots);
        self
    }

    /// `forget` also erases the forgotten subject's personal fields from
    /// the dead letters in `dead_letters`.
    #[must_use]
    pub fn erase_dead_letters_in(mut self, dead_letters: Arc<dyn DeadLetterStore>) -> Self {
        self.erasure_mut().dead_letters.push(dead_letters);
        self
    }

    /// `forget` also calls `hook`, so that a read model erases its own
    /// copy of the subject's data.
    #[must_use]
    pub fn on_forget(mut self, hook: Arc<dyn ErasureHook>) -> Self {
        self.erasure_mut().hooks.push(hook);
        self
    }

    fn erasure_mut(&mut self) -> &mut Erasure {
        if Arc::get_mut(&mut self.erasure).is_none() {
            // Configured after a clone: the clone keeps the old targets.
            let old = &self.erasure;
            self.erasure = Arc::new(Erasure {
                generation: AtomicU64::new(old.generation.load(Ordering::Acquire)),
                snapshots: old.snapshots.clone(),
                dead_letters: old.dead_letters.clone(),
                hooks: old.hooks.clone(),
                recorded: Mutex::default(),
                polled: Mutex::default(),
            });
        }
        Arc::get_mut(&mut self.erasure).unwrap_or_else(|| unreachable!("the erasure targets were just made unique"))
    }

    /// The personal fields of a stored type, if it is registered or was
    /// declared by an application built on this store.
    pub fn personal_fields(&self, event_type: &str) -> Option<&[PersonalField]> {
        self.personal.events.get(event_type).map(Vec::as_slice).or_else(|| {
            let declared: Option<&'static [PersonalField]> =
                self.declared.read().unwrap_or_else(PoisonError::into_inner).get(event_type).copied();
            declared
        })
    }

    /// The wrapped store, which holds the encrypted form.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Re-admits a forgotten subject who came back: its personal data may
    /// be written again, under a new key that does not open what was
    /// written before it was forgotten. Returns whether it was forgotten.
    pub async fn readmit(&self, subject: &str) -> Result<bool, StoreError> {
        let readmitted = self.keys.readmit(subject).await?;
        tracing::info!(readmitted, "orchestrix: a forgotten data subject was re-admitted");
        Ok(readmitted)
    }

    /// The personal fields of `event`'s type, with the path of the object
    /// that holds them: the top level of a registered event, or `data.` of
    /// a registered saga's `SagaStarted`.
    fn fields_of<'a>(&'a self, event_type: &str, object: &Map<String, Value>) -> Option<&'a [PersonalField]> {
        if event_type == SAGA_STARTED {
            let saga = object.get("saga").and_then(Value::as_str)?;
            return self.personal.sagas.get(saga).map(Vec::as_slice);
        }
        self.personal_fields(event_type)
    }

    /// Encrypts the personal fields of `event`, if its type is registered;
    /// adds the subjects it sealed for to `subjects`.
    async fn seal_event(&self, mut event: NewEvent, subjects: &mut BTreeSet<String>) -> Result<NewEvent, StoreError> {
        if let Some(data) = self.seal_data(&event.event_type, &event.data, SealMode::Append, subjects).await? {
            event.data = data;
        }
        Ok(event)
    }

    /// The data of an event of `event_type` with its personal fields
    /// sealed, or `None` if it has none to seal.
    async fn seal_data(
        &self,
        event_type: &str,
        data: &RawValue,
        mode: SealMode,
        subjects: &mut BTreeSet<String>,
    ) -> Result<Option<Box<RawValue>>, StoreError> {
        let registered = event_type == SAGA_STARTED || self.personal_fields(event_type).is_some();
        if !registered || (event_type == SAGA_STARTED && self.personal.sagas.is_empty()) {
            return Ok(None);
        }
        let mut object: Map<String, Value> = serde_json::from_str(data.get()).map_err(|error| {
            StoreError::InvalidInput(format!(
                "`{event_type}` has personal fields, so its data must be a JSON object: {error}"
            ))
        })?;
        let Some(fields) = self.fields_of(event_type, &object) else { return Ok(None) };
        if event_type == SAGA_STARTED {
            let Some(Value::Object(data)) = object.get_mut("data") else { return Ok(None) };
            seal::seal_fields(&*self.keys, data, fields, (event_type, "data."), mode, subjects).await?;
        } else {
            seal::seal_fields(&*self.keys, &mut object, fields, (event_type, ""), mode, subjects).await?;
        }
        serde_json::value::to_raw_value(&object).map(Some).map_err(|e| StoreError::InvalidInput(e.to_string()))
    }

    /// Seals `events` of `stream` and records the stream for every subject
    /// sealed for, before anything is appended.
    async fn seal_all(
        &self,
        stream: &StreamId,
        events: Vec<NewEvent>,
    ) -> Result<(Vec<NewEvent>, Vec<NewEvent>), StoreError> {
        self.refresh_erasures_if_due().await?;
        let mut sealed = Vec::with_capacity(events.len());
        let mut subjects = BTreeSet::new();
        for event in &events {
            sealed.push(self.seal_event(event.clone(), &mut subjects).await?);
        }
        for subject in subjects {
            self.record(subject, stream).await?;
        }
        Ok((sealed, events))
    }

    /// Records that `stream` holds personal data of `subject`, unless this
    /// store recorded it already.
    async fn record(&self, subject: String, stream: &StreamId) -> Result<(), StoreError> {
        let pair = (subject, stream.clone());
        if self.erasure.recorded.lock().unwrap_or_else(PoisonError::into_inner).contains(&pair) {
            return Ok(());
        }
        self.keys.record_streams(&pair.0, std::slice::from_ref(stream)).await?;
        let mut recorded = self.erasure.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if recorded.len() >= RECORDED_CAPACITY {
            recorded.clear();
        }
        recorded.insert(pair);
        Ok(())
    }

    async fn seal_parts(&self, appends: Vec<StreamAppend>) -> Result<SealedParts, StoreError> {
        let mut sealed_parts = Vec::with_capacity(appends.len());
        let mut plain_parts = Vec::with_capacity(appends.len());
        for append in appends {
            let (sealed, plain) = self.seal_all(&append.stream, append.events).await?;
            sealed_parts.push(StreamAppend::new(append.stream, append.expected, sealed));
            plain_parts.push(plain);
        }
        Ok((sealed_parts, plain_parts))
    }
}

/// The parts of a multi-stream append with their events sealed, and the
/// plain events of each part.
type SealedParts = (Vec<StreamAppend>, Vec<Vec<NewEvent>>);

/// The records an append returned, with the plain data the caller gave.
fn with_plain_data(records: Vec<Arc<RecordedEvent>>, plain: Vec<NewEvent>) -> Vec<Arc<RecordedEvent>> {
    records
        .into_iter()
        .zip(plain)
        .map(|(record, plain)| {
            if record.data.get() == plain.data.get() {
                record
            } else {
                Arc::new(RecordedEvent { data: plain.data, ..RecordedEvent::clone(&record) })
            }
        })
        .collect()
}

/// Decrypts the personal fields of a stored record; those whose key is
/// gone become `null`.
async fn open_record(keys: &dyn KeyStore, record: Arc<RecordedEvent>) -> Result<Arc<RecordedEvent>, StoreError> {
    if !record.data.get().contains(ENCRYPTED_MARKER) {
        return Ok(record);
    }
    let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(record.data.get()) else { return Ok(record) };
    let mut seen = HashMap::new();
    let changed = match seal::open_fields(keys, &mut object, &record.event_type, String::new(), &mut seen).await {
        Ok(changed) => changed,
        Err(seal::OpenError::Store(error)) => return Err(error),
        Err(seal::OpenError::Corrupt(field, reason)) => {
            return Err(StoreError::Corrupt {
                stream: record.stream.clone(),
                version: record.stream_version,
                reason: format!("encrypted field `{field}`: {reason}"),
            })
        }
    };
    if !changed {
        return Ok(record);
    }
    let data = serde_json::value::to_raw_value(&object).map_err(StoreError::backend)?;
    Ok(Arc::new(RecordedEvent { data, ..RecordedEvent::clone(&record) }))
}

/// Decrypts every record of `events`.
fn open_all(keys: Arc<dyn KeyStore>, events: EventStream<'_>) -> EventStream<'_> {
    events
        .then(move |item| {
            let keys = Arc::clone(&keys);
            async move {
                match item {
                    Ok(record) => open_record(&*keys, record).await,
                    Err(error) => Err(error),
                }
            }
        })
        .boxed()
}

#[async_trait]
impl<S: EventStore> EventStore for CryptoStore<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let (sealed, plain) = self.seal_all(stream, events).await?;
        let records = self.inner.append(stream, expected, sealed).await?;
        Ok(with_plain_data(records, plain))
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let (sealed_parts, plain_parts) = self.seal_parts(appends).await?;
        let parts = self.inner.append_many(sealed_parts).await?;
        Ok(parts.into_iter().zip(plain_parts).map(|(records, plain)| with_plain_data(records, plain)).collect())
    }

    /// Seals the events and appends them with the condition of the inner
    /// store: tags are never encrypted, so the condition means the same.
    async fn append_if(
        &self,
        condition: crate::query::AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let (sealed_parts, plain_parts) = self.seal_parts(appends).await?;
        let parts = self.inner.append_if(condition, sealed_parts).await?;
        Ok(parts.into_iter().zip(plain_parts).map(|(records, plain)| with_plain_data(records, plain)).collect())
    }

    /// The inner store's read (with its tag index, if it has one), opened.
    fn read_by_query<'a>(&'a self, query: &'a crate::query::Query, from_position: u64) -> EventStream<'a> {
        open_all(Arc::clone(&self.keys), self.inner.read_by_query(query, from_position))
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        open_all(Arc::clone(&self.keys), self.inner.read_stream(stream, from_version))
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        open_all(Arc::clone(&self.keys), self.inner.read_all(from_position, filter))
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        open_all(Arc::clone(&self.keys), self.inner.subscribe(from_position, filter))
    }

    /// The inner store's event, opened.
    async fn read_event(&self, id: uuid::Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        let Some(record) = self.inner.read_event(id).await? else { return Ok(None) };
        let one: EventStream<'_> = Box::pin(futures_util::stream::once(async move { Ok(record) }));
        open_all(Arc::clone(&self.keys), one).next().await.transpose()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head_position().await
    }

    /// The number of `forget`s of this store (and its clones) plus the
    /// inner store's generation.
    fn erasure_generation(&self) -> u64 {
        self.erasure.generation.load(Ordering::Acquire).wrapping_add(self.inner.erasure_generation())
    }

    fn declare_personal_data(&self, data: &'static [PersonalData]) -> bool {
        let mut declared = self.declared.write().unwrap_or_else(PoisonError::into_inner);
        for event in data {
            declared.entry(event.event_type).or_insert(event.fields);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    use super::*;

    #[test]
    fn keys_never_show_their_material() {
        let key = DataKey::generate();
        let shown = format!("{key:?} {key:#?}");
        for byte_text in [format!("{:?}", key.material()), BASE64.encode(key.material())] {
            assert!(!shown.contains(&byte_text), "{shown}");
        }
        assert!(DataKey::from_parts(key.id(), &[0; 31]).unwrap_err().to_string().contains("31 bytes"));
    }
}
