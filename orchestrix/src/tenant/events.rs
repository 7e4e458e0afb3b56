//! The tenant view of the event store: namespaced streams, stamped and
//! tagged writes, confined reads and subscriptions.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::store::{
    BoxFuture, EventFilter, EventStore, EventStream, ExpectedVersion, SnapshotAndTail, SnapshotStore, StreamAppend,
    StreamListing, StreamSummary,
};
use crate::stream::StreamId;

use super::{TenantStore, PAGE, TENANT_TAG};

/// An inner record as the view shows it: in the view's `stream`, without
/// the view's tenant tag.
fn in_view(stream: StreamId, record: &RecordedEvent) -> Arc<RecordedEvent> {
    let mut outer = RecordedEvent { stream, ..RecordedEvent::clone(record) };
    outer.metadata.tags.retain(|tag| !tag.strip_prefix(TENANT_TAG).is_some_and(|rest| rest.starts_with(':')));
    Arc::new(outer)
}

/// The view of an inner record: `None` if it is not the tenant's.
fn outer_record(prefix: &str, record: &Arc<RecordedEvent>) -> Option<Arc<RecordedEvent>> {
    let stream = TenantStore::<()>::outer_stream(prefix, &record.stream)?;
    Some(in_view(stream, record))
}

/// Maps the records an append returned (which are the tenant's by
/// construction) to the view's stream id.
fn outer_records(stream: &StreamId, records: Vec<Arc<RecordedEvent>>) -> Vec<Arc<RecordedEvent>> {
    records.into_iter().map(|record| in_view(stream.clone(), &record)).collect()
}

/// Keeps the tenant's events of an inner stream, mapped to the view.
fn confine(prefix: Arc<str>, events: EventStream<'_>) -> EventStream<'_> {
    events
        .filter_map(move |item| {
            let item = match item {
                Ok(record) => outer_record(&prefix, &record).map(Ok),
                Err(error) => Some(Err(error)),
            };
            std::future::ready(item)
        })
        .boxed()
}

impl<S: EventStore> TenantStore<S> {
    /// The parts of a multi-stream append in the inner store's streams,
    /// stamped with the tenant, and the outer streams, in order.
    fn inner_parts(&self, appends: Vec<StreamAppend>) -> Result<(Vec<StreamId>, Vec<StreamAppend>), StoreError> {
        let mut outer = Vec::with_capacity(appends.len());
        let mut inner = Vec::with_capacity(appends.len());
        for append in appends {
            inner.push(StreamAppend::new(
                self.inner_stream(&append.stream)?,
                append.expected,
                self.stamp_all(append.events)?,
            ));
            outer.push(append.stream);
        }
        Ok((outer, inner))
    }

    /// The inner store's answer to a multi-stream append, in the tenant's
    /// stream ids.
    fn outer_result(
        &self,
        outer: &[StreamId],
        result: Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        match result {
            Ok(parts) => {
                Ok(parts.into_iter().zip(outer).map(|(records, stream)| outer_records(stream, records)).collect())
            }
            Err(StoreError::WrongExpectedVersion { stream, expected, actual }) => {
                let stream = Self::outer_stream(&self.prefix, &stream).unwrap_or(stream);
                Err(StoreError::WrongExpectedVersion { stream, expected, actual })
            }
            Err(error) => Err(self.outer_error(error)),
        }
    }
}

impl<S> TenantStore<S> {
    /// A [`StoreError::DuplicateEventId`] names the stream as the caller
    /// knows it (ADR 0027); other errors pass through.
    fn outer_error(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::DuplicateEventId { id, stream, version } => {
                let stream = Self::outer_stream(&self.prefix, &stream).unwrap_or(stream);
                StoreError::DuplicateEventId { id, stream, version }
            }
            error => error,
        }
    }
}

