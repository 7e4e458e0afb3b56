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
//!   [`CryptoStore::register`]; reads, global reads and subscriptions
//!   decrypt, looking the key up for every encrypted event (no cache, so
//!   a deletion takes effect on the next event read, even in a running
//!   subscription).
//! - **Keys never show**: [`DataKey`]'s `Debug` prints its id only; it has
//!   no `Display` and no `Serialize`; its material is zeroed on drop.
//!
//! **What it does not cover**: data you copied out of the events before
//! the deletion. Snapshots ([`crate::SnapshotStore`]) and read models hold
//! decrypted state: delete the subject's snapshots and rebuild the
//! projections that kept personal data. Database backups keep deleted keys
//! until they expire. An event type that is not registered is written in
//! plain text.
//!
//! ```
//! use futures_util::StreamExt;
//! use orchestrix::crypto::CryptoStore;
//! use orchestrix::memory::{InMemoryEventStore, InMemoryKeyStore};
//! use orchestrix::prelude::*;
//! use orchestrix::{EventStore, ExpectedVersion, NewEvent, StreamId};
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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::event::Event;
use crate::store::{EventFilter, EventStore, EventStream, ExpectedVersion, KeyStore, StreamAppend};
use crate::stream::{truncate_for_message, StreamId};

/// The key under which an encrypted value is stored in place of a
/// personal field's value.
pub const ENCRYPTED_MARKER: &str = "$orchestrix.encrypted";

/// The length of a [`DataKey`]'s material: AES-256.
pub const KEY_LEN: usize = 32;

/// One personal field of a stored event type and the field that names its
/// data subject. Generated by `#[event(personal(subject = ...))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersonalField {
    /// The field's JSON name.
    pub name: &'static str,
    /// The JSON name of the field whose value identifies the data subject.
    pub subject: &'static str,
}

/// The personal fields of one stored event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersonalData {
    /// The stored type name.
    pub event_type: &'static str,
    /// Its personal fields.
    pub fields: &'static [PersonalField],
}

/// A data subject's AES-256 key: an id (recorded beside every value it
/// encrypts) and 32 bytes of material, zeroed on drop.
///
/// `Debug` shows the id only; there is no `Display` or `Serialize`.
///
/// ```
/// use orchestrix::crypto::DataKey;
///
/// let key = DataKey::generate();
/// let shown = format!("{key:?}");
/// assert!(shown.contains(&key.id().to_string()) && shown.contains("redacted"));
/// ```
#[derive(Clone)]
pub struct DataKey {
    id: Uuid,
    material: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// A new random key (from the operating system's generator) with a new
    /// UUID v7 id.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut material = Zeroizing::new([0_u8; KEY_LEN]);
        material.copy_from_slice(&key);
        Self { id: Uuid::now_v7(), material }
    }

    /// A key from stored parts (for [`KeyStore`] adapters). Material of
    /// another length than [`KEY_LEN`] is [`StoreError::Backend`]; the
    /// message names the length, never the bytes.
    pub fn from_parts(id: Uuid, material: &[u8]) -> Result<Self, StoreError> {
        let bytes: [u8; KEY_LEN] = material.try_into().map_err(|_| {
            StoreError::Backend(format!("key {id} has {} bytes of material; expected {KEY_LEN}", material.len()).into())
        })?;
        Ok(Self { id, material: Zeroizing::new(bytes) })
    }

    /// The key's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The key material, for [`KeyStore`] adapters to store. Never log it.
    pub fn material(&self) -> &[u8; KEY_LEN] {
        &self.material
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.material.as_ref().into())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).field("material", &"<redacted>").finish()
    }
}

/// The associated data that binds a ciphertext to its place.
fn associated_data(event_type: &str, field: &str, subject: &str, key: Uuid) -> Vec<u8> {
    format!("orchestrix-personal-v1\0{event_type}\0{field}\0{subject}\0{key}").into_bytes()
}

