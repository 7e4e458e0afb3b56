//! A stand-in EventSourcingDB written from its documented HTTP API, for
//! tests and benchmarks where no real server can run.
//!
//! It keeps the log in memory and speaks API v1, API v2 or both
//! ([`TestServerOptions::offer_v1`], [`TestServerOptions::offer_v2`]), each
//! with the shapes the official client `eventsourcingdb` 4.0.6 reads:
//!
//! - v1: `/api/v1/ping`, `verify-api-token`, `write-events`, `read-events`,
//!   `observe-events`, `register-event-schema`, `read-event-type`,
//!   `read-subjects`, `run-eventql-query`; POST (GET for the ping); lines
//!   `{"type", "payload"}`; refusals are statuses with the texts v1 uses
//!   (409 `state conflict: precondition failed`, `schema conflict: ...`).
//! - v2: `GET /api/v2/system/ping`, `POST /api/v2/system/verify-token`,
//!   `POST /api/v2/data/write-events` and `register-event-schema`, and
//!   `QUERY /api/v2/data/read-events`, `observe-events`, `read-event-type`,
//!   `read-subjects`, `run-eventql-query`; every answer an envelope
//!   `{"type", "data"}`, finite streams closed by an `end` item; refusals of
//!   the domain are `error` items with a code at status 200
//!   (`precondition-violated`, `event-schema-violated`, ...); preconditions
//!   on subjects take `options.recursive`.
//!
//! A path of a version it does not offer answers 404, as a server without
//! that version does; a path with the wrong method answers 405.
//!
//! Both versions: `write-events` with the preconditions
//! `isSubjectPristine`, `isSubjectPopulated`, `isSubjectOnEventId` and
//! `isEventQlQueryTrue`; `read-events` (`recursive`, `order`,
//! `lowerBound`, `upperBound`, `fromLatestEvent`), `observe-events` (catch
//! up, then live, with heartbeats), schemas enforced on every write and
//! checked against the events already stored. Every event carries the hash
//! chain as the official client verifies it (`esdb:hash:v2:`, SHA-256 over
//! the fields, each event's `predecessorhash` the hash of the one before).
//! Every answer carries `Server: EventSourcingDB/...`; requests other than
//! the ping without the bearer token get 401 (plain text, in both
//! versions).
//!
//! EventQL: `FROM e IN events [WHERE ...] [ORDER BY e.field [ASC|DESC]]
//! [SKIP n] [TOP n] PROJECT INTO [DISTINCT] ...` with comparisons, `AND`,
//! `OR`, `NOT`, field access, records and `COUNT()`; anything else is
//! refused (v1: 400; v2: an `error` item `query-malformed`), never
//! answered wrongly.
//!
//! Known differences from the real server: EventQL is a subset; subject
//! and type validation is looser; events are not signed; v2's operations
//! beyond the ones above (`read-event-types`, management) are missing; the
//! v2 error codes and texts it sends are the ones the official client
//! knows, not checked against a real server.
//!
//! [`Faults`] make it misbehave on purpose: error statuses, delays, an
//! observation that breaks off, garbage lines, a missing `Server` header.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, MethodRouter};
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;

use api::ApiVersion;
use catalog::{read_event_type, read_subjects, register_event_schema, run_eventql_query};
use log::Log;
use read::{observe_events, read_events};
use write::write_events;

mod answers;
mod api;
mod catalog;
mod eventql;
mod log;
mod read;
#[cfg(feature = "tls")]
mod tls;
mod write;

/// The `Server` header the test server sends.
pub const SERVER_HEADER: &str = "EventSourcingDB/0.0.0-orchestrix-test-server";

