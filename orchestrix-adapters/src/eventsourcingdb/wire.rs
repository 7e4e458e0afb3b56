//! The JSON EventSourcingDB speaks, and how Orchestrix's records map onto it.
//!
//! Everything here is pure: the wire-format tests pin these shapes.

use chrono::{DateTime, Utc};
use orchestrix::envelope::NewEvent;
use orchestrix::{Metadata, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::api::ApiVersion;

/// The last segment of the subject that holds a stream's snapshots.
pub(crate) const SNAPSHOT_SEGMENT: &str = "snapshots";

/// An event as the adapter hands it to `write-events`: no id, no time (the
/// server assigns both).
#[derive(Debug, Serialize)]
pub(crate) struct EventCandidate<'a> {
    pub(crate) source: &'a str,
    pub(crate) subject: &'a str,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) data: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tracestate: Option<&'a str>,
}

/// A write precondition, checked by the server atomically with the write.
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "payload")]
pub(crate) enum Precondition<'a> {
    /// The subject has no event yet.
    #[serde(rename = "isSubjectPristine")]
    SubjectPristine { subject: &'a str },
    /// The subject's last event has this id.
    #[serde(rename = "isSubjectOnEventId")]
    SubjectOnEventId {
        subject: &'a str,
        #[serde(rename = "eventId")]
        event_id: &'a str,
    },
    /// The EventQL query answers `true` (one boolean row).
    #[serde(rename = "isEventQlQueryTrue")]
    EventQlQueryTrue { query: &'a str },
}

/// The body of `write-events`.
#[derive(Debug, Serialize)]
pub(crate) struct WriteEvents<'a> {
    pub(crate) events: Vec<EventCandidate<'a>>,
    /// `None` leaves the field out: API v2 writes without preconditions
    /// that way, API v1 always sends the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preconditions: Option<Vec<Precondition<'a>>>,
}

impl<'a> WriteEvents<'a> {
    /// The body for `version`.
    pub(crate) fn new(
        version: ApiVersion,
        events: Vec<EventCandidate<'a>>,
        preconditions: Vec<Precondition<'a>>,
    ) -> Self {
        let preconditions = (version == ApiVersion::V1 || !preconditions.is_empty()).then_some(preconditions);
        Self { events, preconditions }
    }
}

/// A bound of a read, by event id.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bound {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) id: String,
}

impl Bound {
    pub(crate) fn inclusive(id: u64) -> Self {
        Self { kind: "inclusive", id: id.to_string() }
    }
}

/// `fromLatestEvent`: start at the latest event of a type on a subject.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FromLatestEvent {
    pub(crate) subject: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) if_event_is_missing: &'static str,
}

/// The options of `read-events` (and, without `order`, of `observe-events`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadOptions {
    pub(crate) recursive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lower_bound: Option<Bound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from_latest_event: Option<FromLatestEvent>,
}

/// The body of `read-events` and `observe-events`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReadEvents {
    pub(crate) subject: String,
    pub(crate) options: ReadOptions,
}

/// An event as the server returns it (a CloudEvent plus the server's
/// fields; those the adapter does not use are ignored).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) id: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) subject: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) data: Box<RawValue>,
    #[serde(default)]
    pub(crate) traceparent: Option<String>,
    #[serde(default)]
    pub(crate) tracestate: Option<String>,
}

/// What the adapter puts in an event's `data`: the event's id (ADR 0033),
/// its own fields, its version in its stream and the metadata
/// EventSourcingDB has no field for (see ADR 0012).
/// Pushes onto `candidates` the events of one subject, numbered from
/// `first`, each with its server type from `types`: the one place an
/// append encodes an event for the server.
pub(crate) fn push_candidates<'a>(
    candidates: &mut Vec<EventCandidate<'a>>,
    source: &'a str,
    subject: &'a str,
    first: u64,
    events: &'a [NewEvent],
    types: &[String],
) -> Result<(), StoreError> {
    for (offset, (event, event_type)) in events.iter().zip(types).enumerate() {
        let (traceparent, tracestate, metadata) = split_metadata(&event.metadata);
        let envelope =
            EnvelopeOut { event_id: event.id, stream_version: first + offset as u64, data: &event.data, metadata };
        let data = serde_json::value::to_raw_value(&envelope)
            .map_err(|e| StoreError::InvalidInput(format!("cannot serialize the event envelope: {e}")))?;
        candidates.push(EventCandidate {
            source,
            subject,
            event_type: event_type.clone(),
            data,
            traceparent,
            tracestate,
        });
    }
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvelopeOut<'a> {
    pub(crate) event_id: Uuid,
    pub(crate) stream_version: u64,
    pub(crate) data: &'a RawValue,
    #[serde(skip_serializing_if = "is_default")]
    pub(crate) metadata: Metadata,
}

fn is_default(metadata: &Metadata) -> bool {
    *metadata == Metadata::default()
}

