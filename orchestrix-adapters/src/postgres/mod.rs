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
//!   if it repeats a stored append ([`idempotency`]).
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

mod append_many;
mod dcb;
mod group_commit;
mod idempotency;
mod keys;
mod lease;
mod ports;
mod projection;
mod retag;
mod schema;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::query::{AppendCondition, Query};
use orchestrix::store::{EventFilter, EventStore, EventStream, ExpectedVersion, StreamAppend};
use orchestrix::{StoreError, StreamId};
use sqlx::postgres::{PgConnection, PgListener, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Row, Transaction};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use uuid::Uuid;

pub use lease::PgLease;
pub use projection::{PgProjection, PgProjectionOptions};

use crate::common::{
    decode_rows, is_unique_violation, map_err, next_cursor, now_micros, paged, recorded_events, to_i64,
    validate_identifier, EventRow, CHUNK,
};
use group_commit::{GroupCommit, Outcome, Part, MAX_GROUPED_APPEND};
use schema::{Sql, MIGRATIONS};

/// The most events one append may carry: the batch index has 20 bits of
/// the global position (ADR 0008).
pub const MAX_BATCH: usize = (1 << 20) - 1;

/// How many rows one read of the global log fetches: large enough that the
/// round trip is a small part of a catch-up, small enough to bound memory.
const GLOBAL_CHUNK: i64 = 2048;

/// How many events one query of a subscription streams at most: its rows
/// are delivered as they arrive, so memory does not grow with it; the
/// limit bounds how long one query (its snapshot, its connection) lasts.
const SEGMENT: i64 = 65_536;

/// How long a subscription keeps one query (and so a connection of the
/// subscription pool) while its consumer keeps taking events and other
/// subscriptions wait for a connection: after this, it gives the
/// connection back before the next event and queries again from there, so
/// that subscriptions beyond the pool's size take turns instead of waiting
/// for a slow one's whole segment. Without waiters a query runs to its
/// end (a cut discards the rest of its rows, which a catch-up would pay
/// for).
const SEGMENT_HOLD: Duration = Duration::from_secs(1);

/// The default size of the subscription pool
/// ([`PgConfig::with_subscription_connections`]).
pub const DEFAULT_SUBSCRIPTION_CONNECTIONS: u32 = 4;

/// How long an append or read waits for a connection of the pool, and a
/// subscription for one of the subscription pool, before it fails with
/// [`StoreError::Unavailable`] (a subscription then tries again).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many append statements of a store run at once with group commit
/// ([`PgConfig::with_group_commit`]).
pub const DEFAULT_GROUP_COMMIT: usize = 2;

/// Metric: how many appends each group-commit statement carried (a
/// histogram; ADR 0024). Appends that ran alone are not counted.
pub const GROUP_COMMIT_APPENDS: &str = "orchestrix_pg_group_commit_appends";

/// Metric: appends that joined a group but ran again alone, because their
/// expectation failed in the group's snapshot or the server refused the
/// group's statement (a counter; ADR 0024). Many of them mean contention
/// on the same streams, where group commit gains little.
pub const GROUP_COMMIT_ALONE_TOTAL: &str = "orchestrix_pg_group_commit_alone_total";

/// Describes the PostgreSQL adapter's metrics to the installed recorder
/// (units and help texts), as [`orchestrix::telemetry::describe`] does for
/// the core's.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!(GROUP_COMMIT_APPENDS, Unit::Count, "Appends carried by one group-commit statement.");
    describe_counter!(GROUP_COMMIT_ALONE_TOTAL, Unit::Count, "Appends that joined a group commit but ran again alone.");
}

/// How often an append whose expectation is [`ExpectedVersion::Any`]
/// retries after losing a race, before giving up with an error.
const ANY_RETRIES: usize = 32;

