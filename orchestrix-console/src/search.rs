//! The streams page: a search through [`EventStore::list_streams`] (by
//! stream id prefix and aggregate type, in `(type, id)` order) or, with an
//! event type or a time, through the global log (in position order), a
//! page at a time with a link to the next (ADR 0052).

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use maud::{html, Markup};
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, EventStore, StreamListing, StreamSummary};
use orchestrix::{StoreError, StreamId};
use serde::Deserialize;

use crate::layout;
use crate::render::{encode_component, stream_href};
use crate::scope::{Mount, Scope};
use crate::streams::unavailable;

/// The most streams a page lists.
const PAGE: usize = 100;

/// The most pages of [`EventStore::list_streams`] one page of a search by
/// aggregate-type prefix reads before it links to the next.
const MAX_LISTINGS: usize = 20;

/// The most events of the log one page of a search by event type or time
/// reads before it links to the next.
const LOG_BUDGET: usize = 20_000;

/// How far the start of a search by time reaches back before the first
/// event recorded at its `since`: room for writers whose clocks disagree.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(1);

/// The longest a search field may be.
const MAX_FIELD: usize = 512;

/// The search form, and where the page continues.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    /// Stream id prefix (`Account/4`, or `Acc`: a prefix of the type).
    #[serde(default)]
    prefix: String,
    /// Aggregate type, exactly.
    #[serde(default, rename = "type")]
    category: String,
    /// Event type, exactly.
    #[serde(default)]
    event: String,
    /// Recorded at or after (UTC).
    #[serde(default)]
    since: String,
    /// Recorded at or before (UTC).
    #[serde(default)]
    until: String,
    /// A listing's next page: after this stream.
    #[serde(default)]
    after: String,
    /// A search of the log's next page: from this position.
    #[serde(default)]
    from: String,
}

/// Why a search is refused: shown with a 400.
#[derive(Debug)]
struct Refused(String);

/// Which streams a search asks for, by their id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Streams {
    /// The aggregate type, exactly.
    category: Option<String>,
    /// A prefix of the aggregate id (with `category`).
    id_prefix: Option<String>,
    /// A prefix of the aggregate type (without `category`).
    type_prefix: Option<String>,
    /// Nothing can match (the prefix names another type than `category`).
    none: bool,
}

impl Streams {
    /// The streams whose id (`Type/id`) starts with `prefix` and whose
    /// type is `category` (either may be empty: no condition).
    pub(crate) fn new(prefix: &str, category: &str) -> Self {
        let category = (!category.is_empty()).then(|| category.to_owned());
        match prefix.split_once('/') {
            Some((kind, id)) => Self {
                none: category.as_deref().is_some_and(|category| category != kind),
                category: Some(kind.to_owned()),
                id_prefix: (!id.is_empty()).then(|| id.to_owned()),
                type_prefix: None,
            },
            None if prefix.is_empty() => Self { category, ..Self::default() },
            None => match category {
                Some(category) => {
                    Self { none: !category.starts_with(prefix), category: Some(category), ..Self::default() }
                }
                None => Self { type_prefix: Some(prefix.to_owned()), ..Self::default() },
            },
        }
    }

    /// The streams of the aggregate types that start with `prefix`.
    pub(crate) fn of_types_starting(prefix: &str) -> Self {
        Self::new(prefix, "")
    }

    /// Whether `stream` is one asked for.
    pub(crate) fn admits(&self, stream: &StreamId) -> bool {
        !self.none
            && self.category.as_deref().is_none_or(|category| stream.category() == category)
            && self.id_prefix.as_deref().is_none_or(|prefix| stream.id().starts_with(prefix))
            && self.type_prefix.as_deref().is_none_or(|prefix| stream.category().starts_with(prefix))
    }

    /// Whether no stream at or after `stream` in the listing's order can
    /// be one asked for (a type prefix's streams are contiguous in it).
    fn passed(&self, stream: &StreamId) -> bool {
        self.type_prefix.as_deref().is_some_and(|prefix| {
            let category = stream.category();
            category > prefix && !category.starts_with(prefix)
        })
    }

    /// The first listing, from `after` or else the start of the range.
    fn listing(&self, after: Option<StreamId>, limit: usize) -> StreamListing {
        let mut listing = StreamListing::new(limit);
        if let Some(category) = &self.category {
            listing = listing.with_category(category.clone());
        }
        if let Some(prefix) = &self.id_prefix {
            listing = listing.with_id_prefix(prefix.clone());
        }
        match after.or_else(|| self.type_prefix.as_deref().and_then(below_types_starting)) {
            Some(after) => listing.after(after),
            None => listing,
        }
    }
}

