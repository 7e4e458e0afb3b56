//! Configuration of the EventSourcingDB adapter.

use std::fmt;
use std::time::Duration;

use orchestrix::retry::Backoff;
use orchestrix::{retry::RetryPolicy, StoreError};

/// The environment variable [`EsdbConfig::from_env`] reads the URL from.
pub const URL_ENV: &str = "ORCHESTRIX_ESDB_URL";
/// The environment variable [`EsdbConfig::from_env`] reads the API token from.
pub const TOKEN_ENV: &str = "ORCHESTRIX_ESDB_TOKEN";

/// The default of [`EsdbConfig::with_max_line_bytes`]: 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;
/// The default of [`EsdbConfig::with_max_answer_bytes`]: 256 MiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 256 << 20;

/// An API token. It is never shown: `Debug` prints `ApiToken(<redacted>)`
/// and it has no `Display`.
///
/// ```
/// use orchestrix_adapters::eventsourcingdb::ApiToken;
///
/// let token = ApiToken::new("secret");
/// assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Where the EventSourcingDB server is and how the adapter maps onto it.
///
/// ```
/// use std::time::Duration;
/// use orchestrix_adapters::eventsourcingdb::EsdbConfig;
///
/// let config = EsdbConfig::new("http://localhost:3000", "secret")
///     .with_source("https://bank.example.com")
///     .with_type_prefix("com.example.bank")
///     .with_request_timeout(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
pub struct EsdbConfig {
    base_url: String,
    pub(crate) api_token: ApiToken,
    pub(crate) source: String,
    pub(crate) type_prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) any_retries: u32,
    pub(crate) max_line_bytes: usize,
    pub(crate) max_answer_bytes: usize,
    /// An HTTP client the user built, used instead of one of the adapter's.
    pub(crate) http_client: Option<reqwest::Client>,
    /// Root certificates (PEM) trusted beside the platform's.
    #[cfg(feature = "eventsourcingdb-tls")]
    pub(crate) root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for EsdbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("EsdbConfig");
        f.field("base_url", &self.base_url)
            .field("api_token", &self.api_token)
            .field("source", &self.source)
            .field("type_prefix", &self.type_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("reconnect", &(self.reconnect_min..self.reconnect_max))
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("http_client", &self.http_client.as_ref().map(|_| "<your own>"));
        #[cfg(feature = "eventsourcingdb-tls")]
        f.field("root_certificates", &self.root_certificates.len());
        f.finish_non_exhaustive()
    }
}

