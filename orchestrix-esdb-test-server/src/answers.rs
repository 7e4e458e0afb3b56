//! How the test server answers, per API version, as the official client
//! `eventsourcingdb` 4.0.6 reads them:
//!
//! - v1: single answers are bare JSON; stream lines are
//!   `{"type", "payload"}` and end with the body; refusals are statuses
//!   with text (409 `state conflict: precondition failed`, ...).
//! - v2: every answer is an envelope `{"type", "data"}`; a finite stream
//!   ends with `{"type":"end","data":{}}`; refusals of the domain are an
//!   `error` item `{"code", "description", "details"}` at status 200, the
//!   code a URL under `https://docs.eventsourcingdb.io/errors/`; events
//!   carry `traceparent` and `tracestate` as `null` when they have none.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde::Serialize;

use crate::api::ApiVersion;
use crate::log::StoredEvent;

/// One NDJSON line: `{"type": kind, "payload"|"data": data}`.
pub(super) fn item(api: ApiVersion, kind: &str, data: &impl Serialize) -> Bytes {
    #[derive(Serialize)]
    struct V1<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        payload: &'a T,
    }
    #[derive(Serialize)]
    struct V2<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        data: &'a T,
    }
    let mut line = match api {
        ApiVersion::V1 => serde_json::to_vec(&V1 { kind, payload: data }),
        ApiVersion::V2 => serde_json::to_vec(&V2 { kind, data }),
    }
    .expect("answers serialize");
    line.push(b'\n');
    Bytes::from(line)
}

/// An event as it is served: v2 sends absent trace fields as `null`.
#[derive(Serialize)]
struct ServedEvent<'a> {
    #[serde(flatten)]
    event: &'a StoredEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<()>,
}

/// The line of an event.
pub(super) fn event_line(api: ApiVersion, event: &StoredEvent) -> Bytes {
    let nulls = api == ApiVersion::V2;
    let served = ServedEvent {
        event,
        traceparent: (nulls && event.traceparent.is_none()).then_some(()),
        tracestate: (nulls && event.tracestate.is_none()).then_some(()),
    };
    item(api, "event", &served)
}

/// A heartbeat line.
pub(super) fn heartbeat(api: ApiVersion) -> Bytes {
    item(api, "heartbeat", &serde_json::json!({}))
}

/// A line that starts like an event and is not JSON.
pub(super) fn garbage(api: ApiVersion) -> Bytes {
    match api {
        ApiVersion::V1 => Bytes::from_static(b"{\"type\":\"event\",\"payload\":{not json\n"),
        ApiVersion::V2 => Bytes::from_static(b"{\"type\":\"event\",\"data\":{not json\n"),
    }
}

/// A streaming body of a stream of lines.
pub(super) fn ndjson_stream<S>(lines: S) -> Response
where
    S: futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .expect("a valid response")
}

/// A finite stream of lines: v2 closes it with its `end` item (unless
/// `end` is false, a fault).
pub(super) fn finite(api: ApiVersion, mut lines: Vec<Bytes>, end: bool) -> Response {
    if api == ApiVersion::V2 && end {
        lines.push(item(api, "end", &serde_json::json!({})));
    }
    ndjson_stream(stream::iter(lines.into_iter().map(Ok::<_, std::io::Error>)))
}

/// A single answer: bare in v1, an envelope of type `kind` in v2.
pub(super) fn single(api: ApiVersion, kind: &str, data: &impl Serialize) -> Response {
    match api {
        ApiVersion::V1 => axum::Json(data).into_response(),
        ApiVersion::V2 => {
            let line = item(api, kind, data);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(line))
                .expect("a valid response")
        }
    }
}

/// A refusal of the domain: v1 answers `status` with `text` as
/// EventSourcingDB 1.2 writes it (a line; a 400 starts with `bad request: `);
/// v2 answers 200 with an `error` item of the code `slug`, `text` its
/// description.
pub(super) fn refuse(api: ApiVersion, status: StatusCode, text: &str, slug: &str) -> Response {
    match api {
        ApiVersion::V1 if status == StatusCode::BAD_REQUEST => {
            (status, format!("bad request: {text}\n")).into_response()
        }
        ApiVersion::V1 => (status, format!("{text}\n")).into_response(),
        ApiVersion::V2 => {
            let error = serde_json::json!({
                "code": format!("https://docs.eventsourcingdb.io/errors/{slug}"),
                "description": text,
                "details": {},
            });
            let line = item(api, "error", &error);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .body(Body::from_stream(stream::iter([Ok::<_, Infallible>(line)])))
                .expect("a valid response")
        }
    }
}