/// How the test server behaves.
#[derive(Clone)]
pub struct TestServerOptions {
    /// The API token requests must carry.
    pub token: String,
    /// How often an observation sends a heartbeat line.
    pub heartbeat: Duration,
    /// Whether it offers API v1 (`/api/v1/...`).
    pub offer_v1: bool,
    /// Whether it offers API v2 (`/api/v2/system/...`, `/api/v2/data/...`).
    pub offer_v2: bool,
    /// How many events the store can hold (`None`: no limit). A write that
    /// would pass it is refused as EventSourcingDB refuses writes to a full
    /// store: v1 409 `state conflict: exceeded max store capacity`, v2 an
    /// `error` item `capacity-exceeded`.
    pub capacity: Option<usize>,
}

impl TestServerOptions {
    /// The defaults, offering API v2 only.
    pub fn v2_only() -> Self {
        Self { offer_v1: false, offer_v2: true, ..Self::default() }
    }

    /// The defaults, offering both API versions (as EventSourcingDB does
    /// since it has v2).
    pub fn both() -> Self {
        Self { offer_v1: true, offer_v2: true, ..Self::default() }
    }
}

impl std::fmt::Debug for TestServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServerOptions")
            .field("token", &"<redacted>")
            .field("heartbeat", &self.heartbeat)
            .field("offer_v1", &self.offer_v1)
            .field("offer_v2", &self.offer_v2)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for TestServerOptions {
    fn default() -> Self {
        Self {
            token: "secret".to_owned(),
            heartbeat: Duration::from_secs(1),
            offer_v1: true,
            offer_v2: false,
            capacity: None,
        }
    }
}

/// Misbehaviour to inject; each fault is used up by the requests it hits.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer the next this-many requests (other than `ping`) with this status.
    pub status: Option<(u16, usize)>,
    /// Delay every answer by this much.
    pub delay: Option<Duration>,
    /// Break off the next observation abruptly after this many event lines,
    /// in the middle of the following line.
    pub break_observe_after: Option<usize>,
    /// Send one garbage line in the next observation after this many event lines.
    pub garbage_after: Option<usize>,
    /// Leave out the `Server` header.
    pub no_server_header: bool,
    /// Leave out the `end` item of v2 `read-events` answers, as if the
    /// answer broke off after its last event.
    pub no_end_item: bool,
    /// Carry out the next this-many `write-events` requests, then answer
    /// each with a 503 instead of its answer: a write that succeeded and
    /// whose acknowledgement was lost.
    pub lose_write_answers: usize,
}

