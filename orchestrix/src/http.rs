//! Errors as HTTP responses (feature `axum`): [`StoreError`], [`Error`] and
//! [`CommandError`] implement axum's `IntoResponse`, so a handler returns
//! `Result<_, CommandError<E>>` and every failure becomes a proper answer.
//!
//! | error | status | `error` |
//! |---|---|---|
//! | [`CommandError::Rejected`] (the domain said no) | 422 | `rejected` |
//! | [`CommandError::AggregateNotFound`] | 404 | `not_found` |
//! | [`CommandError::AggregateAlreadyExists`] | 409 | `already_exists` |
//! | any error whose `is_conflict()` holds (a lost race, retries exhausted) | 409 | `conflict` |
//! | [`StoreError::InvalidInput`] | 422 | `invalid_input` |
//! | [`StoreError::DuplicateEventId`] (a command id reused for another command) | 422 | `duplicate_event_id` |
//! | [`StoreError::SubjectForgotten`] | 422 | `subject_forgotten` |
//! | [`StoreError::Unavailable`] | 503, `Retry-After: 1` | `unavailable` |
//! | anything else (corrupt data, an unregistered command, a bug) | 500 | `internal` |
//!
//! The body is JSON, `{"error": <kind>, "message": <text>}`. Below 500 the
//! message is the error's own text, meant for the caller. A 5xx answer
//! says only what the caller can do (retry, or nothing) and logs the
//! error itself with `tracing::error!`: a backend's message may name hosts
//! and tables a client has no business seeing.
//!
//! ```
//! # #[derive(Debug)] struct Insufficient;
//! # impl std::fmt::Display for Insufficient {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("insufficient funds") }
//! # }
//! use axum::response::IntoResponse;
//! use orchestrix::CommandError;
//!
//! // In a handler: `async fn withdraw(...) -> Result<Json<Done>, CommandError<BankError>>`.
//! let response = CommandError::Rejected(Insufficient).into_response();
//! assert_eq!(response.status(), 422);
//! // body: {"error":"rejected","message":"command rejected: insufficient funds"}
//! ```

use std::fmt::Display;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{CommandError, Error, StoreError};

/// What the caller is told about a server-side failure that may pass.
const UNAVAILABLE: &str =
    "the event store did not answer; the outcome is unknown: retry, with the same idempotency key if you sent one";

/// What the caller is told about a server-side failure that will not pass.
const INTERNAL: &str = "internal error";

/// The response of `status` with the JSON body `{"error": kind, "message": message}`.
fn respond(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": kind, "message": message }).to_string();
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The status and kind of a store error, or `None` for a server fault.
fn classify_store(error: &StoreError) -> (StatusCode, &'static str) {
    match error {
        error if error.is_conflict() => (StatusCode::CONFLICT, "conflict"),
        StoreError::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        StoreError::DuplicateEventId { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_event_id"),
        StoreError::SubjectForgotten { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "subject_forgotten"),
        StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn classify_framework(error: &Error) -> (StatusCode, &'static str) {
    match error {
        Error::Store(error) => classify_store(error),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The response for an error classified as `(status, kind)`: its own text
/// below 500, a fixed text (and a log line) from 500 on.
fn finish(status: StatusCode, kind: &str, error: &dyn Display) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(%error, "answered 503");
        respond(status, kind, UNAVAILABLE)
    } else if status.is_server_error() {
        tracing::error!(%error, "answered 500");
        respond(status, kind, INTERNAL)
    } else {
        respond(status, kind, &error.to_string())
    }
}

/// See the [module docs](self) for the statuses and the body.
impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        let (status, kind) = classify_store(&self);
        finish(status, kind, &self)
    }
}

/// See the [module docs](self) for the statuses and the body.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind) = classify_framework(&self);
        finish(status, kind, &self)
    }
}

