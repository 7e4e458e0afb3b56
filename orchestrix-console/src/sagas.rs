//! The sagas: the instances of every saga kind (the streams
//! `saga-<Kind>/<id>`, ADR 0007 and 0038), listed by status, and an
//! instance's page: its status, data, steps, what is pending (waits and
//! their deadlines, deferred retries) and what was compensated (ADR 0052).

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use maud::{html, Markup};
use orchestrix::saga::{SagaEvent, SagaInstance, SagaStatus, StepRecord, StepState};
use orchestrix::store::EventStore;
use orchestrix::StreamId;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::layout;
use crate::render::{encode_component, event_href, mask, stream_href, without_credentials, Shown};
use crate::scope::{Mount, Scope};
use crate::search::{list_page, Streams};
use crate::streams::unavailable;

/// The prefix of every saga instance's stream category.
const SAGA: &str = "saga-";

/// The most instances a page lists.
const PAGE: usize = 50;

/// The most instances one page reads (and filters by status) before it
/// links to the next.
const MAX_READ: usize = 200;

/// The statuses a list filters by, as the form names them.
const STATUSES: [&str; 5] = ["running", "waiting", "compensating", "completed", "failed"];

/// The list's filters and where it continues.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SagaSearch {
    /// `running`, `waiting`, `compensating`, `completed`, `failed`; empty:
    /// every status.
    #[serde(default)]
    status: String,
    /// A saga kind (`Transfer`); empty: every kind.
    #[serde(default)]
    kind: String,
    /// The next page: after this instance's stream.
    #[serde(default)]
    after: String,
}

/// A status as the pages and the filter name it.
fn status_name(status: SagaStatus) -> &'static str {
    match status {
        SagaStatus::Pending | SagaStatus::InProgress => "running",
        SagaStatus::Waiting => "waiting",
        SagaStatus::Compensating => "compensating",
        SagaStatus::Completed => "completed",
        SagaStatus::Failed => "failed",
        _ => "unknown",
    }
}

fn step_state_name(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "pending",
        StepState::Skipped => "skipped",
        StepState::Deferred => "deferred",
        StepState::Waiting => "waiting",
        StepState::Started => "started",
        StepState::Completed => "completed",
        StepState::Failed => "failed",
        StepState::Compensating => "compensating",
        StepState::Compensated => "compensated",
        StepState::CompensationFailed => "compensation failed",
        _ => "unknown",
    }
}

/// Whether a step is still to run (or to end): pending, deferred,
/// waiting, or started without an outcome.
fn pending(step: &StepRecord) -> bool {
    matches!(step.state, StepState::Pending | StepState::Deferred | StepState::Waiting | StepState::Started)
}

/// Whether a step's compensation ran, runs, or (the instance compensating)
/// is still to run.
fn compensation(instance: &SagaInstance<Value>, step: &StepRecord) -> bool {
    matches!(step.state, StepState::Compensating | StepState::Compensated | StepState::CompensationFailed)
        || (instance.status == SagaStatus::Compensating && step.state == StepState::Completed)
}

/// The instance whose stream is `stream`, rebuilt from its events;
/// `Ok(None)` for an empty stream, `Err` with the reason it is not one.
async fn load(events: &dyn EventStore, stream: &StreamId) -> Result<Option<SagaInstance<Value>>, String> {
    let id = Uuid::parse_str(stream.id()).map_err(|_| format!("`{}` is not a saga instance's id", stream.id()))?;
    let mut records = events.read_stream(stream, 1);
    let mut instance: Option<SagaInstance<Value>> = None;
    while let Some(record) = records.next().await {
        let record = record.map_err(|error| without_credentials(&error.to_string()))?;
        let event: SagaEvent = record.decode().map_err(|error| error.to_string())?;
        if let Some(instance) = &mut instance {
            instance.apply(&event, record.stream_version);
        } else {
            let mut first = SagaInstance::from_first(id, &event)
                .ok_or_else(|| format!("its first event is a {}, not a SagaStarted", record.event_type))?;
            first.version = record.stream_version;
            instance = Some(first);
        }
    }
    Ok(instance)
}

/// The step an instance is at: its first pending step, if any.
fn current(instance: &SagaInstance<Value>) -> Option<&StepRecord> {
    instance.steps.iter().find(|step| pending(step))
}

