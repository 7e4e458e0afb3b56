//! Events as CloudEvents 1.0 on NATS: binary and structured content modes.
//!
//! # The mapping
//!
//! | CloudEvents attribute | from the [`RecordedEvent`] |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | the event id (also the `Nats-Msg-Id`, so the broker drops duplicates) |
//! | `source` | the codec's source, for example `orchestrix://orders` |
//! | `type` | the stored event type name, for example `OrderPlaced` |
//! | `subject` | the stream, `<aggregate type>/<aggregate id>` |
//! | `time` | when the store recorded the event (RFC 3339, microseconds) |
//! | `datacontenttype` | `application/json` |
//! | `data` | the event's JSON, unchanged |
//! | `orxstreamversion`, `orxposition`, `orxschemaversion` | stream version, global position, schema version |
//! | `orxcorrelationid`, `orxcausationid`, `orxtenant` | the metadata's ids and tenant, when set |
//! | `orxheaders` | the metadata's free-form headers, as a JSON object, when any |
//! | `orxtags` | the event's tags (ADR 0023), as a JSON array, when any |
//! | `traceparent`, `tracestate` | the trace context recorded with the event (the CloudEvents distributed-tracing extension) |
//!
//! **Binary mode** (the default, [`ContentMode::Binary`]): the payload is
//! the event's JSON data; every attribute is a header `ce-<name>`, its
//! value percent-encoded as the HTTP binding prescribes (bytes outside
//! printable ASCII, space, `"` and `%`); `datacontenttype` travels as
//! `content-type`. Consumers route and filter on headers without parsing
//! the payload, and the payload is the bare domain event.
//!
//! **Structured mode** ([`ContentMode::Structured`]): the payload is the
//! whole event in the JSON event format, `content-type:
//! application/cloudevents+json`; for consumers that cannot read headers.
//!
//! [`decode`] reads both, telling them apart by the content type. The
//! transport's own `traceparent` header (the context of the span that
//! published the message) is separate from `ce-traceparent` (the context
//! that recorded the event); see the relay.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    Metadata, StreamId,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The content type of structured-mode messages.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// How a CloudEvent is laid out in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ContentMode {
    /// Attributes in `ce-*` headers, data as the payload.
    #[default]
    Binary,
    /// The whole event as JSON in the payload.
    Structured,
}

/// Why a message is not an Orchestrix CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudEventError {
    /// A required attribute is missing.
    #[error("the CloudEvent has no `{0}` attribute")]
    Missing(&'static str),
    /// An attribute's value cannot be read.
    #[error("the CloudEvent attribute `{name}` is invalid ({value:?}): {reason}")]
    Invalid {
        /// The attribute.
        name: &'static str,
        /// Its value, as received.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The payload is not what the content mode promises.
    #[error("the CloudEvent payload is not valid JSON: {0}")]
    Payload(String),
}

/// A CloudEvent laid out for a message: headers and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodedEvent {
    /// The headers (binary mode: every attribute; structured mode: only the
    /// content type).
    pub headers: BTreeMap<String, String>,
    /// The payload.
    pub payload: Bytes,
}