/// The configuration of a [`PgStore`]: the schema its tables live in, and
/// how it connects, notifies and polls.
///
/// # Connections
///
/// A store opens connections of four kinds, so that no kind of work can
/// take the connections another needs:
///
/// | what | how many | used by |
/// |---|---|---|
/// | the pool ([`PgStore::pool`]) | up to [`PgConfig::with_max_connections`] (10) | appends, reads of streams and the log, snapshots, checkpoints, key-values, transactions of projections |
/// | the subscription pool | up to [`PgConfig::with_subscription_connections`] (4) | the queries of [`EventStore::subscribe`] streams |
/// | the listener | 1, at the first subscription | `LISTEN` for other processes' appends |
/// | the notifier | 1, at the first append (with [`PgConfig::with_notify`]) | `NOTIFY` |
///
/// Leases ([`PgStore::try_lease`]) hold one connection each, outside the
/// pools. A subscription holds a connection of its pool only while a
/// query of it streams (up to 65,536 events), not while it waits for new
/// events; while other subscriptions wait for a connection, it gives its
/// own back after about a second of its consumer taking events. So more
/// busy subscriptions than the subscription pool holds take turns (each
/// waits up to [`ACQUIRE_TIMEOUT`] for a connection, then tries again); a
/// consumer that stops polling its stream halfway through a query keeps
/// that connection until it polls again or drops the stream. Appends never
/// wait for subscribers: the PostgreSQL server must allow
/// `max_connections + subscription_connections + 2` connections per store
/// (plus leases).
///
/// ```
/// use orchestrix_adapters::postgres::PgConfig;
///
/// let config = PgConfig::new("orchestrix").unwrap();
/// assert_eq!(config.schema(), "orchestrix");
/// assert!(PgConfig::new("x\"; DROP SCHEMA public; --").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct PgConfig {
    schema: String,
    max_connections: u32,
    poll_interval: Duration,
    read_wait: Duration,
    notify: bool,
    notify_interval: Duration,
    group_commit: usize,
    subscription_connections: u32,
}

