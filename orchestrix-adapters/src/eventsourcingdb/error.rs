//! What can go wrong talking to EventSourcingDB, and how each documented
//! refusal of the server becomes a typed error (ADR 0028).
//!
//! API v2 names its errors with codes (`https://docs.eventsourcingdb.io/errors/<slug>`);
//! API v1 answers with a status and a text. The texts that clearly match a
//! v2 code are translated to it first ([`code_of_v1_error`], the table the
//! official client keeps), so that both versions are classified in one
//! place ([`EsdbError::from_code`]): a failed precondition is the only
//! conflict, a full store is [`EsdbError::StoreFull`] and never retried, a
//! refusal of the request's content is [`StoreError::InvalidInput`] with the
//! server's explanation.

use std::fmt;
use std::time::Duration;

use orchestrix::StoreError;

/// The start of every v2 error code; the rest is the error's slug.
pub(crate) const ERROR_CODE_PREFIX: &str = "https://docs.eventsourcingdb.io/errors/";

/// What went wrong talking to EventSourcingDB. It never contains the API
/// token. [`StoreError::Unavailable`], [`StoreError::InvalidInput`] or
/// [`StoreError::Backend`] carries it (see `From<EsdbError> for
/// StoreError`); downcast the source of the latter two to read it.
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
    /// A precondition failed (v1: 409 `state conflict: precondition
    /// failed`; v2: `precondition-violated`); nothing was written.
    #[error("a write precondition failed")]
    Conflict,
    /// The store cannot take more events (v1: 409 `state conflict:
    /// exceeded max store capacity`; v2: `capacity-exceeded` or
    /// `disk-full`); nothing was written. Never retried: it needs an
    /// operator (a license with more capacity, more disk).
    #[error("EventSourcingDB cannot store more events: {detail}")]
    StoreFull {
        /// The server's explanation.
        detail: String,
    },
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
    /// A line of a streaming answer, or a whole single answer, is longer
    /// than the configured limit ([`EsdbConfig::with_max_line_bytes`],
    /// [`EsdbConfig::with_max_answer_bytes`]); the connection was dropped
    /// without reading the rest.
    ///
    /// [`EsdbConfig::with_max_line_bytes`]: super::EsdbConfig::with_max_line_bytes
    /// [`EsdbConfig::with_max_answer_bytes`]: super::EsdbConfig::with_max_answer_bytes
    #[error("EventSourcingDB at {url} sent a {what} longer than the limit of {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// `line` or `answer`.
        what: &'static str,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The server sent an `error` line in a stream (API v1, whose error
    /// lines carry text only).
    #[error("EventSourcingDB reported an error in the stream: {0}")]
    Stream(String),
    /// The server reported an error of its domain with a code (API v2, or
    /// a v1 text that clearly matches a code), one the adapter has no
    /// variant of its own for.
    #[error("EventSourcingDB reported the error {code}: {description}")]
    Api {
        /// The error's code, a URL naming it, for example
        /// `https://docs.eventsourcingdb.io/errors/query-malformed`.
        code: String,
        /// The server's explanation.
        description: String,
    },
}

/// The slug of a code: the code without [`ERROR_CODE_PREFIX`].
fn slug(code: &str) -> &str {
    code.strip_prefix(ERROR_CODE_PREFIX).unwrap_or(code)
}

/// The codes that refuse the content of a request (a malformed subject,
/// type, source, bound, query, an event too large, ...): the caller's
/// input, not the server's state. They become [`StoreError::InvalidInput`].
const INPUT_REFUSALS: &[&str] = &[
    "subject-missing",
    "subject-malformed",
    "order-unknown",
    "event-id-missing",
    "event-id-malformed",
    "bound-type-missing",
    "bound-type-unknown",
    "range-unsatisfiable",
    "from-latest-event-incomplete",
    "if-event-is-missing-unknown",
    "selection-conflicting",
    "event-type-missing",
    "event-type-malformed",
    "source-missing",
    "source-malformed",
    "data-missing",
    "traceparent-malformed",
    "tracestate-malformed",
    "tracestate-without-traceparent",
    "events-missing",
    "precondition-type-missing",
    "precondition-unknown",
    "payload-missing",
    "event-too-large",
    "data-malformed",
    "query-missing",
    "query-malformed",
    "query-unevaluable",
    "query-not-boolean",
    "event-schema-missing",
    "event-schema-malformed",
    "event-schema-not-object",
];

/// The errors of the v1 API that clearly match a code of the v2 API: the
/// operation's path (`None`: every path), the status, the start of the
/// text as EventSourcingDB 1.2 sends it, and the v2 slug. The same table
/// the official client (4.0.6, `src/client/v1.rs`) keeps.
const CODES_OF_V1_ERRORS: &[(Option<&str>, u16, &str, &str)] = &[
    (Some("write-events"), 409, "state conflict: precondition failed", "precondition-violated"),
    (Some("write-events"), 409, "state conflict: exceeded max store capacity", "capacity-exceeded"),
    (Some("write-events"), 409, "schema conflict: event candidate does not match schema", "event-schema-violated"),
    (Some("register-event-schema"), 409, "schema conflict: schema already exists", "event-schema-already-registered"),
    (Some("register-event-schema"), 409, "schema conflict: event with ID", "event-schema-violated"),
    (
        Some("read-events"),
        409,
        "state conflict: fromLatestEvent results in an event ID greater than upperBound ID",
        "range-unsatisfiable",
    ),
    (Some("read-event-type"), 404, "", "event-type-unknown"),
    (None, 503, "the current operation mode conflicts with the given request", "store-read-only"),
    (Some("write-events"), 507, "", "license-invalid"),
];

