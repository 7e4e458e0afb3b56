//! What travels with an event: its position in the store and its metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{DecodeError, Error, StoreError};
use crate::event::{validate_event_type, Event};
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
#[non_exhaustive]
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
    /// tag a field with personal data. An event stored without a tag is
    /// invisible to every query by that tag; see [`crate::query`] ("Untagged
    /// events") and [`crate::retag`] for finding and re-tagging such events.
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

    /// Sets the W3C Trace Context `traceparent` and, if given, `tracestate`.
    pub fn with_trace(mut self, traceparent: impl Into<String>, tracestate: Option<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self.tracestate = tracestate;
        self
    }

    /// Adds a free-form header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

/// The deepest nesting of arrays and objects a store accepts in an event's
/// data (`{"a":[1]}` is 2 deep, a scalar 0): deep enough for any event,
/// below serde_json's recursion limit (128) that typed decoding hits, and
/// far below what makes PostgreSQL's jsonb fail with "stack depth limit
/// exceeded". Checked by [`validate_new_event`].
pub const MAX_JSON_DEPTH: usize = 100;

/// Refuses an event no adapter can store and read back unchanged, before
/// anything is stored: every [`crate::store::EventStore`] calls it for every
/// appended event (through [`crate::store::validate_append`] or
/// [`crate::store::validate_append_many`]), so every backend refuses the
/// same events with the same [`StoreError::InvalidInput`].
///
/// - the event type, as [`validate_event_type`];
/// - the data: JSON whose strings (and object keys) are Unicode text
///   without NUL (no lone surrogate escape such as `"\ud800"`, no
///   `"\u0000"`: PostgreSQL's jsonb refuses both, other stores would keep
///   what no reader can decode), whose numbers fit an `f64`, and which
///   nests at most [`MAX_JSON_DEPTH`] arrays and objects;
/// - the metadata: no NUL in the tenant, trace context or headers, and
///   every tag valid ([`crate::query::validate_tag`]).
///
/// ```
/// use orchestrix::{envelope::{validate_new_event, NewEvent}, StoreError};
/// use serde_json::value::RawValue;
///
/// let event = |data: &str| NewEvent::new("Noted", 1, RawValue::from_string(data.into()).unwrap());
/// assert!(validate_new_event(&event(r#"{"text":"fine"}"#)).is_ok());
/// assert!(matches!(validate_new_event(&event(r#"{"text":"\ud800"}"#)), Err(StoreError::InvalidInput(_))));
/// assert!(matches!(validate_new_event(&event(r#"{"text":"\u0000"}"#)), Err(StoreError::InvalidInput(_))));
/// ```
pub fn validate_new_event(event: &NewEvent) -> Result<(), StoreError> {
    validate_event_type(&event.event_type)?;
    let refuse = |what: &str, problem: &dyn std::fmt::Display| {
        StoreError::InvalidInput(format!("event `{}`: {what} {problem}", truncate_for_message(&event.event_type)))
    };
    validate_json(event.data.get()).map_err(|error| refuse("data cannot be stored:", &error))?;
    let metadata = &event.metadata;
    let texts = [
        ("tenant", metadata.tenant.as_deref()),
        ("traceparent", metadata.traceparent.as_deref()),
        ("tracestate", metadata.tracestate.as_deref()),
    ];
    for (field, text) in texts.into_iter().filter_map(|(field, text)| Some((field, text?))) {
        if text.contains('\0') {
            return Err(refuse(&format!("metadata `{field}`"), &"contains a NUL character"));
        }
    }
    for (key, value) in &metadata.headers {
        if key.contains('\0') || value.contains('\0') {
            let key = truncate_for_message(key).replace('\0', "\\0");
            return Err(refuse(&format!("header `{key}`"), &"contains a NUL character"));
        }
    }
    for tag in &metadata.tags {
        crate::query::validate_tag(tag)?;
    }
    Ok(())
}