impl EsdbConfig {
    /// A configuration for the server at `base_url` (for example
    /// `http://localhost:3000`) with the given token and the defaults:
    /// source `https://orchestrix.invalid`, type prefix `io.orchestrix`,
    /// 5 s to connect, 30 s per request, 30 s without a line (event or
    /// heartbeat) before an observation reconnects, reconnecting after
    /// 50 ms doubling up to 5 s, lines of at most 64 MiB and single answers
    /// of at most 256 MiB.
    pub fn new(base_url: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_token: ApiToken::new(api_token),
            source: "https://orchestrix.invalid".to_owned(),
            type_prefix: "io.orchestrix".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            any_retries: 64,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            http_client: None,
            #[cfg(feature = "eventsourcingdb-tls")]
            root_certificates: Vec::new(),
        }
    }

    /// Reads the URL from `ORCHESTRIX_ESDB_URL` and the token from
    /// `ORCHESTRIX_ESDB_TOKEN`. The error names the missing variable, never
    /// the token.
    pub fn from_env() -> Result<Self, StoreError> {
        let read = |name: &str| {
            std::env::var(name)
                .map_err(|_| StoreError::InvalidInput(format!("the environment variable `{name}` is not set")))
        };
        Ok(Self::new(read(URL_ENV)?, read(TOKEN_ENV)?))
    }

    /// The CloudEvent `source` of every event written.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The reverse-DNS prefix of event types: `<prefix>.<Type>.v<N>`.
    pub fn with_type_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.type_prefix = prefix.into();
        self
    }

    /// How long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may wait for its answer (the head, and the whole
    /// body of a single answer), and a read for each of its lines: a line
    /// must be complete within this time from when the adapter starts
    /// waiting for it, however slowly its bytes arrive.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long an observation may stay silent (no complete line: event or
    /// heartbeat) before the adapter reconnects.
    pub fn with_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// The longest line of a streaming answer (one event, one EventQL row)
    /// the adapter reads: a longer one ends the read with
    /// [`EsdbError::TooLarge`](super::EsdbError::TooLarge) (a
    /// [`StoreError::Backend`]) as soon as the limit is passed, without
    /// reading the rest. Default 64 MiB; it bounds the memory a hostile or
    /// broken server can make a read use.
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit.max(1);
        self
    }

    /// The longest single answer (not a stream: a v1 write's answer, the
    /// ping, the token check, an event type) the adapter reads; a longer
    /// one is [`EsdbError::TooLarge`](super::EsdbError::TooLarge). Default
    /// 256 MiB. Error answers are read up to 4 KiB whatever this says (an
    /// error keeps 500 characters of its text).
    pub fn with_max_answer_bytes(mut self, limit: usize) -> Self {
        self.max_answer_bytes = limit.max(1);
        self
    }

    /// Uses an HTTP client you built (proxies, root certificates, TLS
    /// settings, default headers, connection pool, its own timeouts)
    /// instead of one the adapter builds. The adapter still adds the token
    /// to every request but the ping, checks the `Server` header, and
    /// applies its own request, line and heartbeat timeouts on top of the
    /// client's. The connect timeout of this configuration does not apply
    /// to it (set it on the client), and root certificates go on the client
    /// too: combined with [`EsdbConfig::with_root_certificate_pem`],
    /// [`EsdbStore::connect`](super::EsdbStore::connect) fails with
    /// [`StoreError::InvalidInput`]. An `https://` URL works without the
    /// feature `eventsourcingdb-tls` if the client can speak TLS.
    ///
    /// ```
    /// use orchestrix_adapters::eventsourcingdb::EsdbConfig;
    ///
    /// let client = reqwest::Client::builder()
    ///     .user_agent("bank/1.0")
    ///     .build()
    ///     .unwrap();
    /// let config = EsdbConfig::new("http://localhost:3000", "secret").with_http_client(client);
    /// # drop(config);
    /// ```
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The back-off between reconnections of a subscription: from `min`,
    /// doubling, up to `max`.
    pub fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// Trusts the root certificate(s) in `pem` (one or more PEM
    /// certificates) beside the platform's roots, for a server whose
    /// certificate a private CA signed, or a self-signed one (feature
    /// `eventsourcingdb-tls`). A certificate that is not PEM makes
    /// [`EsdbStore::connect`](super::EsdbStore::connect) fail with
    /// [`StoreError::InvalidInput`].
    ///
    /// ```
    /// use orchestrix_adapters::eventsourcingdb::EsdbConfig;
    ///
    /// let ca_pem = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n";
    /// let config = EsdbConfig::new("https://esdb.internal:3000", "secret").with_root_certificate_pem(ca_pem);
    /// # drop(config);
    /// ```
    #[cfg(feature = "eventsourcingdb-tls")]
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// How a subscription waits between reconnections: from
    /// `reconnect_min`, doubling, capped at `reconnect_max`, for ever.
    pub(crate) fn reconnect_policy(&self) -> RetryPolicy {
        RetryPolicy::exponential(u32::MAX, self.reconnect_min).with_max_delay(self.reconnect_max).with_jitter(0.0)
    }

    /// How often an append with `ExpectedVersion::Any` whose precondition
    /// failed (another writer was faster) is tried again: `any_retries`
    /// more times, at once (each attempt re-reads the subject first).
    pub(crate) fn any_retry_policy(&self) -> RetryPolicy {
        RetryPolicy::with_backoff(self.any_retries.saturating_add(1), Backoff::Immediate)
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The CloudEvent source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event type prefix.
    pub fn type_prefix(&self) -> &str {
        &self.type_prefix
    }
}