/// A stream id that sorts before every stream whose type starts with
/// `prefix` and after nearly every other one: where a listing of those
/// streams starts, as [`StreamListing`] filters types exactly only.
///
/// The prefix with its last character lowered by one, then three
/// U+10FFFF; the streams between it and the prefix's first are listed
/// too and dropped by [`Streams::admits`]. `None` (start at the beginning)
/// when no such id exists.
fn below_types_starting(prefix: &str) -> Option<StreamId> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = u32::from(chars.pop()?);
    let lower = (0..last).rev().find_map(char::from_u32)?;
    chars.push(lower);
    chars.extend(['\u{10FFFF}'; 3]);
    StreamId::new(chars.into_iter().collect::<String>(), "\u{10FFFF}").ok()
}

/// One page of a listing: the streams asked for, and the stream to list
/// after for the next page (`None`: this was the last).
pub(crate) async fn list_page(
    events: &dyn EventStore,
    streams: &Streams,
    after: Option<StreamId>,
    limit: usize,
) -> Result<(Vec<StreamSummary>, Option<StreamId>), StoreError> {
    if streams.none {
        return Ok((Vec::new(), None));
    }
    let mut found = Vec::new();
    let mut listing = streams.listing(after, limit);
    for _ in 0..MAX_LISTINGS {
        let page = events.list_streams(&listing).await?;
        let Some(last) = page.last().map(|summary| summary.stream.clone()) else { return Ok((found, None)) };
        let full = page.len() == listing.limit();
        for summary in page {
            if streams.passed(&summary.stream) {
                return Ok((found, None));
            }
            if streams.admits(&summary.stream) {
                let stream = summary.stream.clone();
                found.push(summary);
                if found.len() == limit {
                    return Ok((found, Some(stream)));
                }
            }
        }
        if !full {
            return Ok((found, None));
        }
        listing = streams.listing(Some(last), limit);
    }
    let next = listing.after_stream().cloned();
    Ok((found, next))
}

/// Parses a time of the search form: RFC 3339, or a date and time (or a
/// date) taken as UTC, as a browser's `datetime-local` field sends it.
fn parse_time(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, Refused> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(time.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(time.and_utc()));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).map(|time| time.and_utc()));
    }
    Err(Refused(format!("`{field}` reads 2026-12-08T09:30 (UTC) or RFC 3339, not `{text}`")))
}

/// The first position from which every event of `events` was recorded at
/// or after `time`, found by bisection over the positions (recorded times
/// rise with positions, up to the writers' clock skew).
pub(crate) async fn first_position_at(events: &dyn EventStore, time: DateTime<Utc>) -> Result<u64, StoreError> {
    static ALL: EventFilter = EventFilter::all();
    let Some(head) = events.head_position().await? else { return Ok(0) };
    let (mut low, mut high) = (0_u64, head.saturating_add(1));
    while low < high {
        let middle = low + (high - low) / 2;
        let first = events.read_all(middle, &ALL).next().await.transpose()?;
        match first {
            Some(event) if event.recorded_at < time => low = event.global_position.saturating_add(1).max(middle + 1),
            _ => high = middle,
        }
    }
    Ok(low)
}

/// A stream found in the log.
struct Seen {
    stream: StreamId,
    events: u64,
    last_version: u64,
    last_type: String,
    last_at: DateTime<Utc>,
}

/// A page of a search of the log: the streams with matching events in it,
/// in the order of their first matching event, and where the next page
/// starts.
struct LogPage {
    streams: Vec<Seen>,
    first: Option<u64>,
    last: Option<u64>,
    next: Option<u64>,
}