impl PgConfig {
    /// A configuration for tables in `schema`: 1 to 48 lowercase ASCII
    /// letters, digits and `_`, not starting with a digit. Any other name is
    /// refused with [`StoreError::InvalidInput`], so that it is safe to
    /// splice into SQL.
    pub fn new(schema: impl Into<String>) -> Result<Self, StoreError> {
        let schema = schema.into();
        validate_identifier("schema", &schema, 48, false)?;
        Ok(Self {
            schema,
            max_connections: 10,
            poll_interval: Duration::from_millis(500),
            read_wait: Duration::from_secs(5),
            notify: true,
            notify_interval: Duration::from_millis(5),
            group_commit: DEFAULT_GROUP_COMMIT,
            subscription_connections: DEFAULT_SUBSCRIPTION_CONNECTIONS,
        })
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool size for [`PgStore::connect`] (default 10): the
    /// connections of appends and reads. Subscriptions do not use it (see
    /// [Connections](PgConfig#connections)).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The size of the subscription pool (default
    /// [`DEFAULT_SUBSCRIPTION_CONNECTIONS`], at least 1): how many
    /// subscriptions of this store can stream a query at once. It is a
    /// pool of its own, besides [`PgConfig::with_max_connections`], so
    /// that subscribers never take the connections of appends; see
    /// [Connections](PgConfig#connections).
    pub fn with_subscription_connections(mut self, max: u32) -> Self {
        self.subscription_connections = max.max(1);
        self
    }

    /// How often an idle subscription polls when no notification arrives
    /// (default 500 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long [`EventStore::read_all`] waits for transactions that are
    /// still in flight below the head before it returns the safe prefix
    /// (default 5 s).
    pub fn with_read_wait(mut self, wait: Duration) -> Self {
        self.read_wait = wait;
        self
    }

    /// Whether appends send a `NOTIFY` to wake subscribers in other
    /// processes (default on; subscribers poll either way). The
    /// notifications go over one connection of their own, opened at the
    /// first append, besides the pool's `max_connections`.
    pub fn with_notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The shortest time between two `NOTIFY`s of this store (default
    /// 5 ms): appends within it share one notification. A notifying commit
    /// takes a cluster-wide lock until it is flushed, so one `NOTIFY` per
    /// append would cap the append rate; coalescing costs other processes'
    /// subscribers at most this much latency.
    pub fn with_notify_interval(mut self, interval: Duration) -> Self {
        self.notify_interval = interval;
        self
    }

    /// Group commit (ADR 0024): at most `in_flight` append statements of
    /// this store run at once (default [`DEFAULT_GROUP_COMMIT`]). An
    /// append to an idle store runs alone, exactly as without group
    /// commit; appends that arrive while a statement is in flight wait and
    /// then share one statement, so one commit and one WAL flush. Each
    /// append is still atomic, checks its own expected version, and gets
    /// its own outcome. A second statement starts beside one in flight
    /// when 8 appends wait or one has waited 20 ms. `0` turns group commit
    /// off: every append is its own statement, limited only by the pool.
    ///
    /// The price: an append may wait for the statement in flight (at most
    /// 20 ms while another slot is free) before its own goes out, and the
    /// appends of a group wait for each other, so one that blocks on a
    /// lock (an open transaction that inserted the same stream's next
    /// version) holds back its group.
    ///
    /// ```
    /// use orchestrix_adapters::postgres::PgConfig;
    ///
    /// // One statement in flight: the largest groups, for many writers.
    /// let eager = PgConfig::new("orchestrix").unwrap().with_group_commit(1);
    /// // Every append its own statement.
    /// let off = PgConfig::new("orchestrix").unwrap().with_group_commit(0);
    /// # let _ = (eager, off);
    /// ```
    pub fn with_group_commit(mut self, in_flight: usize) -> Self {
        self.group_commit = in_flight;
        self
    }

    /// The `LISTEN`/`NOTIFY` channel of this schema.
    pub fn channel(&self) -> String {
        format!("orchestrix_{}", self.schema)
    }
}

/// The SQL script that creates (or upgrades) the schema of `config`, for
/// users who apply migrations with their own tooling. It is idempotent and
/// records what it applied in `<schema>.schema_migrations`, exactly as
/// [`PgStore::migrate`] does.
pub fn migration_sql(config: &PgConfig) -> String {
    schema::script(config)
}

/// PostgreSQL implementation of every storage port: [`EventStore`],
/// [`orchestrix::SnapshotStore`], [`orchestrix::CheckpointStore`],
/// [`orchestrix::KeyValueStore`] and [`orchestrix::DeadLetterStore`].
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

/// The side task that sends one `NOTIFY` per burst of appends, over a
/// connection of its own: a pool connection would cost two more round
/// trips per `NOTIFY` (sqlx tests it on acquire and on release), and
/// would be taken from the appends' pool while it notifies.
struct Notifier {
    pool: PgPool,
    appended: Arc<Notify>,
    sql: String,
    channel: String,
    interval: Duration,
}

impl Notifier {
    async fn run(self) {
        let mut connection: Option<PgConnection> = None;
        loop {
            tokio::select! {
                () = self.appended.notified() => {}
                // The connection closes with the pool.
                () = self.pool.close_event() => {
                    if let Some(open) = connection.take() {
                        let _ = open.close().await;
                    }
                    return;
                }
            }
            // A connection that died (a server restart, say) is replaced
            // and the NOTIFY sent again, once: a lost notification only
            // delays other processes' subscribers until their next poll.
            for _ in 0..2 {
                if connection.is_none() {
                    connection = self.connect().await;
                }
                let Some(open) = connection.as_mut() else { break };
                match sqlx::query(&self.sql).bind(&self.channel).execute(&mut *open).await {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::debug!(%error, "orchestrix: NOTIFY failed; reconnecting");
                        connection = None;
                    }
                }
            }
            // At most one NOTIFY per interval: appends meanwhile leave one
            // stored permit, so the last burst is still announced.
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn connect(&self) -> Option<PgConnection> {
        let options = self.pool.connect_options();
        match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
            Ok(Ok(connection)) => Some(connection),
            Ok(Err(error)) => {
                tracing::debug!(%error, "orchestrix: NOTIFY connection failed; subscribers fall back to polling");
                None
            }
            Err(_) => {
                tracing::debug!("orchestrix: NOTIFY connection timed out; subscribers fall back to polling");
                None
            }
        }
    }
}

impl PgStore {
    /// Connects a pool to `url` (for example
    /// `postgres://postgres@127.0.0.1:5432/test`). Does not create tables:
    /// call [`PgStore::migrate`] or apply [`migration_sql`].
    pub async fn connect(url: &str, config: PgConfig) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(map_err)?;
        Ok(Self::from_pool(pool, config))
    }

    /// A store over an existing pool. Must be called within a tokio runtime.
    /// The subscription pool, the listener and the notifier connect with
    /// `pool`'s options, when first needed.
    pub fn from_pool(pool: PgPool, config: PgConfig) -> Self {
        let group = (config.group_commit > 0).then(|| GroupCommit::new(config.group_commit));
        let subscriptions = PgPoolOptions::new()
            .max_connections(config.subscription_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
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

    /// Creates the schema and tables, or applies the migrations that are
    /// missing; safe to call from many processes at once (they serialize on
    /// an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let s = &self.inner.config.schema;
        let mut tx = self.inner.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(schema::migration_lock_key(s))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"; {}", schema::bookkeeping(s)))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let applied: Vec<i64> = sqlx::query_scalar(&format!("SELECT version FROM \"{s}\".schema_migrations"))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            sqlx::raw_sql(&(migration.sql)(s)).execute(&mut *tx).await.map_err(map_err)?;
            sqlx::query(&format!("INSERT INTO \"{s}\".schema_migrations (version, name) VALUES ($1, $2)"))
                .bind(migration.version)
                .bind(migration.name)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    /// Drops the schema and everything in it. For tests and tear-downs.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let s = &self.inner.config.schema;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Begins a transaction on the store's pool: the unit in which a
    /// projection updates a read model in this database and records its
    /// checkpoint with [`PgStore::save_checkpoint_in`], so that both commit
    /// or neither does (exactly-once effect).
    ///
    /// ```no_run
    /// # use orchestrix_adapters::postgres::PgStore;
    /// # #[allow(dead_code)]
    /// # async fn project(store: &PgStore, position: u64) -> Result<(), orchestrix::StoreError> {
    /// let mut tx = store.begin().await?;
    /// sqlx::query("UPDATE totals SET n = n + 1").execute(&mut *tx).await.map_err(orchestrix::StoreError::backend)?;
    /// store.save_checkpoint_in(&mut tx, "totals", Some(position - 1), position).await?;
    /// tx.commit().await.map_err(orchestrix::StoreError::backend)?;
    /// # Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.inner.pool.begin().await.map_err(map_err)
    }

