//! The configuration of a [`PgStore`](super::PgStore): its schema, pools,
//! notifications, polling and group commit.

use std::time::Duration;

use orchestrix::StoreError;

use crate::common::validate_identifier;
#[cfg(doc)]
use {super::PgStore, orchestrix::store::EventStore};

/// The default size of the subscription pool
/// ([`PgConfig::with_subscription_connections`]).
pub const DEFAULT_SUBSCRIPTION_CONNECTIONS: u32 = 4;

/// How long an append or read waits for a connection of the pool, and a
/// subscription for one of the subscription pool, before it fails with
/// [`StoreError::Unavailable`] (a subscription then tries again): the
/// default of [`PgConfig::with_acquire_timeout`].
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many append statements of a store run at once with group commit
/// ([`PgConfig::with_group_commit`]).
pub const DEFAULT_GROUP_COMMIT: usize = 2;

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
    pub(super) schema: String,
    pub(super) max_connections: u32,
    pub(super) poll_interval: Duration,
    pub(super) read_wait: Duration,
    pub(super) notify: bool,
    pub(super) notify_interval: Duration,
    pub(super) group_commit: usize,
    pub(super) subscription_connections: u32,
    pub(super) acquire_timeout: Duration,
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
            acquire_timeout: ACQUIRE_TIMEOUT,
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

    /// How long an append or read waits for a connection (default
    /// [`ACQUIRE_TIMEOUT`], 10 s) before it fails with
    /// [`StoreError::Unavailable`]; the subscription pool and the listener
    /// use the same bound. A short one (1 s) lets an application notice a
    /// dead primary quickly and re-open on the promoted standby (the
    /// operations guide, "Several machines"); the fault suite measured
    /// 1.9–2.9 s without writes across a failover with 1 s, about 10 s
    /// with the default. Only pools [`PgStore::connect`] builds use it: a
    /// pool given to [`PgStore::from_pool`] keeps its own.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The bound of [`PgConfig::with_acquire_timeout`].
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
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
