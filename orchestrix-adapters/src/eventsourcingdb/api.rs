//! The two versions of EventSourcingDB's HTTP API the adapter speaks
//! (ADR 0012): where each operation lives, how its body and answer are
//! shaped, and how errors arrive. Everything that differs between the
//! versions is here, as pure functions; the store logic is the same for
//! both.

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::EsdbError;

/// The version of EventSourcingDB's HTTP API a store speaks.
/// [`EsdbStore::connect`](super::EsdbStore::connect) finds it out: a server
/// that answers `GET /api/v2/system/ping` is spoken to through v2, one that
/// answers it with 404 or 405 through v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiVersion {
    /// API v1: `/api/v1/<operation>`, POST for everything but the ping;
    /// stream lines are `{"type", "payload"}` and end with the body; errors
    /// are statuses with text (409 for a failed precondition).
    V1,
    /// API v2: `/api/v2/system/...` and `/api/v2/data/...`, reads with the
    /// HTTP method `QUERY`; every answer is an envelope `{"type", "data"}`,
    /// a finite stream ends with an `end` item, and errors of the domain
    /// (a failed precondition, a schema violation) are `error` items with
    /// a code, at status 200.
    V2,
}

/// An operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Ping,
    VerifyToken,
    WriteEvents,
    ReadEvents,
    ObserveEvents,
    RunEventQlQuery,
    RegisterEventSchema,
    ReadEventType,
}

/// The path of the v2 ping, which tells whether a server offers API v2.
pub(crate) const V2_PING_PATH: &str = "/api/v2/system/ping";

/// The type of the management event a ping answers with, in both versions.
const PING_RECEIVED: &str = "io.eventsourcingdb.api.ping-received";

/// The HTTP method `QUERY` (RFC 10008), which API v2 reads with.
fn query_method() -> Method {
    Method::from_bytes(b"QUERY").expect("QUERY is a valid HTTP method token")
}

/// One item of a streaming answer, normalised across the versions.
#[derive(Debug)]
pub(crate) enum Item {
    /// An event (its JSON as the server sent it).
    Event(Box<RawValue>),
    /// A row of an EventQL query: the projected value itself.
    Row(Box<RawValue>),
    /// A keep-alive line.
    Heartbeat,
    /// The end of a finite v2 stream.
    End,
    /// An error the server reported in the stream; the stream ends with it.
    Error(EsdbError),
}

#[derive(Deserialize)]
struct LineIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RowIn {
    value: Box<RawValue>,
}

#[derive(Deserialize)]
struct V1ErrorIn {
    error: String,
}

#[derive(Deserialize)]
struct ErrorIn {
    #[serde(default)]
    code: String,
    #[serde(default)]
    description: String,
}