/// Encrypts one field's JSON value into its stored form.
fn seal(key: &DataKey, event_type: &str, field: &str, subject: &str, value: &Value) -> Result<Value, StoreError> {
    let plaintext = Zeroizing::new(serde_json::to_vec(value).map_err(|e| StoreError::InvalidInput(e.to_string()))?);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = associated_data(event_type, field, subject, key.id);
    let ciphertext = key
        .cipher()
        .encrypt(&nonce, Payload { msg: &plaintext, aad: &aad })
        .map_err(|_| StoreError::InvalidInput(format!("field `{field}` of `{event_type}` could not be encrypted")))?;
    let mut sealed = Map::new();
    sealed.insert("key".to_owned(), Value::String(key.id.to_string()));
    sealed.insert("subject".to_owned(), Value::String(subject.to_owned()));
    sealed.insert("nonce".to_owned(), Value::String(BASE64.encode(nonce)));
    sealed.insert("data".to_owned(), Value::String(BASE64.encode(ciphertext)));
    let mut outer = Map::new();
    outer.insert(ENCRYPTED_MARKER.to_owned(), Value::Object(sealed));
    Ok(Value::Object(outer))
}

/// The parts of a stored encrypted value.
struct Sealed {
    key: Uuid,
    subject: String,
    nonce: Vec<u8>,
    data: Vec<u8>,
}

impl Sealed {
    /// `Some` if `value` is an encrypted value; `Some(Err)` if it claims to
    /// be one but is malformed.
    fn parse(value: &Value) -> Option<Result<Self, String>> {
        let sealed = value.as_object().filter(|o| o.len() == 1)?.get(ENCRYPTED_MARKER)?;
        let text = |name: &str| sealed.get(name).and_then(Value::as_str).ok_or_else(|| format!("no `{name}`"));
        let parse = || -> Result<Self, String> {
            Ok(Self {
                key: text("key")?.parse().map_err(|e| format!("bad key id: {e}"))?,
                subject: text("subject")?.to_owned(),
                nonce: BASE64.decode(text("nonce")?).map_err(|e| format!("bad nonce: {e}"))?,
                data: BASE64.decode(text("data")?).map_err(|e| format!("bad data: {e}"))?,
            })
        };
        Some(parse())
    }

    fn open(&self, key: &DataKey, event_type: &str, field: &str) -> Result<Value, String> {
        if self.nonce.len() != 12 {
            return Err(format!("the nonce has {} bytes, not 12", self.nonce.len()));
        }
        let aad = associated_data(event_type, field, &self.subject, self.key);
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(Nonce::from_slice(&self.nonce), Payload { msg: &self.data, aad: &aad })
                .map_err(|_| "the ciphertext does not authenticate under its key".to_owned())?,
        );
        serde_json::from_slice(&plaintext).map_err(|e| format!("the plaintext is not JSON: {e}"))
    }
}

/// The subject id in `object`'s field `name`: a string, or a number or
/// boolean as text.
fn subject_of(object: &Map<String, Value>, name: &str, event_type: &str) -> Result<String, StoreError> {
    match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        other => Err(StoreError::InvalidInput(format!(
            "`{event_type}` holds personal data of the subject in field `{name}`, but that field is {}: \
             personal data needs a subject (a non-empty string or a number)",
            match other {
                None => "missing".to_owned(),
                Some(value) => format!("`{}`", truncate_for_message(&value.to_string())),
            }
        ))),
    }
}

/// An [`EventStore`] that encrypts the personal fields of registered event
/// types on the way in and decrypts them on the way out (see the
/// [module documentation](self)).
///
/// Cloning is as cheap as cloning the inner store.
#[derive(Clone)]
pub struct CryptoStore<S> {
    inner: S,
    keys: Arc<dyn KeyStore>,
    personal: Arc<HashMap<&'static str, Vec<PersonalField>>>,
}

