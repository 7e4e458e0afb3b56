//! The actions that change something: retry and drop a dead letter,
//! pause, resume and rebuild a projection (ADR 0050). The
//! routes exist only when a write token is configured; each request is
//! authorized by [`crate::security::authorize`].

use axum::extract::rejection::FormRejection;
use axum::extract::RawPathParams;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use uuid::Uuid;

use crate::causality::param;
use crate::layout;
use crate::render::without_credentials;
use crate::scope::Scope;
use crate::security::{authorize, refused};
use crate::streams::unavailable;

/// An action's form: the session's CSRF token, and the ticked
/// confirmation of an action that throws something away (a rebuild).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// What a projection's control is asked.
#[derive(Clone, Copy)]
enum Control {
    Pause,
    Resume,
    Rebuild,
}

enum Action {
    Retry,
    Drop,
}

/// `POST /dead-letters/{id}/retry`.
pub(crate) async fn retry(
    scope: Scope,
    headers: HeaderMap,
    params: RawPathParams,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(scope, &headers, &params, form.map(|Form(form)| form).unwrap_or_default(), Action::Retry).await
}

/// `POST /dead-letters/{id}/drop`.
pub(crate) async fn drop_letter(
    scope: Scope,
    headers: HeaderMap,
    params: RawPathParams,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(scope, &headers, &params, form.map(|Form(form)| form).unwrap_or_default(), Action::Drop).await
}

/// `POST /projections/{projection}/pause`.
pub(crate) async fn pause(
    scope: Scope,
    headers: HeaderMap,
    params: RawPathParams,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    control(scope, &headers, &params, form.map(|Form(form)| form).unwrap_or_default(), Control::Pause).await
}

/// `POST /projections/{projection}/resume`.
pub(crate) async fn resume(
    scope: Scope,
    headers: HeaderMap,
    params: RawPathParams,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    control(scope, &headers, &params, form.map(|Form(form)| form).unwrap_or_default(), Control::Resume).await
}

/// `POST /projections/{projection}/rebuild`: needs the form's confirmation
/// ticked (`confirm=yes`), since it throws the read model away.
pub(crate) async fn rebuild(
    scope: Scope,
    headers: HeaderMap,
    params: RawPathParams,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    control(scope, &headers, &params, form.map(|Form(form)| form).unwrap_or_default(), Control::Rebuild).await
}

/// Pauses, resumes or rebuilds a projection of this view (a tenant
/// controls its own projections only).
async fn control(
    scope: Scope,
    headers: &HeaderMap,
    params: &RawPathParams,
    form: ActionForm,
    action: Control,
) -> Response {
    if let Err(reason) = authorize(&scope.shared, headers, Some(&form.csrf)) {
        return refused(reason);
    }
    let name = param(params, "projection").unwrap_or_default();
    let Some(entry) = scope.projections().find(|entry| entry.name == name) else {
        return (StatusCode::NOT_FOUND, layout::bare("Not found", "No such projection in this view.")).into_response();
    };
    if matches!(action, Control::Rebuild) && form.confirm != "yes" {
        let why = "A rebuild throws the read model, the checkpoint and the dead letters away: tick the confirmation next to the button.";
        return (StatusCode::BAD_REQUEST, layout::bare("Not confirmed", why)).into_response();
    }
    let (outcome, done) = match action {
        Control::Pause => (entry.control.pause().await, "paused"),
        Control::Resume => (entry.control.resume().await, "resumed"),
        Control::Rebuild => (entry.control.rebuild().await, "rebuilding"),
    };
    match outcome {
        Ok(_) => Redirect::to(&scope.mount.href(&format!("/projections?done={done}"))).into_response(),
        Err(error) => {
            (StatusCode::CONFLICT, layout::bare("The action failed", &without_credentials(&error))).into_response()
        }
    }
}

async fn act(scope: Scope, headers: &HeaderMap, params: &RawPathParams, form: ActionForm, action: Action) -> Response {
    if let Err(reason) = authorize(&scope.shared, headers, Some(&form.csrf)) {
        return refused(reason);
    }
    let Some(id) = param(params, "letter").and_then(|id| Uuid::parse_str(id).ok()) else {
        return (StatusCode::BAD_REQUEST, layout::bare("Bad id", "A dead letter's id is a UUID.")).into_response();
    };
    let Some(store) = &scope.dead_letters else {
        return (StatusCode::NOT_FOUND, layout::bare("Not found", "No dead-letter store is configured."))
            .into_response();
    };
    // The letter must be in this view: a tenant acts on its own letters only.
    let letter = match store.get(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, layout::bare("Not found", "No such dead letter in this view."))
                .into_response()
        }
        Err(error) => return unavailable(&error),
    };
    let Some(entry) = scope.projections().find(|entry| entry.name == letter.consumer) else {
        return (StatusCode::CONFLICT, layout::bare("No handle", "No projection of this view serves that consumer."))
            .into_response();
    };
    let outcome = match action {
        Action::Retry => entry.control.retry_dead_letter(id).await.map(|_| "retried"),
        Action::Drop => entry.control.drop_dead_letter(id).await.map(|_| "dropped"),
    };
    match outcome {
        Ok(done) => Redirect::to(&scope.mount.href(&format!("/dead-letters?done={done}"))).into_response(),
        Err(error) => {
            (StatusCode::CONFLICT, layout::bare("The action failed", &without_credentials(&error))).into_response()
        }
    }
}