#[derive(Debug)]
struct Shared {
    options: TestServerOptions,
    log: RwLock<Log>,
    head: watch::Sender<usize>,
    faults: Mutex<Faults>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Shared {
    fn record(&self, method: &str, path: &str, headers: &HeaderMap, body: &Bytes) {
        let request = RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            with_token: headers.contains_key(header::AUTHORIZATION),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).push(request);
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request the test server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Its method, for example `QUERY`.
    pub method: String,
    /// Its path, for example `/api/v2/data/read-events`.
    pub path: String,
    /// Whether it carried an `Authorization` header (the token itself is
    /// not kept).
    pub with_token: bool,
    /// Its body, as text.
    pub body: String,
}

/// A running test server; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server on a random localhost port.
    pub async fn start(options: TestServerOptions) -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0".parse().expect("a valid address"), options).await
    }

    /// Starts a server on `addr`.
    pub async fn bind(addr: SocketAddr, options: TestServerOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = new_shared(options);
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, scheme: "http", shared, task })
    }

    /// Starts a server on a random localhost port that speaks HTTPS only,
    /// with the certificate chain and private key given as PEM (feature
    /// `tls`). Its [`TestServer::url`] starts with `https://`.
    ///
    /// The TLS handshake happens as a connection is accepted (one at a time,
    /// at most 5 s each): good enough for tests, not for load.
    #[cfg(feature = "tls")]
    pub async fn start_tls(options: TestServerOptions, cert_chain_pem: &str, key_pem: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let listener = tls::TlsListener::new(listener, cert_chain_pem, key_pem)?;
        let shared = new_shared(options);
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, scheme: "https", shared, task })
    }

    /// The base URL, for example `http://127.0.0.1:40123` (or `https://...`
    /// for a server started with `start_tls`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token it expects.
    pub fn token(&self) -> &str {
        &self.shared.options.token
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults() = faults;
    }

    /// The bodies of the requests received so far, as `(endpoint, body)`
    /// (for example `("write-events", "{...}")`, the last segment of the
    /// path, in both versions), and forgets them.
    pub fn take_requests(&self) -> Vec<(String, String)> {
        self.take_http_requests()
            .into_iter()
            .map(|r| (r.path.rsplit('/').next().unwrap_or_default().to_owned(), r.body))
            .collect()
    }

    /// The requests received so far, with their method and path, and
    /// forgets them.
    pub fn take_http_requests(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut *self.shared.requests.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.shared.log.read().unwrap_or_else(PoisonError::into_inner).events.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the server task ends (it does not on its own).
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

fn new_shared(options: TestServerOptions) -> Arc<Shared> {
    Arc::new(Shared {
        options,
        log: RwLock::default(),
        head: watch::Sender::new(0),
        faults: Mutex::default(),
        requests: Mutex::default(),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    use ApiVersion::{V1, V2};
    let mut app = Router::new();
    if shared.options.offer_v1 {
        app = app
            .route("/api/v1/ping", endpoint(V1, "GET", ping))
            .route("/api/v1/verify-api-token", endpoint(V1, "POST", verify_api_token))
            .route("/api/v1/write-events", endpoint(V1, "POST", write_events))
            .route("/api/v1/read-events", endpoint(V1, "POST", read_events))
            .route("/api/v1/observe-events", endpoint(V1, "POST", observe_events))
            .route("/api/v1/register-event-schema", endpoint(V1, "POST", register_event_schema))
            .route("/api/v1/read-event-type", endpoint(V1, "POST", read_event_type))
            .route("/api/v1/read-subjects", endpoint(V1, "POST", read_subjects))
            .route("/api/v1/run-eventql-query", endpoint(V1, "POST", run_eventql_query));
    }
    if shared.options.offer_v2 {
        app = app
            .route("/api/v2/system/ping", endpoint(V2, "GET", ping))
            .route("/api/v2/system/verify-token", endpoint(V2, "POST", verify_api_token))
            .route("/api/v2/data/write-events", endpoint(V2, "POST", write_events))
            .route("/api/v2/data/register-event-schema", endpoint(V2, "POST", register_event_schema))
            .route("/api/v2/data/read-events", endpoint(V2, "QUERY", read_events))
            .route("/api/v2/data/observe-events", endpoint(V2, "QUERY", observe_events))
            .route("/api/v2/data/read-event-type", endpoint(V2, "QUERY", read_event_type))
            .route("/api/v2/data/read-subjects", endpoint(V2, "QUERY", read_subjects))
            .route("/api/v2/data/run-eventql-query", endpoint(V2, "QUERY", run_eventql_query));
    }
    // A path it does not offer: recorded too, so that tests see a probe.
    let not_found = |State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
        shared.record(method.as_str(), uri.path(), &headers, &body);
        (StatusCode::NOT_FOUND, "404 page not found\n")
    };
    app.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), server_header))
        .with_state(shared)
}

/// A request as a handler gets it.
struct Call {
    api: ApiVersion,
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Bytes,
}

/// A route that answers `method` only (405 otherwise, as a server without
/// the method does), records the request and hands it to `handler`.
fn endpoint<F, Fut>(api: ApiVersion, method: &'static str, handler: F) -> MethodRouter<Arc<Shared>>
where
    F: Fn(Call) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    any(move |State(shared): State<Arc<Shared>>, request_method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let handler = handler.clone();
        async move {
            if request_method.as_str() != method {
                return (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response();
            }
            shared.record(request_method.as_str(), uri.path(), &headers, &body);
            handler(Call { api, shared, headers, body }).await
        }
    })
}

