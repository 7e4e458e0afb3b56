//! Tenants: one store shared by many tenants, each confined to its own
//! streams, snapshots, checkpoints, keys and dead letters (ADR 0019).
//!
//! Every event records the tenant it was written for in
//! [`Metadata::tenant`](crate::envelope::Metadata::tenant) (read it with
//! [`RecordedEvent::tenant`]). A [`TenantStore`] is a *view* of any store
//! for one tenant: it implements the same ports, and everything that goes
//! through it stays within the tenant.
//!
//! - **Streams** are namespaced: the view's stream `Account/42` is the
//!   inner store's `Account/<tenant>/42`. A tenant id contains no `/`, so
//!   no stream id of one tenant can name another tenant's stream. Records
//!   coming back carry the view's stream id (`Account/42`).
//! - **Writes** stamp the tenant on every event's metadata; an event that
//!   already names another tenant is refused with
//!   [`StoreError::InvalidInput`].
//! - **Global reads and subscriptions** deliver only the events of the
//!   tenant's streams that carry the tenant's tag (every event written
//!   through the view does). The view asks the inner store for the tag
//!   ([`EventFilter::with_tag`]), so a store with a tag index (PostgreSQL)
//!   reads only the tenant's events, not every tenant's (ADR 0036); the
//!   view still checks the stream of each. An event put into a tenant's
//!   stream through the inner store without the tag is in the view's
//!   stream reads but not in its global reads.
//! - **Snapshots** use the namespaced stream; **checkpoints**, **keys**,
//!   **dead letters** and the **data subjects** of a
//!   [`KeyStore`] prefix the consumer name, key or
//!   subject with `<tenant>/`, and list only the tenant's. For
//!   crypto-shredding per tenant, wrap the view:
//!   `CryptoStore::new(TenantStore::new(events, t)?, TenantStore::new(keys, t)?)`.
//!
//! - **Conditional appends** ([`EventStore::append_if`], consistency by
//!   query) are confined too: the view tags every event it writes with
//!   `orchestrix.tenant:<tenant>` ([`TENANT_TAG`]) and adds that tag to every item of the
//!   condition's query, so another tenant's events never fail a tenant's
//!   condition. The tag is the view's own: records read through a view come
//!   back without it (the inner store shows it). Tag names starting with
//!   `orchestrix.` ([`RESERVED_TAG_PREFIX`]) are reserved: the view
//!   refuses them in a tenant's events and queries with
//!   [`StoreError::InvalidInput`], so no tenant can forge another's tag.
//!
//! What the view does not hide: global positions are shared, so their gaps
//! and [`EventStore::head_position`] (the whole store's head) reveal how
//! much other tenants write, never what. Whoever holds the inner store
//! sees every tenant; give tenants' code only their view.
//!
//! ```
//! use futures_util::StreamExt;
//! use orchestrix::memory::InMemoryEventStore;
//! use orchestrix::tenant::TenantStore;
//! use orchestrix::{store::{EventFilter, EventStore, ExpectedVersion}, envelope::NewEvent, StreamId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orchestrix::StoreError> {
//! let shared = InMemoryEventStore::new();
//! let acme = TenantStore::new(shared.clone(), "acme")?;
//! let globex = TenantStore::new(shared.clone(), "globex")?;
//! let stream = StreamId::new("Account", "1")?;
//! let event = || NewEvent::new("Opened", 1, serde_json::value::RawValue::from_string("{}".into()).unwrap());
//! // The same stream id, two tenants, two streams.
//! acme.append(&stream, ExpectedVersion::NoStream, vec![event()]).await?;
//! globex.append(&stream, ExpectedVersion::NoStream, vec![event()]).await?;
//! let filter = EventFilter::all();
//! let seen: Vec<_> = acme.read_all(0, &filter).collect().await;
//! assert_eq!(seen.len(), 1);
//! let record = seen[0].as_ref().unwrap();
//! assert_eq!((record.stream.to_string().as_str(), record.tenant()), ("Account/1", Some("acme")));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::store::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventFilter, EventStore, EventStream, ExpectedVersion, KeyStore,
    KeyValueStore, Snapshot, SnapshotStore, StreamAppend,
};
use crate::stream::{truncate_for_message, StreamId};

/// The longest tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 128;

/// How many events a view's stream read takes from the inner store per
/// request.
const PAGE: usize = 512;