impl ApiVersion {
    /// The path prefix of this version: `/api/v1` or `/api/v2`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V1 => "/api/v1",
            Self::V2 => "/api/v2",
        }
    }

    /// The method and path of an operation.
    pub(crate) fn route(self, op: Op) -> (Method, &'static str) {
        match self {
            Self::V1 => {
                let path = match op {
                    Op::Ping => return (Method::GET, "/api/v1/ping"),
                    Op::VerifyToken => "/api/v1/verify-api-token",
                    Op::WriteEvents => "/api/v1/write-events",
                    Op::ReadEvents => "/api/v1/read-events",
                    Op::ObserveEvents => "/api/v1/observe-events",
                    Op::RunEventQlQuery => "/api/v1/run-eventql-query",
                    Op::RegisterEventSchema => "/api/v1/register-event-schema",
                    Op::ReadEventType => "/api/v1/read-event-type",
                };
                (Method::POST, path)
            }
            Self::V2 => match op {
                Op::Ping => (Method::GET, V2_PING_PATH),
                Op::VerifyToken => (Method::POST, "/api/v2/system/verify-token"),
                Op::WriteEvents => (Method::POST, "/api/v2/data/write-events"),
                Op::RegisterEventSchema => (Method::POST, "/api/v2/data/register-event-schema"),
                Op::ReadEvents => (query_method(), "/api/v2/data/read-events"),
                Op::ObserveEvents => (query_method(), "/api/v2/data/observe-events"),
                Op::RunEventQlQuery => (query_method(), "/api/v2/data/run-eventql-query"),
                Op::ReadEventType => (query_method(), "/api/v2/data/read-event-type"),
            },
        }
    }

    /// Whether a finite stream of this version ends with an `end` item (so
    /// that a body ending without one broke off).
    pub(crate) fn has_end_item(self) -> bool {
        self == Self::V2
    }

    /// The body of the token check: v1 takes an empty object, v2 none.
    pub(crate) fn verify_token_body(self) -> Option<serde_json::Value> {
        match self {
            Self::V1 => Some(serde_json::json!({})),
            Self::V2 => None,
        }
    }

    /// The body of `register-event-schema` (`schema` given) or
    /// `read-event-type` (`schema` `None`): v1 names the type `eventType`,
    /// v2 `type`.
    pub(crate) fn event_type_body(self, esdb_type: &str, schema: Option<&serde_json::Value>) -> serde_json::Value {
        let key = match self {
            Self::V1 => "eventType",
            Self::V2 => "type",
        };
        let mut body = serde_json::Map::new();
        body.insert(key.to_owned(), serde_json::Value::String(esdb_type.to_owned()));
        if let Some(schema) = schema {
            body.insert("schema".to_owned(), schema.clone());
        }
        serde_json::Value::Object(body)
    }

    /// Parses one line of a streaming answer.
    pub(crate) fn parse_item(self, line: &[u8]) -> Result<Item, EsdbError> {
        let malformed = |detail: String| EsdbError::malformed("stream line", detail);
        let parsed: LineIn = serde_json::from_slice(line)
            .map_err(|e| malformed(format!("{e} in {:?}", String::from_utf8_lossy(&line[..line.len().min(120)]))))?;
        let body = match self {
            Self::V1 => parsed.payload,
            Self::V2 => parsed.data,
        };
        match parsed.kind.as_str() {
            "heartbeat" => return Ok(Item::Heartbeat),
            "end" if self == Self::V2 => return Ok(Item::End),
            _ => {}
        }
        let field = match self {
            Self::V1 => "payload",
            Self::V2 => "data",
        };
        let body = body.ok_or_else(|| malformed(format!("a `{}` line without `{field}`", parsed.kind)))?;
        match parsed.kind.as_str() {
            "event" => Ok(Item::Event(body)),
            "row" => match self {
                Self::V1 => Ok(Item::Row(body)),
                Self::V2 => serde_json::from_str::<RowIn>(body.get())
                    .map(|row| Item::Row(row.value))
                    .map_err(|e| EsdbError::malformed("EventQL row", e)),
            },
            "error" => Ok(Item::Error(self.error_item(&body))),
            other => Err(malformed(format!("unknown line type `{other}`"))),
        }
    }

    /// The error an `error` item reports: v1 sends text, v2 a code, which
    /// decides the typed error.
    fn error_item(self, body: &RawValue) -> EsdbError {
        match self {
            // `{"error": "<text>"}`, as the official client reads it; the
            // raw payload if it is shaped otherwise.
            Self::V1 => EsdbError::Stream(
                serde_json::from_str::<V1ErrorIn>(body.get()).map_or_else(|_| body.get().to_owned(), |e| e.error),
            ),
            Self::V2 => match serde_json::from_str::<ErrorIn>(body.get()) {
                Ok(error) => EsdbError::from_code(&error.code, error.description),
                Err(e) => EsdbError::malformed("error item", e),
            },
        }
    }

    /// The data of a single (non-streaming) answer: v1 sends it bare, v2
    /// in an envelope of type `kind` (or an `error` envelope).
    pub(crate) fn single_answer(self, answer: &[u8], kind: &str) -> Result<Box<RawValue>, EsdbError> {
        match self {
            Self::V1 => serde_json::from_slice(answer).map_err(|e| EsdbError::malformed("JSON answer", e)),
            Self::V2 => {
                let parsed: LineIn =
                    serde_json::from_slice(answer).map_err(|e| EsdbError::malformed("JSON answer", e))?;
                match (parsed.kind.as_str(), parsed.data) {
                    ("error", Some(data)) => Err(self.error_item(&data)),
                    (found, Some(data)) if found == kind => Ok(data),
                    (found, _) => Err(EsdbError::malformed(
                        "JSON answer",
                        format!("an envelope of type `{found}` (with data), not `{kind}`"),
                    )),
                }
            }
        }
    }

    /// Checks the answer of a ping.
    pub(crate) fn check_ping(self, answer: &[u8]) -> Result<(), EsdbError> {
        let event = self.single_answer(answer, "event")?;
        if management_type(&event).as_deref() == Some(PING_RECEIVED) {
            Ok(())
        } else {
            Err(EsdbError::malformed("ping answer", format!("its type is not `{PING_RECEIVED}`")))
        }
    }

    /// Whether the answer of the token check says the token is valid.
    pub(crate) fn token_verified(self, answer: &[u8]) -> Result<bool, EsdbError> {
        let expected = match self {
            Self::V1 => "io.eventsourcingdb.api.api-token-verified",
            Self::V2 => "io.eventsourcingdb.api.token-verified",
        };
        let event = self.single_answer(answer, "event")?;
        Ok(management_type(&event).as_deref() == Some(expected))
    }
}

