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

use std::collections::HashMap;
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
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::api::ApiVersion;

mod answers;
mod eventql;

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
            .finish()
    }
}

impl Default for TestServerOptions {
    fn default() -> Self {
        Self { token: "secret".to_owned(), heartbeat: Duration::from_secs(1), offer_v1: true, offer_v2: false }
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
}

#[derive(Debug, Serialize, Clone)]
struct StoredEvent {
    specversion: &'static str,
    id: String,
    time: String,
    source: String,
    subject: String,
    #[serde(rename = "type")]
    event_type: String,
    datacontenttype: &'static str,
    data: Box<RawValue>,
    hash: String,
    predecessorhash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    signature: Option<String>,
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<Arc<StoredEvent>>,
    /// Per subject, the indexes of its events.
    subjects: HashMap<String, Vec<usize>>,
    /// Per event type, its registered schema.
    schemas: HashMap<String, Schema>,
}

/// A registered schema and its compiled validator.
struct Schema {
    json: serde_json::Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("json", &self.json).finish_non_exhaustive()
    }
}

impl Schema {
    /// Why `data` does not match, if it does not.
    fn violation(&self, data: &RawValue) -> Option<String> {
        let value: serde_json::Value = match serde_json::from_str(data.get()) {
            Ok(value) => value,
            Err(e) => return Some(e.to_string()),
        };
        self.validator.validate(&value).err().map(|e| format!("{e} at {}", e.instance_path))
    }
}

impl Log {
    /// The events as EventQL sees them (the same JSON as served).
    fn eventql_rows(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.events.iter().map(|e| serde_json::to_value(&**e).expect("events serialize"))
    }
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
    /// `eventsourcingdb-tls`). Its [`TestServer::url`] starts with `https://`.
    ///
    /// The TLS handshake happens as a connection is accepted (one at a time,
    /// at most 5 s each): good enough for tests, not for load.
    #[cfg(feature = "eventsourcingdb-tls")]
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

#[cfg(feature = "eventsourcingdb-tls")]
mod tls {
    //! An HTTPS listener for `axum::serve`.

    use std::io;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, ServerConfig};
    use tokio_rustls::TlsAcceptor;

    pub(super) struct TlsListener {
        tcp: TcpListener,
        acceptor: TlsAcceptor,
    }

