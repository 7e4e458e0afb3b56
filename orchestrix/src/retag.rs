//! Tags for events that have none: find them, and re-tag them in place.
//!
//! A [`Query`] selects events by their tags, and an event carries the tags
//! it was written with. Events written before a field was marked
//! `#[event(tag)]`, or written raw without tags, are **invisible to every
//! consistency query**: a decision that counts stock by `sku:42` does not
//! see the stock received before the tag existed, and may oversell
//! (ADR 0026). Before a decision relies on a tag over an existing log:
//!
//! 1. ask [`untagged_events`] which of the query's event types have events
//!    without the query's tag names (a scan of those types' events: run it
//!    at deployment or from a maintenance task, not on every decision);
//! 2. re-tag them: [`retag_from_fields`] recomputes the tags from the
//!    event types' `#[event(tag)]` fields, [`retag_with`] takes a function
//!    of your own; both write through the [`Retag`] port, which the
//!    in-memory, SQLite and PostgreSQL stores implement.
//!
//! Re-tagging rewrites stored metadata, the one exception to "events are
//! immutable", and it is a maintenance operation:
//!
//! - It changes only tags; data, type, ids and positions stay.
//! - Nothing is delivered again: projections and subscriptions that
//!   already saw an event do not see its new tags.
//! - Run it while no decision relies on the new tags yet: a conditional
//!   append that runs *during* the re-tagging may miss events not yet
//!   re-tagged (the PostgreSQL advisory locks of ADR 0023 guard appends,
//!   not re-tagging).
//! - Tags are validated as on append ([`crate::query::validate_tag`]); a
//!   [`crate::tenant::TenantStore`] is not a [`Retag`]: re-tag the inner
//!   store, whose events keep their tenant tags unless the function drops
//!   them.
//!
//! ```
//! use orchestrix::memory::InMemoryEventStore;
//! use orchestrix::prelude::*;
//! use orchestrix::query::{Query, QueryItem};
//! use orchestrix::retag::{retag_from_fields, untagged_events};
//! use orchestrix::{store::{EventStore, ExpectedVersion}, envelope::NewEvent, StreamId};
//!
//! #[event]
//! #[derive(Debug, Clone)]
//! pub enum StockEvent {
//!     Received {
//!         #[event(tag)]
//!         sku: String,
//!         count: u32,
//!     },
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryEventStore::new();
//! // Written before `sku` was a tag: no tags.
//! let mut old = NewEvent::encode(&StockEvent::Received { sku: "42".into(), count: 5 }, Metadata::default())?;
//! old.metadata.tags.clear();
//! store.append(&StreamId::new("Bin", "a")?, ExpectedVersion::Any, vec![old]).await?;
//!
//! let query = Query::new([QueryItem::of::<StockEvent>().tag("sku", "42")]);
//! assert_eq!(untagged_events(&store, &query).await?["StockReceived"], 1);
//! let report = retag_from_fields::<StockEvent, _>(&store).await?;
//! assert_eq!((report.scanned, report.changed), (1, 1));
//! assert!(untagged_events(&store, &query).await?.is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures_util::StreamExt;

use crate::envelope::RecordedEvent;
use crate::error::{Error, StoreError};
use crate::event::Event;
use crate::query::{validate_tag, Query};
use crate::store::{EventFilter, EventStore};

/// How many events a re-tagging reads, and rewrites, per call.
const PAGE: usize = 500;

/// The new tags of one stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TagChange {
    /// The event's global position.
    pub position: u64,
    /// Its tags from now on (sorted and deduplicated when stored).
    pub tags: Vec<String>,
}

impl TagChange {
    /// The event at `position` gets `tags`.
    pub fn new<T: Into<String>>(position: u64, tags: impl IntoIterator<Item = T>) -> Self {
        Self { position, tags: tags.into_iter().map(Into::into).collect() }
    }
}

/// An event store whose events' tags can be rewritten in place: the
/// maintenance port behind [`retag_with`] and [`retag_from_fields`].
#[async_trait]
pub trait Retag: EventStore {
    /// Replaces the tags of the event at each change's position, all
    /// changes or none.
    ///
    /// The tags are sorted and deduplicated; an invalid tag
    /// ([`validate_tag`]) or a position that holds no event is
    /// [`StoreError::InvalidInput`] and changes nothing.
    async fn replace_tags(&self, changes: Vec<TagChange>) -> Result<(), StoreError>;
}

