//! The bank behind HTTP, observed: commands in, a query served from the
//! `Balances` projection, Prometheus metrics, a health check, and one trace
//! per request that runs on into the read-model update.
//!
//! | route | does |
//! |---|---|
//! | `POST /accounts` `{"owner"}` | opens an account: `201 {"id", "version", "global_position"}` |
//! | `POST /accounts/{id}/deposits` `{"amount"}` | deposits |
//! | `POST /accounts/{id}/withdrawals` `{"amount", "reason"}` | withdraws |
//! | `GET /accounts/{id}` | the balance, from the projection (`?min_version=N` waits until it has applied version `N`) |
//! | `GET /metrics` | the Prometheus exposition |
//! | `GET /health` | `{"status":"ok"}` |
//!
//! Errors are JSON, `{"error": <code>, "message": <text>}`. A command's
//! error is answered by orchestrix (feature `axum`, `orchestrix::http`): a
//! domain rejection is 422, an unknown account 404, an existing one or a
//! lost concurrency race 409, a store that did not answer 503 with
//! `Retry-After` (the outcome is unknown: retry with the same
//! `Idempotency-Key`), a command id reused for another command 422
//! `duplicate_event_id`.
//!
//! Request bodies are checked before a command sees them: an unknown
//! field, a string longer than its limit ([`MAX_OWNER_LEN`],
//! [`MAX_REASON_LEN`]), a negative, fractional or too large amount (`number
//! out of range`) is a `400` or `422` with `{"error": "bad_request", ...}`
//! naming the field.
//!
//! The events live in memory ([`service`]) or in PostgreSQL
//! ([`service_on_postgres`]; `main` uses it when `DATABASE_URL` is set). The
//! `Balances` read model is in memory either way and rebuilt from the
//! events at start, so it never trails a restart.
//!
//! **Retries are safe with an `Idempotency-Key` header** (ADR 0027): the
//! command id of a `POST` derives from the key (within the route and the
//! account), so a retried request (a timeout, a double click) is applied
//! once and answered as the first was. A retried `POST /accounts` gets the
//! same account, whose id derives from the key too. Without the header,
//! every request is a new command.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bank::{Account, Balances, BankError, Deposit, OpenAccount, Withdraw};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use orchestrix::idempotency::command_id_from_key;
use orchestrix::memory::InMemoryCheckpointStore;
use orchestrix::projection::{ProjectionEngine, ProjectionHandle, ProjectionOptions};
use orchestrix::trace::TraceHeaders;
use orchestrix::{
    app::{CommandOptions, CommandOutcome},
    store::EventStore,
    telemetry, CommandError, Orchestrix, StoreError, Uuid,
};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::Instrument;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The application.
    pub app: Orchestrix,
    /// The read model the query endpoint serves.
    pub balances: Balances,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// The running service's parts that need stopping.
#[derive(Debug)]
pub struct Service {
    /// The router to serve.
    pub router: Router,
    /// The projection feeding [`AppState::balances`].
    pub projection: ProjectionHandle<Balances>,
}

/// Installs the process-wide Prometheus recorder (once) and returns the
/// handle that renders it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(telemetry::COMMAND_DURATION_SECONDS.into()),
                    telemetry::DURATION_BUCKETS,
                )
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (a test harness):
            // then this handle renders nothing of Orchestrix, which is fine.
            if metrics::set_global_recorder(recorder).is_ok() {
                telemetry::describe();
            }
            handle
        })
        .clone()
}

/// Builds the in-memory application, starts the projection and returns
/// the router. Must run inside a Tokio runtime.
pub fn service() -> Service {
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().build().expect("a valid configuration");
    serve(app)
}