async fn server_header(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_ping = request.uri().path().ends_with("/ping");
    let is_write = request.uri().path().ends_with("/write-events");
    let (delay, status, no_header, lose_answer) = {
        let mut faults = shared.faults();
        let status = match faults.status {
            Some((code, n)) if n > 0 && !is_ping => {
                faults.status = (n > 1).then_some((code, n - 1));
                Some(code)
            }
            _ => None,
        };
        let lose_answer = is_write && status.is_none() && faults.lose_write_answers > 0;
        if lose_answer {
            faults.lose_write_answers -= 1;
        }
        (faults.delay, status, faults.no_server_header, lose_answer)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = match status {
        Some(code) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "injected fault").into_response()
        }
        None if lose_answer => {
            // Carried out in full (a v2 answer streams: read it to its end),
            // its answer dropped.
            let answer = next.run(request).await;
            let _ = axum::body::to_bytes(answer.into_body(), usize::MAX).await;
            (StatusCode::SERVICE_UNAVAILABLE, "injected fault: the write was carried out, its answer lost")
                .into_response()
        }
        None => next.run(request).await,
    };
    if !no_header {
        response.headers_mut().insert(header::SERVER, header::HeaderValue::from_static(SERVER_HEADER));
    }
    response
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", shared.options.token);
    headers.get(header::AUTHORIZATION).is_some_and(|value| value.as_bytes() == expected.as_bytes())
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
}

/// Parses a request body. Unknown fields are refused by the body types
/// (`deny_unknown_fields`); through v2, so is a `null` anywhere outside an
/// event's `data` or a schema, as v2 refuses a field sent as `null`
/// instead of left out. Both are 400 with text, as a body that is not JSON.
fn parse_body<T: serde::de::DeserializeOwned>(api: ApiVersion, body: &[u8]) -> Result<T, Box<Response>> {
    let invalid = |e: &dyn std::fmt::Display| Box::new(bad_request(format!("invalid request body: {e}")));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| invalid(&e))?;
    if api == ApiVersion::V2 {
        if let Some(path) = null_field(&value, "") {
            return Err(invalid(&format!("the field `{path}` is null; leave it out instead")));
        }
    }
    serde_json::from_value(value).map_err(|e| invalid(&e))
}

/// The path of the first `null` in a request, outside user content (an
/// event's `data`, a schema).
fn null_field(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::Null => Some(path.to_owned()),
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "data" | "schema"))
            .find_map(|(key, value)| null_field(value, &format!("{path}.{key}"))),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, value)| null_field(value, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// A 400 with text as EventSourcingDB writes it: `bad request: <reason>\n`.
fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, format!("bad request: {}\n", message.into())).into_response()
}

fn management(subject: &str, event_type: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": "0",
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        "source": "https://www.eventsourcingdb.io",
        "subject": subject,
        "type": event_type,
        "datacontenttype": "application/json",
        "data": {},
    })
}

async fn ping(call: Call) -> Response {
    let subject = match call.api {
        ApiVersion::V1 => "/api/v1/ping",
        ApiVersion::V2 => "/api/v2/system/ping",
    };
    answers::single(call.api, "event", &management(subject, "io.eventsourcingdb.api.ping-received"))
}

async fn verify_api_token(call: Call) -> Response {
    if !authorized(&call.shared, &call.headers) {
        return unauthorized();
    }
    let event = match call.api {
        ApiVersion::V1 => management("/api/v1/verify-api-token", "io.eventsourcingdb.api.api-token-verified"),
        ApiVersion::V2 => management("/api/v2/system/verify-token", "io.eventsourcingdb.api.token-verified"),
    };
    answers::single(call.api, "event", &event)
}

/// Parses the time the server stored, for tests that compare.
pub fn parse_time(time: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(time).ok().map(|t| t.with_timezone(&Utc))
}