/// A tenant's id: 1 to [`MAX_TENANT_LEN`] bytes, without `/` (which
/// separates it from the ids it namespaces), control characters or
/// surrounding whitespace.
///
/// ```
/// use orchestrix::tenant::TenantId;
///
/// assert_eq!(TenantId::new("acme").unwrap().as_str(), "acme");
/// assert!(TenantId::new("a/b").is_err());
/// assert!(TenantId::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates a tenant id; a bad one is [`StoreError::InvalidInput`].
    pub fn new(id: impl Into<Arc<str>>) -> Result<Self, StoreError> {
        let id = id.into();
        let problem = if id.is_empty() {
            Some("must not be empty")
        } else if id.len() > MAX_TENANT_LEN {
            Some("is too long (the limit is 128 bytes)")
        } else if id.contains('/') {
            Some("contains `/`, which separates the tenant from the ids it namespaces")
        } else if id.chars().any(char::is_control) {
            Some("contains a control character")
        } else if id.trim() != &*id {
            Some("starts or ends with whitespace")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(StoreError::InvalidInput(format!(
                "tenant id `{}` {problem}",
                truncate_for_message(&id).escape_debug()
            ))),
            None => Ok(Self(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// A view of a store for one tenant: implements [`EventStore`],
/// [`SnapshotStore`], [`CheckpointStore`], [`KeyValueStore`],
/// [`KeyStore`] and [`DeadLetterStore`] whenever the inner store does, confined to the
/// tenant (see the [module documentation](self)).
///
/// Cloning is as cheap as cloning the inner store.
#[derive(Clone)]
pub struct TenantStore<S> {
    inner: S,
    tenant: TenantId,
    /// `<tenant>/`: the prefix of every namespaced id.
    prefix: Arc<str>,
}

impl<S: fmt::Debug> fmt::Debug for TenantStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStore").field("tenant", &self.tenant).field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> TenantStore<S> {
    /// The view of `inner` for `tenant`; an invalid tenant id is
    /// [`StoreError::InvalidInput`].
    pub fn new(inner: S, tenant: impl Into<Arc<str>>) -> Result<Self, StoreError> {
        let tenant = TenantId::new(tenant)?;
        let prefix = format!("{tenant}/").into();
        Ok(Self { inner, tenant, prefix })
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The store behind the view (it sees every tenant).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The inner store's name of the view's `stream`.
    pub fn inner_stream(&self, stream: &StreamId) -> Result<StreamId, StoreError> {
        Ok(StreamId::new(stream.category(), format!("{}{}", self.prefix, stream.id()))?)
    }

    /// The view's name of an inner stream, or `None` if it is not the
    /// tenant's.
    fn outer_stream(prefix: &str, inner: &StreamId) -> Option<StreamId> {
        let id = inner.id().strip_prefix(prefix).filter(|id| !id.is_empty())?;
        StreamId::new(inner.category(), id).ok()
    }

    /// The inner name of a consumer or key.
    fn inner_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The tag `orchestrix.tenant:<tenant>` the view puts on every event it
    /// writes and requires in every condition it passes on.
    pub fn tenant_tag(&self) -> String {
        crate::query::tag(TENANT_TAG, self.tenant.as_str())
    }

    /// `query` with the view's tenant tag required by every item.
    fn confined(&self, query: &crate::query::Query) -> crate::query::Query {
        let tenant_tag = self.tenant_tag();
        query.items().iter().map(|item| item.clone().raw_tag(tenant_tag.clone())).collect()
    }

    /// Stamps the tenant (and its tag) on an event, refusing one that names
    /// another.
    fn stamp(&self, mut event: NewEvent) -> Result<NewEvent, StoreError> {
        match event.metadata.tenant.as_deref() {
            Some(tenant) if tenant != self.tenant.as_str() => {
                return Err(StoreError::InvalidInput(format!(
                    "an event for tenant `{}` cannot be written through the view of tenant `{}`",
                    truncate_for_message(tenant),
                    self.tenant
                )))
            }
            Some(_) => {}
            None => event.metadata.tenant = Some(self.tenant.as_str().to_owned()),
        }
        let own = self.tenant_tag();
        if let Some(reserved) = event.metadata.tags.iter().find(|tag| is_reserved_tag(tag) && **tag != own) {
            return Err(reserved_tag_error(reserved, "an event written"));
        }
        event.metadata = std::mem::take(&mut event.metadata).with_tag(own);
        Ok(event)
    }

    /// Refuses a tenant's query that names a reserved tag: the view adds
    /// the tenant's own, and no other tenant's may be asked for.
    fn check_query(&self, query: &crate::query::Query) -> Result<(), StoreError> {
        let own = self.tenant_tag();
        match query
            .items()
            .iter()
            .flat_map(crate::query::QueryItem::tags)
            .find(|tag| is_reserved_tag(tag) && **tag != own)
        {
            Some(reserved) => Err(reserved_tag_error(reserved, "a condition's query")),
            None => Ok(()),
        }
    }

    fn stamp_all(&self, events: Vec<NewEvent>) -> Result<Vec<NewEvent>, StoreError> {
        events.into_iter().map(|event| self.stamp(event)).collect()
    }
}

/// The tag name of the tag a [`TenantStore`] puts on every event it writes
/// (`orchestrix.tenant:<tenant>`), which confines its conditional appends
/// to the tenant's events.
pub const TENANT_TAG: &str = "orchestrix.tenant";

/// The prefix of the tag names the framework reserves for itself
/// (`orchestrix.tenant`, [`TENANT_TAG`], among them): a [`TenantStore`]
/// refuses them in a tenant's events and queries, so that no tenant can
/// put another's tenant tag on its events and so fail that tenant's
/// conditions.
pub const RESERVED_TAG_PREFIX: &str = "orchestrix.";

/// Whether `tag` is in the reserved namespace ([`RESERVED_TAG_PREFIX`]).
///
/// ```
/// use orchestrix::tenant::is_reserved_tag;
///
/// assert!(is_reserved_tag("orchestrix.tenant:acme"));
/// assert!(!is_reserved_tag("course:42"));
/// ```
pub fn is_reserved_tag(tag: &str) -> bool {
    tag.starts_with(RESERVED_TAG_PREFIX)
}

/// The refusal of a reserved tag in tenant input.
fn reserved_tag_error(tag: &str, place: &str) -> StoreError {
    StoreError::InvalidInput(format!(
        "{place} through a tenant view carries the tag `{}`, whose name is reserved (`{RESERVED_TAG_PREFIX}*`); the view adds the tenant's own tag itself: rename the tag",
        truncate_for_message(tag)
    ))
}

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

#[async_trait]
impl<S: SnapshotStore> SnapshotStore for TenantStore<S> {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let stream = self.inner_stream(&snapshot.stream)?;
        self.inner.save(Snapshot { stream, ..snapshot }).await
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let snapshot = self.inner.load(&self.inner_stream(stream)?, at_or_before).await?;
        Ok(snapshot.map(|snapshot| Snapshot { stream: stream.clone(), ..snapshot }))
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.inner.delete(&self.inner_stream(stream)?).await
    }
}

#[async_trait]
impl<S: CheckpointStore> CheckpointStore for TenantStore<S> {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        self.inner.load(&self.inner_key(consumer)).await
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save(&self.inner_key(consumer), position).await
    }

    async fn delete(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.inner_key(consumer)).await
    }
}

#[async_trait]
impl<S: KeyValueStore> KeyValueStore for TenantStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(&self.inner_key(key)).await
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        self.inner.put(&self.inner_key(key), value).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(&self.inner_key(key)).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.keys(&self.inner_key(prefix)).await?;
        Ok(keys.into_iter().filter_map(|key| key.strip_prefix(&*self.prefix).map(str::to_owned)).collect())
    }
}

