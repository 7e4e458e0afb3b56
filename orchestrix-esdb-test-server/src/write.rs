//! `write-events`: candidates, preconditions, schemas, the hash chain.

use std::sync::{Arc, PoisonError};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::ApiVersion;
use crate::log::{event_hash, latest_event, rfc3339_trimmed, valid_subject, valid_type, Log, StoredEvent};
use crate::{answers, authorized, bad_request, eventql, parse_body, unauthorized, Call};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidate {
    source: String,
    subject: String,
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreconditionOptions {
    #[serde(default)]
    pub(crate) recursive: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", content = "payload")]
enum Precondition {
    #[serde(rename = "isSubjectPristine")]
    Pristine {
        subject: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isSubjectPopulated")]
    Populated {
        subject: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isSubjectOnEventId")]
    OnEventId {
        subject: String,
        #[serde(rename = "eventId")]
        event_id: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isEventQlQueryTrue")]
    EventQlQueryTrue { query: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    events: Vec<Candidate>,
    #[serde(default)]
    preconditions: Vec<Precondition>,
}

/// Whether an `isEventQlQueryTrue` query holds: it must answer exactly one
/// boolean row.
fn eventql_holds(log: &Log, query: &str) -> Result<bool, String> {
    let query = eventql::parse(query).map_err(|e| e.to_string())?;
    let rows = eventql::run(&query, log.eventql_rows()).map_err(|e| e.to_string())?;
    match rows.as_slice() {
        [serde_json::Value::Bool(holds)] => Ok(*holds),
        _ => Err(format!("query not boolean: it answered {} rows, not one boolean", rows.len())),
    }
}

/// Whether a precondition holds; `Err` is a refusal to answer.
fn holds(api: ApiVersion, log: &Log, precondition: &Precondition) -> Result<bool, Box<Response>> {
    let recursive = match precondition {
        Precondition::Pristine { options, .. }
        | Precondition::Populated { options, .. }
        | Precondition::OnEventId { options, .. } => options.recursive,
        Precondition::EventQlQueryTrue { .. } => false,
    };
    if recursive && api == ApiVersion::V1 {
        return Err(Box::new(bad_request("recursive preconditions need API v2")));
    }
    Ok(match precondition {
        Precondition::Pristine { subject, .. } => latest_event(log, subject, recursive).is_none(),
        Precondition::Populated { subject, .. } => latest_event(log, subject, recursive).is_some(),
        Precondition::OnEventId { subject, event_id, .. } => {
            latest_event(log, subject, recursive).is_some_and(|e| e.id == *event_id)
        }
        Precondition::EventQlQueryTrue { query } => match eventql_holds(log, query) {
            Ok(holds) => holds,
            Err(message) => {
                return Err(Box::new(answers::refuse(api, StatusCode::BAD_REQUEST, &message, "query-unevaluable")));
            }
        },
    })
}

pub(crate) async fn write_events(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: WriteBody = match parse_body(api, &body) {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    if body.events.is_empty() {
        return bad_request("events must not be empty");
    }
    for event in &body.events {
        if event.source.is_empty() || !valid_subject(&event.subject) || !valid_type(&event.event_type) {
            return bad_request(format!(
                "invalid event candidate (subject {:?}, type {:?})",
                event.subject, event.event_type
            ));
        }
        if !event.data.get().trim_start().starts_with('{') {
            return bad_request("data must be a JSON object");
        }
    }
    let written = {
        let mut log = shared.log.write().unwrap_or_else(PoisonError::into_inner);
        if shared.options.capacity.is_some_and(|capacity| log.events.len() + body.events.len() > capacity) {
            let text = "state conflict: exceeded max store capacity";
            return answers::refuse(api, StatusCode::CONFLICT, text, "capacity-exceeded");
        }
        for precondition in &body.preconditions {
            match holds(api, &log, precondition) {
                Ok(true) => {}
                Ok(false) => {
                    let text = "state conflict: precondition failed";
                    return answers::refuse(api, StatusCode::CONFLICT, text, "precondition-violated");
                }
                Err(refusal) => return *refusal,
            }
        }
        for candidate in &body.events {
            if let Some(violation) = log.schemas.get(&candidate.event_type).and_then(|s| s.violation(&candidate.data)) {
                let text = format!(
                    "schema conflict: event candidate does not match schema of {}: {violation}",
                    candidate.event_type
                );
                return answers::refuse(api, StatusCode::CONFLICT, &text, "event-schema-violated");
            }
        }
        let time = rfc3339_trimmed(Utc::now());
        let mut written = Vec::with_capacity(body.events.len());
        for candidate in body.events {
            let index = log.events.len();
            let predecessorhash = log.events.last().map_or_else(|| "0".repeat(64), |e| e.hash.clone());
            let mut event = StoredEvent {
                specversion: "1.0",
                id: index.to_string(),
                time: time.clone(),
                source: candidate.source,
                subject: candidate.subject,
                event_type: candidate.event_type,
                datacontenttype: "application/json",
                data: candidate.data,
                hash: String::new(),
                predecessorhash,
                traceparent: candidate.traceparent,
                tracestate: candidate.tracestate,
                signature: None,
            };
            event.hash = event_hash(&event, shared.options.offer_v2);
            let event = Arc::new(event);
            log.push(Arc::clone(&event));
            written.push(event);
        }
        shared.head.send_replace(log.events.len());
        written
    };
    match api {
        ApiVersion::V1 => axum::Json(written).into_response(),
        ApiVersion::V2 => answers::finite(api, written.iter().map(|e| answers::event_line(api, e)).collect(), true),
    }
}