/// See the [module docs](self) for the statuses and the body. A rejection
/// is 422 with the rejection's text.
impl<E: Display> IntoResponse for CommandError<E> {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            CommandError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            CommandError::AggregateNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            CommandError::AggregateAlreadyExists { .. } => (StatusCode::CONFLICT, "already_exists"),
            CommandError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            CommandError::Framework(error) => classify_framework(error),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        finish(status, kind, &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamId;

    /// The status, the `Retry-After` header and the JSON body of `response`.
    async fn parts(response: Response) -> (u16, Option<String>, serde_json::Value) {
        let status = response.status().as_u16();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    fn stream() -> StreamId {
        StreamId::new("Account", "a-1").unwrap()
    }

    type Command = CommandError<&'static str>;

    #[tokio::test]
    async fn command_errors_map_to_their_statuses_and_kinds() {
        let cases: Vec<(Command, u16, &str)> = vec![
            (CommandError::Rejected("insufficient funds"), 422, "rejected"),
            (CommandError::AggregateNotFound { aggregate: "Account", id: "a-1".into() }, 404, "not_found"),
            (CommandError::AggregateAlreadyExists { aggregate: "Account", id: "a-1".into() }, 409, "already_exists"),
            (CommandError::Conflict { aggregate: "Account", id: "a-1".into(), attempts: 3 }, 409, "conflict"),
            (
                CommandError::Framework(Error::Store(StoreError::WrongExpectedVersion {
                    stream: stream(),
                    expected: crate::stream::ExpectedVersion::Exact(1),
                    actual: Some(2),
                })),
                409,
                "conflict",
            ),
            (CommandError::Framework(StoreError::InvalidInput("bad type".into()).into()), 422, "invalid_input"),
            (
                CommandError::Framework(
                    StoreError::DuplicateEventId { id: crate::Uuid::nil(), stream: stream(), version: 1 }.into(),
                ),
                422,
                "duplicate_event_id",
            ),
            (
                CommandError::Unregistered { command: "Withdraw", registration: "aggregate::<Account>()".into() },
                500,
                "internal",
            ),
        ];
        for (error, status, kind) in cases {
            let text = error.to_string();
            let (got, retry, body) = parts(error.into_response()).await;
            assert_eq!((got, body["error"].as_str()), (status, Some(kind)), "{text}");
            assert_eq!(retry, None);
            if status < 500 {
                assert_eq!(body["message"], text.as_str(), "the caller reads the error's own text");
            } else {
                assert_eq!(body["message"], INTERNAL, "a 500 does not show its details");
            }
        }
    }

    #[tokio::test]
    async fn a_rejection_carries_the_domains_message() {
        let (_, _, body) = parts(Command::Rejected("insufficient funds").into_response()).await;
        assert_eq!(body["message"], "command rejected: insufficient funds");
    }

    #[tokio::test]
    async fn unavailable_is_503_with_retry_after_and_hides_the_backends_text() {
        let backend = || StoreError::Unavailable("connection to db.internal:5432 refused".into());
        for response in [
            backend().into_response(),
            Error::Store(backend()).into_response(),
            Command::Framework(backend().into()).into_response(),
        ] {
            let (status, retry, body) = parts(response).await;
            assert_eq!((status, retry.as_deref(), body["error"].as_str()), (503, Some("1"), Some("unavailable")));
            assert!(!body["message"].as_str().unwrap().contains("db.internal"), "{body}");
        }
    }

    #[tokio::test]
    async fn corrupt_data_is_500_without_details() {
        let corrupt = StoreError::Corrupt { stream: stream(), version: 3, reason: "secret column".into() };
        let (status, retry, body) = parts(corrupt.into_response()).await;
        assert_eq!((status, retry, body["error"].as_str()), (500, None, Some("internal")));
        assert_eq!(body["message"], INTERNAL);
        let (status, _, body) = parts(Error::MissingService { service: "Mailer" }.into_response()).await;
        assert_eq!((status, body["error"].as_str()), (500, Some("internal")));
    }
}