/// Like [`service`], with the events in PostgreSQL at `url`, in the schema
/// `config` names (created and migrated if needed). Accounts survive a
/// restart; the in-memory `Balances` read model is rebuilt from the events.
///
/// # Errors
///
/// The server is unreachable, or the migrations fail.
pub async fn service_on_postgres(url: &str, config: PgConfig) -> Result<Service, StoreError> {
    let store = PgStore::connect(url, config).await?;
    store.migrate().await?;
    Ok(service_on(store))
}

/// Like [`service`], on the event store given.
pub fn service_on(store: impl EventStore) -> Service {
    let app = Orchestrix::builder().event_store(store).aggregate::<Account>().build().expect("a valid configuration");
    serve(app)
}

fn serve(app: Orchestrix) -> Service {
    let engine = ProjectionEngine::new(Arc::clone(app.event_store()), InMemoryCheckpointStore::new());
    let balances = Balances::default();
    let projection = engine.spawn(balances.clone(), ProjectionOptions::default());
    let state = AppState { app, balances, metrics: metrics_handle() };
    Service { router: router(state), projection }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts", post(open))
        .route("/accounts/{id}", get(balance))
        .route("/accounts/{id}/deposits", post(deposit))
        .route("/accounts/{id}/withdrawals", post(withdraw))
        .route("/metrics", get(render_metrics))
        .route("/health", get(health))
        .layer(middleware::from_fn(trace_request))
        .with_state(state)
}

/// One span per request, the child of the caller's W3C `traceparent` when
/// it sent one: the commands and projection updates below it join the trace.
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
    /// A stable code: `bad_request` and `not_found` from the service,
    /// the kinds of `orchestrix::http` from a command.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.code.into(), message: self.message })).into_response()
    }
}

/// The errors of a handler: the service's own ([`ApiError`]), or a
/// command's, answered by orchestrix's `IntoResponse` (feature `axum`).
#[derive(Debug)]
pub enum Failure {
    /// A malformed request, or a query that found nothing.
    Api(ApiError),
    /// A command failed.
    Command(CommandError<BankError>),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<CommandError<BankError>> for Failure {
    fn from(error: CommandError<BankError>) -> Self {
        Self::Command(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response(),
            Self::Command(error) => error.into_response(),
        }
    }
}

/// A JSON body whose refusal (malformed, an unknown field, a value out of
/// range) is an [`ApiError`] with the JSON error body, like every other
/// error, rather than axum's plain-text rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(ApiError { status: rejection.status(), code: "bad_request", message: rejection.body_text() })
            }
        }
    }
}

/// The longest owner name accepted, in bytes.
pub const MAX_OWNER_LEN: usize = 200;

/// The longest withdrawal reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 500;

/// A string of at most `max` bytes.
fn bounded<'de, D: Deserializer<'de>>(deserializer: D, max: usize) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    if value.len() > max {
        return Err(serde::de::Error::custom(format_args!(
            "a string of {} bytes is too long: at most {max} bytes",
            value.len()
        )));
    }
    Ok(value)
}

fn owner<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    bounded(deserializer, MAX_OWNER_LEN)
}

fn reason<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    bounded(deserializer, MAX_REASON_LEN)
}

/// An amount in cents: a whole number from 0 to `u64::MAX`. JSON numbers
/// beyond it are `number out of range`, not a confusing "floating point".
fn cents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Cents;
    impl serde::de::Visitor<'_> for Cents {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a whole number of cents from 0 to {}", u64::MAX)
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| E::custom(format_args!("number out of range: {value} is negative")))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<u64, E> {
            if value.is_finite() && value.fract() == 0.0 && value.abs() >= 1.0 {
                Err(E::custom(format_args!("number out of range: {value} is not from 0 to {}", u64::MAX)))
            } else {
                Err(E::custom(format_args!("{value} is not a whole number of cents")))
            }
        }
    }
    deserializer.deserialize_any(Cents)
}

/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The request's `Idempotency-Key`, if it sent one: 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] bytes of visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN);
    key.map(Some).ok_or_else(|| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: format!("the Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes of visible ASCII"),
    })
}

