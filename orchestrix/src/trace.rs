//! Trace-context propagation: one trace from a request to the read model.
//!
//! When a command appends events, the W3C Trace Context of the command's
//! span (`traceparent`, `tracestate`) is recorded in each event's
//! [`Metadata`]; when a projection, a saga or a consumer in another
//! process handles the event, the span that handles it takes that context
//! as its parent. The core knows nothing of any tracing backend: a
//! [`TraceContextPropagator`] installed once with [`install`] reads and
//! sets the context. Until one is installed, nothing is captured and
//! nothing is restored, at the cost of one atomic load.
//!
//! With the `opentelemetry` feature, [`OpenTelemetryPropagator`] is the
//! implementation for `tracing-opentelemetry`:
//!
//! ```
//! # #[cfg(feature = "opentelemetry")]
//! # fn main() -> Result<(), orchestrix::trace::AlreadyInstalled> {
//! orchestrix::trace::install(orchestrix::trace::OpenTelemetryPropagator::new())?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "opentelemetry"))]
//! # fn main() {}
//! ```

use std::fmt;
use std::sync::OnceLock;

use crate::envelope::Metadata;

/// The W3C Trace Context headers of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `traceparent`: `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// `tracestate`, if any.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The headers recorded in an event's metadata, if any.
    pub fn from_metadata(metadata: &Metadata) -> Option<Self> {
        metadata
            .traceparent
            .as_ref()
            .map(|traceparent| Self { traceparent: traceparent.clone(), tracestate: metadata.tracestate.clone() })
    }

    /// The 32 hex digits of the trace id, if `traceparent` is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        trace_id(&self.traceparent)
    }

    /// The headers an incoming request carries, read through `header` (a
    /// lookup by lower-case name, as HTTP libraries offer), or `None`
    /// without a `traceparent`. Works with any HTTP library:
    ///
    /// ```
    /// use orchestrix::trace::TraceHeaders;
    /// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let headers = TraceHeaders::from_headers(|name| (name == "traceparent").then_some(tp)).unwrap();
    /// assert_eq!(headers.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    /// assert_eq!(TraceHeaders::from_headers(|_| None), None);
    /// ```
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        Some(Self {
            traceparent: header("traceparent")?.to_owned(),
            tracestate: header("tracestate").map(str::to_owned),
        })
    }
}

/// The span of one incoming HTTP request (`http.request`, named
/// `<METHOD> <path>` for OpenTelemetry, kind `server`, with the method,
/// the path and an empty `http.response.status_code` to record when the
/// answer is known), the child of the caller's trace when `headers` carry
/// one and a propagator is installed. The commands run inside it join
/// that trace, and through the events' metadata so do the projections,
/// sagas and consumers in other processes that handle their events.
///
/// ```
/// let span = orchestrix::trace::http_server_span("POST", "/orders", None);
/// span.record("http.response.status_code", 201);
/// ```
pub fn http_server_span(method: &str, path: &str, headers: Option<&TraceHeaders>) -> tracing::Span {
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    if let (Some(propagator), Some(headers)) = (propagator(), headers) {
        if !span.is_disabled() {
            propagator.set_parent(&span, headers);
        }
    }
    span
}

/// The trace id (32 lowercase hex digits) of a W3C `traceparent`, if it is
/// well formed (`00-<32 hex>-<16 hex>-<2 hex>`) and not all zeros.
///
/// ```
/// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// assert_eq!(orchestrix::trace::trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
/// assert_eq!(orchestrix::trace::trace_id("garbage"), None);
/// ```
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && span.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

/// Reads the trace context of the current span and makes a span the child
/// of a recorded one: the bridge between Orchestrix and a tracing backend.
pub trait TraceContextPropagator: Send + Sync + fmt::Debug + 'static {
    /// The W3C headers of the current span, or `None` when it belongs to
    /// no trace.
    fn current(&self) -> Option<TraceHeaders>;

    /// Makes `span` (not yet entered) a child of the span `headers`
    /// describe. Malformed headers are ignored.
    fn set_parent(&self, span: &tracing::Span, headers: &TraceHeaders);
}