/// Data subjects are per tenant: tenant A's subject `c-1` and tenant B's
/// `c-1` have different keys, and forgetting one keeps the other.
#[async_trait]
impl<S: KeyStore> KeyStore for TenantStore<S> {
    async fn key(&self, subject: &str) -> Result<Option<crate::personal::DataKey>, StoreError> {
        self.inner.key(&self.inner_key(subject)).await
    }

    async fn key_or_create(&self, subject: &str) -> Result<crate::personal::DataKey, StoreError> {
        self.inner.key_or_create(&self.inner_key(subject)).await
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.delete_key(&self.inner_key(subject)).await
    }

    async fn readmit(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.readmit(&self.inner_key(subject)).await
    }

    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError> {
        self.inner.is_forgotten(&self.inner_key(subject)).await
    }

    /// The streams are kept as given (the tenant's own view of them) under
    /// the tenant's subject.
    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        self.inner.record_streams(&self.inner_key(subject), streams).await
    }

    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        self.inner.streams_of(&self.inner_key(subject)).await
    }

    /// The inner store's mark: another tenant's `forget` changes it too,
    /// which costs this tenant's caches a reload, never a stale read.
    async fn erasure_mark(&self) -> Result<u64, StoreError> {
        self.inner.erasure_mark().await
    }
}

#[async_trait]
impl<S: DeadLetterStore> DeadLetterStore for TenantStore<S> {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        // A letter of another tenant under the same id must not be replaced.
        if let Some(existing) = self.inner.get(letter.id).await? {
            if !existing.consumer.starts_with(&*self.prefix) {
                return Err(StoreError::InvalidInput(format!("dead letter {} belongs to another tenant", letter.id)));
            }
        }
        let consumer = self.inner_key(&letter.consumer);
        self.inner.park(DeadLetter { consumer, ..letter }).await
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let letters = match consumer {
            Some(consumer) => self.inner.list(Some(&self.inner_key(consumer))).await?,
            None => self.inner.list(None).await?,
        };
        Ok(letters.into_iter().filter_map(|letter| self.outer_letter(letter)).collect())
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.inner.get(id).await?.and_then(|letter| self.outer_letter(letter)))
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        if self.get(id).await?.is_none() {
            return Ok(false);
        }
        self.inner.remove(id).await
    }
}

impl<S> TenantStore<S> {
    /// The view of an inner dead letter: `None` if it is not the tenant's.
    fn outer_letter(&self, letter: DeadLetter) -> Option<DeadLetter> {
        let consumer = letter.consumer.strip_prefix(&*self.prefix)?.to_owned();
        Some(DeadLetter { consumer, ..letter })
    }
}