    /// Moves `consumer`'s checkpoint from `expected` (what the runner
    /// loaded when it started; `None`: no checkpoint yet) to `position`
    /// inside `tx`: it commits with whatever else `tx` writes.
    ///
    /// The move is conditional, which fences off a runner that died with a
    /// commit still in flight: if that commit lands after a successor loaded
    /// the checkpoint, the successor's move finds the checkpoint moved (it
    /// waits for the zombie's row lock first) and fails with
    /// [`StoreError::WrongExpectedVersion`] on the pseudo-stream
    /// `$checkpoint/<consumer>`; rolling back and reloading then skips the
    /// events the zombie applied. Without the fence a read model could count
    /// an event twice.
    pub async fn save_checkpoint_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        consumer: &str,
        expected: Option<u64>,
        position: u64,
    ) -> Result<(), StoreError> {
        crate::common::validate_key("consumer name", consumer)?;
        let new = crate::common::checkpoint_to_sql(position);
        let moved = match expected {
            Some(previous) => sqlx::query(&self.inner.sql.checkpoint_move)
                .bind(consumer)
                .bind(new)
                .bind(crate::common::checkpoint_to_sql(previous)),
            None => sqlx::query(&self.inner.sql.checkpoint_create).bind(consumer).bind(new),
        }
        .execute(&mut **tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if moved == 1 {
            return Ok(());
        }
        let actual: Option<i64> = sqlx::query_scalar(&self.inner.sql.checkpoint_load)
            .bind(consumer)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        let actual = actual.map(crate::common::checkpoint_from_sql);
        let expected = expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match StreamId::new("$checkpoint", consumer) {
            Ok(stream) => Err(StoreError::WrongExpectedVersion { stream, expected, actual }),
            Err(_) => Err(StoreError::Backend(
                format!("the checkpoint of `{consumer}` moved to {actual:?}; the runner expected {expected}").into(),
            )),
        }
    }

    /// Tries to take the lease of `name` (one active runner per projection
    /// across processes); `None` if another holder has it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<PgLease>, StoreError> {
        PgLease::try_acquire(&self.inner.pool, &self.inner.config.schema, name).await
    }

    fn wake_local(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        self.inner.appended.notify_one();
    }

    /// Starts the shared `LISTEN` task, once.
    ///
    /// It listens on a connection of its own: a `PgListener` keeps the
    /// pool connection it is given for as long as it lives, so through the
    /// store's pool it took one connection from the appends for good.
    fn ensure_listener(&self) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if tasks.listener.is_some() {
            return;
        }
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.inner.pool.connect_options()).clone());
        let (wake, channel) = (self.inner.wake.clone(), self.inner.config.channel());
        let task = tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::debug!(%error, "orchestrix: LISTEN connection failed; polling");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(error) = listener.listen(&channel).await {
                    tracing::debug!(%error, "orchestrix: LISTEN failed; polling");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    match listener.recv().await {
                        Ok(_) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                        Err(error) => {
                            // Notifications may have been missed: wake
                            // everyone to poll, then reconnect.
                            tracing::debug!(%error, "orchestrix: LISTEN connection lost; reconnecting");
                            wake.send_modify(|n| *n = n.wrapping_add(1));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            break;
                        }
                    }
                }
            }
        });
        tasks.listener = Some(task.abort_handle());
    }

    async fn fetch_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(&self.inner.sql.stream_version)
            .bind(stream.category())
            .bind(stream.id())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }

    async fn read_stream_chunk(
        &self,
        stream: &StreamId,
        from: u64,
    ) -> (Vec<Arc<RecordedEvent>>, Result<Option<u64>, StoreError>) {
        let rows = match sqlx::query(&self.inner.sql.read_stream)
            .bind(stream.category())
            .bind(stream.id())
            .bind(to_i64(from))
            .bind(CHUNK)
            .fetch_all(&self.inner.pool)
            .await
        {
            Ok(rows) => rows,
            Err(error) => return (Vec::new(), Err(map_err(error))),
        };
        let (events, error) = decode_rows(&rows, |row| event_row(row)?.into_record());
        if let Some(error) = error {
            (events, Err(error))
        } else {
            let next = next_cursor(&events, CHUNK, |event| event.stream_version);
            (events, Ok(next))
        }
    }
}