/// Sorts, deduplicates and validates the tags of `changes`: every
/// [`Retag`] implementation calls it first.
pub fn normalize_tag_changes(changes: &mut [TagChange]) -> Result<(), StoreError> {
    for change in changes.iter_mut() {
        change.tags.sort_unstable();
        change.tags.dedup();
        change.tags.iter().try_for_each(|tag| validate_tag(tag))?;
    }
    Ok(())
}

/// What a re-tagging did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetagReport {
    /// The events it read.
    pub scanned: u64,
    /// The events whose tags it changed.
    pub changed: u64,
}

/// Re-tags the events `filter` passes: `tags_of` gets each event and
/// returns its new tags (`None`, or the tags it has, to leave it alone).
/// Reads and rewrites a page of events at a time, from the start of the
/// log to its end when the call began.
pub async fn retag_with<S, F>(store: &S, filter: &EventFilter, mut tags_of: F) -> Result<RetagReport, Error>
where
    S: Retag + ?Sized,
    F: FnMut(&RecordedEvent) -> Result<Option<Vec<String>>, Error> + Send,
{
    let mut report = RetagReport::default();
    let Some(end) = store.head_position().await? else { return Ok(report) };
    let mut from = 1;
    loop {
        let page: Vec<_> = store.read_all(from, filter).take(PAGE).collect().await;
        let full = page.len() == PAGE;
        let mut changes = Vec::new();
        let mut last = None;
        for record in page {
            let record = record?;
            if record.global_position > end {
                break;
            }
            last = Some(record.global_position);
            report.scanned += 1;
            if let Some(mut tags) = tags_of(&record)? {
                tags.sort_unstable();
                tags.dedup();
                if tags != record.tags() {
                    changes.push(TagChange { position: record.global_position, tags });
                }
            }
        }
        report.changed += changes.len() as u64;
        if !changes.is_empty() {
            store.replace_tags(changes).await?;
        }
        match last {
            Some(last) if full && last < end => from = last + 1,
            _ => return Ok(report),
        }
    }
}

/// Re-tags the events of `E`'s types with the tags of their
/// `#[event(tag)]` fields ([`Event::tags`]), keeping the tags they have.
/// An event that does not decode fails the call (the pages before it stay
/// re-tagged; running it again is harmless).
pub async fn retag_from_fields<E: Event, S: Retag + ?Sized>(store: &S) -> Result<RetagReport, Error> {
    let filter = EventFilter::types(E::type_names());
    retag_with(store, &filter, |record| {
        let event: E = record.decode()?;
        let mut tags = record.tags().to_vec();
        tags.extend(event.tags());
        Ok(Some(tags))
    })
    .await
}

/// How many events of each type the tagged items of `query` could select
/// by type but not by tag, because the events lack a tag *name* the item
/// requires (`sku` of `sku:42`): the events a decision on `query` would
/// not see however they are tagged today. Empty when there are none.
///
/// Items without tags are skipped (they select by type alone); an item of
/// any type (no types) counts every type's events that lack its tags.
/// Scans the events of the query's types: a deployment or maintenance
/// check, not one to run on every decision.
pub async fn untagged_events<S: EventStore + ?Sized>(
    store: &S,
    query: &Query,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let tagged: Vec<_> = query.items().iter().filter(|item| !item.tags().is_empty()).collect();
    let mut counts = BTreeMap::new();
    if tagged.is_empty() {
        return Ok(counts);
    }
    let names = |tags: &[String]| -> Vec<String> {
        tags.iter().map(|tag| tag.split_once(':').map_or(tag.as_str(), |(name, _)| name).to_owned()).collect()
    };
    let wanted: Vec<(&[String], Vec<String>)> =
        tagged.iter().map(|item| (item.event_types(), names(item.tags()))).collect();
    let filter = Query::new(tagged.iter().map(|item| (*item).clone())).type_filter();
    let mut events = store.read_all(0, &filter);
    while let Some(record) = events.next().await {
        let record = record?;
        let has = names(record.tags());
        let misses = wanted.iter().any(|(types, names)| {
            (types.is_empty() || types.iter().any(|t| *t == record.event_type))
                && names.iter().any(|name| !has.contains(name))
        });
        if misses {
            *counts.entry(record.event_type.clone()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}
