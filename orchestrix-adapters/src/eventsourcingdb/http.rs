//! The HTTP layer: requests with the token, the server-header check, status
//! mapping and NDJSON lines with an idle timeout.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use orchestrix::StoreError;
use reqwest::header::{HeaderValue, AUTHORIZATION, SERVER};
use serde::Serialize;

use super::api::{self, ApiVersion, Op, V2_PING_PATH};
use super::config::{ApiToken, EsdbConfig};

/// What went wrong talking to EventSourcingDB. It never contains the API
/// token. [`StoreError::Unavailable`] or [`StoreError::Backend`] wraps it;
/// downcast the source to read it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EsdbError {
    /// The server could not be reached or dropped the connection.
    #[error("cannot reach EventSourcingDB at {url}: {reason}")]
    Connection {
        /// The URL requested (it never holds the token).
        url: String,
        /// What the HTTP client reported.
        reason: String,
    },
    /// The server took longer than the configured timeout.
    #[error("EventSourcingDB at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The server refused the API token (401).
    #[error("EventSourcingDB refused the API token (401 Unauthorized); check `ORCHESTRIX_ESDB_TOKEN` or the configured token")]
    Unauthorized,
    /// The answer did not carry a `Server: EventSourcingDB/...` header.
    #[error("the server at {url} is not EventSourcingDB: its `Server` header is {found:?}")]
    NotEventSourcingDb {
        /// The URL requested.
        url: String,
        /// The `Server` header found, if any.
        found: Option<String>,
    },
    /// A precondition failed (409); nothing was written.
    #[error("a write precondition failed (409 Conflict)")]
    Conflict,
    /// The server refused data that does not match the JSON schema
    /// registered for its event type (409); nothing was written. Also the
    /// answer to a schema registration that events already stored violate.
    #[error("EventSourcingDB refused data that does not match the registered event schema (409): {detail}")]
    SchemaViolated {
        /// The server's explanation.
        detail: String,
    },
    /// A different schema is already registered for this event type;
    /// EventSourcingDB never replaces a schema, so the event type needs a new
    /// schema version instead.
    #[error("EventSourcingDB already has a different schema for `{event_type}`; registered: {registered}")]
    SchemaConflict {
        /// The EventSourcingDB event type (`<prefix>.<name>.v<version>`).
        event_type: String,
        /// The start of the schema the server holds.
        registered: String,
    },
    /// Any other error status.
    #[error("EventSourcingDB answered {status} to {url}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The URL requested.
        url: String,
        /// The start of the answer's body.
        body: String,
    },
    /// The server sent something that is not what its API documents.
    #[error("EventSourcingDB sent a malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The server sent an `error` line in a stream (API v1, whose error
    /// lines carry text only).
    #[error("EventSourcingDB reported an error in the stream: {0}")]
    Stream(String),
    /// The server reported an error of its domain with a code (API v2),
    /// one the adapter has no variant of its own for.
    #[error("EventSourcingDB reported the error {code}: {description}")]
    Api {
        /// The error's code, a URL naming it, for example
        /// `https://docs.eventsourcingdb.io/errors/query-malformed`.
        code: String,
        /// The server's explanation.
        description: String,
    },
}

impl EsdbError {
    /// Whether retrying later may succeed (connection, timeout, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Timeout { .. } | Self::Stream(_) => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Api { code, .. } => api::is_transient_code(code),
            _ => false,
        }
    }

    /// Whether the server refused a schema registration because the type
    /// already has a schema (v1: a 409 saying so; v2: the error code
    /// `event-schema-already-registered`).
    pub(crate) fn is_schema_already_registered(&self) -> bool {
        match self {
            Self::Status { status: 409, body, .. } => body.trim_start().starts_with(SCHEMA_EXISTS),
            Self::Api { code, .. } => api::is_schema_already_registered_code(code),
            _ => false,
        }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Self {
        let mut detail = detail.to_string();
        truncate(&mut detail, 200);
        Self::Malformed { what, detail }
    }
}