impl Inner {
    /// A connection of the subscription pool, counted as waiting while it
    /// is awaited (so that a subscription holding one knows to give it
    /// back, see [`SEGMENT_HOLD`]).
    async fn acquire_for_subscription(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, sqlx::Error> {
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.subscription_waiters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.subscription_waiters);
        self.subscriptions.acquire().await
    }

    /// A page of the global log from `from` below `upper` (a bound at or
    /// below a watermark), decoded as the rows arrive; a row that cannot be
    /// decoded cuts the page short with its error, after the events before
    /// it.
    async fn read_range_chunk(
        &self,
        from: u64,
        upper: u64,
        filter: &EventFilter,
    ) -> Result<(Vec<Arc<RecordedEvent>>, Option<StoreError>), StoreError> {
        let mut rows = range_query(&self.sql, from, upper, filter, GLOBAL_CHUNK).fetch(&self.pool);
        let mut events = Vec::new();
        let mut stream = None;
        while let Some(row) = rows.try_next().await.map_err(map_err)? {
            match event_row(&row).and_then(|row| row.into_record_after(&mut stream)) {
                Ok(event) => events.push(event),
                Err(error) => return Ok((events, Some(error))),
            }
        }
        Ok((events, None))
    }
}

/// The read of the global log from `from` below `upper` through `filter`,
/// at most `limit` events: the types and the tags in the statement, the
/// tags (when there are any) in an unprepared one, planned for them
/// (ADR 0036).
fn range_query<'q>(
    sql: &'q Sql,
    from: u64,
    upper: u64,
    filter: &'q EventFilter,
    limit: i64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let tagged = !filter.tags().is_empty();
    let statement = if tagged { &sql.read_range_tagged } else { &sql.read_range };
    let query = sqlx::query(statement)
        .persistent(!tagged)
        .bind(to_i64(from))
        .bind(to_i64(upper))
        .bind(filter.event_types())
        .bind(limit);
    if tagged {
        query.bind(filter.tags())
    } else {
        query
    }
}

/// Reads an event row.
///
/// The columns are `COLUMNS` (in `schema.rs`) of the adapter's own statements,
/// whose types the SQL fixes (`data::text`, ...), so the per-row type
/// check of `try_get` is skipped: it cost about a tenth of a catch-up's
/// client time. A NULL or undecodable value is still an error.
fn event_row(row: &PgRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        global_position: row.try_get_unchecked(0).map_err(map_err)?,
        event_id: row.try_get_unchecked(1).map_err(map_err)?,
        category: row.try_get_unchecked(2).map_err(map_err)?,
        aggregate_id: row.try_get_unchecked(3).map_err(map_err)?,
        stream_version: row.try_get_unchecked(4).map_err(map_err)?,
        event_type: row.try_get_unchecked(5).map_err(map_err)?,
        schema_version: row.try_get_unchecked(6).map_err(map_err)?,
        data: row.try_get_unchecked(7).map_err(map_err)?,
        metadata: row.try_get_unchecked(8).map_err(map_err)?,
        recorded_at: row.try_get_unchecked(9).map_err(map_err)?,
    })
}