static PROPAGATOR: OnceLock<Box<dyn TraceContextPropagator>> = OnceLock::new();

/// [`install`] was called before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a trace-context propagator is already installed; install one once, at start-up")]
pub struct AlreadyInstalled;

/// Installs the process-wide propagator. Only the first call succeeds.
pub fn install(propagator: impl TraceContextPropagator) -> Result<(), AlreadyInstalled> {
    PROPAGATOR.set(Box::new(propagator)).map_err(|_| AlreadyInstalled)
}

/// The installed propagator, if any.
pub fn propagator() -> Option<&'static dyn TraceContextPropagator> {
    PROPAGATOR.get().map(|p| &**p)
}

/// The W3C headers of the current span, through the installed propagator.
pub fn current() -> Option<TraceHeaders> {
    propagator().and_then(TraceContextPropagator::current)
}

/// Makes `span` a child of the trace context recorded in `metadata`, if
/// there is one and a propagator is installed.
pub fn set_parent_from(span: &tracing::Span, metadata: &Metadata) {
    if span.is_disabled() {
        return;
    }
    if let (Some(propagator), Some(headers)) = (propagator(), TraceHeaders::from_metadata(metadata)) {
        propagator.set_parent(span, &headers);
    }
}

/// Fills the trace context of `metadata` from the current span when it
/// has none, so that whoever handles the event continues this trace.
pub fn inject_into(metadata: &mut Metadata) {
    if metadata.traceparent.is_some() {
        return;
    }
    if let Some(headers) = current() {
        metadata.traceparent = Some(headers.traceparent);
        metadata.tracestate = headers.tracestate;
    }
}

#[cfg(feature = "opentelemetry")]
pub use otel::OpenTelemetryPropagator;

#[cfg(feature = "opentelemetry")]
mod otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator as W3c;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TraceContextPropagator, TraceHeaders};

    /// The propagator for `tracing-opentelemetry`: reads the OpenTelemetry
    /// context of the current `tracing` span and sets a span's parent, in
    /// the W3C Trace Context format.
    ///
    /// Needs the `tracing_opentelemetry` layer in the subscriber; without
    /// it, spans have no OpenTelemetry context and nothing is propagated.
    #[derive(Debug, Default)]
    pub struct OpenTelemetryPropagator {
        w3c: W3c,
    }

    impl OpenTelemetryPropagator {
        /// A W3C Trace Context propagator.
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl TraceContextPropagator for OpenTelemetryPropagator {
        fn current(&self) -> Option<TraceHeaders> {
            let span = tracing::Span::current();
            if span.is_none() {
                return None;
            }
            let cx = span.context();
            if !cx.span().span_context().is_valid() {
                return None;
            }
            let mut carrier = HashMap::new();
            self.w3c.inject_context(&cx, &mut carrier);
            let traceparent = carrier.remove("traceparent")?;
            let tracestate = carrier.remove("tracestate").filter(|s| !s.is_empty());
            Some(TraceHeaders { traceparent, tracestate })
        }

        fn set_parent(&self, span: &tracing::Span, headers: &TraceHeaders) {
            let mut carrier = HashMap::with_capacity(2);
            carrier.insert("traceparent".to_owned(), headers.traceparent.clone());
            if let Some(state) = &headers.tracestate {
                carrier.insert("tracestate".to_owned(), state.clone());
            }
            let cx = self.w3c.extract(&carrier);
            if cx.span().span_context().is_valid() {
                // Fails only when the span is disabled or already started:
                // then it keeps its parent, which is the best we can do.
                let _ = span.set_parent(cx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), None);
        assert_eq!(trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), None);
        assert_eq!(trace_id("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn metadata_without_traceparent_has_no_headers() {
        assert_eq!(TraceHeaders::from_metadata(&Metadata::default()), None);
        let meta = Metadata { traceparent: Some("tp".into()), tracestate: Some("a=b".into()), ..Metadata::default() };
        let headers = TraceHeaders::from_metadata(&meta).unwrap();
        assert_eq!(headers.tracestate.as_deref(), Some("a=b"));
    }
}
