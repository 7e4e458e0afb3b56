//! An event's page: its metadata and data, and its causality: the chain
//! of events that caused it (causation ids followed back across streams),
//! the events it caused, and the other events of its correlation.

use std::sync::Arc;

use axum::extract::RawPathParams;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::EventFilter;
use uuid::Uuid;

use crate::layout;
use crate::render::{data_json, event_href, event_table, metadata};
use crate::scope::Scope;
use crate::streams::{scan, unavailable};

/// How far back the chain of causes is followed.
const MAX_CHAIN: usize = 32;

/// What the chain of causes ends with.
enum ChainEnd {
    /// An event without a causation id: the origin.
    Origin,
    /// A causation id that names no event of this view: a command, or an
    /// event of another store or tenant.
    Outside(Uuid),
    /// The chain is longer than [`MAX_CHAIN`] (or loops).
    Cut,
}

/// The path parameter `name`.
pub(crate) fn param<'a>(params: &'a RawPathParams, name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| *key == name).map(|(_, value)| value)
}

/// `GET /events/{id}`.
pub(crate) async fn event(scope: Scope, headers: HeaderMap, params: RawPathParams) -> Response {
    let Some(id) = param(&params, "event").and_then(|id| Uuid::parse_str(id).ok()) else {
        return (StatusCode::BAD_REQUEST, layout::bare("Bad event id", "An event id is a UUID.")).into_response();
    };
    let event = match scope.events.read_event(id).await {
        Ok(Some(event)) => event,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, layout::bare("Not found", "No such event in this view.")).into_response()
        }
        Err(error) => return unavailable(&error),
    };
    // The causes, nearest first.
    let mut causes: Vec<Arc<RecordedEvent>> = Vec::new();
    let mut next = event.metadata.causation_id.filter(|cause| *cause != event.id);
    let end = loop {
        let Some(cause) = next else { break ChainEnd::Origin };
        if causes.len() == MAX_CHAIN || causes.iter().any(|seen| seen.id == cause) {
            break ChainEnd::Cut;
        }
        match scope.events.read_event(cause).await {
            Ok(Some(found)) => {
                next = found.metadata.causation_id.filter(|id| *id != found.id);
                causes.push(found);
            }
            Ok(None) => break ChainEnd::Outside(cause),
            Err(error) => return unavailable(&error),
        }
    };
    let window = scope.shared.console.scan_window;
    let recent = match scan(scope.events.as_ref(), window, &EventFilter::all()).await {
        Ok(recent) => recent,
        Err(error) => return unavailable(&error),
    };
    let effects: Vec<_> = recent
        .iter()
        .filter(|other| other.metadata.causation_id == Some(event.id) && other.id != event.id)
        .cloned()
        .collect();
    let correlated: Vec<_> = match event.metadata.correlation_id {
        Some(correlation) => {
            recent.iter().filter(|other| other.metadata.correlation_id == Some(correlation)).cloned().collect()
        }
        None => Vec::new(),
    };
    let mount = &scope.mount;
    let console = &scope.shared.console;
    let title = format!("{} {}", event.event_type, event.id);
    let body = html! {
        h1 { span.event-type { (event.event_type) } }
        (metadata(mount, &event))
        pre.json id="event-data" { (data_json(console, &event)) }
        section id="caused-by" {
            h2 { "Caused by" }
            @if causes.is_empty() && matches!(end, ChainEnd::Origin) { p { "Nothing: this event starts its chain." } }
            ol.chain {
                @for cause in causes.iter().rev() {
                    li { a href=(event_href(mount, cause.id)) { (cause.event_type) } " in " (cause.stream.to_string()) " @ " (cause.stream_version) }
                }
                li.current { strong { (event.event_type) } " (this event)" }
            }
            @match end {
                ChainEnd::Outside(id) => p.hint { "The chain starts with " code { (id) } ", which is not an event of this view (a command, or another store's event)." },
                ChainEnd::Cut => p.hint { "The chain goes on; only " (MAX_CHAIN) " causes are followed." },
                ChainEnd::Origin => {},
            }
        }
        section id="caused" {
            h2 { "Caused" }
            @if effects.is_empty() { p { "No event of the last " (window) " events of the log names this one as its cause." } }
            @else { (event_table(mount, &effects, true)) }
        }
        @if let Some(correlation) = event.metadata.correlation_id {
            section id="correlated" {
                h2 { "Correlation " code { (correlation) } }
                (event_table(mount, &correlated, true))
            }
        }
    };
    layout::page(&scope.shared, mount, &headers, &title, &body).into_response()
}
