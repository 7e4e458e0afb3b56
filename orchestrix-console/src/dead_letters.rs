//! The dead letters: the list, and a letter's page with its error and
//! event; the retry and drop buttons when the session may act.

use axum::extract::{Query, RawPathParams};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use orchestrix::store::DeadLetter;
use serde::Deserialize;
use uuid::Uuid;

use crate::causality::param;
use crate::layout;
use crate::render::{data_json, metadata, stream_href, without_credentials};
use crate::scope::Scope;
use crate::security::signed_in_csrf;
use crate::streams::unavailable;

/// What the last action did, shown once after its redirect.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: String,
}

/// The first line of an error, at most 160 characters.
fn short(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// The retry and drop buttons of `letter`, when the session may act and a
/// projection of this view serves its consumer.
fn actions(scope: &Scope, csrf: Option<&str>, letter: &DeadLetter) -> Markup {
    let served = scope.projections().any(|entry| entry.name == letter.consumer);
    html! {
        @if let (Some(csrf), true) = (csrf, served) {
            div.actions {
                form method="post" action=(scope.mount.href(&format!("/dead-letters/{}/retry", letter.id))) {
                    input type="hidden" name="csrf" value=(csrf);
                    button.retry type="submit" { "Retry" }
                }
                form method="post" action=(scope.mount.href(&format!("/dead-letters/{}/drop", letter.id))) {
                    input type="hidden" name="csrf" value=(csrf);
                    button.drop type="submit" { "Drop" }
                }
            }
        } @else if !served {
            span.hint { "no handle for " (letter.consumer) }
        }
    }
}

/// `GET /dead-letters`.
pub(crate) async fn list(scope: Scope, headers: HeaderMap, Query(done): Query<Done>) -> Response {
    let Some(store) = &scope.dead_letters else {
        let body = html! { h1 { "Dead letters" } p { "No dead-letter store is configured." } };
        return layout::page(&scope.shared, &scope.mount, &headers, "Dead letters", &body).into_response();
    };
    let mut letters = match store.list(None).await {
        Ok(letters) => letters,
        Err(error) => return unavailable(&error),
    };
    letters.sort_by_key(|letter| (letter.consumer.clone(), letter.event.global_position));
    let csrf = signed_in_csrf(&scope.shared, &headers);
    let mount = &scope.mount;
    let notice = match done.done.as_str() {
        "retried" => Some("Retried."),
        "dropped" => Some("Dropped."),
        _ => None,
    };
    let body = html! {
        h1 { "Dead letters" }
        @if let Some(notice) = notice { p.notice id="notice" { (notice) } }
        @if letters.is_empty() {
            p id="no-letters" { "No dead letters." }
        } @else {
            div.scroll { table id="letters" {
                thead { tr { th { "consumer" } th { "stream" } th { "event" } th { "attempts" } th { "parked" } th { "error" } th {} } }
                tbody {
                    @for letter in &letters {
                        tr.letter data-id=(letter.id) {
                            td { (letter.consumer) }
                            td { a href=(stream_href(mount, &letter.event.stream.to_string())) { (letter.event.stream.to_string()) } }
                            td { a href=(mount.href(&format!("/dead-letters/{}", letter.id))) { (letter.event.event_type) } }
                            td { (letter.attempts) }
                            td { (letter.parked_at.format("%Y-%m-%d %H:%M:%S")) }
                            td.error { (short(&without_credentials(&letter.error))) }
                            td { (actions(&scope, csrf.as_deref(), letter)) }
                        }
                    }
                }
            } }
        }
    };
    layout::page(&scope.shared, mount, &headers, "Dead letters", &body).into_response()
}

/// `GET /dead-letters/{id}`.
pub(crate) async fn letter(scope: Scope, headers: HeaderMap, params: RawPathParams) -> Response {
    let Some(store) = &scope.dead_letters else {
        return (StatusCode::NOT_FOUND, layout::bare("Not found", "No dead-letter store is configured."))
            .into_response();
    };
    let Some(id) = param(&params, "letter").and_then(|id| Uuid::parse_str(id).ok()) else {
        return (StatusCode::BAD_REQUEST, layout::bare("Bad id", "A dead letter's id is a UUID.")).into_response();
    };
    let letter = match store.get(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, layout::bare("Not found", "No such dead letter in this view."))
                .into_response()
        }
        Err(error) => return unavailable(&error),
    };
    let csrf = signed_in_csrf(&scope.shared, &headers);
    let mount = &scope.mount;
    let body = html! {
        h1 { "Dead letter of " (letter.consumer) }
        p { "Attempts: " (letter.attempts) " · parked " (letter.parked_at.to_rfc3339()) }
        h2 { "Error" }
        pre.error id="letter-error" { (without_credentials(&letter.error)) }
        (actions(&scope, csrf.as_deref(), &letter))
        h2 { "Event" }
        (metadata(mount, &letter.event))
        pre.json { (data_json(&scope.shared.console, &letter.event)) }
    };
    layout::page(&scope.shared, mount, &headers, "Dead letter", &body).into_response()
}
