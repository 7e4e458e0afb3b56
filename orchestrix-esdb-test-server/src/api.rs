//! The two versions of EventSourcingDB's HTTP API the test server offers.

/// An API version: v1 (`/api/v1/...`, POST, `{"type", "payload"}` lines,
/// refusals as statuses with text) or v2 (`/api/v2/system|data/...`, reads
/// with `QUERY`, `{"type", "data"}` envelopes, finite streams closed by
/// `end`, refusals of the domain as `error` items with a code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    /// API v1.
    V1,
    /// API v2.
    V2,
}
