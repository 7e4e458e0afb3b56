//! A stream's page (its events, and the state panel of a registered
//! aggregate), and the scan of the log's last events causality reads.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::html;
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, EventStore};
use orchestrix::{StoreError, StreamId};
use serde::Deserialize;

use crate::layout;
use crate::render::{data_json, event_href, metadata, without_credentials};
use crate::scope::Scope;

/// The most events a stream's page shows.
const MAX_STREAM_EVENTS: usize = 500;

/// A 503 page for a store that failed, credentials cut from its message.
pub(crate) fn unavailable(error: &StoreError) -> Response {
    let message = without_credentials(&error.to_string());
    (StatusCode::SERVICE_UNAVAILABLE, layout::bare("The store failed", &message)).into_response()
}

/// The last `limit` events of the log that `filter` passes, in position
/// order.
///
/// Global positions need not be dense (PostgreSQL's carry the transaction
/// in their high bits), so the scan reads back from the head over a span
/// of positions that grows fourfold until it holds `limit` events or
/// reaches the start; it keeps only the last `limit` of what it reads.
pub(crate) async fn scan(
    events: &dyn EventStore,
    limit: u64,
    filter: &EventFilter,
) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    let Some(head) = events.head_position().await? else { return Ok(Vec::new()) };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
    let mut span = u64::try_from(limit).unwrap_or(u64::MAX);
    loop {
        let from = head.saturating_sub(span.saturating_sub(1));
        let mut read = events.read_all(from, filter);
        let mut found = VecDeque::with_capacity(limit.min(4096));
        while let Some(event) = read.next().await {
            if found.len() == limit {
                found.pop_front();
            }
            found.push_back(event?);
        }
        if found.len() == limit || from == 0 {
            return Ok(found.into());
        }
        span = span.saturating_mul(4);
    }
}

/// The stream page's query.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    /// The stream id, `Category/id`.
    id: String,
    /// The first version shown.
    #[serde(default)]
    from: u64,
    /// The version whose state the state panel shows (empty: the last).
    #[serde(default)]
    at: String,
}

/// `GET /stream?id=Account/42`: the stream's events, metadata and data.
pub(crate) async fn stream(scope: Scope, headers: HeaderMap, Query(query): Query<StreamQuery>) -> Response {
    let Some((category, id)) = query.id.split_once('/') else {
        return (StatusCode::BAD_REQUEST, layout::bare("Bad stream id", "A stream id reads Category/id."))
            .into_response();
    };
    let stream = match StreamId::new(category, id) {
        Ok(stream) => stream,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, layout::bare("Bad stream id", &error.to_string())).into_response()
        }
    };
    let mut read = scope.events.read_stream(&stream, query.from);
    let mut events = Vec::new();
    while let Some(event) = read.next().await {
        match event {
            Ok(event) => events.push(event),
            Err(error) => return unavailable(&error),
        }
        if events.len() == MAX_STREAM_EVENTS {
            break;
        }
    }
    let next = (events.len() == MAX_STREAM_EVENTS).then(|| events.last().map_or(0, |event| event.stream_version + 1));
    let mount = &scope.mount;
    let console = &scope.shared.console;
    let name = stream.to_string();
    let status = if events.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
    let state = crate::time_travel::panel(&scope, &stream, &query.at).await;
    let body = html! {
        h1 { "Stream " code id="stream-name" { (name) } }
        @if events.is_empty() { p id="no-events" { "No events." } }
        (state)
        @for event in &events {
            article.event id=(format!("v{}", event.stream_version)) {
                h2 {
                    a href=(event_href(mount, event.id)) { span.version { (event.stream_version) } " " span.event-type { (event.event_type) } }
                }
                (metadata(mount, event))
                pre.json { (data_json(console, event)) }
            }
        }
        @if let Some(next) = next {
            a.more href=(mount.href(&format!("/stream?id={}&from={next}", crate::render::encode_component(&name)))) { "Later events" }
        }
    };
    (status, layout::page(&scope.shared, mount, &headers, &name, &body)).into_response()
}