/// The options of a command in `scope` (the route and the account): with
/// an `Idempotency-Key`, a command id derived from it.
fn command_options(headers: &HeaderMap, scope: &str) -> Result<CommandOptions, ApiError> {
    let command_id = idempotency_key(headers)?.map(|key| command_id_from_key(scope, key));
    let options = CommandOptions::default();
    Ok(match command_id {
        Some(id) => options.command_id(id),
        None => options,
    })
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: format!("`{id}` is not an account id (a UUID)"),
    })
}

/// The answer to a command.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The account.
    pub id: Uuid,
    /// Its version after the command.
    pub version: u64,
    /// The global position of the last event recorded, if any.
    pub global_position: Option<u64>,
}

fn accepted<E>(id: Uuid, outcome: &CommandOutcome<E>) -> Accepted {
    Accepted { id, version: outcome.version, global_position: outcome.events.last().map(|e| e.global_position) }
}

/// `POST /accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// Who owns the account: at most [`MAX_OWNER_LEN`] bytes.
    #[serde(deserialize_with = "owner")]
    pub owner: String,
}

async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<OpenRequest>,
) -> Result<impl IntoResponse, Failure> {
    // A retried request opens the same account: its id derives from the key.
    let id = idempotency_key(&headers)?.map_or_else(Uuid::now_v7, |key| command_id_from_key("account-id", key));
    let options = command_options(&headers, "open")?;
    let outcome = state.app.execute_with(id, OpenAccount { owner: body.owner }, options).await?;
    Ok((StatusCode::CREATED, Json(accepted(id, &outcome))))
}

/// `POST /accounts/{id}/deposits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// In cents.
    #[serde(deserialize_with = "cents")]
    pub amount: u64,
}

async fn deposit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<DepositRequest>,
) -> Result<Json<Accepted>, Failure> {
    let id = parse_id(&id)?;
    let options = command_options(&headers, &format!("deposit:{id}"))?;
    let outcome = state.app.execute_with(id, Deposit { amount: body.amount }, options).await?;
    Ok(Json(accepted(id, &outcome)))
}

/// `POST /accounts/{id}/withdrawals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    /// In cents.
    #[serde(deserialize_with = "cents")]
    pub amount: u64,
    /// Why: at most [`MAX_REASON_LEN`] bytes.
    #[serde(default, deserialize_with = "reason")]
    pub reason: String,
}

async fn withdraw(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<WithdrawRequest>,
) -> Result<Json<Accepted>, Failure> {
    let id = parse_id(&id)?;
    let options = command_options(&headers, &format!("withdraw:{id}"))?;
    let outcome = state.app.execute_with(id, Withdraw { amount: body.amount, reason: body.reason }, options).await?;
    Ok(Json(accepted(id, &outcome)))
}

/// `GET /accounts/{id}`'s query string.
#[derive(Debug, Deserialize)]
pub struct BalanceQuery {
    /// Wait (up to 5 s) until the projection has applied the account's
    /// events up to this stream version (the `version` a command returned).
    pub min_version: Option<u64>,
}

/// `GET /accounts/{id}`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct BalanceView {
    /// The account.
    pub id: Uuid,
    /// The owner.
    pub owner: String,
    /// In cents.
    pub balance: u64,
    /// Whether it is closed.
    pub closed: bool,
    /// The last version the projection applied.
    pub version: u64,
}

async fn balance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<BalanceQuery>,
) -> Result<Json<BalanceView>, ApiError> {
    let id = parse_id(&id)?;
    let wanted = query.min_version.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let row = state.balances.get(&id).filter(|row| row.version >= wanted);
        if let Some(row) = row {
            return Ok(Json(BalanceView {
                id,
                owner: row.owner,
                balance: row.balance,
                closed: row.closed,
                version: row.version,
            }));
        }
        if wanted == 0 || tokio::time::Instant::now() >= deadline {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!("no account `{id}` in the read model (yet)"),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
