//! What travels with an event: its position in the store and its metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{DecodeError, Error, StoreError};
use crate::event::Event;
use crate::stream::{truncate_for_message, StreamId};

/// Context recorded beside every event: who asked for it, why, and which
/// trace it belongs to.
///
/// ```
/// use orchestrix::Metadata;
///
/// let meta = Metadata::default().with_tenant("acme").with_header("source", "import");
/// assert_eq!(meta.tenant.as_deref(), Some("acme"));
/// assert_eq!(meta.headers["source"], "import");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every message that stems from one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the command or event that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// W3C Trace Context `traceparent` of the span that recorded the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C Trace Context `tracestate` that accompanied `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The tenant on whose behalf the event was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Free-form headers of the application's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The event's tags (`course:42`), which [`crate::query::Query`]s
    /// select events by: computed from the fields marked `#[event(tag)]`
    /// when the event is encoded ([`NewEvent::encode`]), sorted, without
    /// duplicates. Not encrypted by a [`crate::crypto::CryptoStore`]: never
    /// tag a field with personal data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Metadata {
    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a tag (`course:42`), keeping the tags sorted and unique.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if let Err(at) = self.tags.binary_search(&tag) {
            self.tags.insert(at, tag);
        }
        self
    }

    /// Adds several tags, keeping the tags sorted and unique.
    pub fn with_tags<T: Into<String>>(self, tags: impl IntoIterator<Item = T>) -> Self {
        tags.into_iter().fold(self, Self::with_tag)
    }

    /// Adds a free-form header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

/// The longest event type name a store accepts, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 10 * 1024;

/// Refuses event type names that no adapter can store faithfully: empty,
/// longer than [`MAX_EVENT_TYPE_LEN`], or containing NUL. Every
/// [`crate::EventStore`] calls it on append.
pub fn validate_event_type(event_type: &str) -> Result<(), StoreError> {
    if event_type.is_empty() {
        return Err(StoreError::InvalidInput("event type must not be empty".to_owned()));
    }
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(StoreError::InvalidInput(format!(
            "event type is {} bytes long; the limit is {MAX_EVENT_TYPE_LEN}",
            event_type.len()
        )));
    }
    if event_type.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "event type `{}` contains a NUL character",
            truncate_for_message(event_type).replace('\0', "\\0")
        )));
    }
    Ok(())
}

/// An event ready to be appended: serialized, not yet positioned.
///
/// The store assigns the id, stream version, global position and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The stable type name, for example `AccountOpened`.
    pub event_type: String,
    /// The schema version of `data`.
    pub schema_version: u32,
    /// The event's fields as a JSON object, without any enum tag.
    pub data: Box<RawValue>,
    /// Metadata stored beside the event.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Serializes a typed event, adding its tags ([`Event::tags`]) to
    /// those of `metadata`.
    pub fn encode<E: Event>(event: &E, metadata: Metadata) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.encode()?,
            metadata: metadata.with_tags(event.tags()),
        })
    }

    /// Serializes typed events, each with `metadata` plus its own tags: the
    /// one encoder of the repository (so of the command bus) and of
    /// [`crate::Decision`]s. A failure is [`Error::Serialize`].
    pub(crate) fn encode_all<E: Event>(
        events: impl IntoIterator<Item = impl std::borrow::Borrow<E>>,
        metadata: &Metadata,
    ) -> Result<Vec<Self>, Error> {
        events
            .into_iter()
            .map(|event| Self::encode(event.borrow(), metadata.clone()))
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Serialize { what: "an event", source })
    }

    /// The event's tags ([`Metadata::tags`]).
    pub fn tags(&self) -> &[String] {
        &self.metadata.tags
    }
}

/// An event as stored: serialized data plus everything the store assigned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Unique id (UUID v7, so ids sort by time).
    pub id: Uuid,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Position within its stream, starting at 1 and without gaps.
    pub stream_version: u64,
    /// Position in the store's global log, starting at 1; strictly increasing
    /// in the order readers observe, though not necessarily without gaps.
    pub global_position: u64,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
    /// The stable type name.
    pub event_type: String,
    /// The schema version the data was written with.
    pub schema_version: u32,
    /// The event's fields as JSON.
    pub data: Box<RawValue>,
    /// Metadata recorded with the event.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// The event's tags ([`Metadata::tags`]).
    pub fn tags(&self) -> &[String] {
        &self.metadata.tags
    }

    /// The tenant the event was recorded for, if any: its
    /// [`Metadata::tenant`], which a [`crate::tenant::TenantStore`] stamps
    /// on every event it writes.
    pub fn tenant(&self) -> Option<&str> {
        self.metadata.tenant.as_deref()
    }

    /// Decodes the data into a typed event, upcasting older schema versions.
    ///
    /// The error names the stream, version and type of the offending event.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        E::decode(&self.event_type, self.schema_version, &self.data).map_err(|kind| DecodeError {
            stream: self.stream.clone(),
            stream_version: self.stream_version,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            kind,
        })
    }

    /// Decodes the data and pairs it with this event's position and metadata.
    pub fn to_envelope<E: Event>(self: &Arc<Self>) -> Result<Envelope<E>, DecodeError> {
        Ok(Envelope { event: self.decode()?, record: Arc::clone(self) })
    }
}

/// A typed event together with the record it was stored as.
///
/// Dereferences to the [`RecordedEvent`], so `envelope.global_position`
/// and `envelope.metadata` read naturally.
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// The decoded event.
    pub event: E,
    /// The stored record: ids, positions, time, metadata.
    pub record: Arc<RecordedEvent>,
}

impl<E> std::ops::Deref for Envelope<E> {
    type Target = RecordedEvent;

    fn deref(&self) -> &RecordedEvent {
        &self.record
    }
}