impl From<EsdbError> for StoreError {
    fn from(error: EsdbError) -> Self {
        if error.is_transient() {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Backend(Box::new(error))
        }
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// An HTTP client bound to one server, one API version and one token.
pub(crate) struct Http {
    client: reqwest::Client,
    /// The base URL, without a trailing slash.
    base: String,
    /// `<base URL>/api/v1` or `/api/v2`.
    api: String,
    version: ApiVersion,
    authorization: HeaderValue,
    request_timeout: Duration,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").field("api", &self.api).field("token", &"<redacted>").finish_non_exhaustive()
    }
}

pub(crate) type Lines = Pin<Box<dyn Stream<Item = Result<Bytes, EsdbError>> + Send>>;

impl Http {
    pub(crate) fn new(config: &EsdbConfig, version: ApiVersion) -> Result<Self, StoreError> {
        #[cfg_attr(not(feature = "eventsourcingdb-tls"), allow(unused_mut))]
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        #[cfg(feature = "eventsourcingdb-tls")]
        {
            let mut roots = Vec::with_capacity(config.root_certificates.len());
            for pem in &config.root_certificates {
                let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                    StoreError::InvalidInput(format!("a configured root certificate is not a PEM certificate: {e}"))
                })?;
                if certificates.is_empty() {
                    return Err(StoreError::InvalidInput(
                        "a configured root certificate holds no PEM certificate".to_owned(),
                    ));
                }
                roots.extend(certificates);
            }
            if !roots.is_empty() {
                builder = builder.tls_certs_merge(roots);
            }
        }
        #[cfg(not(feature = "eventsourcingdb-tls"))]
        if config.base_url().starts_with("https://") {
            return Err(StoreError::InvalidInput(format!(
                "{} is an https URL: HTTPS needs the feature `eventsourcingdb-tls` of orchestrix-adapters",
                config.base_url()
            )));
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::Backend(Box::new(EsdbError::malformed("client configuration", e))))?;
        Ok(Self {
            client,
            base: config.base_url().to_owned(),
            api: format!("{}{}", config.base_url(), version.prefix()),
            version,
            authorization: bearer(&config.api_token)?,
            request_timeout: config.request_timeout,
        })
    }

    /// The same client (and connection pool) speaking another version.
    pub(crate) fn with_version(&self, version: ApiVersion) -> Self {
        Self {
            client: self.client.clone(),
            base: self.base.clone(),
            api: format!("{}{}", self.base, version.prefix()),
            version,
            authorization: self.authorization.clone(),
            request_timeout: self.request_timeout,
        }
    }

    pub(crate) fn api_url(&self) -> &str {
        &self.api
    }

    pub(crate) fn version(&self) -> ApiVersion {
        self.version
    }

    /// Finds out which version the server speaks, as the official client
    /// does: `GET /api/v2/system/ping` without the token; 404 or 405 (from
    /// the server or a proxy that forwards v1 only) means v1; a 200 from
    /// EventSourcingDB with a v2 envelope of type `event` means v2;
    /// anything else is an error that tells nothing about the version.
    pub(crate) async fn probe(&self) -> Result<ApiVersion, EsdbError> {
        let url = format!("{}{V2_PING_PATH}", self.base);
        let response = self.execute(&url, self.client.get(&url)).await?;
        if matches!(response.status().as_u16(), 404 | 405) {
            return Ok(ApiVersion::V1);
        }
        let answer = self.checked(&url, response).await?;
        let answer = self.body(&url, answer).await?;
        ApiVersion::V2.check_ping(&answer).map(|()| ApiVersion::V2)
    }

    /// The method, URL and request of an operation, with the token unless
    /// it is the ping (which needs none).
    fn request<B: Serialize + ?Sized>(&self, op: Op, body: Option<&B>) -> (String, reqwest::RequestBuilder) {
        let (method, path) = self.version.route(op);
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if op != Op::Ping {
            request = request.header(AUTHORIZATION, self.authorization.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        (url, request)
    }

    /// Runs an operation and returns its whole answer.
    pub(crate) async fn call<B: Serialize + ?Sized>(&self, op: Op, body: Option<&B>) -> Result<Bytes, EsdbError> {
        let (url, request) = self.request(op, body);
        let response = self.execute(&url, request).await?;
        let response = self.checked(&url, response).await?;
        self.body(&url, response).await
    }

    /// Runs a streaming operation and returns its NDJSON lines; a line that
    /// does not arrive within `idle` ends the stream with
    /// [`EsdbError::Timeout`].
    pub(crate) async fn stream<B: Serialize + ?Sized>(
        &self,
        op: Op,
        body: &B,
        idle: Duration,
    ) -> Result<Lines, EsdbError> {
        let (url, request) = self.request(op, Some(body));
        let response = self.execute(&url, request).await?;
        let response = self.checked(&url, response).await?;
        Ok(lines(url, response, idle))
    }

    async fn execute(&self, url: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, EsdbError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(connection(url, &error)),
            Err(_) => Err(EsdbError::Timeout { url: url.to_owned(), timeout }),
        }
    }

    async fn body(&self, url: &str, response: reqwest::Response) -> Result<Bytes, EsdbError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, response.bytes()).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(error)) => Err(connection(url, &error)),
            Err(_) => Err(EsdbError::Timeout { url: url.to_owned(), timeout }),
        }
    }

    /// Refuses an answer that is not from EventSourcingDB (whatever its
    /// status, in both versions) and maps error statuses.
    async fn checked(&self, url: &str, response: reqwest::Response) -> Result<reqwest::Response, EsdbError> {
        check_server_header(url, &response)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.as_u16() == 401 {
            return Err(EsdbError::Unauthorized);
        }
        let mut body = tokio::time::timeout(self.request_timeout, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        truncate(&mut body, 500);
        // Only v1 reports conflicts as statuses; v2 sends them as error
        // items at 200, so a 409 from v2 is just a status.
        let conflict = if self.version == ApiVersion::V1 { classify_conflict(&body) } else { Conflict::SchemaExists };
        match (status.as_u16(), conflict) {
            (409, Conflict::Precondition) => Err(EsdbError::Conflict),
            (409, Conflict::Schema) => Err(EsdbError::SchemaViolated { detail: body.trim().to_owned() }),
            (code, _) => Err(EsdbError::Status { status: code, url: url.to_owned(), body }),
        }
    }
}