#[async_trait]
impl<S: EventStore> EventStore for TenantStore<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let inner_stream = self.inner_stream(stream)?;
        let events = self.stamp_all(events)?;
        match self.inner.append(&inner_stream, expected, events).await {
            Ok(records) => Ok(outer_records(stream, records)),
            Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
                Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual })
            }
            Err(error) => Err(self.outer_error(error)),
        }
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let (outer, inner) = self.inner_parts(appends)?;
        self.outer_result(&outer, self.inner.append_many(inner).await)
    }

    /// The condition is confined to the tenant: every item of its query
    /// also requires the view's tenant tag, which every event written
    /// through the view carries.
    async fn append_if(
        &self,
        condition: crate::query::AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.check_query(&condition.query)?;
        let (outer, inner) = self.inner_parts(appends)?;
        let condition = crate::query::AppendCondition::new(self.confined(&condition.query), condition.after);
        self.outer_result(&outer, self.inner.append_if(condition, inner).await)
    }

    /// The inner store's read of the confined query (with its tag index, if
    /// it has one), a page at a time as the query the view made is owned.
    fn read_by_query<'a>(&'a self, query: &'a crate::query::Query, from_position: u64) -> EventStream<'a> {
        if query.is_empty() {
            return stream::empty().boxed();
        }
        if let Err(error) = self.check_query(query) {
            return stream::once(std::future::ready(Err(error))).boxed();
        }
        let confined = self.confined(query);
        stream::unfold(Some(from_position), move |from| {
            let confined = confined.clone();
            async move {
                let from = from?;
                let page: Vec<_> = self.inner.read_by_query(&confined, from).take(PAGE).collect().await;
                let next = match page.last() {
                    Some(Ok(last)) if page.len() == PAGE => Some(last.global_position + 1),
                    _ => None,
                };
                let items = page.into_iter().filter_map(|item| match item {
                    Ok(record) => outer_record(&self.prefix, &record).map(Ok),
                    Err(error) => Some(Err(error)),
                });
                Some((stream::iter(items), next))
            }
        })
        .flatten()
        .boxed()
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        let inner_stream = match self.inner_stream(stream) {
            Ok(inner) => inner,
            Err(error) => return stream::once(async move { Err(error) }).boxed(),
        };
        // The inner read borrows the stream id, which this view made: read
        // a page at a time, each from an owned id.
        stream::unfold(Some(from_version.max(1)), move |from| {
            let inner_stream = inner_stream.clone();
            async move {
                let from = from?;
                let page: Vec<_> = self.inner.read_stream(&inner_stream, from).take(PAGE).collect().await;
                let next = match page.last() {
                    Some(Ok(last)) if page.len() == PAGE => Some(last.stream_version + 1),
                    _ => None,
                };
                let items =
                    page.into_iter().map(move |item| item.map(|record| outer_records(stream, vec![record]).remove(0)));
                Some((stream::iter(items), next))
            }
        })
        .flatten()
        .boxed()
    }

    /// Two calls through the view ([`crate::store::snapshot_then_tail`]):
    /// the snapshot from the view's snapshot store, the events from the
    /// view's [`EventStore::read_stream`], both confined to the tenant. The
    /// inner store cannot recognise a view's snapshot store as its own, so
    /// through a view a load costs two queries, not one.
    fn read_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        at_or_before: Option<u64>,
        snapshots: &'a dyn SnapshotStore,
    ) -> BoxFuture<'a, Result<SnapshotAndTail<'a>, StoreError>> {
        Box::pin(crate::store::snapshot_then_tail(self, stream, at_or_before, snapshots))
    }

    /// The inner store's read through `filter` and the tenant's tag, so a
    /// store with a tag index reads only the tenant's events (ADR 0036).
    /// The tagged filter is this stream's own, so the inner store is read
    /// in pages (each a read of its own, from just after the last event
    /// of the page before), as `read_stream` does.
    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let filter = filter.clone().with_tag(self.tenant_tag());
        let pages = stream::unfold(Some(from_position), move |from| {
            let filter = filter.clone();
            async move {
                let from = from?;
                let page: Vec<_> = self.inner.read_all(from, &filter).take(PAGE).collect().await;
                let next = match page.last() {
                    Some(Ok(last)) if page.len() == PAGE => Some(last.global_position + 1),
                    _ => None,
                };
                Some((stream::iter(page), next))
            }
        });
        confine(Arc::clone(&self.prefix), pages.flatten().boxed())
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        confine(Arc::clone(&self.prefix), self.inner.subscribe(from_position, filter.with_tag(self.tenant_tag())))
    }

    /// The inner store's event, if it is this tenant's.
    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        Ok(self.inner.read_event(id).await?.and_then(|record| outer_record(&self.prefix, &record)))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(&self.inner_stream(stream)?).await
    }

    /// The inner store's listing (its grouped query, where it has one) of
    /// the streams whose id starts with the tenant's prefix, in the view's
    /// stream ids: the same order, as every id carries the same prefix.
    /// Like [`EventStore::read_stream`] (and unlike the global reads), it
    /// includes a stream written into the tenant's namespace around the
    /// view.
    async fn list_streams(&self, listing: &StreamListing) -> Result<Vec<StreamSummary>, StoreError> {
        let limit = listing.limit();
        let mut inner = StreamListing::new(limit).with_id_prefix(format!(
            "{}{}",
            self.prefix,
            listing.id_prefix().unwrap_or_default()
        ));
        if let Some(category) = listing.category() {
            inner = inner.with_category(category);
        }
        if let Some(after) = listing.after_stream() {
            inner = inner.after(self.inner_stream(after)?);
        }
        let mut page = Vec::with_capacity(limit.min(PAGE));
        loop {
            let found = self.inner.list_streams(&inner).await?;
            let Some(last) = found.last().map(|summary| summary.stream.clone()) else { return Ok(page) };
            let full = found.len() == limit;
            // An inner stream whose id is the bare prefix has no id in the
            // view: skipped, and the page filled up from the next one.
            page.extend(found.into_iter().filter_map(|summary| {
                let stream = Self::outer_stream(&self.prefix, &summary.stream)?;
                Some(StreamSummary::new(stream, summary.version, summary.events, summary.last_position))
            }));
            if page.len() >= limit || !full {
                page.truncate(limit);
                return Ok(page);
            }
            inner = inner.after(last);
        }
    }

    /// The head of the whole store (shared by every tenant): a position to
    /// subscribe after, not the tenant's last event.
    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head_position().await
    }

    fn erasure_generation(&self) -> u64 {
        self.inner.erasure_generation()
    }

    fn declare_personal_data(&self, data: &'static [crate::personal::PersonalData]) -> bool {
        self.inner.declare_personal_data(data)
    }
}
