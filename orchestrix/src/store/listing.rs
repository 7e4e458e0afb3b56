//! Listing the streams of a store ([`EventStore::list_streams`]): which
//! streams there are, how long each is, in pages.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;

use super::{EventFilter, EventStore};
use crate::error::StoreError;
use crate::stream::StreamId;

/// Which streams [`EventStore::list_streams`] lists: by aggregate type, by
/// a prefix of the aggregate id, after a stream (the last of the previous
/// page), at most `limit` of them.
///
/// Streams come in `(aggregate type, aggregate id)` order, each part
/// compared byte by byte (as Rust compares `str`), on every store.
///
/// ```
/// use orchestrix::store::StreamListing;
///
/// let first_page = StreamListing::new(100).with_category("Account").with_id_prefix("acme/");
/// assert_eq!(first_page.limit(), 100);
/// assert_eq!(first_page.category(), Some("Account"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListing {
    category: Option<String>,
    id_prefix: Option<String>,
    after: Option<StreamId>,
    limit: usize,
}

impl StreamListing {
    /// Every stream, at most `limit` (at least 1) per page.
    pub fn new(limit: usize) -> Self {
        Self { category: None, id_prefix: None, after: None, limit: limit.max(1) }
    }

    /// Only the streams of this aggregate type.
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Only the streams whose aggregate id starts with `prefix` (a tenant's
    /// streams: `"<tenant>/"`, see [`crate::tenant`]).
    pub fn with_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Only the streams that come after `stream` in the listing's order:
    /// the next page after one that ended with `stream`.
    pub fn after(mut self, stream: StreamId) -> Self {
        self.after = Some(stream);
        self
    }

    /// The aggregate type asked for.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// The prefix of aggregate ids asked for.
    pub fn id_prefix(&self) -> Option<&str> {
        self.id_prefix.as_deref()
    }

    /// The stream the page starts after.
    pub fn after_stream(&self) -> Option<&StreamId> {
        self.after.as_ref()
    }

    /// The most streams a page holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `stream` is one the listing asks for (ignoring the limit).
    pub fn admits(&self, stream: &StreamId) -> bool {
        self.category.as_deref().is_none_or(|c| c == stream.category())
            && self.id_prefix.as_deref().is_none_or(|p| stream.id().starts_with(p))
            && self.after.as_ref().is_none_or(|after| key(stream) > key(after))
    }
}

fn key(stream: &StreamId) -> (&str, &str) {
    (stream.category(), stream.id())
}

/// One stream as [`EventStore::list_streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSummary {
    /// The stream.
    pub stream: StreamId,
    /// The version of its last event.
    pub version: u64,
    /// How many events it holds (its version, unless versions have gaps).
    pub events: u64,
    /// The global position of its last event.
    pub last_position: u64,
}

impl StreamSummary {
    /// A summary, for adapters.
    pub fn new(stream: StreamId, version: u64, events: u64, last_position: u64) -> Self {
        Self { stream, version, events, last_position }
    }
}

/// [`EventStore::list_streams`] by reading the whole global log: the
/// default for stores without a grouped query. Holds one summary per
/// admitted stream while it reads.
pub(super) async fn list_by_reading<S: EventStore + ?Sized>(
    store: &S,
    listing: &StreamListing,
) -> Result<Vec<StreamSummary>, StoreError> {
    /// Every event: a `static`, so the read can borrow it.
    static ALL: EventFilter = EventFilter::all();
    let mut found: BTreeMap<(String, String), StreamSummary> = BTreeMap::new();
    let mut events = store.read_all(0, &ALL);
    while let Some(event) = events.next().await {
        let event = event?;
        if !listing.admits(&event.stream) {
            continue;
        }
        let entry = found
            .entry((event.stream.category().to_owned(), event.stream.id().to_owned()))
            .or_insert_with(|| StreamSummary::new(event.stream.clone(), 0, 0, 0));
        entry.version = entry.version.max(event.stream_version);
        entry.events += 1;
        entry.last_position = entry.last_position.max(event.global_position);
    }
    Ok(found.into_values().take(listing.limit).collect())
}