    impl TlsListener {
        pub(super) fn new(tcp: TcpListener, cert_chain_pem: &str, key_pem: &str) -> io::Result<Self> {
            let invalid = |what: &str, e: &dyn std::fmt::Display| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
            };
            let certs = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("the certificate chain is not PEM", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| invalid("the private key is not PEM", &e))?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("TLS configuration", &e))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| invalid("the certificate or key", &e))?;
            Ok(Self { tcp, acceptor: TlsAcceptor::from(Arc::new(config)) })
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = tokio_rustls::server::TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let (tcp, addr) = match self.tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "the test server could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => return (tls, addr),
                    Ok(Err(error)) => tracing::debug!(%error, "a TLS handshake with the test server failed"),
                    Err(_) => tracing::debug!("a TLS handshake with the test server timed out"),
                }
            }
        }

        fn local_addr(&self) -> io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }
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
                return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
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
    let (delay, status, no_header) = {
        let mut faults = shared.faults();
        let status = match faults.status {
            Some((code, n)) if n > 0 && !is_ping => {
                faults.status = (n > 1).then_some((code, n - 1));
                Some(code)
            }
            _ => None,
        };
        (faults.delay, status, faults.no_server_header)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = match status {
        Some(code) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "injected fault").into_response()
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
    (StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
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

#[derive(Deserialize)]
struct Candidate {
    source: String,
    subject: String,
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

#[derive(Deserialize, Default)]
struct PreconditionOptions {
    #[serde(default)]
    recursive: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", content = "payload")]
enum Precondition {
    #[serde(rename = "isSubjectPristine")]
    Pristine {
        subject: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isSubjectPopulated")]
    Populated {
        subject: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isSubjectOnEventId")]
    OnEventId {
        subject: String,
        #[serde(rename = "eventId")]
        event_id: String,
        #[serde(default)]
        options: PreconditionOptions,
    },
    #[serde(rename = "isEventQlQueryTrue")]
    EventQlQueryTrue { query: String },
}

#[derive(Deserialize)]
struct WriteBody {
    events: Vec<Candidate>,
    #[serde(default)]
    preconditions: Vec<Precondition>,
}

fn valid_subject(subject: &str) -> bool {
    subject.starts_with('/') && !subject.contains("//") && (subject == "/" || !subject.ends_with('/'))
}

fn valid_type(event_type: &str) -> bool {
    let parts: Vec<&str> = event_type.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The time as Go's RFC 3339 with nanoseconds writes it (trailing zeros of
/// the fraction trimmed), as the hash covers it.
fn rfc3339_trimmed(time: DateTime<Utc>) -> String {
    let nanos = format!("{:09}", time.timestamp_subsec_nanos());
    let fraction = nanos.trim_end_matches('0');
    let seconds = time.format("%Y-%m-%dT%H:%M:%S");
    if fraction.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{fraction}Z")
    }
}

const HASH_PREFIX: &str = "esdb:hash:v2:";

/// The event hash of version 2, as EventSourcingDB writes it since 1.3 and
/// the official clients verify it: SHA-256 over the prefix and every field
/// on a line of its own (a missing trace field as `-`, `data` exactly as
/// stored), hex-encoded behind the prefix.
fn event_hash(event: &StoredEvent) -> String {
    let input = [
        HASH_PREFIX,
        event.specversion,
        &event.id,
        &event.predecessorhash,
        &event.time,
        &event.source,
        &event.subject,
        &event.event_type,
        event.datacontenttype,
        event.traceparent.as_deref().unwrap_or("-"),
        event.tracestate.as_deref().unwrap_or("-"),
        event.data.get(),
    ]
    .join("\n");
    let digest = Sha256::digest(input.as_bytes());
    let mut hash = String::with_capacity(HASH_PREFIX.len() + 64);
    hash.push_str(HASH_PREFIX);
    for byte in digest {
        hash.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hash.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hash
}

/// Whether an `isEventQlQueryTrue` query holds: it must answer exactly one
/// boolean row.
fn eventql_holds(log: &Log, query: &str) -> Result<bool, String> {
    let query = eventql::parse(query).map_err(|e| e.to_string())?;
    let rows = eventql::run(&query, log.eventql_rows()).map_err(|e| e.to_string())?;
    match rows.as_slice() {
        [serde_json::Value::Bool(holds)] => Ok(*holds),
        _ => Err(format!("query not boolean: it answered {} rows, not one boolean", rows.len())),
    }
}

/// The last event of `subject` (with `recursive`, of it and every subject
/// below it).
fn latest_event<'a>(log: &'a Log, subject: &str, recursive: bool) -> Option<&'a StoredEvent> {
    if recursive {
        log.events.iter().rev().find(|e| matches_subject(subject, &e.subject, true)).map(|e| &**e)
    } else {
        log.subjects.get(subject).and_then(|s| s.last()).map(|&i| &*log.events[i])
    }
}

/// Whether a precondition holds; `Err` is a refusal to answer.
fn holds(api: ApiVersion, log: &Log, precondition: &Precondition) -> Result<bool, Box<Response>> {
    let recursive = match precondition {
        Precondition::Pristine { options, .. }
        | Precondition::Populated { options, .. }
        | Precondition::OnEventId { options, .. } => options.recursive,
        Precondition::EventQlQueryTrue { .. } => false,
    };
    if recursive && api == ApiVersion::V1 {
        return Err(Box::new(bad_request("recursive preconditions need API v2")));
    }
    Ok(match precondition {
        Precondition::Pristine { subject, .. } => latest_event(log, subject, recursive).is_none(),
        Precondition::Populated { subject, .. } => latest_event(log, subject, recursive).is_some(),
        Precondition::OnEventId { subject, event_id, .. } => {
            latest_event(log, subject, recursive).is_some_and(|e| e.id == *event_id)
        }
        Precondition::EventQlQueryTrue { query } => match eventql_holds(log, query) {
            Ok(holds) => holds,
            Err(message) => {
                return Err(Box::new(answers::refuse(api, StatusCode::BAD_REQUEST, message, "query-unevaluable")));
            }
        },
    })
}

async fn write_events(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: WriteBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    if body.events.is_empty() {
        return bad_request("events must not be empty");
    }
    for event in &body.events {
        if event.source.is_empty() || !valid_subject(&event.subject) || !valid_type(&event.event_type) {
            return bad_request(format!(
                "invalid event candidate (subject {:?}, type {:?})",
                event.subject, event.event_type
            ));
        }
        if !event.data.get().trim_start().starts_with('{') {
            return bad_request("data must be a JSON object");
        }
    }
    let written = {
        let mut log = shared.log.write().unwrap_or_else(PoisonError::into_inner);
        for precondition in &body.preconditions {
            match holds(api, &log, precondition) {
                Ok(true) => {}
                Ok(false) => {
                    let text = "state conflict: precondition failed".to_owned();
                    return answers::refuse(api, StatusCode::CONFLICT, text, "precondition-violated");
                }
                Err(refusal) => return *refusal,
            }
        }
        for candidate in &body.events {
            if let Some(violation) = log.schemas.get(&candidate.event_type).and_then(|s| s.violation(&candidate.data)) {
                let text = format!(
                    "schema conflict: event candidate does not match schema of {}: {violation}",
                    candidate.event_type
                );
                return answers::refuse(api, StatusCode::CONFLICT, text, "event-schema-violated");
            }
        }
        let time = rfc3339_trimmed(Utc::now());
        let mut written = Vec::with_capacity(body.events.len());
        for candidate in body.events {
            let index = log.events.len();
            let predecessorhash = log.events.last().map_or_else(|| "0".repeat(64), |e| e.hash.clone());
            let mut event = StoredEvent {
                specversion: "1.0",
                id: index.to_string(),
                time: time.clone(),
                source: candidate.source,
                subject: candidate.subject,
                event_type: candidate.event_type,
                datacontenttype: "application/json",
                data: candidate.data,
                hash: String::new(),
                predecessorhash,
                traceparent: candidate.traceparent,
                tracestate: candidate.tracestate,
                signature: None,
            };
            event.hash = event_hash(&event);
            let event = Arc::new(event);
            log.subjects.entry(event.subject.clone()).or_default().push(index);
            log.events.push(Arc::clone(&event));
            written.push(event);
        }
        shared.head.send_replace(log.events.len());
        written
    };
    match api {
        ApiVersion::V1 => axum::Json(written).into_response(),
        ApiVersion::V2 => answers::finite(api, written.iter().map(|e| answers::event_line(api, e)).collect(), true),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BoundIn {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FromLatestIn {
    subject: String,
    #[serde(rename = "type")]
    event_type: String,
    if_event_is_missing: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OptionsIn {
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    lower_bound: Option<BoundIn>,
    #[serde(default)]
    upper_bound: Option<BoundIn>,
    #[serde(default)]
    from_latest_event: Option<FromLatestIn>,
}

#[derive(Deserialize)]
struct ReadBody {
    subject: String,
    #[serde(default)]
    options: OptionsIn,
}

fn matches_subject(base: &str, subject: &str, recursive: bool) -> bool {
    subject == base
        || (recursive && (base == "/" || subject.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))))
}

/// The first index a read starts at: from the lower bound and from
/// `fromLatestEvent`; `None` when nothing is to be read.
fn start_index(log: &Log, options: &OptionsIn) -> Result<Option<usize>, String> {
    let mut start = 0;
    if let Some(bound) = &options.lower_bound {
        let id: usize = bound.id.parse().map_err(|_| format!("invalid lower bound id {:?}", bound.id))?;
        start = match bound.kind.as_str() {
            "inclusive" => id,
            "exclusive" => id + 1,
            other => return Err(format!("invalid bound type {other:?}")),
        };
    }
    if let Some(from) = &options.from_latest_event {
        let latest = log
            .subjects
            .get(&from.subject)
            .and_then(|indexes| indexes.iter().rev().find(|&&i| log.events[i].event_type == from.event_type));
        match (latest, from.if_event_is_missing.as_str()) {
            (Some(&i), _) => start = start.max(i),
            (None, "read-everything") => {}
            (None, "read-nothing") => return Ok(None),
            (None, other) => return Err(format!("invalid ifEventIsMissing {other:?}")),
        }
    }
    Ok(Some(start))
}

async fn read_events(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: ReadBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    if !valid_subject(&body.subject) {
        return bad_request("invalid subject");
    }
    let lines = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        let start = match start_index(&log, &body.options) {
            Ok(Some(start)) => start,
            Ok(None) => return answers::finite(api, Vec::new(), !shared.faults().no_end_item),
            Err(message) => return bad_request(message),
        };
        let mut end = log.events.len();
        if let Some(bound) = &body.options.upper_bound {
            let Ok(id) = bound.id.parse::<usize>() else { return bad_request("invalid upper bound id") };
            end = end.min(if bound.kind == "exclusive" { id } else { id + 1 });
        }
        let recursive = body.options.recursive;
        let mut selected: Vec<Bytes> = if recursive {
            log.events
                .get(start..end.max(start))
                .unwrap_or_default()
                .iter()
                .filter(|e| matches_subject(&body.subject, &e.subject, true))
                .map(|e| answers::event_line(api, e))
                .collect()
        } else {
            log.subjects
                .get(&body.subject)
                .map(|indexes| {
                    indexes
                        .iter()
                        .filter(|&&i| i >= start && i < end)
                        .map(|&i| answers::event_line(api, &log.events[i]))
                        .collect()
                })
                .unwrap_or_default()
        };
        match body.options.order.as_deref() {
            None | Some("chronological") => {}
            Some("antichronological") => selected.reverse(),
            Some(other) => return bad_request(format!("invalid order {other:?}")),
        }
        selected
    };
    let end = !shared.faults().no_end_item;
    answers::finite(api, lines, end)
}

async fn observe_events(call: Call) -> Response {
    enum Step {
        Line(Bytes),
        Break,
    }
    struct Observation {
        api: ApiVersion,
        shared: Arc<Shared>,
        head: watch::Receiver<usize>,
        subject: String,
        recursive: bool,
        next: usize,
        sent: usize,
        break_after: Option<usize>,
        garbage_after: Option<usize>,
        pending: std::collections::VecDeque<Step>,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: ReadBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    if body.options.order.is_some() || body.options.upper_bound.is_some() {
        return bad_request("observe-events takes neither order nor upperBound");
    }
    let start = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        match start_index(&log, &body.options) {
            Ok(start) => start.unwrap_or(usize::MAX),
            Err(message) => return bad_request(message),
        }
    };
    let (break_after, garbage_after) = {
        let mut faults = shared.faults();
        (faults.break_observe_after.take(), faults.garbage_after.take())
    };
    let observation = Observation {
        api,
        head: shared.head.subscribe(),
        shared,
        subject: body.subject,
        recursive: body.options.recursive,
        next: start,
        sent: 0,
        break_after,
        garbage_after,
        pending: std::collections::VecDeque::new(),
    };
    let body = stream::unfold(observation, |mut o| async move {
        loop {
            if let Some(step) = o.pending.pop_front() {
                return match step {
                    Step::Line(line) => Some((Ok(line), o)),
                    Step::Break => Some((Err(std::io::Error::other("injected: connection broken off")), o)),
                };
            }
            o.head.borrow_and_update();
            {
                let log = o.shared.log.read().unwrap_or_else(PoisonError::into_inner);
                while o.next < log.events.len() && o.pending.len() < 256 {
                    let event = &log.events[o.next];
                    o.next += 1;
                    if !matches_subject(&o.subject, &event.subject, o.recursive) {
                        continue;
                    }
                    if o.break_after == Some(o.sent) {
                        let line = answers::event_line(o.api, event);
                        o.pending.push_back(Step::Line(line.slice(..line.len() / 2)));
                        o.pending.push_back(Step::Break);
                        break;
                    }
                    if o.garbage_after == Some(o.sent) {
                        o.garbage_after = None;
                        o.pending.push_back(Step::Line(answers::garbage(o.api)));
                    }
                    o.pending.push_back(Step::Line(answers::event_line(o.api, event)));
                    o.sent += 1;
                }
            }
            if !o.pending.is_empty() {
                continue;
            }
            let heartbeat = o.shared.options.heartbeat;
            tokio::select! {
                changed = o.head.changed() => if changed.is_err() { return None },
                () = tokio::time::sleep(heartbeat) => {
                    return Some((Ok(answers::heartbeat(o.api)), o));
                }
            }
        }
    });
    answers::ndjson_stream(body)
}

/// The type an event-type body names: `eventType` in v1, `type` in v2.
#[derive(Deserialize)]
struct EventTypeBody {
    #[serde(rename = "eventType", default)]
    v1: Option<String>,
    #[serde(rename = "type", default)]
    v2: Option<String>,
    #[serde(default)]
    schema: Option<serde_json::Value>,
}

impl EventTypeBody {
    fn parse(api: ApiVersion, body: &[u8]) -> Result<(String, Option<serde_json::Value>), Box<Response>> {
        let body: Self =
            serde_json::from_slice(body).map_err(|e| Box::new(bad_request(format!("invalid request body: {e}"))))?;
        let (name, event_type) = match api {
            ApiVersion::V1 => ("eventType", body.v1),
            ApiVersion::V2 => ("type", body.v2),
        };
        let event_type =
            event_type.ok_or_else(|| Box::new(bad_request(format!("invalid request body: missing `{name}`"))))?;
        Ok((event_type, body.schema))
    }
}

async fn register_event_schema(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let (event_type, schema) = match EventTypeBody::parse(api, &body) {
        Ok(parsed) => parsed,
        Err(refusal) => return *refusal,
    };
    let Some(schema) = schema else { return bad_request("invalid request body: missing `schema`") };
    if !valid_type(&event_type) {
        return bad_request(format!("invalid event type {event_type:?}"));
    }
    if !schema.is_object() {
        return bad_request("schema must be a JSON object");
    }
    if let Err(e) = jsonschema::meta::validate(&schema) {
        return bad_request(format!("schema is not a valid JSON schema: {e}"));
    }
    let validator = match jsonschema::validator_for(&schema) {
        Ok(validator) => validator,
        Err(e) => return bad_request(format!("schema is not a valid JSON schema: {e}")),
    };
    let schema = Schema { json: schema, validator };
    let mut log = shared.log.write().unwrap_or_else(PoisonError::into_inner);
    if log.schemas.contains_key(&event_type) {
        let text = "schema conflict: schema already exists".to_owned();
        return answers::refuse(api, StatusCode::CONFLICT, text, "event-schema-already-registered");
    }
    let violating = log.events.iter().find(|e| e.event_type == event_type && schema.violation(&e.data).is_some());
    if let Some(event) = violating {
        let text = format!("schema conflict: event with ID {} does not match schema", event.id);
        return answers::refuse(api, StatusCode::CONFLICT, text, "event-schema-violated");
    }
    log.schemas.insert(event_type, schema);
    let registered = "io.eventsourcingdb.api.event-schema-registered";
    match api {
        ApiVersion::V1 => answers::single(api, "event", &management("/api/v1/register-event-schema", registered)),
        ApiVersion::V2 => {
            let event = management("/api/v2/data/register-event-schema", registered);
            answers::finite(api, vec![answers::item(api, "event", &event)], true)
        }
    }
}

async fn read_event_type(call: Call) -> Response {
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let event_type = match EventTypeBody::parse(api, &body) {
        Ok((event_type, _)) => event_type,
        Err(refusal) => return *refusal,
    };
    let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
    let has_events = log.events.iter().any(|e| e.event_type == event_type);
    let schema = log.schemas.get(&event_type).map(|s| s.json.clone());
    if !has_events && schema.is_none() {
        let text = format!("event type '{event_type}' not found");
        return answers::refuse(api, StatusCode::NOT_FOUND, text, "event-type-unknown");
    }
    let answer = match api {
        ApiVersion::V1 => serde_json::json!({ "eventType": event_type, "isPhantom": !has_events, "schema": schema }),
        ApiVersion::V2 => serde_json::json!({ "type": event_type, "hasEvents": has_events, "schema": schema }),
    };
    answers::single(api, "eventType", &answer)
}

async fn read_subjects(call: Call) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        #[serde(default)]
        base_subject: Option<String>,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        options: Option<PreconditionOptions>,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    // v1 names the subject `baseSubject` and always reads recursively; v2
    // names it `subject` and takes `options.recursive`.
    let (subject, recursive) = match api {
        ApiVersion::V1 => (body.base_subject, true),
        ApiVersion::V2 => (body.subject, body.options.is_some_and(|o| o.recursive)),
    };
    let Some(subject) = subject else { return bad_request("invalid request body: missing the subject") };
    let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
    let mut subjects: Vec<&String> = log.subjects.keys().filter(|s| matches_subject(&subject, s, recursive)).collect();
    subjects.sort();
    let lines =
        subjects.into_iter().map(|subject| answers::item(api, "subject", &serde_json::json!({ "subject": subject })));
    answers::finite(api, lines.collect(), true)
}

async fn run_eventql_query(call: Call) -> Response {
    #[derive(Deserialize)]
    struct Body {
        query: String,
    }
    let Call { api, shared, headers, body } = call;
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(format!("invalid request body: {e}")),
    };
    let query = match eventql::parse(&body.query) {
        Ok(query) => query,
        Err(e) => return answers::refuse(api, StatusCode::BAD_REQUEST, e.to_string(), "query-malformed"),
    };
    let rows = {
        let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
        match eventql::run(&query, log.eventql_rows()) {
            Ok(rows) => rows,
            Err(e) => return answers::refuse(api, StatusCode::BAD_REQUEST, e.to_string(), "query-unevaluable"),
        }
    };
    let lines = rows.into_iter().map(|row| match api {
        ApiVersion::V1 => answers::item(api, "row", &row),
        ApiVersion::V2 => answers::item(api, "row", &serde_json::json!({ "value": row })),
    });
    answers::finite(api, lines.collect(), true)
}

/// Parses the time the server stored, for tests that compare.
pub fn parse_time(time: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(time).ok().map(|t| t.with_timezone(&Utc))
}
