//! The projections page: state, position, lag, events handled and parked.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;
use orchestrix::projection::ProjectionState;

use crate::layout;
use crate::scope::Scope;
use crate::streams::unavailable;

/// `GET /projections`.
pub(crate) async fn list(scope: Scope, headers: HeaderMap) -> Response {
    let head = match scope.events.head_position().await {
        Ok(head) => head.unwrap_or(0),
        Err(error) => return unavailable(&error),
    };
    let rows: Vec<_> = scope.projections().map(|entry| (entry.name.clone(), entry.control.status())).collect();
    let body = html! {
        h1 { "Projections" }
        @if rows.is_empty() {
            p id="no-projections" { "No projection handle is given to the console." }
        } @else {
            div.scroll { table id="projections" {
                thead { tr { th { "name" } th { "state" } th { "position" } th { "lag" } th { "handled" } th { "parked" } } }
                tbody {
                    @for (name, status) in &rows {
                        tr {
                            td { (name) }
                            td { @match &status.state {
                                ProjectionState::CatchingUp => span.state { "catching up" },
                                ProjectionState::Live => span.state.live { "live" },
                                ProjectionState::Stopped => span.state { "stopped" },
                                ProjectionState::Failed(error) => span.state.failed title=(crate::render::without_credentials(error)) { "failed" },
                            } }
                            td { (status.position) }
                            td { (head.saturating_sub(status.position)) }
                            td { (status.handled) }
                            td { (status.parked) }
                        }
                    }
                }
            } }
            p.hint { "Lag: positions between the projection and the head of the whole log (other tenants' and filtered-out events included)." }
        }
    };
    layout::page(&scope.shared, &scope.mount, &headers, "Projections", &body).into_response()
}