fn until(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(String::new, |time| time.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn instance_href(mount: &Mount, stream: &StreamId) -> String {
    mount.href(&format!("/saga?id={}", encode_component(&stream.to_string())))
}

/// A row of the list: an instance, or a stream that is not one.
enum Row {
    Instance(StreamId, Box<SagaInstance<Value>>),
    Unreadable(StreamId, String),
}

/// `GET /sagas`: the instances, by status.
pub(crate) async fn list(scope: Scope, headers: HeaderMap, Query(search): Query<SagaSearch>) -> Response {
    let status = search.status.trim();
    if !status.is_empty() && !STATUSES.contains(&status) {
        let reason = format!("`status` is one of {}", STATUSES.join(", "));
        return (StatusCode::BAD_REQUEST, layout::bare("Bad status", &reason)).into_response();
    }
    let kind = search.kind.trim();
    if kind.contains('/') || kind.chars().any(char::is_control) {
        return (StatusCode::BAD_REQUEST, layout::bare("Bad kind", "A saga kind is a name without `/`."))
            .into_response();
    }
    let streams =
        if kind.is_empty() { Streams::of_types_starting(SAGA) } else { Streams::new("", &format!("{SAGA}{kind}")) };
    let mut after = match search.after.split_once('/').map(|(category, id)| StreamId::new(category, id)) {
        Some(Ok(stream)) => Some(stream),
        None if search.after.is_empty() => None,
        _ => {
            return (StatusCode::BAD_REQUEST, layout::bare("Bad page", "`after` is a saga's stream id."))
                .into_response()
        }
    };
    let mut rows = Vec::new();
    let mut read = 0;
    let next = loop {
        let (page, next) = match list_page(scope.events.as_ref(), &streams, after.clone(), PAGE).await {
            Ok(page) => page,
            Err(error) => return unavailable(&error),
        };
        let mut stopped = None;
        for summary in page {
            read += 1;
            match load(scope.events.as_ref(), &summary.stream).await {
                Ok(Some(instance)) if status.is_empty() || status_name(instance.status) == status => {
                    rows.push(Row::Instance(summary.stream.clone(), Box::new(instance)));
                }
                Err(reason) if status.is_empty() => rows.push(Row::Unreadable(summary.stream.clone(), reason)),
                Ok(_) | Err(_) => {}
            }
            if rows.len() == PAGE || read == MAX_READ {
                stopped = Some(summary.stream);
                break;
            }
        }
        match (stopped, next) {
            (Some(stream), _) => break Some(stream),
            (None, None) => break None,
            (None, Some(next)) => after = Some(next),
        }
    };
    let mount = &scope.mount;
    let next = next.map(|stream| {
        mount.href(&format!(
            "/sagas?status={}&kind={}&after={}",
            encode_component(status),
            encode_component(kind),
            encode_component(&stream.to_string())
        ))
    });
    let body = html! {
        h1 { "Sagas" }
        form.search method="get" action=(mount.href("/sagas")) {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for name in STATUSES { option value=(name) selected[status == name] { (name) } }
                }
            }
            label { "Saga kind " input type="search" name="kind" value=(search.kind) placeholder="Transfer"; }
            button type="submit" { "List" }
        }
        p.hint { "The instances of every saga kind (streams saga-Kind/id), by kind and id." }
        @if rows.is_empty() {
            p id="no-sagas" { "No saga instance matches." }
        } @else {
            div.scroll { table id="sagas" {
                thead { tr { th { "saga" } th { "instance" } th { "status" } th { "at step" } th { "until" } th { "error" } } }
                tbody { @for row in &rows { (list_row(mount, row)) } }
            } }
        }
        @if let Some(next) = next { a.more id="next" href=(next) { "Next page" } }
    };
    layout::page(&scope.shared, mount, &headers, "Sagas", &body).into_response()
}

fn list_row(mount: &Mount, row: &Row) -> Markup {
    match row {
        Row::Instance(stream, instance) => {
            let at = current(instance);
            html! {
                tr.saga data-status=(status_name(instance.status)) {
                    td { (instance.saga) }
                    td { a href=(instance_href(mount, stream)) { code { (stream.id()) } } }
                    td { span.status { (status_name(instance.status)) } }
                    td { @if let Some(step) = at { (step.name) " (" (step_state_name(step.state)) ")" } }
                    td { (until(at.and_then(|step| step.until))) }
                    td.error { (instance.error.as_deref().map(without_credentials).unwrap_or_default()) }
                }
            }
        }
        Row::Unreadable(stream, reason) => html! {
            tr.saga data-status="unreadable" {
                td { (stream.category().strip_prefix(SAGA).unwrap_or(stream.category())) }
                td { a href=(stream_href(mount, &stream.to_string())) { code { (stream.id()) } } }
                td { "unreadable" }
                td {} td {}
                td.error { (without_credentials(reason)) }
            }
        },
    }
}