/// The v2 slug of a v1 error (`operation` is the last segment of the
/// path, for example `write-events`), if the table above has one.
pub(crate) fn code_of_v1_error(operation: &str, status: u16, text: &str) -> Option<&'static str> {
    CODES_OF_V1_ERRORS
        .iter()
        .find(|(path, code, start, _)| {
            path.is_none_or(|path| path == operation) && *code == status && text.trim_start().starts_with(start)
        })
        .map(|(_, _, _, slug)| *slug)
}

impl EsdbError {
    /// The typed error of a v2 error code (or the slug a v1 text maps to)
    /// with the server's explanation.
    pub(crate) fn from_code(code: &str, description: String) -> Self {
        let code =
            if code.starts_with(ERROR_CODE_PREFIX) { code.to_owned() } else { format!("{ERROR_CODE_PREFIX}{code}") };
        match slug(&code) {
            "precondition-violated" => Self::Conflict,
            "event-schema-violated" => Self::SchemaViolated { detail: description },
            "capacity-exceeded" | "disk-full" => Self::StoreFull { detail: description },
            _ => Self::Api { code, description },
        }
    }

    /// Whether retrying later may succeed (connection, timeout, 5xx, a
    /// server shutting down, rebuilding its indexes or restoring).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Timeout { .. } | Self::Stream(_) => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Api { code, .. } => {
                matches!(slug(code), "server-shutting-down" | "indexes-rebuilding" | "restore-in-progress")
            }
            _ => false,
        }
    }

    /// Whether the server refused the content of the request (v2: one of
    /// the codes of a malformed request; v1: a 400, 413 or 422 no code
    /// matches).
    pub fn is_input_refusal(&self) -> bool {
        match self {
            Self::Status { status, .. } => matches!(status, 400 | 413 | 422),
            Self::Api { code, .. } => INPUT_REFUSALS.contains(&slug(code)),
            _ => false,
        }
    }

    /// Whether the server refused a schema registration because the type
    /// already has a schema (`event-schema-already-registered`).
    pub(crate) fn is_schema_already_registered(&self) -> bool {
        matches!(self, Self::Api { code, .. } if slug(code) == "event-schema-already-registered")
    }

    /// A fault of the HTTP client (connection, time-out, a body that
    /// broke off), rendered without the request (no headers, so no token).
    pub(crate) fn connection(url: &str, error: &reqwest::Error) -> Self {
        // Render the chain without the request (no headers, so no token).
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        if error.is_timeout() {
            return Self::Timeout { url: url.to_owned(), timeout: Duration::ZERO };
        }
        Self::Connection { url: url.to_owned(), reason }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Self {
        let mut detail = detail.to_string();
        truncate(&mut detail, 200);
        Self::Malformed { what, detail }
    }
}

impl From<EsdbError> for StoreError {
    /// Transient faults are [`StoreError::Unavailable`]; refusals of the
    /// request's content [`StoreError::InvalidInput`] with the server's
    /// explanation; everything else [`StoreError::Backend`].
    fn from(error: EsdbError) -> Self {
        if error.is_transient() {
            StoreError::Unavailable(Box::new(error))
        } else if error.is_input_refusal() {
            let explanation = match &error {
                EsdbError::Api { description, .. } => description.clone(),
                EsdbError::Status { body, .. } => body.trim().to_owned(),
                other => other.to_string(),
            };
            StoreError::InvalidInput(format!("EventSourcingDB refused the request: {explanation}"))
        } else {
            StoreError::Backend(Box::new(error))
        }
    }
}

/// Cuts `text` to at most `max` bytes (at a character boundary), marking
/// the cut with `…`.
pub(crate) fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_texts_map_to_the_codes_the_official_client_knows() {
        assert_eq!(
            code_of_v1_error("write-events", 409, "state conflict: precondition failed"),
            Some("precondition-violated")
        );
        assert_eq!(
            code_of_v1_error("write-events", 409, "state conflict: exceeded max store capacity"),
            Some("capacity-exceeded")
        );
        assert_eq!(code_of_v1_error("write-events", 409, "something else"), None);
        assert_eq!(code_of_v1_error("read-events", 409, "state conflict: precondition failed"), None);
        assert_eq!(
            code_of_v1_error("write-events", 503, "the current operation mode conflicts with the given request"),
            Some("store-read-only")
        );
    }

    #[test]
    fn only_a_failed_precondition_is_a_conflict() {
        assert!(matches!(EsdbError::from_code("precondition-violated", String::new()), EsdbError::Conflict));
        let full = EsdbError::from_code("capacity-exceeded", "full".to_owned());
        assert!(matches!(&full, EsdbError::StoreFull { detail } if detail == "full"));
        assert!(!full.is_transient());
        assert!(matches!(StoreError::from(full), StoreError::Backend(_)));
        let refused = EsdbError::from_code("subject-malformed", "subject must start with a slash".to_owned());
        assert!(refused.is_input_refusal());
        assert!(
            matches!(StoreError::from(refused), StoreError::InvalidInput(m) if m.contains("subject must start with a slash"))
        );
        assert!(EsdbError::from_code("server-shutting-down", String::new()).is_transient());
        let status = EsdbError::Status { status: 400, url: "u".to_owned(), body: "bad type\n".to_owned() };
        assert!(matches!(StoreError::from(status), StoreError::InvalidInput(m) if m.ends_with("bad type")));
    }
}