/// The `type` of a management event.
fn management_type(event: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(event.get()).ok().map(|t| t.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(version: ApiVersion, line: &str) -> Item {
        version.parse_item(line.as_bytes()).unwrap()
    }

    #[test]
    fn routes_are_the_documented_paths_and_methods() {
        assert_eq!(ApiVersion::V1.route(Op::ReadEvents), (Method::POST, "/api/v1/read-events"));
        assert_eq!(ApiVersion::V1.route(Op::Ping), (Method::GET, "/api/v1/ping"));
        assert_eq!(ApiVersion::V2.route(Op::Ping), (Method::GET, "/api/v2/system/ping"));
        assert_eq!(ApiVersion::V2.route(Op::VerifyToken), (Method::POST, "/api/v2/system/verify-token"));
        assert_eq!(ApiVersion::V2.route(Op::WriteEvents), (Method::POST, "/api/v2/data/write-events"));
        let (method, path) = ApiVersion::V2.route(Op::ObserveEvents);
        assert_eq!((method.as_str(), path), ("QUERY", "/api/v2/data/observe-events"));
    }

    #[test]
    fn items_of_both_versions_normalise() {
        assert!(
            matches!(item(ApiVersion::V1, r#"{"type":"event","payload":{"id":"0"}}"#), Item::Event(e) if e.get() == r#"{"id":"0"}"#)
        );
        assert!(
            matches!(item(ApiVersion::V2, r#"{"type":"event","data":{"id":"0"}}"#), Item::Event(e) if e.get() == r#"{"id":"0"}"#)
        );
        assert!(matches!(item(ApiVersion::V1, r#"{"type":"row","payload":3}"#), Item::Row(r) if r.get() == "3"));
        assert!(matches!(item(ApiVersion::V2, r#"{"type":"row","data":{"value":3}}"#), Item::Row(r) if r.get() == "3"));
        assert!(matches!(item(ApiVersion::V2, r#"{"type":"heartbeat","data":{}}"#), Item::Heartbeat));
        assert!(matches!(item(ApiVersion::V2, r#"{"type":"end","data":{}}"#), Item::End));
        // v1 has no end item, and a v1 line's body is `payload`, not `data`.
        assert!(ApiVersion::V1.parse_item(br#"{"type":"end","payload":{}}"#).is_err());
        assert!(ApiVersion::V1.parse_item(br#"{"type":"event","data":{}}"#).is_err());
        assert!(ApiVersion::V2.parse_item(b"{not json").is_err());
        let v1_error = item(ApiVersion::V1, r#"{"type":"error","payload":{"error":"store failed"}}"#);
        assert!(matches!(v1_error, Item::Error(EsdbError::Stream(text)) if text == "store failed"));
    }

    #[test]
    fn v2_error_codes_become_typed_errors() {
        let error = |code: &str| {
            let line = format!(
                r#"{{"type":"error","data":{{"code":"https://docs.eventsourcingdb.io/errors/{code}","description":"d","details":{{}}}}}}"#
            );
            match item(ApiVersion::V2, &line) {
                Item::Error(error) => error,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(error("precondition-violated"), EsdbError::Conflict));
        assert!(matches!(error("event-schema-violated"), EsdbError::SchemaViolated { detail } if detail == "d"));
        let exists = error("event-schema-already-registered");
        assert!(exists.is_schema_already_registered() && !exists.is_transient(), "{exists:?}");
        assert!(error("server-shutting-down").is_transient());
        assert!(!error("query-malformed").is_transient());
    }

    #[test]
    fn single_answers_unwrap_the_v2_envelope() {
        let v2 = br#"{"type":"event","data":{"type":"io.eventsourcingdb.api.ping-received"}}"#;
        ApiVersion::V2.check_ping(v2).unwrap();
        ApiVersion::V1.check_ping(br#"{"type":"io.eventsourcingdb.api.ping-received"}"#).unwrap();
        assert!(ApiVersion::V1.check_ping(v2).is_err(), "a v1 ping answer is the bare event");
        let verified = br#"{"type":"event","data":{"type":"io.eventsourcingdb.api.token-verified"}}"#;
        assert!(ApiVersion::V2.token_verified(verified).unwrap());
        let schema = ApiVersion::V2
            .single_answer(
                br#"{"type":"eventType","data":{"type":"a.b.c","hasEvents":true,"schema":null}}"#,
                "eventType",
            )
            .unwrap();
        assert!(schema.get().contains("hasEvents"));
        assert!(ApiVersion::V2.single_answer(br#"{"type":"row","data":{}}"#, "eventType").is_err());
        let unknown = br#"{"type":"error","data":{"code":"https://docs.eventsourcingdb.io/errors/event-type-unknown","description":"d"}}"#;
        assert!(matches!(ApiVersion::V2.single_answer(unknown, "eventType"), Err(EsdbError::Api { .. })));
    }

    #[test]
    fn event_type_bodies_name_the_type_per_version() {
        let schema = serde_json::json!({"type": "object"});
        assert_eq!(
            ApiVersion::V1.event_type_body("a.b.v1", Some(&schema)).to_string(),
            r#"{"eventType":"a.b.v1","schema":{"type":"object"}}"#
        );
        assert_eq!(ApiVersion::V2.event_type_body("a.b.v1", None).to_string(), r#"{"type":"a.b.v1"}"#);
    }
}