impl Part {
    /// An append, with the ids and serialized metadata it binds.
    fn new(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Self, StoreError> {
        Ok(Self {
            stream: stream.clone(),
            expected,
            ids: events.iter().map(|event| event.id).collect(),
            metadata: metadata_texts(&events)?,
            events,
            recorded_at: now_micros(),
        })
    }
}

/// Each event's metadata as the JSON text an append binds.
fn metadata_texts(events: &[NewEvent]) -> Result<Vec<String>, StoreError> {
    events
        .iter()
        .map(|event| serde_json::to_string(&event.metadata))
        .collect::<Result<_, _>>()
        .map_err(|error| StoreError::InvalidInput(format!("metadata cannot be serialized: {error}")))
}

impl PgStore {
    /// One append as its own statement: one round trip, retried while an
    /// [`ExpectedVersion::Any`] append loses races.
    async fn append_alone(&self, part: Part) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let Part { stream, expected, events, ids, metadata, recorded_at } = part;
        let conflict = |actual| StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual };
        let single = events.len() == 1;
        let (types, schemas, data): (Vec<&str>, Vec<i64>, Vec<&str>) = if single {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                events.iter().map(|e| e.event_type.as_str()).collect(),
                events.iter().map(|e| i64::from(e.schema_version)).collect(),
                events.iter().map(|e| e.data.get()).collect(),
            )
        };
        for _ in 0..ANY_RETRIES {
            let sql = &self.inner.sql;
            let (statement, exact) = match expected {
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                    (if single { &sql.append_new_one } else { &sql.append_new }, None)
                }
                ExpectedVersion::Exact(v) => {
                    (if single { &sql.append_exact_one } else { &sql.append_exact }, Some(to_i64(v)))
                }
                ExpectedVersion::Any => (if single { &sql.append_any_one } else { &sql.append_any }, None),
            };
            let query = sqlx::query_as::<_, (i64, i64)>(statement);
            let query = query.bind(stream.category()).bind(stream.id()).bind(recorded_at);
            let query = if single {
                let event = &events[0];
                query
                    .bind(ids[0])
                    .bind(event.event_type.as_str())
                    .bind(i64::from(event.schema_version))
                    .bind(event.data.get())
                    .bind(&metadata[0])
            } else {
                query.bind(&ids).bind(&types).bind(&schemas).bind(&data).bind(&metadata)
            };
            let query = match exact {
                Some(version) => query.bind(version),
                None => query,
            };
            let rows = match query.fetch_all(&self.inner.pool).await {
                Ok(rows) if rows.len() == events.len() => rows,
                Ok(_) => {
                    // The expectation failed in the statement's snapshot:
                    // a retry of a stored append (ADR 0027), or a conflict.
                    if let Some(mut answer) = self.retried(&[(&stream, &events)]).await? {
                        return Ok(answer.pop().unwrap_or_default());
                    }
                    let actual = self.fetch_version(&stream).await?;
                    if expected.admits(actual) {
                        continue; // the stream moved on to it meanwhile
                    }
                    return Err(conflict(actual));
                }
                Err(error) if is_unique_violation(&error) => {
                    // The event id's index (a retry), or a lost race.
                    if let Some(mut answer) = self.retried(&[(&stream, &events)]).await? {
                        return Ok(answer.pop().unwrap_or_default());
                    }
                    let actual = self.fetch_version(&stream).await?;
                    if expected == ExpectedVersion::Any || expected.admits(actual) {
                        continue;
                    }
                    return Err(conflict(actual));
                }
                Err(error) => return Err(map_err(error)),
            };
            drop((types, schemas, data));
            let recorded = recorded_events(&stream, recorded_at, rows, events, ids);
            self.wake_local();
            return Ok(recorded);
        }
        Err(StoreError::Backend(
            format!("the append to `{stream}` lost {ANY_RETRIES} races in a row; try again").into(),
        ))
    }
}

/// What an append binds: the batch as arrays.
struct Batch<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schemas: Vec<i64>,
    data: Vec<&'a str>,
    metadata: Vec<String>,
}