async fn search_log(
    events: &dyn EventStore,
    streams: &Streams,
    filter: &EventFilter,
    (since, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    from: Option<u64>,
) -> Result<LogPage, StoreError> {
    let start = match (from, since) {
        (Some(from), _) => from,
        (None, Some(since)) => first_position_at(events, since - CLOCK_SKEW).await?,
        (None, None) => 0,
    };
    let mut page = LogPage { streams: Vec::new(), first: None, last: None, next: None };
    let mut index: HashMap<StreamId, usize> = HashMap::new();
    let mut read = events.read_all(start, filter);
    let mut count = 0_usize;
    while let Some(event) = read.next().await {
        let event = event?;
        if until.is_some_and(|until| event.recorded_at > until + CLOCK_SKEW) {
            break;
        }
        let in_time = since.is_none_or(|since| event.recorded_at >= since)
            && until.is_none_or(|until| event.recorded_at <= until);
        if in_time && streams.admits(&event.stream) {
            if !index.contains_key(&event.stream) && page.streams.len() == PAGE {
                page.next = Some(event.global_position);
                break;
            }
            note(&mut page, &mut index, &event);
        }
        page.first.get_or_insert(event.global_position);
        page.last = Some(event.global_position);
        count += 1;
        if count == LOG_BUDGET {
            page.next = Some(event.global_position + 1);
            break;
        }
    }
    Ok(page)
}

fn note(page: &mut LogPage, index: &mut HashMap<StreamId, usize>, event: &RecordedEvent) {
    let at = *index.entry(event.stream.clone()).or_insert_with(|| {
        page.streams.push(Seen {
            stream: event.stream.clone(),
            events: 0,
            last_version: 0,
            last_type: String::new(),
            last_at: event.recorded_at,
        });
        page.streams.len() - 1
    });
    let seen = &mut page.streams[at];
    seen.events += 1;
    seen.last_version = event.stream_version;
    seen.last_type.clone_from(&event.event_type);
    seen.last_at = event.recorded_at;
}

impl Search {
    /// The link to this search's page continuing at `key=value`.
    fn next_href(&self, mount: &Mount, key: &str, value: &str) -> String {
        // The view's first page has no trailing `/` (how axum 0.8 nests).
        format!(
            "{}?prefix={}&type={}&event={}&since={}&until={}&{key}={}",
            mount.href("/"),
            encode_component(&self.prefix),
            encode_component(&self.category),
            encode_component(&self.event),
            encode_component(&self.since),
            encode_component(&self.until),
            encode_component(value),
        )
    }

    fn check(&self) -> Result<(), Refused> {
        for (name, value) in [
            ("prefix", &self.prefix),
            ("type", &self.category),
            ("event", &self.event),
            ("since", &self.since),
            ("until", &self.until),
            ("after", &self.after),
            ("from", &self.from),
        ] {
            if value.len() > MAX_FIELD {
                return Err(Refused(format!("`{name}` is longer than {MAX_FIELD} bytes")));
            }
            if value.chars().any(char::is_control) {
                return Err(Refused(format!("`{name}` holds a control character")));
            }
        }
        Ok(())
    }
}

/// `GET /`: the streams, searched.
pub(crate) async fn list(scope: Scope, headers: HeaderMap, Query(search): Query<Search>) -> Response {
    match answer(&scope, &headers, &search).await {
        Ok(response) => response,
        Err(Refused(reason)) => (StatusCode::BAD_REQUEST, layout::bare("Bad search", &reason)).into_response(),
    }
}

async fn answer(scope: &Scope, headers: &HeaderMap, search: &Search) -> Result<Response, Refused> {
    search.check()?;
    let streams = Streams::new(search.prefix.trim(), search.category.trim());
    let times = (parse_time("since", &search.since)?, parse_time("until", &search.until)?);
    if let (Some(since), Some(until)) = times {
        if since > until {
            return Err(Refused("`since` is after `until`".into()));
        }
    }
    let event = search.event.trim();
    let mount = &scope.mount;
    let results = if event.is_empty() && times == (None, None) {
        let after = match search.after.split_once('/') {
            Some((category, id)) => {
                Some(StreamId::new(category, id).map_err(|error| Refused(format!("`after`: {error}")))?)
            }
            None if search.after.is_empty() => None,
            None => return Err(Refused("`after` is a stream id, `Type/id`".into())),
        };
        let (found, next) = match list_page(scope.events.as_ref(), &streams, after, PAGE).await {
            Ok(page) => page,
            Err(error) => return Ok(unavailable(&error)),
        };
        let next = next.map(|stream| search.next_href(mount, "after", &stream.to_string()));
        listed(mount, &found, next.as_deref())
    } else {
        let from = match search.from.trim() {
            "" => None,
            from => Some(from.parse::<u64>().map_err(|_| Refused("`from` is a position of the log".into()))?),
        };
        let filter = if event.is_empty() { EventFilter::all() } else { EventFilter::types([event]) };
        let page = match search_log(scope.events.as_ref(), &streams, &filter, times, from).await {
            Ok(page) => page,
            Err(error) => return Ok(unavailable(&error)),
        };
        let next = page.next.map(|position| search.next_href(mount, "from", &position.to_string()));
        logged(mount, &page, next.as_deref())
    };
    let body = html! {
        h1 { "Streams" }
        form.search method="get" action=(mount.href("/")) {
            label { "Stream id prefix " input type="search" name="prefix" value=(search.prefix) placeholder="Account/42"; }
            label { "Aggregate type " input type="search" name="type" value=(search.category) placeholder="Account"; }
            label { "Event type " input type="search" name="event" value=(search.event) placeholder="MoneyDeposited"; }
            label { "Recorded since (UTC) " input type="datetime-local" step="1" name="since" value=(search.since); }
            label { "until (UTC) " input type="datetime-local" step="1" name="until" value=(search.until); }
            button type="submit" { "Search" }
        }
        (results)
    };
    Ok(layout::page(&scope.shared, mount, headers, "Streams", &body).into_response())
}

/// A page of a listing.
fn listed(mount: &Mount, found: &[StreamSummary], next: Option<&str>) -> Markup {
    html! {
        p.hint { "The streams, from the store's listing, by aggregate type and id; " (PAGE) " a page." }
        @if found.is_empty() {
            p id="no-streams" { "No stream matches." }
        } @else {
            div.scroll { table id="streams" {
                thead { tr { th { "stream" } th { "events" } th { "version" } th { "last position" } } }
                tbody {
                    @for summary in found {
                        tr {
                            td { a.stream href=(stream_href(mount, &summary.stream.to_string())) { (summary.stream.to_string()) } }
                            td { (summary.events) }
                            td { (summary.version) }
                            td { (summary.last_position) }
                        }
                    }
                }
            } }
        }
        @if let Some(next) = next { a.more id="next" href=(next) { "Next page" } }
    }
}

/// A page of a search of the log.
fn logged(mount: &Mount, page: &LogPage, next: Option<&str>) -> Markup {
    html! {
        p.hint {
            "The streams with matching events at positions "
            (page.first.map_or_else(|| "–".to_owned(), |p| p.to_string())) "–"
            (page.last.map_or_else(|| "–".to_owned(), |p| p.to_string()))
            " of the log, in the order of their first one; a stream with matching events on a later page shows again there."
        }
        @if page.streams.is_empty() {
            p id="no-streams" { "No stream matches." }
        } @else {
            div.scroll { table id="streams" {
                thead { tr { th { "stream" } th { "matching events" } th { "last version" } th { "last event" } th { "at" } } }
                tbody {
                    @for seen in &page.streams {
                        tr {
                            td { a.stream href=(stream_href(mount, &seen.stream.to_string())) { (seen.stream.to_string()) } }
                            td { (seen.events) }
                            td { (seen.last_version) }
                            td { (seen.last_type) }
                            td { (seen.last_at.format("%Y-%m-%d %H:%M:%S")) }
                        }
                    }
                }
            } }
        }
        @if let Some(next) = next { a.more id="next" href=(next) { "Next page" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> StreamId {
        let (category, id) = text.split_once('/').unwrap();
        StreamId::new(category, id).unwrap()
    }

    #[test]
    fn a_prefix_is_split_into_type_and_id_prefix() {
        let account = Streams::new("Account/4", "");
        assert!(account.admits(&stream("Account/42")) && !account.admits(&stream("Account/5")));
        assert!(!account.admits(&stream("Accounting/42")));
        let typed = Streams::new("Acc", "");
        assert!(typed.admits(&stream("Account/1")) && typed.admits(&stream("Accounting/1")));
        assert!(!typed.admits(&stream("Audit/1")));
        assert!(Streams::new("Order/1", "Account").none, "a prefix of another type matches nothing");
        assert!(!Streams::new("Acc", "Account").none && Streams::new("Or", "Account").none);
    }

    #[test]
    fn a_type_prefix_starts_below_its_first_stream_and_ends_past_its_last() {
        for prefix in ["Acc", "a", "é", "\u{E000}x", "saga-"] {
            let start = below_types_starting(prefix).unwrap();
            let first = stream(&format!("{prefix}/1"));
            assert!((start.category(), start.id()) < (first.category(), first.id()), "{prefix}");
        }
        assert!(below_types_starting("").is_none());
        let typed = Streams::of_types_starting("Acc");
        assert!(typed.passed(&stream("Ad/1")) && !typed.passed(&stream("Accz/1")) && !typed.passed(&stream("Ab/1")));
    }

    #[test]
    fn times_read_as_utc_or_rfc_3339() {
        let at = |text| parse_time("since", text).unwrap().unwrap().to_rfc3339();
        assert_eq!(at("2026-12-08T09:30"), "2026-12-08T09:30:00+00:00");
        assert_eq!(at("2026-12-08T09:30:15"), "2026-12-08T09:30:15+00:00");
        assert_eq!(at("2026-12-08T10:30:00+01:00"), "2026-12-08T09:30:00+00:00");
        assert_eq!(at("2026-12-08"), "2026-12-08T00:00:00+00:00");
        assert!(parse_time("since", "").unwrap().is_none());
        assert!(parse_time("since", "yesterday").unwrap_err().0.contains("`since`"));
    }
}