/// The instance page's query.
#[derive(Debug, Deserialize)]
pub(crate) struct InstanceQuery {
    /// The instance's stream, `saga-Kind/id`.
    id: String,
}

/// `GET /saga?id=saga-Transfer/…`: an instance.
pub(crate) async fn instance(scope: Scope, headers: HeaderMap, Query(query): Query<InstanceQuery>) -> Response {
    let bad = |reason: &str| (StatusCode::BAD_REQUEST, layout::bare("Bad saga id", reason)).into_response();
    let Some((category, id)) = query.id.split_once('/') else { return bad("A saga's id reads saga-Kind/id.") };
    if !category.starts_with(SAGA) {
        return bad("A saga's id reads saga-Kind/id.");
    }
    let stream = match StreamId::new(category, id) {
        Ok(stream) => stream,
        Err(error) => return bad(&error.to_string()),
    };
    let instance = match load(scope.events.as_ref(), &stream).await {
        Ok(Some(instance)) => instance,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, layout::bare("Not found", "No such saga instance in this view."))
                .into_response()
        }
        Err(reason) => return bad(&reason),
    };
    let mount = &scope.mount;
    let mut data = instance.data.clone();
    mask(&scope.shared.console, "SagaStarted", &mut data, Shown::Placeholder);
    let data = serde_json::to_string_pretty(&data).unwrap_or_default();
    let waiting: Vec<&StepRecord> = instance.steps.iter().filter(|step| pending(step)).collect();
    let compensations: Vec<&StepRecord> = instance.steps.iter().filter(|step| compensation(&instance, step)).collect();
    let title = format!("Saga {} {}", instance.saga, instance.id);
    let body = html! {
        h1 { "Saga " (instance.saga) " " code { (instance.id) } }
        p { "Status: " strong id="saga-status" data-status=(status_name(instance.status)) { (status_name(instance.status)) }
            " · version " (instance.version) " · " a href=(stream_href(mount, &stream.to_string())) { "its events" } }
        dl.metadata {
            dt { "correlation" } dd { code { (instance.correlation_id) } }
            dt { "started by" } dd { a href=(event_href(mount, instance.trigger)) { code { (instance.trigger) } } }
            @if let Some(tenant) = &instance.tenant { dt { "tenant" } dd { (tenant) } }
            @if let Some(error) = &instance.error { dt { "error" } dd.error id="saga-error" { (without_credentials(error)) } }
            @if let Some(step) = &instance.finished_by { dt { "finished early by" } dd { (step) } }
            @if let Some(error) = instance.compensation_error() {
                dt { "compensation failed" } dd.error { (without_credentials(error)) " — the steps before it were not undone" }
            }
        }
        h2 { "Pending steps" }
        @if waiting.is_empty() { p id="no-pending" { "None." } } @else {
            ul id="pending" { @for step in &waiting {
                li { (step.name) " — " (step_state_name(step.state))
                    @if let Some(time) = step.until {
                        @if step.state == StepState::Waiting { ", deadline " } @else { ", until " }
                        time { (until(Some(time))) }
                    }
                    @if step.failures > 0 { ", " (step.failures) " refused attempt(s)" }
                }
            } }
        }
        h2 { "Compensations" }
        @if compensations.is_empty() { p id="no-compensations" { "None." } } @else {
            ul id="compensations" { @for step in &compensations {
                li { (step.name) " — "
                    @if step.state == StepState::Completed { "to compensate" } @else { (step_state_name(step.state)) }
                }
            } }
        }
        h2 { "Steps" }
        div.scroll { table id="steps" {
            thead { tr { th { "#" } th { "step" } th { "state" } th { "until" } th { "refused" } th { "error" } } }
            tbody { @for (index, step) in instance.steps.iter().enumerate() {
                tr data-state=(step_state_name(step.state)) {
                    td { (index) } td { (step.name) } td { (step_state_name(step.state)) }
                    td { (until(step.until)) } td { (step.failures) }
                    td.error { (step.error.as_deref().map(without_credentials).unwrap_or_default())
                        @if step.timed_out { " (timed out)" } }
                }
            } }
        } }
        h2 { "Data" }
        pre.json id="saga-data" { (data) }
    };
    layout::page(&scope.shared, mount, &headers, &title, &body).into_response()
}
