//! The SQLite adapters: one [`SqliteStore`] implements every storage port.
//!
//! The embedded, durable default for single-node programs: one database
//! file in WAL mode (readers never block the writer), `synchronous = FULL`.
//! Appends are serialized: in process through one async lock, across
//! processes by the file's write lock (waited for up to the busy timeout).
//! An append that expects a new stream or an exact version is one
//! autocommit statement that checks the version itself (the unique index
//! refuses versions that exist); one that takes any version reads the
//! version and inserts in a `BEGIN IMMEDIATE` transaction. With a single
//! writer, positions are assigned in commit order, so the global log never
//! fills in behind a reader. A multi-stream append checks and inserts every
//! part in one such transaction.
//! Subscriptions poll, and appends made through the same store instance
//! wake them at once.
//! Event ids are unique (an index, created by [`SqliteStore::migrate`] on
//! old databases too): an append that fails looks its ids up and is
//! answered with the stored events if it repeats a stored append
//! (ADR 0027).
//!
//! Leases ([`SqliteStore::try_lease`], and `impl Leases`) are rows with a
//! holder, a fencing token and an expiry, for one runner per name across
//! the processes sharing the file (ADR 0032).

mod append;
mod config;
mod keys;
mod lease;
mod poll;
mod ports;
mod read;
mod retag;
mod schema;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::query::AppendCondition;
use orchestrix::store::{
    validate_append_if, validate_append_many, EventFilter, EventStore, EventStream, ExpectedVersion, StreamAppend,
};
use orchestrix::{StoreError, StreamId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

pub use config::SqliteConfig;
pub use lease::SqliteLease;
pub use schema::migration_sql;

use crate::common::map_err;
use schema::Sql;

/// SQLite implementation of every storage port: [`EventStore`],
/// [`orchestrix::store::SnapshotStore`], [`orchestrix::store::CheckpointStore`],
/// [`orchestrix::store::KeyValueStore`] and [`orchestrix::store::DeadLetterStore`].
///
/// Cloning is cheap; clones share the pool, the writer lock and the
/// wake-ups.
///
/// ```
/// use orchestrix::{store::{EventStore, ExpectedVersion}, StreamId};
/// use orchestrix_adapters::sqlite::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrix::StoreError> {
/// let store = SqliteStore::in_memory().await?;
/// let stream = StreamId::new("Account", "42")?;
/// store.append(&stream, ExpectedVersion::NoStream, vec![]).await?;
/// assert_eq!(store.stream_version(&stream).await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    config: SqliteConfig,
    sql: Sql,
    writer: Mutex<()>,
    wake: watch::Sender<u64>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` in WAL mode
    /// and applies the migrations.
    pub async fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        let store = Self::from_pool(pool, config);
        store.migrate().await?;
        Ok(store)
    }

    /// A private in-memory database (one connection, gone when the store
    /// is dropped), with the default configuration and the tables created.
    /// For tests and examples.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(map_err)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        let store = Self::from_pool(pool, SqliteConfig::default());
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool; call [`SqliteStore::migrate`] (or
    /// apply [`migration_sql`]) before use.
    pub fn from_pool(pool: SqlitePool, config: SqliteConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&config.prefix),
                config,
                writer: Mutex::new(()),
                wake: watch::Sender::new(0),
            }),
        }
    }

    /// The pool, for queries of the application's own.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        self.append_events(stream, expected, events).await
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_many(&appends)?;
        self.append_checked(None, appends).await
    }

    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_if(&condition, &appends)?;
        self.append_checked(Some(&condition), appends).await
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        self.read_stream_from(stream, from_version)
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
        self.subscribe_from(from_position, &filter)
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        self.event_by_id(id).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.fetch_version(&self.inner.pool, stream).await
    }

    async fn list_streams(
        &self,
        listing: &orchestrix::store::StreamListing,
    ) -> Result<Vec<orchestrix::store::StreamSummary>, StoreError> {
        self.stream_page(listing).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head().await
    }
}
