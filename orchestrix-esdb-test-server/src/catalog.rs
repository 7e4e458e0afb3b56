//! Event types and their schemas, subjects, and EventQL queries.

use std::sync::PoisonError;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::api::ApiVersion;
use crate::log::{matches_subject, valid_subject, valid_type, Schema};
use crate::write::PreconditionOptions;
use crate::{answers, authorized, bad_request, eventql, management, parse_body, unauthorized, Call};

/// The type an event-type body names: `eventType` in v1, `type` in v2.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTypeBody {
    #[serde(rename = "eventType", default)]
    v1: Option<String>,
    #[serde(rename = "type", default)]
    v2: Option<String>,
    #[serde(default)]
    schema: Option<serde_json::Value>,
}

impl EventTypeBody {
    fn parse(api: ApiVersion, body: &[u8]) -> Result<(String, Option<serde_json::Value>), Box<Response>> {
        let body: Self = parse_body(api, body)?;
        let (name, event_type) = match api {
            ApiVersion::V1 => ("eventType", body.v1),
            ApiVersion::V2 => ("type", body.v2),
        };
        let event_type =
            event_type.ok_or_else(|| Box::new(bad_request(format!("invalid request body: missing `{name}`"))))?;
        Ok((event_type, body.schema))
    }
}

pub(crate) async fn register_event_schema(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let (event_type, schema) = match EventTypeBody::parse(api, &body) {
        Ok(parsed) => parsed,
        Err(refusal) => return *refusal,
    };
    let Some(schema) = schema else { return bad_request("invalid request body: missing `schema`") };
    if !valid_type(&event_type) {
        let text = format!("invalid event type {event_type:?}");
        return answers::refuse(api, StatusCode::BAD_REQUEST, &text, "event-type-malformed");
    }
    if !schema.is_object() {
        return bad_request("schema must be a JSON object");
    }
    if let Err(e) = jsonschema::meta::validate(&schema) {
        return bad_request(format!("schema is not a valid JSON schema: {e}"));
    }
    let validator = match jsonschema::validator_for(&schema) {
        Ok(validator) => validator,
        Err(e) => return bad_request(format!("schema is not a valid JSON schema: {e}")),
    };
    let schema = Schema { json: schema, validator };
    let mut log = shared.log.write().unwrap_or_else(PoisonError::into_inner);
    if log.schemas.contains_key(&event_type) {
        let text = "schema conflict: schema already exists";
        return answers::refuse(api, StatusCode::CONFLICT, text, "event-schema-already-registered");
    }
    let violating = log.events.iter().find(|e| e.event_type == event_type && schema.violation(&e.data).is_some());
    if let Some(event) = violating {
        let text = format!("schema conflict: event with ID {} does not match schema", event.id);
        return answers::refuse(api, StatusCode::CONFLICT, &text, "event-schema-violated");
    }
    log.schemas.insert(event_type, schema);
    let registered = "io.eventsourcingdb.api.event-schema-registered";
    match api {
        ApiVersion::V1 => answers::single(api, "event", &management("/api/v1/register-event-schema", registered)),
        ApiVersion::V2 => {
            let event = management("/api/v2/data/register-event-schema", registered);
            answers::finite(api, vec![answers::item(api, "event", &event)], true)
        }
    }
}

pub(crate) async fn read_event_type(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let event_type = match EventTypeBody::parse(api, &body) {
        Ok((event_type, _)) => event_type,
        Err(refusal) => return *refusal,
    };
    if !valid_type(&event_type) {
        let text = format!("invalid event type {event_type:?}");
        return answers::refuse(api, StatusCode::BAD_REQUEST, &text, "event-type-malformed");
    }
    let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
    let has_events = log.events.iter().any(|e| e.event_type == event_type);
    let schema = log.schemas.get(&event_type).map(|s| s.json.clone());
    if !has_events && schema.is_none() {
        let text = format!("event type '{event_type}' not found");
        return answers::refuse(api, StatusCode::NOT_FOUND, &text, "event-type-unknown");
    }
    let mut answer = match api {
        ApiVersion::V1 => serde_json::json!({ "eventType": event_type, "isPhantom": !has_events }),
        ApiVersion::V2 => serde_json::json!({ "type": event_type, "hasEvents": has_events }),
    };
    // A type without a schema has no `schema` field (not `null`).
    if let Some(schema) = schema {
        answer["schema"] = schema;
    }
    answers::single(api, "eventType", &answer)
}

pub(crate) async fn read_subjects(call: Call) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        base_subject: Option<String>,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        options: Option<PreconditionOptions>,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: Body = match parse_body(api, &body) {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    // v1 names the subject `baseSubject` and always reads recursively; v2
    // names it `subject` and takes `options.recursive`.
    let (subject, recursive) = match api {
        ApiVersion::V1 => (body.base_subject, true),
        ApiVersion::V2 => (body.subject, body.options.is_some_and(|o| o.recursive)),
    };
    let Some(subject) = subject else {
        return answers::refuse(api, StatusCode::BAD_REQUEST, "subject is missing", "subject-missing");
    };
    if !valid_subject(&subject) {
        let text = format!("invalid subject {subject:?}");
        return answers::refuse(api, StatusCode::BAD_REQUEST, &text, "subject-malformed");
    }
    let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
    // Every subject with events and every subject above one (`/`, `/books`
    // for `/books/42`), as the documentation lists them.
    let mut all = std::collections::BTreeSet::new();
    for stored in log.subjects.keys() {
        let mut at = stored.as_str();
        all.insert(at);
        while let Some(cut) = at.rfind('/') {
            at = if cut == 0 { "/" } else { &at[..cut] };
            all.insert(at);
            if at == "/" {
                break;
            }
        }
    }
    let lines = all
        .into_iter()
        .filter(|s| matches_subject(&subject, s, recursive))
        .map(|subject| answers::item(api, "subject", &serde_json::json!({ "subject": subject })));
    answers::finite(api, lines.collect(), true)
}

pub(crate) async fn run_eventql_query(call: Call) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        query: String,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: Body = match parse_body(api, &body) {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    let query = match eventql::parse(&body.query) {
        Ok(query) => query,
        Err(e) => return answers::refuse(api, StatusCode::BAD_REQUEST, &e.to_string(), "query-malformed"),
    };
    let rows = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        match eventql::run(&query, log.eventql_rows()) {
            Ok(rows) => rows,
            Err(e) => return answers::refuse(api, StatusCode::BAD_REQUEST, &e.to_string(), "query-unevaluable"),
        }
    };
    let lines = rows.into_iter().map(|row| match api {
        ApiVersion::V1 => answers::item(api, "row", &row),
        ApiVersion::V2 => answers::item(api, "row", &serde_json::json!({ "value": row })),
    });
    answers::finite(api, lines.collect(), true)
}