impl<'a> Batch<'a> {
    fn new(events: &'a [NewEvent]) -> Result<Self, StoreError> {
        Ok(Batch {
            ids: events.iter().map(|event| event.id).collect(),
            types: events.iter().map(|event| event.event_type.as_str()).collect(),
            schemas: events.iter().map(|event| i64::from(event.schema_version)).collect(),
            data: events.iter().map(|event| event.data.get()).collect(),
            metadata: metadata_texts(events)?,
        })
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
        orchestrix::store::validate_append(&events)?;
        if events.len() > MAX_BATCH {
            return Err(StoreError::InvalidInput(format!(
                "a batch of {} events is too large; the limit is {MAX_BATCH}",
                events.len()
            )));
        }
        if events.is_empty() {
            let actual = self.fetch_version(stream).await?;
            return if expected.admits(actual) {
                Ok(Vec::new())
            } else {
                Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual })
            };
        }
        let part = Part::new(stream, expected, events)?;
        let Some(group) = self.inner.group.as_ref().filter(|_| part.events.len() <= MAX_GROUPED_APPEND) else {
            return self.append_alone(part).await;
        };
        if let Some(slot) = group.try_alone(&self.inner) {
            let result = self.append_alone(part).await;
            drop(slot);
            return result;
        }
        match GroupCommit::join(&self.inner, group, part).await? {
            (part, Outcome::Written(rows)) => {
                let recorded = recorded_events(&part.stream, part.recorded_at, rows, part.events, part.ids);
                self.wake_local();
                Ok(recorded)
            }
            (part, Outcome::Alone) => self.append_alone(part).await,
            (_, Outcome::Failed(error)) => Err(error),
        }
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

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let inner = &*self.inner;
        let start = stream::once(async move { read_all_bound(inner).await });
        start
            .flat_map(move |bound| match bound {
                Err(error) => stream::once(async move { Err(error) }).boxed(),
                Ok(None) => stream::empty().boxed(),
                Ok(Some(upper)) => paged(from_position, move |from| async move {
                    match inner.read_range_chunk(from, upper, filter).await {
                        Err(error) => (Vec::new(), Err(error)),
                        Ok((events, Some(error))) => (events, Err(error)),
                        Ok((events, None)) => {
                            let next = next_cursor(&events, GLOBAL_CHUNK, |event| event.global_position);
                            (events, Ok(next))
                        }
                    }
                }),
            })
            .boxed()
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        self.ensure_listener();
        let state = Subscription {
            inner: Arc::clone(&self.inner),
            wake: self.inner.wake.subscribe(),
            filter,
            next: from_position.max(1),
            rows: None,
            segment_started: tokio::time::Instant::now(),
            segment_events: 0,
            failed: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed()
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        self.event_by_id(id).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.fetch_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        let (head, _): (Option<i64>, i64) =
            sqlx::query_as(&self.inner.sql.head_and_watermark).fetch_one(&self.inner.pool).await.map_err(map_err)?;
        Ok(head.and_then(|h| u64::try_from(h).ok()))
    }
}

/// The exclusive upper bound of a finite read of the global log: one past
/// the head once the watermark has passed it (every transaction up to the
/// head has finished), or the watermark if in-flight transactions keep it
/// below the head longer than the configured wait. `None`: the log is empty.
async fn read_all_bound(inner: &Inner) -> Result<Option<u64>, StoreError> {
    let deadline = tokio::time::Instant::now() + inner.config.read_wait;
    let mut pause = Duration::from_millis(1);
    let mut target = None;
    loop {
        let (head, watermark): (Option<i64>, i64) =
            sqlx::query_as(&inner.sql.head_and_watermark).fetch_one(&inner.pool).await.map_err(map_err)?;
        let watermark = u64::try_from(watermark).unwrap_or(0);
        let Some(head) = target.or(head.and_then(|h| u64::try_from(h).ok())) else { return Ok(None) };
        target = Some(head);
        if watermark > head || tokio::time::Instant::now() >= deadline {
            return Ok(Some(watermark.min(head + 1)));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The state of a live subscription.
struct Subscription {
    inner: Arc<Inner>,
    wake: watch::Receiver<u64>,
    filter: EventFilter,
    /// The next position to read from: everything below it was delivered
    /// or filtered out, and is final.
    next: u64,
    /// The query being read, if one is.
    rows: Option<SegmentRows>,
    /// When the query being read started, and how many events it
    /// delivered: one that has delivered some and is older than
    /// [`SEGMENT_HOLD`] gives its connection back.
    segment_started: tokio::time::Instant,
    segment_events: u64,
    failed: bool,
}

/// What a segment query yields: its events as their rows arrive, then
/// what the query saw of the log.
enum SegmentItem {
    Event(Arc<RecordedEvent>),
    End {
        /// Every position below this was final for the query.
        watermark: u64,
        /// Whether committed rows waited at or above the watermark.
        pending: bool,
        /// How many events the query returned.
        count: i64,
    },
}

type SegmentRows = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<SegmentItem, StoreError>> + Send>>;

/// One query over the global log from `from`, below the watermark, at most
/// [`SEGMENT`] events, streamed: each row is decoded and yielded as it
/// arrives, so the server sends while the consumer works, as a hand-written
/// streaming `SELECT` does (reading whole chunks before delivering them
/// left the two taking turns). A row that cannot be decoded is yielded as
/// its error and ends the segment.
fn segment(inner: Arc<Inner>, from: u64, filter: EventFilter) -> SegmentRows {
    Box::pin(async_stream::stream! {
        // The watermark first: every position below it was final when it
        // was taken, so a later snapshot sees all of them, and the rows
        // come back without it (a join that repeated it on every row cost
        // the server a fifth more per row).
        let mut connection = match inner.acquire_for_subscription().await {
            Ok(connection) => connection,
            Err(error) => {
                yield Err(map_err(error));
                return;
            }
        };
        let (watermark, pending) = match sqlx::query_as::<_, (i64, bool)>(&inner.sql.watermark).fetch_one(&mut *connection).await {
            Ok((mark, pending)) => (u64::try_from(mark).unwrap_or(0), pending),
            Err(error) => {
                yield Err(map_err(error));
                return;
            }
        };
        let mut rows = range_query(&inner.sql, from, watermark, &filter, SEGMENT).fetch(&mut *connection);
        let mut count = 0;
        let mut stream = None;
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    yield Err(map_err(error));
                    return;
                }
            };
            count += 1;
            match event_row(&row).and_then(|row| row.into_record_after(&mut stream)) {
                Ok(event) => yield Ok(SegmentItem::Event(event)),
                Err(error) => {
                    yield Err(error);
                    return;
                }
            }
        }
        yield Ok(SegmentItem::End { watermark, pending, count });
    })
}