/// Lays `event` out as a CloudEvent from `source`.
///
/// ```
/// use orchestrix_adapters::nats::cloudevent::{decode, encode, ContentMode};
/// # use orchestrix::{envelope::{NewEvent, RecordedEvent}, StreamId};
/// # let data = serde_json::value::RawValue::from_string(r#"{"total":5}"#.into()).unwrap();
/// # let event = RecordedEvent::new(
/// #     NewEvent::new("OrderPlaced", 1, data), StreamId::new("Order", "7").unwrap(), 1, 3, chrono::Utc::now(),
/// # );
/// let message = encode(&event, "orchestrix://orders", ContentMode::Binary);
/// assert_eq!(message.headers["ce-type"], "OrderPlaced");
/// assert_eq!(message.headers["ce-subject"], "Order/7");
/// assert_eq!(&message.payload[..], br#"{"total":5}"#);
/// let back = decode(&message.headers, &message.payload).unwrap();
/// assert_eq!((back.id, back.global_position), (event.id, 3));
/// ```
pub fn encode(event: &RecordedEvent, source: &str, mode: ContentMode) -> EncodedEvent {
    let attributes = attributes(event, source);
    match mode {
        ContentMode::Binary => {
            let mut headers: BTreeMap<String, String> =
                attributes.into_iter().map(|(name, value)| (format!("ce-{name}"), percent_encode(&value))).collect();
            headers.insert("content-type".to_owned(), "application/json".to_owned());
            EncodedEvent { headers, payload: Bytes::copy_from_slice(event.data.get().as_bytes()) }
        }
        ContentMode::Structured => {
            let mut object = Map::new();
            for (name, value) in attributes {
                let value = match name {
                    "orxstreamversion" | "orxposition" | "orxschemaversion" => {
                        value.parse::<u64>().map_or(Value::String(value), Value::from)
                    }
                    _ => Value::String(value),
                };
                object.insert(name.to_owned(), value);
            }
            object.insert("datacontenttype".to_owned(), Value::String("application/json".to_owned()));
            // The data is a JSON object already: splice it in unparsed.
            let head = Value::Object(object).to_string();
            let mut payload = String::with_capacity(head.len() + event.data.get().len() + 8);
            payload.push_str(&head[..head.len() - 1]);
            payload.push_str(",\"data\":");
            payload.push_str(event.data.get());
            payload.push('}');
            let headers = BTreeMap::from([("content-type".to_owned(), STRUCTURED_CONTENT_TYPE.to_owned())]);
            EncodedEvent { headers, payload: Bytes::from(payload) }
        }
    }
}

fn attributes(event: &RecordedEvent, source: &str) -> Vec<(&'static str, String)> {
    let meta = &event.metadata;
    let mut out = vec![
        ("specversion", "1.0".to_owned()),
        ("id", event.id.to_string()),
        ("source", source.to_owned()),
        ("type", event.event_type.clone()),
        ("subject", event.stream.to_string()),
        ("time", event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ("orxstreamversion", event.stream_version.to_string()),
        ("orxposition", event.global_position.to_string()),
        ("orxschemaversion", event.schema_version.to_string()),
    ];
    if let Some(id) = meta.correlation_id {
        out.push(("orxcorrelationid", id.to_string()));
    }
    if let Some(id) = meta.causation_id {
        out.push(("orxcausationid", id.to_string()));
    }
    if let Some(tenant) = &meta.tenant {
        out.push(("orxtenant", tenant.clone()));
    }
    if !meta.headers.is_empty() {
        out.push(("orxheaders", serde_json::to_string(&meta.headers).unwrap_or_default()));
    }
    if !meta.tags.is_empty() {
        out.push(("orxtags", serde_json::to_string(&meta.tags).unwrap_or_default()));
    }
    if let Some(tp) = &meta.traceparent {
        out.push(("traceparent", tp.clone()));
    }
    if let Some(ts) = &meta.tracestate {
        out.push(("tracestate", ts.clone()));
    }
    out
}

/// Reads a message laid out by [`encode`] (in either mode) back into the
/// recorded event. Header names are matched case-insensitively.
pub fn decode(headers: &BTreeMap<String, String>, payload: &[u8]) -> Result<RecordedEvent, CloudEventError> {
    let content_type = header(headers, "content-type").unwrap_or_default();
    if content_type.starts_with(STRUCTURED_CONTENT_TYPE) {
        return decode_structured(payload);
    }
    let attribute = |name: &'static str| -> Result<Option<String>, CloudEventError> {
        header(headers, &format!("ce-{name}"))
            .map(|v| {
                percent_decode(v).ok_or_else(|| CloudEventError::Invalid {
                    name,
                    value: v.to_owned(),
                    reason: "bad percent-encoding".into(),
                })
            })
            .transpose()
    };
    let text = std::str::from_utf8(payload).map_err(|e| CloudEventError::Payload(e.to_string()))?;
    let data = RawValue::from_string(text.to_owned()).map_err(|e| CloudEventError::Payload(e.to_string()))?;
    assemble(attribute, data)
}

