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

mod events;
mod ports;

use std::fmt;
use std::sync::Arc;

use crate::envelope::NewEvent;
#[cfg(doc)]
use crate::envelope::RecordedEvent;
use crate::error::StoreError;
#[cfg(doc)]
use crate::store::{CheckpointStore, DeadLetterStore, EventFilter, EventStore, KeyStore, KeyValueStore, SnapshotStore};
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