impl Subscription {
    async fn next_item(&mut self) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        if self.failed {
            return None;
        }
        let mut pending_pause = Duration::from_millis(1);
        let mut retry_pause = Duration::from_millis(50);
        loop {
            let Some(rows) = &mut self.rows else {
                // Mark wake-ups as seen before reading, so that an append
                // that lands after the read still wakes the wait below.
                self.wake.borrow_and_update();
                self.rows = Some(segment(Arc::clone(&self.inner), self.next, self.filter.clone()));
                self.segment_started = tokio::time::Instant::now();
                self.segment_events = 0;
                continue;
            };
            if self.segment_events > 0
                && self.segment_started.elapsed() >= SEGMENT_HOLD
                && self.inner.subscription_waiters.load(std::sync::atomic::Ordering::Relaxed) > 0
            {
                // Long enough on one connection while others wait for one:
                // give it back (the rest of the query is discarded) and
                // query again from the next position, behind them.
                self.rows = None;
                continue;
            }
            match rows.next().await {
                Some(Ok(SegmentItem::Event(event))) => {
                    self.next = event.global_position + 1;
                    self.segment_events += 1;
                    return Some(Ok(event));
                }
                Some(Ok(SegmentItem::End { watermark, pending, count })) => {
                    self.rows = None;
                    retry_pause = Duration::from_millis(50);
                    if count >= SEGMENT {
                        continue; // catching up: the next segment at once
                    }
                    // Everything below the watermark has been seen.
                    self.next = self.next.max(watermark);
                    if count > 0 {
                        continue;
                    }
                    if pending {
                        // Committed events wait for older transactions to
                        // finish: look again soon.
                        tokio::time::sleep(pending_pause).await;
                        pending_pause = (pending_pause * 2).min(Duration::from_millis(50));
                        continue;
                    }
                    pending_pause = Duration::from_millis(1);
                    // A timeout or a closed channel both mean: poll.
                    let _ = tokio::time::timeout(self.inner.config.poll_interval, self.wake.changed()).await;
                }
                Some(Err(StoreError::Unavailable(error))) => {
                    self.rows = None;
                    tracing::warn!(
                        %error,
                        position = self.next,
                        "orchestrix: subscription cannot reach the database or get a connection of its pool; retrying"
                    );
                    tokio::time::sleep(retry_pause).await;
                    retry_pause = (retry_pause * 2).min(Duration::from_secs(2));
                }
                Some(Err(error)) => {
                    self.rows = None;
                    self.failed = true;
                    return Some(Err(error));
                }
                None => self.rows = None,
            }
        }
    }
}
