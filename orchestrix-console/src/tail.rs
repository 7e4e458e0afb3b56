//! The live tail: a page that follows the global log over server-sent
//! events, with filters.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use maud::html;
use orchestrix::store::EventFilter;
use serde::Deserialize;

use crate::layout;
use crate::render::{encode_component, event_href, stream_href, without_credentials};
use crate::scope::Scope;

/// The tail's filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TailFilter {
    /// Stream id prefix.
    #[serde(default)]
    prefix: String,
    /// Aggregate type.
    #[serde(default, rename = "type")]
    category: String,
    /// Event type.
    #[serde(default)]
    event: String,
}

impl TailFilter {
    fn query(&self) -> String {
        format!(
            "prefix={}&type={}&event={}",
            encode_component(&self.prefix),
            encode_component(&self.category),
            encode_component(&self.event)
        )
    }
}

/// `GET /tail`: the page; its script opens `tail/events`.
pub(crate) async fn page(scope: Scope, headers: HeaderMap, Query(filter): Query<TailFilter>) -> Response {
    let mount = &scope.mount;
    let source = mount.href(&format!("/tail/events?{}", filter.query()));
    let body = html! {
        h1 { "Live tail" }
        form.search method="get" action=(mount.href("/tail")) {
            label { "Stream id prefix " input type="search" name="prefix" value=(filter.prefix) placeholder="Account/"; }
            label { "Aggregate type " input type="search" name="type" value=(filter.category) placeholder="Account"; }
            label { "Event type " input type="search" name="event" value=(filter.event) placeholder="MoneyDeposited"; }
            button type="submit" { "Follow" }
        }
        p.hint { "New events appear at the top as they are committed. " span id="tail-status" data-state="connecting" { "connecting…" } }
        div.scroll {
            table id="tail" data-source=(source) {
                thead { tr { th { "pos" } th { "stream" } th { "ver" } th { "type" } th { "recorded" } } }
                tbody {}
            }
        }
    };
    layout::page(&scope.shared, mount, &headers, "Live tail", &body).into_response()
}

/// `GET /tail/events`: the events committed from now on (or after the
/// `Last-Event-ID` a reconnecting browser sends), as server-sent events
/// whose data is JSON.
pub(crate) async fn events(
    scope: Scope,
    headers: HeaderMap,
    Query(filter): Query<TailFilter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .map(|last| last + 1);
    let start = match resume {
        Some(start) => Ok(start),
        None => scope.events.head_position().await.map(|head| head.map_or(0, |head| head + 1)),
    };
    let store_filter = match filter.event.trim() {
        "" => EventFilter::all(),
        event => EventFilter::types([event]),
    };
    let prefix = filter.prefix.trim().to_owned();
    let category = filter.category.trim().to_owned();
    let mount = scope.mount.clone();
    let events = match start {
        Ok(start) => scope
            .events
            .subscribe(start, store_filter)
            .filter_map(move |event| {
                let item = match event {
                    Ok(event) => {
                        let name = event.stream.to_string();
                        if !name.starts_with(&prefix) || (!category.is_empty() && event.stream.category() != category) {
                            None
                        } else {
                            let data = serde_json::json!({
                                "position": event.global_position,
                                "id": event.id,
                                "stream": name,
                                "version": event.stream_version,
                                "type": event.event_type,
                                "at": event.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                                "stream_href": stream_href(&mount, &name),
                                "event_href": event_href(&mount, event.id),
                            });
                            Some(
                                Event::default()
                                    .id(event.global_position.to_string())
                                    .event("append")
                                    .data(data.to_string()),
                            )
                        }
                    }
                    Err(error) => Some(Event::default().event("failure").data(without_credentials(&error.to_string()))),
                };
                std::future::ready(item.map(Ok))
            })
            .boxed(),
        Err(error) => {
            stream::iter([Ok(Event::default().event("failure").data(without_credentials(&error.to_string())))]).boxed()
        }
    };
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