/// What a 409 answer is about, from its text (API v1 answers with text:
/// `state conflict: precondition failed`, `schema conflict: event candidate
/// does not match schema`, `schema conflict: schema already exists`, ...).
enum Conflict {
    /// A precondition failed (and anything not recognised as a schema conflict).
    Precondition,
    /// Data does not match a registered schema.
    Schema,
    /// A schema is already registered for the type: left as a 409
    /// [`EsdbError::Status`] for the registration to resolve.
    SchemaExists,
}

/// How API v1 starts the text of a 409 to a schema registration for a
/// type that already has one.
const SCHEMA_EXISTS: &str = "schema conflict: schema already exists";

fn classify_conflict(body: &str) -> Conflict {
    let body = body.trim_start();
    if body.starts_with(SCHEMA_EXISTS) {
        Conflict::SchemaExists
    } else if body.starts_with("schema conflict") {
        Conflict::Schema
    } else {
        Conflict::Precondition
    }
}

fn bearer(token: &ApiToken) -> Result<HeaderValue, StoreError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        StoreError::InvalidInput("the EventSourcingDB API token contains characters not allowed in a header".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn connection(url: &str, error: &reqwest::Error) -> EsdbError {
    // Render the chain without the request (no headers, so no token).
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        return EsdbError::Timeout { url: url.to_owned(), timeout: Duration::ZERO };
    }
    EsdbError::Connection { url: url.to_owned(), reason }
}

/// Refuses answers without `Server: EventSourcingDB/...`, as the official
/// clients do.
pub(crate) fn check_server_header(url: &str, response: &reqwest::Response) -> Result<(), EsdbError> {
    let found = response.headers().get(SERVER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match found {
        Some(server) if server.starts_with("EventSourcingDB/") => Ok(()),
        found => Err(EsdbError::NotEventSourcingDb { url: url.to_owned(), found }),
    }
}

/// Splits a response body into lines, with an idle timeout between chunks.
fn lines(url: String, response: reqwest::Response, idle: Duration) -> Lines {
    struct State {
        url: String,
        body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
        buffer: Vec<u8>,
        done: bool,
        idle: Duration,
    }
    let state = State { url, body: Box::pin(response.bytes_stream()), buffer: Vec::new(), done: false, idle };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(end) = state.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = state.buffer.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(Bytes::copy_from_slice(line)), state));
            }
            if state.done {
                if state.buffer.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                let rest = std::mem::take(&mut state.buffer);
                return Some((Ok(Bytes::from(rest)), state));
            }
            match tokio::time::timeout(state.idle, state.body.next()).await {
                Ok(Some(Ok(chunk))) => state.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(error))) => {
                    let error = connection(&state.url, &error);
                    state.done = true;
                    state.buffer.clear();
                    return Some((Err(error), state));
                }
                Ok(None) => state.done = true,
                Err(_) => {
                    let error = EsdbError::Timeout { url: state.url.clone(), timeout: state.idle };
                    state.done = true;
                    state.buffer.clear();
                    return Some((Err(error), state));
                }
            }
        }
    })
    .boxed()
}
