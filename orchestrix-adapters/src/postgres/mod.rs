//! The PostgreSQL adapters: one [`PgStore`] implements every storage port.
//!
//! - **Appends** are one statement (one round trip) per batch: the batch is
//!   bound as arrays and unnested, the expected version is checked in the
//!   same statement, and the unique `(stream, version)` index arbitrates
//!   races: a lost race becomes [`StoreError::WrongExpectedVersion`] with the
//!   stream's actual version. There is no global hot row or table lock.
//!   A multi-stream append runs one such statement per stream in one
//!   transaction (ADR 0018).
//! - **Retries** (ADR 0027): event ids are unique (an index); an append
//!   that fails looks its ids up and is answered with the stored events
//!   if it repeats a stored append (ADR 0027).
//! - **Group commit** (ADR 0024): appends that arrive while one of the
//!   store's statements is in flight ([`PgConfig::with_group_commit`])
//!   share the next statement, so one commit and one WAL flush; each
//!   append is still atomic, checked against its own expectation, and gets
//!   its own outcome.
//! - **Global order** (ADR 0008): `global_position` is the writing
//!   transaction's id (`pg_current_xact_id()`) shifted left by 20 bits, plus
//!   the event's 1-based index in its batch. Readers only take rows below
//!   the watermark `pg_snapshot_xmin(pg_current_snapshot()) << 20`: every
//!   transaction below it has finished, so no row can ever appear behind a
//!   reader, and a checkpoint (one `u64`) is exact. Positions have large
//!   gaps; they are not counts. **Caveat:** a long-running transaction that
//!   writes anything anywhere in the cluster holds the watermark, and so
//!   every subscriber, back until it ends.
//! - **Wake-ups**: appends through this store wake its own subscribers in
//!   process, and a side task sends one `NOTIFY` per burst of appends (not
//!   inside the append's transaction, so no commit waits on the
//!   notification queue lock), over a connection of its own outside the
//!   pool. Subscribers `LISTEN` through one shared connection, also of its
//!   own, and poll as a fallback; a notification is a hint, never data.
//! - **Connections** ([`PgConfig`]): appends and short reads use the pool;
//!   subscriptions stream from a pool of their own, so that subscribers,
//!   however many and however slow, never take the connections appends
//!   need; `LISTEN` and `NOTIFY` have one connection each.
//! - **Faults**: a subscription retries [`StoreError::Unavailable`] errors
//!   itself (with backoff) and resumes exactly after the last event it
//!   delivered; other errors end it after yielding them.
//! - **Exactly-once projections**: [`PgStore::save_checkpoint_in`] moves a
//!   checkpoint inside the caller's transaction, conditionally (a fence
//!   against a dead runner's late commit), so a read model in the same
//!   database commits with its checkpoint exactly once: run it with
//!   [`PgStore::spawn_projection`] (a [`PgProjection`] gets the batch's
//!   transaction), or by hand with [`PgStore::begin`].
//! - **One runner per projection**: [`PgLease`] holds a session advisory
//!   lock on a dedicated connection.

mod append;
mod append_many;
mod config;
mod dcb;
mod group_commit;
mod idempotency;
mod keys;
mod lease;
mod notify;
mod ports;
mod projection;
mod read;
mod retag;
mod schema;
mod tls;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::query::{AppendCondition, Query};
use orchestrix::store::{EventFilter, EventStore, EventStream, ExpectedVersion, StreamAppend};
use orchestrix::{StoreError, StreamId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use uuid::Uuid;

pub use append::MAX_BATCH;
pub use config::{PgConfig, ACQUIRE_TIMEOUT, DEFAULT_GROUP_COMMIT, DEFAULT_SUBSCRIPTION_CONNECTIONS};
pub use lease::PgLease;
pub use projection::{PgProjection, PgProjectionOptions};
pub use schema::migration_sql;
pub use tls::PgTlsError;

use crate::common::{map_err, paged};
use group_commit::GroupCommit;
use notify::Notifier;
use schema::Sql;

/// Metric: how many appends each group-commit statement carried (a
/// histogram; ADR 0024). Appends that ran alone are not counted.
pub const GROUP_COMMIT_APPENDS: &str = "orchestrix_pg_group_commit_appends";

/// Metric: appends that joined a group but ran again alone, because their
/// expectation failed in the group's snapshot or the server refused the
/// group's statement (a counter; ADR 0024). Many of them mean contention
/// on the same streams, where group commit gains little.
pub const GROUP_COMMIT_ALONE_TOTAL: &str = "orchestrix_pg_group_commit_alone_total";

/// Describes the PostgreSQL adapter's metrics to the installed recorder
/// (units and help texts), as `orchestrix::telemetry::describe` (feature
/// `metrics` of orchestrix) does for the core's.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!(GROUP_COMMIT_APPENDS, Unit::Count, "Appends carried by one group-commit statement.");
    describe_counter!(GROUP_COMMIT_ALONE_TOTAL, Unit::Count, "Appends that joined a group commit but ran again alone.");
}

