//! The projections page: state, position, lag, throughput, events handled and parked;
//! pause, resume and rebuild buttons for a signed-in session (ADR 0050).

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use orchestrix::projection::ProjectionState;
use serde::Deserialize;

use crate::layout;
use crate::render::encode_component;
use crate::scope::Scope;
use crate::security::signed_in_csrf;
use crate::streams::unavailable;
use crate::throughput::format_rate;

/// What the last action did, shown once after its redirect.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: String,
}

/// The pause or resume button of projection `name` in `state`, and the
/// rebuild button with its confirmation (not while paused: a paused
/// projection refuses it).
fn actions(scope: &Scope, csrf: &str, name: &str, state: &ProjectionState) -> Markup {
    let paused = matches!(state, ProjectionState::Paused);
    let running = matches!(state, ProjectionState::CatchingUp | ProjectionState::Live);
    let (action, label) = if paused { ("resume", "Resume") } else { ("pause", "Pause") };
    let href = |action: &str| scope.mount.href(&format!("/projections/{}/{action}", encode_component(name)));
    html! {
        form method="post" action=(href(action)) {
            input type="hidden" name="csrf" value=(csrf);
            button class=(action) type="submit" { (label) }
        }
        @if running {
            form method="post" action=(href("rebuild")) {
                input type="hidden" name="csrf" value=(csrf);
                label title="Resets the read model, forgets the checkpoint and the dead letters, and replays the log from the first event." {
                    input type="checkbox" name="confirm" value="yes" required;
                    " reset the read model"
                }
                " "
                button class="rebuild" type="submit" { "Rebuild" }
            }
        }
    }
}

/// `GET /projections`.
pub(crate) async fn list(scope: Scope, headers: HeaderMap, Query(done): Query<Done>) -> Response {
    let head = match scope.events.head_position().await {
        Ok(head) => head.unwrap_or(0),
        Err(error) => return unavailable(&error),
    };
    let now = tokio::time::Instant::now();
    let rows: Vec<_> = scope
        .projections()
        .map(|entry| {
            let status = entry.control.status();
            let rate = entry.throughput.observe(now, status.handled);
            (entry.name.clone(), status, rate)
        })
        .collect();
    let csrf = signed_in_csrf(&scope.shared, &headers);
    let notice = match done.done.as_str() {
        "paused" => Some("Paused."),
        "resumed" => Some("Resumed."),
        "rebuilding" => Some("Rebuilding: the read model was reset; the projection catches up from the first event."),
        _ => None,
    };
    let body = html! {
        h1 { "Projections" }
        @if let Some(notice) = notice { p.notice id="notice" { (notice) } }
        @if rows.is_empty() {
            p id="no-projections" { "No projection handle is given to the console." }
        } @else {
            div.scroll { table id="projections" {
                thead { tr { th { "name" } th { "state" } th { "position" } th { "lag" } th { "throughput" } th { "handled" } th { "parked" } th {} } }
                tbody {
                    @for (name, status, rate) in &rows {
                        tr {
                            td { (name) }
                            td { @match &status.state {
                                ProjectionState::CatchingUp => span.state { "catching up" },
                                ProjectionState::Live => span.state.live { "live" },
                                ProjectionState::Paused => span.state.paused { "paused" },
                                ProjectionState::Stopped => span.state { "stopped" },
                                ProjectionState::Failed(error) => span.state.failed title=(crate::render::without_credentials(error)) { "failed" },
                                _ => span.state { "unknown" },
                            } }
                            td { (status.position) }
                            td { (head.saturating_sub(status.position)) }
                            td.throughput { @match rate { Some(rate) => (format_rate(*rate)), None => "—" } }
                            td { (status.handled) }
                            td { (status.parked) }
                            td { @if let Some(csrf) = &csrf { (actions(&scope, csrf, name, &status.state)) } }
                        }
                    }
                }
            } }
            p.hint { "Throughput: events handled per second over the last second or more between two views of this page (none on the first view)." }
            p.hint { "Lag: positions between the projection and the head of the whole log (other tenants' and filtered-out events included)." }
        }
    };
    layout::page(&scope.shared, &scope.mount, &headers, "Projections", &body).into_response()
}