/// The envelope read back. Events written before ADR 0033 have no
/// `eventId`; their id is derived from the server's ([`event_uuid`]).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvelopeIn {
    #[serde(default)]
    pub(crate) event_id: Option<Uuid>,
    pub(crate) stream_version: u64,
    pub(crate) data: Box<RawValue>,
    #[serde(default)]
    pub(crate) metadata: Metadata,
}

/// A snapshot stored as the data of a snapshot event. The state is kept as
/// a JSON string so that it reads back byte for byte.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotData {
    pub(crate) version: u64,
    pub(crate) schema_version: u32,
    pub(crate) state: String,
    pub(crate) taken_at: DateTime<Utc>,
}

/// Splits metadata into what travels as CloudEvent fields (`traceparent`,
/// `tracestate`) and what goes into the envelope.
pub(crate) fn split_metadata(metadata: &Metadata) -> (Option<&str>, Option<&str>, Metadata) {
    let mut rest = metadata.clone();
    match metadata.traceparent.as_deref() {
        Some(traceparent) => {
            rest.traceparent = None;
            rest.tracestate = None;
            (Some(traceparent), metadata.tracestate.as_deref(), rest)
        }
        // A tracestate without a traceparent is not valid trace context:
        // it stays in the envelope so that it still round-trips.
        None => (None, None, rest),
    }
}

/// Percent-encodes one subject segment: every byte outside `A-Z a-z 0-9 - _
/// . ~` becomes `%XX`, so that no `/` (or anything else) of an id can change
/// the subject's shape.
fn encode_segment(value: &str, out: &mut String) {
    out.push_str(&crate::percent::encode(value, crate::percent::SUBJECT_SEGMENT));
}

fn decode_segment(segment: &str) -> Option<String> {
    crate::percent::decode(segment, crate::percent::SUBJECT_SEGMENT)
}

/// The subject of a stream: `/<aggregate type>/<id>`, each part
/// percent-encoded.
pub(crate) fn stream_subject(stream: &StreamId) -> String {
    let mut subject = String::with_capacity(stream.category().len() + stream.id().len() + 2);
    subject.push('/');
    encode_segment(stream.category(), &mut subject);
    subject.push('/');
    encode_segment(stream.id(), &mut subject);
    subject
}

/// The subject of a stream's snapshots, below the stream's own subject.
pub(crate) fn snapshot_subject(stream: &StreamId) -> String {
    let mut subject = stream_subject(stream);
    subject.push('/');
    subject.push_str(SNAPSHOT_SEGMENT);
    subject
}

/// The stream of a subject, or `None` for a subject that is not one of a
/// stream (a snapshot subject, or one another writer uses).
pub(crate) fn parse_stream_subject(subject: &str) -> Option<StreamId> {
    let rest = subject.strip_prefix('/')?;
    let (category, id) = rest.split_once('/')?;
    if id.contains('/') {
        return None;
    }
    StreamId::new(decode_segment(category)?, decode_segment(id)?).ok()
}

/// Refuses an event type name that cannot become an EventSourcingDB type:
/// the core's rules ([`orchestrix::validate_event_type`]), plus
/// EventSourcingDB's: only ASCII letters, digits, `.`, `-` and `_`, and no
/// empty segment between dots (the type is a reverse domain name, so `.`,
/// `..`, `a..b` or a leading or trailing dot would be refused by the
/// server). A name that passes is safe inside an EventQL string literal.
pub(crate) fn validate_event_type(name: &str) -> Result<(), StoreError> {
    orchestrix::event::validate_event_type(name)?;
    validate_type_text("event type", name)
}

/// Refuses a type prefix that cannot start an EventSourcingDB type (the
/// rules of [`validate_event_type`]).
pub(crate) fn validate_type_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        return Err(StoreError::InvalidInput("the EventSourcingDB type prefix must not be empty".to_owned()));
    }
    validate_type_text("type prefix", prefix)
}

fn validate_type_text(what: &str, name: &str) -> Result<(), StoreError> {
    let shown = || name.chars().take(64).collect::<String>().replace('\0', "\\0");
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        return Err(StoreError::InvalidInput(format!(
            "{what} `{}` contains {bad:?}; EventSourcingDB types allow only ASCII letters, digits, `.`, `-` and `_`",
            shown()
        )));
    }
    if name.split('.').any(str::is_empty) {
        return Err(StoreError::InvalidInput(format!(
            "{what} `{}` has an empty segment between dots; EventSourcingDB types are reverse domain names \
             (`com.example.thing-happened`), so `.`, `..` and leading, trailing or doubled dots are refused",
            shown()
        )));
    }
    Ok(())
}