impl<S: fmt::Debug> fmt::Debug for CryptoStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&&str> = self.personal.keys().collect();
        types.sort_unstable();
        f.debug_struct("CryptoStore")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .field("personal_event_types", &types)
            .finish()
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
        }
    }

    /// Encrypts the personal fields of `E`'s stored types from now on.
    #[must_use]
    pub fn register<E: Event>(mut self) -> Self {
        let personal = Arc::make_mut(&mut self.personal);
        for data in E::personal_data() {
            personal.insert(data.event_type, data.fields.to_vec());
        }
        self
    }

    /// The personal fields of a stored type, if it is registered.
    pub fn personal_fields(&self, event_type: &str) -> Option<&[PersonalField]> {
        self.personal.get(event_type).map(Vec::as_slice)
    }

    /// The wrapped store, which holds the encrypted form.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Forgets a data subject: deletes its key, so that every personal
    /// field encrypted for it reads back as `null` from now on. Returns
    /// whether it had a key.
    pub async fn forget(&self, subject: &str) -> Result<bool, StoreError> {
        let deleted = self.keys.delete_key(subject).await?;
        tracing::info!(deleted, "orchestrix: a data subject's key was deleted (crypto-shredding)");
        Ok(deleted)
    }

    /// Encrypts the personal fields of `event`, if its type is registered.
    async fn seal_event(&self, mut event: NewEvent) -> Result<NewEvent, StoreError> {
        let Some(fields) = self.personal.get(event.event_type.as_str()) else { return Ok(event) };
        let mut object: Map<String, Value> = serde_json::from_str(event.data.get()).map_err(|error| {
            StoreError::InvalidInput(format!(
                "`{}` has personal fields, so its data must be a JSON object: {error}",
                event.event_type
            ))
        })?;
        let mut keys: HashMap<String, DataKey> = HashMap::new();
        for field in fields {
            if object.get(field.name).is_none_or(Value::is_null) {
                continue;
            }
            let subject = subject_of(&object, field.subject, &event.event_type)?;
            let key = if let Some(key) = keys.get(&subject) {
                key.clone()
            } else {
                let key = self.keys.key_or_create(&subject).await?;
                keys.insert(subject.clone(), key.clone());
                key
            };
            let value = object.get(field.name).unwrap_or(&Value::Null);
            let sealed = seal(&key, &event.event_type, field.name, &subject, value)?;
            object.insert(field.name.to_owned(), sealed);
        }
        event.data = serde_json::value::to_raw_value(&object).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        Ok(event)
    }

    async fn seal_all(&self, events: Vec<NewEvent>) -> Result<(Vec<NewEvent>, Vec<NewEvent>), StoreError> {
        let mut sealed = Vec::with_capacity(events.len());
        for event in &events {
            sealed.push(self.seal_event(event.clone()).await?);
        }
        Ok((sealed, events))
    }

    async fn seal_parts(&self, appends: Vec<StreamAppend>) -> Result<SealedParts, StoreError> {
        let mut sealed_parts = Vec::with_capacity(appends.len());
        let mut plain_parts = Vec::with_capacity(appends.len());
        for append in appends {
            let (sealed, plain) = self.seal_all(append.events).await?;
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
    let corrupt = |field: &str, reason: String| StoreError::Corrupt {
        stream: record.stream.clone(),
        version: record.stream_version,
        reason: format!("encrypted field `{field}`: {reason}"),
    };
    let mut keys_seen: HashMap<String, Option<DataKey>> = HashMap::new();
    let mut changed = false;
    for (field, value) in &mut object {
        let Some(sealed) = Sealed::parse(value) else { continue };
        let sealed = sealed.map_err(|reason| corrupt(field, reason))?;
        let key = if let Some(key) = keys_seen.get(&sealed.subject) {
            key.clone()
        } else {
            let key = keys.key(&sealed.subject).await?;
            keys_seen.insert(sealed.subject.clone(), key.clone());
            key
        };
        *value = match key {
            Some(key) if key.id == sealed.key => {
                sealed.open(&key, &record.event_type, field).map_err(|reason| corrupt(field, reason))?
            }
            // The subject was forgotten (or its key replaced): the
            // documented placeholder.
            _ => Value::Null,
        };
        changed = true;
    }
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
        let (sealed, plain) = self.seal_all(events).await?;
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

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head_position().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let key = DataKey::generate();
        let value = serde_json::json!({"street": "1 Main St", "zip": 12345});
        let sealed = seal(&key, "Registered", "address", "c-1", &value).unwrap();
        assert!(!sealed.to_string().contains("Main St"));
        let parsed = Sealed::parse(&sealed).unwrap().unwrap();
        assert_eq!(parsed.open(&key, "Registered", "address").unwrap(), value);
        assert!(parsed.open(&key, "Registered", "email").is_err(), "moved to another field");
        assert!(parsed.open(&key, "Moved", "address").is_err(), "moved to another event type");
        assert!(parsed.open(&DataKey::generate(), "Registered", "address").is_err(), "another key");
        let mut tampered = Sealed::parse(&sealed).unwrap().unwrap();
        tampered.subject = "c-2".to_owned();
        assert!(tampered.open(&key, "Registered", "address").is_err(), "another subject");
        let mut flipped = Sealed::parse(&sealed).unwrap().unwrap();
        flipped.data[0] ^= 1;
        assert!(flipped.open(&key, "Registered", "address").is_err(), "a flipped bit");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = DataKey::generate();
        let value = Value::String("ada@example.com".to_owned());
        assert_ne!(seal(&key, "T", "f", "s", &value).unwrap(), seal(&key, "T", "f", "s", &value).unwrap());
    }

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