/// Checks the JSON rules of [`validate_new_event`] by walking the text once,
/// without building a tree.
fn validate_json(json: &str) -> Result<(), serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    if plainly_valid(json.as_bytes()) {
        return Ok(());
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    JsonCheck { depth: 0 }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// The longest number [`plainly_valid`] lets through unparsed: 300
/// characters hold at most 300 digits, below `f64::MAX` (about 1.8e308).
const PLAIN_NUMBER_LEN: usize = 300;

/// Whether valid JSON text (as every `RawValue` holds) surely meets the
/// rules of [`validate_new_event`], found in one pass over its bytes:
/// no backslash (so no escape at all, neither `\u0000` nor a lone
/// surrogate), no number with an exponent or longer than
/// [`PLAIN_NUMBER_LEN`] (so every number fits an `f64`), and at most
/// [`MAX_JSON_DEPTH`] levels of nesting. `false` means "not sure": the
/// full walk ([`JsonCheck`]) decides. What serialized events hold
/// (short strings and integers) takes this path.
fn plainly_valid(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut number_len) = (0usize, false, 0usize);
    for &byte in json {
        if in_string {
            match byte {
                b'"' => in_string = false,
                b'\\' => return false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return false;
                }
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                number_len += 1;
                if number_len > PLAIN_NUMBER_LEN {
                    return false;
                }
                continue;
            }
            b'e' | b'E' if number_len > 0 => return false,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        number_len = 0;
    }
    true
}

/// A serde visitor that accepts any JSON value meeting the rules of
/// [`validate_new_event`], `depth` arrays and objects deep.
#[derive(Clone, Copy)]
struct JsonCheck {
    depth: usize,
}

