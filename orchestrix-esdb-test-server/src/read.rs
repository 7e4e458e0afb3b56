//! `read-events` and `observe-events`.

use std::sync::{Arc, PoisonError};

use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::watch;

use crate::api::ApiVersion;
use crate::log::{matches_subject, valid_subject, valid_type, Log};
use axum::http::StatusCode;

use crate::{answers, authorized, bad_request, parse_body, unauthorized, Call, Shared};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BoundIn {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FromLatestIn {
    subject: String,
    #[serde(rename = "type")]
    event_type: String,
    if_event_is_missing: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OptionsIn {
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    lower_bound: Option<BoundIn>,
    #[serde(default)]
    upper_bound: Option<BoundIn>,
    #[serde(default)]
    from_latest_event: Option<FromLatestIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    subject: String,
    #[serde(default)]
    options: OptionsIn,
}

/// A refusal of a read's options: its text (v1, at 400) and its v2 code.
type Refusal = (String, &'static str);

/// The first index a read starts at: from the lower bound or from
/// `fromLatestEvent` (not both: the server refuses the combination);
/// `None` when nothing is to be read.
fn start_index(log: &Log, options: &OptionsIn) -> Result<Option<usize>, Refusal> {
    if options.lower_bound.is_some() && options.from_latest_event.is_some() {
        return Err(("lowerBound and fromLatestEvent cannot be combined".to_owned(), "selection-conflicting"));
    }
    let mut start = 0;
    if let Some(bound) = &options.lower_bound {
        let id: usize =
            bound.id.parse().map_err(|_| (format!("invalid lower bound id {:?}", bound.id), "event-id-malformed"))?;
        start = match bound.kind.as_str() {
            "inclusive" => id,
            "exclusive" => id + 1,
            other => return Err((format!("invalid bound type {other:?}"), "bound-type-unknown")),
        };
    }
    if let Some(from) = &options.from_latest_event {
        if !valid_subject(&from.subject) {
            return Err((format!("invalid fromLatestEvent subject {:?}", from.subject), "subject-malformed"));
        }
        if !valid_type(&from.event_type) {
            return Err((format!("invalid fromLatestEvent type {:?}", from.event_type), "event-type-malformed"));
        }
        let latest = log
            .subjects
            .get(&from.subject)
            .and_then(|indexes| indexes.iter().rev().find(|&&i| log.events[i].event_type == from.event_type));
        match (latest, from.if_event_is_missing.as_str()) {
            (Some(&i), _) => start = start.max(i),
            (None, "read-everything") => {}
            (None, "read-nothing") => return Ok(None),
            (None, other) => {
                return Err((format!("invalid ifEventIsMissing {other:?}"), "if-event-is-missing-unknown"))
            }
        }
    }
    Ok(Some(start))
}

pub(crate) async fn read_events(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: ReadBody = match parse_body(api, &body) {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    if !valid_subject(&body.subject) {
        return invalid_subject(api, &body.subject);
    }
    let lines = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        let start = match start_index(&log, &body.options) {
            Ok(Some(start)) => start,
            Ok(None) => return answers::finite(api, Vec::new(), !shared.faults().no_end_item),
            Err((text, slug)) => return answers::refuse(api, StatusCode::BAD_REQUEST, &text, slug),
        };
        let mut end = log.events.len();
        if let Some(bound) = &body.options.upper_bound {
            let Ok(id) = bound.id.parse::<usize>() else { return bad_request("invalid upper bound id") };
            end = end.min(if bound.kind == "exclusive" { id } else { id + 1 });
        }
        let recursive = body.options.recursive;
        let mut selected: Vec<Bytes> = if recursive {
            log.events
                .get(start..end.max(start))
                .unwrap_or_default()
                .iter()
                .filter(|e| matches_subject(&body.subject, &e.subject, true))
                .map(|e| answers::event_line(api, e))
                .collect()
        } else {
            log.subjects
                .get(&body.subject)
                .map(|indexes| {
                    indexes
                        .iter()
                        .filter(|&&i| i >= start && i < end)
                        .map(|&i| answers::event_line(api, &log.events[i]))
                        .collect()
                })
                .unwrap_or_default()
        };
        match body.options.order.as_deref() {
            None | Some("chronological") => {}
            Some("antichronological") => selected.reverse(),
            Some(other) => return bad_request(format!("invalid order {other:?}")),
        }
        selected
    };
    let end = !shared.faults().no_end_item;
    answers::finite(api, lines, end)
}

pub(crate) async fn observe_events(call: Call) -> Response {
    enum Step {
        Line(Bytes),
        Break,
    }
    struct Observation {
        api: ApiVersion,
        shared: Arc<Shared>,
        head: watch::Receiver<usize>,
        subject: String,
        recursive: bool,
        next: usize,
        sent: usize,
        break_after: Option<usize>,
        garbage_after: Option<usize>,
        pending: std::collections::VecDeque<Step>,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: ReadBody = match parse_body(api, &body) {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    if !valid_subject(&body.subject) {
        return invalid_subject(api, &body.subject);
    }
    if body.options.order.is_some() || body.options.upper_bound.is_some() {
        return bad_request("observe-events takes neither order nor upperBound");
    }
    let start = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        match start_index(&log, &body.options) {
            Ok(start) => start.unwrap_or(usize::MAX),
            Err((text, slug)) => return answers::refuse(api, StatusCode::BAD_REQUEST, &text, slug),
        }
    };
    let (break_after, garbage_after) = {
        let mut faults = shared.faults();
        (faults.break_observe_after.take(), faults.garbage_after.take())
    };
    let observation = Observation {
        api,
        head: shared.head.subscribe(),
        shared,
        subject: body.subject,
        recursive: body.options.recursive,
        next: start,
        sent: 0,
        break_after,
        garbage_after,
        pending: std::collections::VecDeque::new(),
    };
    let body = stream::unfold(observation, |mut o| async move {
        loop {
            if let Some(step) = o.pending.pop_front() {
                return match step {
                    Step::Line(line) => Some((Ok(line), o)),
                    Step::Break => Some((Err(std::io::Error::other("injected: connection broken off")), o)),
                };
            }
            o.head.borrow_and_update();
            {
                let log = o.shared.log.read().unwrap_or_else(PoisonError::into_inner);
                while o.next < log.events.len() && o.pending.len() < 256 {
                    let event = &log.events[o.next];
                    o.next += 1;
                    if !matches_subject(&o.subject, &event.subject, o.recursive) {
                        continue;
                    }
                    if o.break_after == Some(o.sent) {
                        let line = answers::event_line(o.api, event);
                        o.pending.push_back(Step::Line(line.slice(..line.len() / 2)));
                        o.pending.push_back(Step::Break);
                        break;
                    }
                    if o.garbage_after == Some(o.sent) {
                        o.garbage_after = None;
                        o.pending.push_back(Step::Line(answers::garbage(o.api)));
                    }
                    o.pending.push_back(Step::Line(answers::event_line(o.api, event)));
                    o.sent += 1;
                }
            }
            if !o.pending.is_empty() {
                continue;
            }
            let heartbeat = o.shared.options.heartbeat;
            tokio::select! {
                changed = o.head.changed() => if changed.is_err() { return None },
                () = tokio::time::sleep(heartbeat) => {
                    return Some((Ok(answers::heartbeat(o.api)), o));
                }
            }
        }
    });
    answers::ndjson_stream(body)
}

/// The refusal of a malformed subject.
fn invalid_subject(api: ApiVersion, subject: &str) -> Response {
    answers::refuse(api, StatusCode::BAD_REQUEST, &format!("invalid subject {subject:?}"), "subject-malformed")
}