/// The JSON schema of the adapter's envelope around data described by
/// `data_schema` (as `#[event(schema)]` derives it): the data's schema goes
/// under `properties.data`, its `$defs` move to the root (their `$ref`s
/// are root-relative), `streamVersion` is a positive integer and
/// `metadata` an object.
pub(crate) fn envelope_schema(esdb_type: &str, data_schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut data = data_schema.clone();
    let mut defs = None;
    let mut dialect = None;
    if let Value::Object(object) = &mut data {
        defs = object.remove("$defs");
        dialect = object.remove("$schema");
    }
    let mut envelope = json!({
        "$schema": dialect.unwrap_or_else(|| json!("https://json-schema.org/draft/2020-12/schema")),
        "title": esdb_type,
        "type": "object",
        "properties": {
            "eventId": { "type": "string", "format": "uuid" },
            "streamVersion": { "type": "integer", "minimum": 1 },
            "data": data,
            "metadata": { "type": "object" },
        },
        "required": ["streamVersion", "data"],
    });
    if let Some(defs) = defs {
        envelope["$defs"] = defs;
    }
    envelope
}

/// The EventSourcingDB type of an event: `<prefix>.<name>.v<schema version>`.
pub(crate) fn esdb_type(prefix: &str, name: &str, schema_version: u32) -> String {
    format!("{prefix}.{name}.v{schema_version}")
}

/// The Orchestrix type name and schema version of an EventSourcingDB type,
/// or `None` if it does not carry the prefix and a version.
pub(crate) fn parse_esdb_type<'a>(prefix: &str, esdb_type: &'a str) -> Option<(&'a str, u32)> {
    let rest = esdb_type.strip_prefix(prefix)?.strip_prefix('.')?;
    let (name, version) = rest.rsplit_once(".v")?;
    if name.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((name, version.parse().ok()?))
}

/// The event id Orchestrix shows for an EventSourcingDB event: a UUID v7
/// whose timestamp is the server's time and whose low bits are the
/// server's id, so that it is the same on every read and sorts like the log.
pub(crate) fn event_uuid(time: DateTime<Utc>, id: u64) -> Uuid {
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0_u8; 10];
    bytes[2..].copy_from_slice(&id.to_be_bytes());
    // The builder overwrites the top bits of bytes[2] (the variant), which
    // only an id above 2^62 would use.
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_keep_their_shape() {
        for (category, id) in [("Account", "42"), ("A-ü 🦀", "a/b c%d"), ("x.y", "..")] {
            let stream = StreamId::new(category, id).unwrap();
            let subject = stream_subject(&stream);
            assert_eq!(subject.matches('/').count(), 2, "{subject}");
            assert_eq!(parse_stream_subject(&subject), Some(stream.clone()));
            assert_eq!(parse_stream_subject(&snapshot_subject(&stream)), None);
        }
        assert_eq!(stream_subject(&StreamId::new("Account", "a/b").unwrap()), "/Account/a%2Fb");
        assert_eq!(parse_stream_subject("/only-one"), None);
        assert_eq!(parse_stream_subject("/a/b%zz"), None);
    }

    #[test]
    fn types_round_trip() {
        assert_eq!(esdb_type("io.orchestrix", "AccountOpened", 1), "io.orchestrix.AccountOpened.v1");
        assert_eq!(parse_esdb_type("io.orchestrix", "io.orchestrix.AccountOpened.v12"), Some(("AccountOpened", 12)));
        assert_eq!(
            parse_esdb_type("io.orchestrix", "io.orchestrix.Account.Opened-v1.v3"),
            Some(("Account.Opened-v1", 3))
        );
        assert_eq!(parse_esdb_type("io.orchestrix", "com.other.AccountOpened.v1"), None);
        assert_eq!(parse_esdb_type("io.orchestrix", "io.orchestrix.AccountOpened"), None);
        assert!(validate_event_type("Account.Opened-v1").is_ok());
        for bad in ["a b", ".", "..", "a..b", ".a", "a.", "x\"y", "é"] {
            assert!(matches!(validate_event_type(bad), Err(StoreError::InvalidInput(_))), "{bad}");
        }
        assert!(validate_type_prefix("io.orchestrix").is_ok());
        for bad in ["", "io.", "io\" OR true"] {
            assert!(validate_type_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envelope_schemas_wrap_the_data_schema_and_hoist_its_definitions() {
        use serde_json::json;
        let data = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Moved",
            "type": "object",
            "properties": { "to": { "$ref": "#/$defs/Address" } },
            "required": ["to"],
            "$defs": { "Address": { "type": "object" } },
        });
        let envelope = envelope_schema("io.orchestrix.Moved.v1", &data);
        assert_eq!(
            envelope,
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "io.orchestrix.Moved.v1",
                "type": "object",
                "properties": {
                    "eventId": { "type": "string", "format": "uuid" },
                    "streamVersion": { "type": "integer", "minimum": 1 },
                    "data": {
                        "title": "Moved",
                        "type": "object",
                        "properties": { "to": { "$ref": "#/$defs/Address" } },
                        "required": ["to"],
                    },
                    "metadata": { "type": "object" },
                },
                "required": ["streamVersion", "data"],
                "$defs": { "Address": { "type": "object" } },
            })
        );
    }

    #[test]
    fn uuids_are_v7_and_sort_by_id() {
        let time = Utc::now();
        let a = event_uuid(time, 1);
        let b = event_uuid(time, 2);
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(event_uuid(time, 1), a);
    }
}