impl JsonCheck {
    /// The check of a value inside this one's array or object.
    fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(format_args!("it nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")));
        }
        Ok(Self { depth: self.depth + 1 })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonCheck {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonCheck {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        if text.contains('\0') {
            return Err(E::custom(format_args!(
                "the string `{}` contains NUL (`\\u0000`), which PostgreSQL's jsonb refuses",
                truncate_for_message(text).replace('\0', "\\u0000")
            )));
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An event ready to be appended: serialized, not yet positioned.
///
/// The caller gives the event its id ([`NewEvent::encode`] makes a new
/// UUID v7); the store assigns the stream version, global position and
/// time. Ids are unique across a store, and they make an append safe to
/// retry: an append whose events' ids are already stored, in the same
/// stream and order, is answered with the stored events and writes nothing
/// (ADR 0027, [`crate::store::EventStore::append`]). So keep the `NewEvent`s of
/// an append whose outcome is unknown, and retry with them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewEvent {
    /// The event's id, unique across the store (UUID v7 by default, so
    /// that ids sort by time and the stores' id indexes grow at one end).
    pub id: Uuid,
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
    /// An event of type `event_type` at `schema_version` whose data is
    /// already serialized, with a new UUID v7 id and empty metadata
    /// ([`NewEvent::with_id`] and [`NewEvent::with_metadata`] set them).
    /// Nothing is checked here: the store's append refuses what it cannot
    /// store ([`validate_new_event`]).
    ///
    /// ```
    /// use orchestrix::{envelope::NewEvent, Metadata};
    /// use serde_json::value::RawValue;
    ///
    /// let data = RawValue::from_string(r#"{"amount":5}"#.into()).unwrap();
    /// let event = NewEvent::new("Deposited", 1, data).with_metadata(Metadata::default().with_tag("account:1"));
    /// assert_eq!(event.event_type, "Deposited");
    /// assert_eq!(event.tags(), ["account:1"]);
    /// ```
    pub fn new(event_type: impl Into<String>, schema_version: u32, data: Box<RawValue>) -> Self {
        Self::from_parts(Uuid::now_v7(), event_type.into(), schema_version, data, Metadata::default())
    }

    /// An event with every part given: what an adapter decoding a stored
    /// event, or a copy, builds. Unlike [`NewEvent::new`] followed by
    /// [`NewEvent::with_id`], it makes no id only to replace it (a UUID v7
    /// costs a clock read and random bits: a fifth of a catch-up's time
    /// per event on PostgreSQL).
    pub fn from_parts(
        id: Uuid,
        event_type: String,
        schema_version: u32,
        data: Box<RawValue>,
        metadata: Metadata,
    ) -> Self {
        Self { id, event_type, schema_version, data, metadata }
    }

    /// The same event with `metadata` in place of its own.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Serializes a typed event, adding its tags ([`Event::tags`]) to
    /// those of `metadata`. The event gets a new UUID v7 id; [`NewEvent::with_id`] gives it
    /// another.
    pub fn encode<E: Event>(event: &E, metadata: Metadata) -> Result<Self, serde_json::Error> {
        Self::encode_with_id(event, metadata, Uuid::now_v7())
    }

    /// [`NewEvent::encode`] with the id `id`.
    fn encode_with_id<E: Event>(event: &E, metadata: Metadata, id: Uuid) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.encode()?,
            metadata: metadata.with_tags(event.tags()),
        })
    }

    /// The same event with the id `id` (a retry of an append must repeat
    /// the ids of the first attempt; see [`crate::idempotency`]).
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Serializes typed events, each with `metadata` plus its own tags: the
    /// one encoder of the repository (so of the command bus) and of
    /// [`crate::decision::Decision`]s. A failure is [`Error::Serialize`].
    pub(crate) fn encode_all<E: Event>(
        events: impl IntoIterator<Item = impl std::borrow::Borrow<E>>,
        metadata: &Metadata,
    ) -> Result<Vec<Self>, Error> {
        Self::encode_all_with_ids::<E>(events, metadata, |_| Uuid::now_v7())
    }

    /// [`NewEvent::encode_all`] with the id of each event (by its index)
    /// from `event_id`: no UUID v7 is made only to be replaced.
    pub(crate) fn encode_all_with_ids<E: Event>(
        events: impl IntoIterator<Item = impl std::borrow::Borrow<E>>,
        metadata: &Metadata,
        event_id: impl Fn(u32) -> Uuid,
    ) -> Result<Vec<Self>, Error> {
        events
            .into_iter()
            .zip(0..)
            .map(|(event, index)| Self::encode_with_id(event.borrow(), metadata.clone(), event_id(index)))
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
#[non_exhaustive]
pub struct RecordedEvent {
    /// The id the appender gave it ([`NewEvent::id`]), unique across the
    /// store: UUID v7 by default, so ids sort by time; the events of a
    /// command with a command id get ids derived from it (UUID v8 that
    /// start with the command id's timestamp; ADR 0027).
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
    /// `event` as a store records it: in `stream` at `stream_version`, at
    /// `global_position` of the log, at `recorded_at`. Adapters build what
    /// they read back with it.
    pub fn new(
        event: NewEvent,
        stream: StreamId,
        stream_version: u64,
        global_position: u64,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let NewEvent { id, event_type, schema_version, data, metadata } = event;
        Self { id, stream, stream_version, global_position, recorded_at, event_type, schema_version, data, metadata }
    }

    /// The event's tags ([`Metadata::tags`]).
    pub fn tags(&self) -> &[String] {
        &self.metadata.tags
    }

    /// The same event as a [`NewEvent`] to append to another store (a copy,
    /// an import: ADR 0041): its id, type, schema version, data and
    /// metadata. The store it goes to assigns version, position and time;
    /// keeping the id makes the append safe to repeat (ADR 0027).
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            id: self.id,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            data: self.data.clone(),
            metadata: self.metadata.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// The one-pass check never accepts what the full walk refuses, and
    /// takes the common shapes without the walk.
    #[test]
    fn the_fast_json_check_accepts_only_what_the_full_walk_accepts() {
        let cases = [
            r#"{"owner":"Ada Lovelace","amount":12,"ok":true,"none":null,"f":-1.5}"#.to_owned(),
            r#"{"text":"\u0000"}"#.to_owned(),
            r#"{"text":"\ud800"}"#.to_owned(),
            r#"{"\u0000":1}"#.to_owned(),
            r#"{"text":"a \"quoted\" word"}"#.to_owned(),
            r#"{"big":1e400}"#.to_owned(),
            r#"{"small":1e-400,"fine":2E5}"#.to_owned(),
            format!(r#"{{"long":{}}}"#, "9".repeat(400)),
            format!(r#"{{"long":{}}}"#, "9".repeat(300)),
            format!(r#"{{"long":{}}}"#, "9".repeat(309)),
            r#"{"e":"1e400","[[[":"]]]"}"#.to_owned(),
            deep(MAX_JSON_DEPTH),
            deep(MAX_JSON_DEPTH + 1),
            "[]".to_owned(),
            "\"plain\"".to_owned(),
        ];
        for json in &cases {
            let full = {
                use serde::de::DeserializeSeed as _;
                let mut deserializer = serde_json::Deserializer::from_str(json);
                JsonCheck { depth: 0 }.deserialize(&mut deserializer).and_then(|()| deserializer.end()).is_ok()
            };
            if plainly_valid(json.as_bytes()) {
                assert!(full, "the fast check accepted what the full walk refuses: {json}");
            }
            assert_eq!(validate_json(json).is_ok(), full, "{json}");
        }
        assert!(plainly_valid(cases[0].as_bytes()), "a plain event takes the fast path");
        assert!(plainly_valid(deep(MAX_JSON_DEPTH).as_bytes()));
        assert!(!plainly_valid(deep(MAX_JSON_DEPTH + 1).as_bytes()));
        assert!(validate_json(&deep(MAX_JSON_DEPTH)).is_ok());
        assert!(validate_json(&deep(MAX_JSON_DEPTH + 1)).is_err());
    }
}
