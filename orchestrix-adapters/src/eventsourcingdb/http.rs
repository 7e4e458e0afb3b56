//! The HTTP layer: requests with the token, the server-header check, status
//! mapping, bounded bodies; the NDJSON lines are read by [`super::lines`].

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use orchestrix::StoreError;
use reqwest::header::{HeaderValue, AUTHORIZATION, SERVER};
use serde::Serialize;

use super::api::{ApiVersion, Op, V2_PING_PATH};
use super::config::{ApiToken, EsdbConfig};
use super::error::{code_of_v1_error, truncate, EsdbError};
use super::lines::{self, Limits};

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
    limits: Limits,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").field("api", &self.api).field("token", &"<redacted>").finish_non_exhaustive()
    }
}

pub(crate) use super::lines::Lines;

impl Http {
    pub(crate) fn new(config: &EsdbConfig, version: ApiVersion) -> Result<Self, StoreError> {
        let client = match &config.http_client {
            Some(client) => {
                #[cfg(feature = "eventsourcingdb-tls")]
                if !config.root_certificates.is_empty() {
                    return Err(StoreError::InvalidInput(
                        "root certificates cannot be added to an HTTP client you built: add them to it \
                         (`reqwest::ClientBuilder::add_root_certificate`) instead of to `EsdbConfig`"
                            .to_owned(),
                    ));
                }
                client.clone()
            }
            None => build_client(config)?,
        };
        Ok(Self {
            client,
            base: config.base_url().to_owned(),
            api: format!("{}{}", config.base_url(), version.prefix()),
            version,
            authorization: bearer(&config.api_token)?,
            request_timeout: config.request_timeout,
            limits: Limits { max_line: config.max_line_bytes, max_answer: config.max_answer_bytes },
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
            limits: self.limits,
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
    /// is not complete within `line_timeout` (counted from when the reader
    /// starts waiting for it, however slowly its bytes trickle in) ends the
    /// stream with [`EsdbError::Timeout`], a line longer than the limit
    /// with [`EsdbError::TooLarge`].
    pub(crate) async fn stream<B: Serialize + ?Sized>(
        &self,
        op: Op,
        body: &B,
        line_timeout: Duration,
    ) -> Result<Lines, EsdbError> {
        let (url, request) = self.request(op, Some(body));
        let response = self.execute(&url, request).await?;
        let response = self.checked(&url, response).await?;
        Ok(lines::lines(url, response, line_timeout, self.limits.max_line))
    }

    async fn execute(&self, url: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, EsdbError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(EsdbError::connection(url, &error)),
            Err(_) => Err(EsdbError::Timeout { url: url.to_owned(), timeout }),
        }
    }

    /// The whole body of a single answer, at most `max_answer` bytes,
    /// within the request timeout.
    async fn body(&self, url: &str, response: reqwest::Response) -> Result<Bytes, EsdbError> {
        let timeout = self.request_timeout;
        let limit = self.limits.max_answer;
        match tokio::time::timeout(timeout, lines::bounded_body(response, limit)).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(_))) => Err(EsdbError::TooLarge { url: url.to_owned(), what: "answer", limit }),
            Ok(Err(error)) => Err(EsdbError::connection(url, &error)),
            Err(_) => Err(EsdbError::Timeout { url: url.to_owned(), timeout }),
        }
    }

    /// Refuses an answer that is not from EventSourcingDB (whatever its
    /// status, in both versions) and maps error statuses: v1 texts that
    /// match a documented error become its typed error (a 409 is a
    /// conflict only if it says a precondition failed); anything else is
    /// [`EsdbError::Status`] with the start of the body, of which at most
    /// [`ERROR_BODY_LIMIT`] bytes are read.
    async fn checked(&self, url: &str, response: reqwest::Response) -> Result<reqwest::Response, EsdbError> {
        check_server_header(url, &response)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.as_u16() == 401 {
            return Err(EsdbError::Unauthorized);
        }
        let body = tokio::time::timeout(self.request_timeout, lines::bounded_body(response, ERROR_BODY_LIMIT)).await;
        let body = match body {
            Ok(Ok(Ok(bytes) | Err(bytes))) => bytes,
            Ok(Err(_)) | Err(_) => Bytes::new(),
        };
        let mut body = String::from_utf8_lossy(&body).into_owned();
        truncate(&mut body, 500);
        let operation = url.rsplit('/').next().unwrap_or_default();
        // Only v1 reports errors of the domain as statuses; v2 sends them as
        // error items at 200, so a 409 from v2 is just a status.
        let code = match self.version {
            ApiVersion::V1 => code_of_v1_error(operation, status.as_u16(), &body),
            ApiVersion::V2 => None,
        };
        Err(match code {
            Some(code) => EsdbError::from_code(code, body.trim().to_owned()),
            None => EsdbError::Status { status: status.as_u16(), url: url.to_owned(), body },
        })
    }
}

/// How much of an error answer's body is read: enough for the 500
/// characters an error keeps; the rest is never read.
const ERROR_BODY_LIMIT: usize = 4096;

/// The client the adapter builds when the configuration brings none.
///
/// With `eventsourcingdb-tls`, reqwest is built without a crypto provider
/// of its own (no aws-lc-rs): it uses rustls's process-wide default, which
/// is set to *ring* here when the program installed none.
fn build_client(config: &EsdbConfig) -> Result<reqwest::Client, StoreError> {
    #[cfg(feature = "eventsourcingdb-tls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one meanwhile: theirs wins, fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    #[cfg_attr(not(feature = "eventsourcingdb-tls"), allow(unused_mut))]
    let mut builder =
        reqwest::Client::builder().connect_timeout(config.connect_timeout).pool_idle_timeout(Duration::from_secs(30));
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
            "{} is an https URL: HTTPS needs the feature `eventsourcingdb-tls` of orchestrix-adapters \
             (or an HTTP client of your own, `EsdbConfig::with_http_client`)",
            config.base_url()
        )));
    }
    builder.build().map_err(|e| StoreError::Backend(Box::new(EsdbError::malformed("client configuration", e))))
}

fn bearer(token: &ApiToken) -> Result<HeaderValue, StoreError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        StoreError::InvalidInput("the EventSourcingDB API token contains characters not allowed in a header".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
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
