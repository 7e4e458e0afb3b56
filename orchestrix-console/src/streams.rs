//! The streams page (a search over the recent log) and a stream's page.

use std::collections::{BTreeMap, VecDeque};
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
use crate::render::{data_json, event_href, metadata, stream_href, without_credentials};
use crate::scope::Scope;

/// The most streams the search lists.
const MAX_STREAMS: usize = 200;

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

/// The search form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    /// Stream id prefix (`Account/4`).
    #[serde(default)]
    prefix: String,
    /// Aggregate type.
    #[serde(default, rename = "type")]
    category: String,
    /// Event type.
    #[serde(default)]
    event: String,
}

struct Found {
    events: u64,
    last_version: u64,
    last_type: String,
    last_at: String,
    last_position: u64,
}

/// `GET /`: the streams of the recent log, searched.
pub(crate) async fn list(scope: Scope, headers: HeaderMap, Query(search): Query<Search>) -> Response {
    let filter = match search.event.trim() {
        "" => EventFilter::all(),
        event => EventFilter::types([event]),
    };
    let window = scope.shared.console.scan_window;
    let events = match scan(scope.events.as_ref(), window, &filter).await {
        Ok(events) => events,
        Err(error) => return unavailable(&error),
    };
    let mut streams: BTreeMap<String, Found> = BTreeMap::new();
    let (prefix, category) = (search.prefix.trim(), search.category.trim());
    for event in &events {
        let name = event.stream.to_string();
        if !name.starts_with(prefix) || (!category.is_empty() && event.stream.category() != category) {
            continue;
        }
        let found = streams.entry(name).or_insert_with(|| Found {
            events: 0,
            last_version: 0,
            last_type: String::new(),
            last_at: String::new(),
            last_position: 0,
        });
        found.events += 1;
        found.last_version = event.stream_version;
        found.last_type.clone_from(&event.event_type);
        found.last_at = event.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string();
        found.last_position = event.global_position;
    }
    let mut rows: Vec<_> = streams.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.last_position));
    let more = rows.len() > MAX_STREAMS;
    rows.truncate(MAX_STREAMS);
    let mount = &scope.mount;
    let body = html! {
        h1 { "Streams" }
        form.search method="get" action=(mount.href("/")) {
            label { "Stream id prefix " input type="search" name="prefix" value=(search.prefix) placeholder="Account/42"; }
            label { "Aggregate type " input type="search" name="type" value=(search.category) placeholder="Account"; }
            label { "Event type " input type="search" name="event" value=(search.event) placeholder="MoneyDeposited"; }
            button type="submit" { "Search" }
        }
        p.hint { "Searches the last " (window) " events of the log." }
        @if rows.is_empty() {
            p id="no-streams" { "No stream matches." }
        } @else {
            div.scroll { table id="streams" {
                thead { tr { th { "stream" } th { "events seen" } th { "version" } th { "last event" } th { "at" } } }
                tbody {
                    @for (name, found) in &rows {
                        tr {
                            td { a.stream href=(stream_href(mount, name)) { (name) } }
                            td { (found.events) }
                            td { (found.last_version) }
                            td { (found.last_type) }
                            td { (found.last_at) }
                        }
                    }
                }
            } }
            @if more { p.hint { "Only the " (MAX_STREAMS) " most recent streams are listed; narrow the search." } }
        }
    };
    layout::page(&scope.shared, mount, &headers, "Streams", &body).into_response()
}

/// The stream page's query.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    /// The stream id, `Category/id`.
    id: String,
    /// The first version shown.
    #[serde(default)]
    from: u64,
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
    let body = html! {
        h1 { "Stream " code id="stream-name" { (name) } }
        @if events.is_empty() { p id="no-events" { "No events." } }
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