/// PostgreSQL implementation of every storage port: [`EventStore`],
/// [`orchestrix::store::SnapshotStore`], [`orchestrix::store::CheckpointStore`],
/// [`orchestrix::store::KeyValueStore`] and [`orchestrix::store::DeadLetterStore`].
///
/// Cloning is cheap; clones share the pool and the wake-up machinery.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    /// The connections subscriptions stream from, apart from `pool`.
    subscriptions: PgPool,
    /// How many subscriptions wait for a connection of `subscriptions`:
    /// while any do, one that has held its query for [`SEGMENT_HOLD`]
    /// gives its connection back.
    subscription_waiters: std::sync::atomic::AtomicUsize,
    config: PgConfig,
    sql: Sql,
    /// Bumped on every known append or notification; subscribers wait on it.
    wake: watch::Sender<u64>,
    /// Signals the notifier task that appends happened.
    appended: Arc<Notify>,
    tasks: Mutex<Tasks>,
    /// Group commit's queue and statement slots; `None` when it is off.
    group: Option<GroupCommit>,
}

#[derive(Debug, Default)]
struct Tasks {
    notifier: Option<AbortHandle>,
    listener: Option<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in [tasks.notifier.take(), tasks.listener.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects a pool to `url` (for example
    /// `postgres://postgres@127.0.0.1:5432/test`, or with TLS
    /// `postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ca.pem`,
    /// feature `postgres-tls`). Does not create tables: call
    /// [`PgStore::migrate`] or apply [`migration_sql`].
    ///
    /// A URL that cannot be read is [`StoreError::InvalidInput`]. A
    /// connection that cannot be secured as the URL asks (or that the
    /// server refuses unencrypted) is [`StoreError::Backend`] holding a
    /// [`PgTlsError`] that says what to change (ADR 0040); a server that
    /// cannot be reached is [`StoreError::Unavailable`].
    pub async fn connect(url: &str, config: PgConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.parse().map_err(|e| StoreError::InvalidInput(format!("the PostgreSQL URL cannot be read: {e}")))?;
        Self::connect_with(options, config).await
    }

    /// [`PgStore::connect`] with options built in code, for example a
    /// root certificate held in memory
    /// (`PgConnectOptions::ssl_root_cert_from_pem`).
    pub async fn connect_with(options: PgConnectOptions, config: PgConfig) -> Result<Self, StoreError> {
        tls::check_options(&options).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| match tls::classify(&e, &options) {
                Some(tls) => StoreError::Backend(Box::new(tls)),
                None => map_err(e),
            })?;
        Ok(Self::from_pool(pool, config))
    }

    /// A store over an existing pool. Must be called within a tokio runtime.
    /// The subscription pool, the listener and the notifier connect with
    /// `pool`'s options, when first needed.
    pub fn from_pool(pool: PgPool, config: PgConfig) -> Self {
        let group = (config.group_commit > 0).then(|| GroupCommit::new(config.group_commit));
        let subscriptions = PgPoolOptions::new()
            .max_connections(config.subscription_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with((*pool.connect_options()).clone());
        let inner = Arc::new(Inner {
            sql: Sql::new(&config.schema),
            pool,
            subscriptions,
            subscription_waiters: std::sync::atomic::AtomicUsize::new(0),
            config,
            wake: watch::Sender::new(0),
            appended: Arc::new(Notify::new()),
            tasks: Mutex::default(),
            group,
        });
        if inner.config.notify {
            let notifier = Notifier {
                pool: inner.pool.clone(),
                appended: Arc::clone(&inner.appended),
                sql: inner.sql.notify.clone(),
                channel: inner.config.channel(),
                interval: inner.config.notify_interval,
            };
            let task = tokio::spawn(notifier.run());
            inner.tasks.lock().unwrap_or_else(PoisonError::into_inner).notifier = Some(task.abort_handle());
        }
        Self { inner }
    }

    /// The pool, for queries of the application's own (a read model in the
    /// same database). Appends and reads use it; subscriptions do not (see
    /// [Connections](PgConfig#connections)).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        self.append_events(stream, expected, events).await
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.append_many_in_one_transaction(appends, None).await
    }

    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.append_many_in_one_transaction(appends, Some(&condition)).await
    }

    fn read_by_query<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a> {
        self.read_query(query, from_position)
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        paged(from_version.max(1), move |from| self.read_stream_chunk(stream, from))
    }

    /// One query when `snapshots` is this store or a clone of it (ADR 0054).
    fn read_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        at_or_before: Option<u64>,
        snapshots: &'a dyn orchestrix::store::SnapshotStore,
    ) -> orchestrix::store::BoxFuture<'a, Result<orchestrix::store::SnapshotAndTail<'a>, StoreError>> {
        self.snapshot_and_tail(stream, at_or_before, snapshots)
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        self.read_all_from(from_position, filter)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        self.subscribe_from(from_position, filter)
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        self.event_by_id(id).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.fetch_version(stream).await
    }

    async fn list_streams(
        &self,
        listing: &orchestrix::store::StreamListing,
    ) -> Result<Vec<orchestrix::store::StreamSummary>, StoreError> {
        self.stream_page(listing).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        let (head, _): (Option<i64>, i64) =
            sqlx::query_as(&self.inner.sql.head_and_watermark).fetch_one(&self.inner.pool).await.map_err(map_err)?;
        Ok(head.and_then(|h| u64::try_from(h).ok()))
    }
}