/// Reads one CloudEvent in the JSON event format (structured mode: what
/// [`encode`] writes with [`ContentMode::Structured`], and what
/// `orchestrix export --cloudevents` writes per line) back into the
/// recorded event: the inverse of the mapping above.
///
/// ```
/// use orchestrix_adapters::nats::cloudevent::{decode_structured, encode, ContentMode};
/// # use orchestrix::{envelope::{NewEvent, RecordedEvent}, StreamId};
/// # let data = serde_json::value::RawValue::from_string(r#"{"total":5}"#.into()).unwrap();
/// # let event = RecordedEvent::new(
/// #     NewEvent::new("OrderPlaced", 2, data), StreamId::new("Order", "7").unwrap(), 1, 3, chrono::Utc::now(),
/// # );
/// let line = encode(&event, "orchestrix://export", ContentMode::Structured).payload;
/// let back = decode_structured(&line).unwrap();
/// assert_eq!((back.id, back.event_type.as_str(), back.schema_version), (event.id, "OrderPlaced", 2));
/// assert!(decode_structured(br#"{"specversion":"1.0"}"#).is_err());
/// ```
pub fn decode_structured(payload: &[u8]) -> Result<RecordedEvent, CloudEventError> {
    #[derive(serde::Deserialize)]
    struct Structured<'a> {
        #[serde(flatten)]
        attributes: BTreeMap<String, Value>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let parsed: Structured<'_> =
        serde_json::from_slice(payload).map_err(|e| CloudEventError::Payload(e.to_string()))?;
    let data = parsed.data.ok_or(CloudEventError::Missing("data"))?.to_owned();
    let attributes = parsed.attributes;
    assemble(
        |name| {
            Ok(attributes.get(name).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }))
        },
        data,
    )
}

fn assemble(
    attribute: impl Fn(&'static str) -> Result<Option<String>, CloudEventError>,
    data: Box<RawValue>,
) -> Result<RecordedEvent, CloudEventError> {
    let required = |name: &'static str| attribute(name)?.ok_or(CloudEventError::Missing(name));
    let invalid = |name: &'static str, value: &str, reason: String| CloudEventError::Invalid {
        name,
        value: value.to_owned(),
        reason,
    };
    let specversion = required("specversion")?;
    if specversion != "1.0" {
        return Err(invalid("specversion", &specversion, "only CloudEvents 1.0 is understood".into()));
    }
    let uuid =
        |name: &'static str, value: &str| Uuid::parse_str(value).map_err(|e| invalid(name, value, e.to_string()));
    let number = |name: &'static str| -> Result<u64, CloudEventError> {
        let value = required(name)?;
        value.parse().map_err(|e: std::num::ParseIntError| invalid(name, &value, e.to_string()))
    };
    let id = uuid("id", &required("id")?)?;
    let subject = required("subject")?;
    let stream = subject
        .split_once('/')
        .ok_or_else(|| invalid("subject", &subject, "expected `<aggregate type>/<aggregate id>`".into()))
        .and_then(|(category, id)| {
            StreamId::new(category, id).map_err(|e| invalid("subject", &subject, e.to_string()))
        })?;
    let time = required("time")?;
    let recorded_at =
        DateTime::parse_from_rfc3339(&time).map_err(|e| invalid("time", &time, e.to_string()))?.with_timezone(&Utc);
    let schema_version = number("orxschemaversion")?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|e| invalid("orxschemaversion", &schema_version.to_string(), e.to_string()))?;
    let headers = match attribute("orxheaders")? {
        Some(json) => serde_json::from_str(&json).map_err(|e| invalid("orxheaders", &json, e.to_string()))?,
        None => BTreeMap::new(),
    };
    let tags = match attribute("orxtags")? {
        Some(json) => serde_json::from_str(&json).map_err(|e| invalid("orxtags", &json, e.to_string()))?,
        None => Vec::new(),
    };
    let mut metadata = Metadata::default();
    metadata.tags = tags;
    metadata.correlation_id = attribute("orxcorrelationid")?.map(|v| uuid("orxcorrelationid", &v)).transpose()?;
    metadata.causation_id = attribute("orxcausationid")?.map(|v| uuid("orxcausationid", &v)).transpose()?;
    metadata.traceparent = attribute("traceparent")?;
    metadata.tracestate = attribute("tracestate")?;
    metadata.tenant = attribute("orxtenant")?;
    metadata.headers = headers;
    let event = NewEvent::from_parts(id, required("type")?, schema_version, data, metadata);
    Ok(RecordedEvent::new(event, stream, number("orxstreamversion")?, number("orxposition")?, recorded_at))
}

fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .or_else(|| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .map(String::as_str)
}

/// Percent-encodes a header value as the CloudEvents HTTP binding does:
/// bytes outside printable ASCII, space, `"` and `%`.
pub fn percent_encode(value: &str) -> String {
    crate::percent::encode(value, crate::percent::HEADER_VALUE)
}

/// Reverses [`percent_encode`]; `None` for a malformed escape or bytes
/// that are not UTF-8.
pub fn percent_decode(value: &str) -> Option<String> {
    if !value.contains('%') {
        return Some(value.to_owned());
    }
    String::from_utf8(crate::percent::decode_escapes(value)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RecordedEvent {
        let metadata = Metadata::default()
            .with_correlation_id(Uuid::now_v7())
            .with_causation_id(Uuid::now_v7())
            .with_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("a=b,c=d".into()))
            .with_tenant("acme\r\nx")
            .with_header("k", "v w")
            .with_tags(["course:c 1", "student:7"]);
        let data = RawValue::from_string(r#"{"total":5,"note":"ü"}"#.into()).unwrap();
        let event = NewEvent::new("Order Placed \"x\" 100%", 2, data).with_metadata(metadata);
        RecordedEvent::new(event, StreamId::new("Order", "a/b é").unwrap(), 7, 1 << 40, Utc::now())
    }

    fn same(a: &RecordedEvent, b: &RecordedEvent) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.stream, b.stream);
        assert_eq!(
            (a.stream_version, a.global_position, a.schema_version),
            (b.stream_version, b.global_position, b.schema_version)
        );
        assert_eq!(a.recorded_at.timestamp_micros(), b.recorded_at.timestamp_micros());
        assert_eq!(a.event_type, b.event_type);
        assert_eq!(a.data.get(), b.data.get());
        assert_eq!(a.metadata, b.metadata);
    }

    #[test]
    fn both_modes_round_trip_every_field() {
        let event = event();
        for mode in [ContentMode::Binary, ContentMode::Structured] {
            let encoded = encode(&event, "orchestrix://test", mode);
            same(&decode(&encoded.headers, &encoded.payload).unwrap(), &event);
        }
    }

    #[test]
    fn binary_headers_are_printable_ascii() {
        let encoded = encode(&event(), "orchestrix://test", ContentMode::Binary);
        for value in encoded.headers.values() {
            assert!(value.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{value:?}");
        }
        assert_eq!(encoded.headers["ce-orxtenant"], "acme%0D%0Ax");
    }

    #[test]
    fn broken_messages_are_typed_errors() {
        let good = encode(&event(), "s", ContentMode::Binary);
        let mut missing = good.headers.clone();
        missing.remove("ce-id");
        assert_eq!(decode(&missing, &good.payload).unwrap_err(), CloudEventError::Missing("id"));
        let mut bad = good.headers.clone();
        bad.insert("ce-orxposition".into(), "-1".into());
        assert!(matches!(decode(&bad, &good.payload), Err(CloudEventError::Invalid { name: "orxposition", .. })));
        let mut version = good.headers.clone();
        version.insert("ce-specversion".into(), "0.3".into());
        assert!(matches!(decode(&version, &good.payload), Err(CloudEventError::Invalid { name: "specversion", .. })));
        assert!(matches!(decode(&good.headers, b"not json"), Err(CloudEventError::Payload(_))));
        let mut escape = good.headers.clone();
        escape.insert("ce-type".into(), "%G1".into());
        assert!(matches!(decode(&escape, &good.payload), Err(CloudEventError::Invalid { name: "type", .. })));
    }
}
