//! Order fulfilment across processes.
//!
//! - The **api** process takes HTTP requests, records the orders'
//!   events in PostgreSQL and relays the log to NATS JetStream.
//! - Any number of **worker** processes share the JetStream partitions
//!   (leases in PostgreSQL) and run the order read model
//!   ([`PgOrderViews`]) and the [`Fulfilment`] saga: accept, reserve the
//!   payment, ship, complete; a declined payment cancels the order, a
//!   failed shipment refunds the payment and cancels the order.
//!
//! The simulated payment and shipping services decide by the order's
//! amount ([`planned_outcome`]): ending in 7 declines the payment, ending
//! in 9 fails the shipment.
//!
//! | route | does |
//! |---|---|
//! | `POST /orders` `{"customer", "amount"}` | places an order: `201 {"id", "version"}` |
//! | `POST /orders/{id}/cancel` `{"reason"}` | cancels it (`409` once completed) |
//! | `GET /orders/{id}` | the order from the read model (`404` until projected) |
//! | `GET /health` | `{"status":"ok"}` |
//!
//! Errors are JSON, `{"error": <code>, "message": <text>}`: 400 for a bad
//! request or a refused order, 404 for an unknown order, 409 for a
//! conflict with the order's state.

pub mod domain;
pub mod fulfilment;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use orchestrix::trace::TraceHeaders;
use orchestrix::{CommandError, Orchestrix, Uuid};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

pub use domain::{planned_outcome, Effect, Order, OrderError, Outcome, Payment, Services, Shipment, Status};
pub use fulfilment::{migrate, replay, Fulfilment, OrderView, PaymentState, PgOrderViews, FULFILMENT_FAILED};

/// What the API's handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The application (the event store is PostgreSQL).
    pub app: Orchestrix,
    /// The read model the query serves.
    pub views: PgOrderViews,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/{id}", get(query))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// One span per request, the child of the caller's W3C `traceparent`
/// when it sent one: the commands below it, the relay's publish and the
/// workers' handling of the events join that trace.
async fn trace_request(request: Request, next: Next) -> Response {
    let headers = TraceHeaders::from_headers(|name| request.headers().get(name).and_then(|v| v.to_str().ok()));
    let span = orchestrix::trace::http_server_span(request.method().as_str(), request.uri().path(), headers.as_ref());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// A JSON error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of an error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `bad_request`, `not_found`, `conflict` or `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.code.into(), message: self.message })).into_response()
    }
}

impl From<CommandError<OrderError>> for ApiError {
    fn from(error: CommandError<OrderError>) -> Self {
        let (status, code) = match &error {
            CommandError::Rejected(OrderError::ZeroAmount | OrderError::NoCustomer) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            CommandError::Rejected(_) | CommandError::AggregateAlreadyExists { .. } | CommandError::Conflict { .. } => {
                (StatusCode::CONFLICT, "conflict")
            }
            CommandError::AggregateNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(%error, "command failed");
        }
        Self::new(status, code, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{id}` is not an order id (a UUID)"))
    })
}

/// `POST /orders`'s body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlaceRequest {
    /// Who orders.
    pub customer: String,
    /// The total, in cents.
    pub amount: u64,
}

/// The answer to a command.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The order.
    pub id: Uuid,
    /// The order stream's version after the command.
    pub version: u64,
}

async fn place(
    State(state): State<AppState>,
    body: Result<Json<PlaceRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body?;
    let id = Uuid::now_v7();
    let outcome = state.app.execute(id, domain::PlaceOrder { customer: body.customer, amount: body.amount }).await?;
    Ok((StatusCode::CREATED, Json(Accepted { id, version: outcome.version })))
}

/// `POST /orders/{id}/cancel`'s body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CancelRequest {
    /// Why.
    #[serde(default)]
    pub reason: String,
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let id = parse_id(&id)?;
    let Json(body) = body?;
    let reason = if body.reason.is_empty() { "cancelled by the customer".to_owned() } else { body.reason };
    let outcome = state.app.execute(id, domain::CancelOrder { reason }).await?;
    Ok(Json(Accepted { id, version: outcome.version }))
}

async fn query(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<OrderView>, ApiError> {
    let id = parse_id(&id)?;
    match state.views.get(id).await {
        Ok(Some(view)) => Ok(Json(view)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no order {id} in the read model (unknown, or not projected yet)"),
        )),
        Err(error) => {
            tracing::error!(%error, "read model query failed");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))
        }
    }
}
