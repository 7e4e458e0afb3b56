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

mod keys;
mod lease;
mod ports;
mod retag;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use futures_util::stream::{self, StreamExt};
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::idempotency::answer_retry;
use orchestrix::query::AppendCondition;
use orchestrix::store::{
    first_conflict, validate_append_if, validate_append_many, EventFilter, EventStore, EventStream, ExpectedVersion,
    StreamAppend,
};
use orchestrix::{StoreError, StreamId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

pub use lease::SqliteLease;

use crate::common::{
    decode_rows, map_err, may_be_retry, next_cursor, now_micros, paged, recorded_events, to_i64, validate_identifier,
    EventRow, CHUNK,
};

/// The configuration of a [`SqliteStore`]: the table prefix and polling.
///
/// ```
/// use orchestrix_adapters::sqlite::SqliteConfig;
///
/// assert_eq!(SqliteConfig::default().prefix(), "orchestrix_");
/// assert!(SqliteConfig::new("app_").is_ok());
/// assert!(SqliteConfig::new("x; DROP TABLE y; --").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    prefix: String,
    poll_interval: Duration,
    max_connections: u32,
    lease_ttl: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            prefix: "orchestrix_".to_owned(),
            poll_interval: Duration::from_millis(200),
            max_connections: 8,
            lease_ttl: lease::DEFAULT_LEASE_TTL,
        }
    }
}

impl SqliteConfig {
    /// A configuration whose tables are named `<prefix>events` and so on:
    /// 0 to 32 lowercase ASCII letters, digits and `_`, not starting with a
    /// digit. Any other prefix is refused with [`StoreError::InvalidInput`].
    pub fn new(prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        validate_identifier("table prefix", &prefix, 32, true)?;
        Ok(Self { prefix, ..Self::default() })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How often an idle subscription polls for appends made by other
    /// processes or store instances (default 200 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The pool size of a file database (default 8).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a lease ([`SqliteLease`]) stays held without being
    /// checked (default 10 s, at least 1 s): a holder that dies loses it
    /// this long after its last check, and a holder that cannot check for
    /// this long (a frozen process, a database locked by someone else)
    /// may find it taken over.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }
}

/// The SQL script that creates the tables of `config`, for users who apply
/// migrations with their own tooling; idempotent. [`SqliteStore::migrate`]
/// applies the same statements.
pub fn migration_sql(config: &SqliteConfig) -> String {
    schema(&config.prefix)
}

/// A dead letter's stream category, from its stored event (indexed with
/// the consumer: ADR 0025 asks for a stream's letters often).
const DL_CATEGORY: &str = "json_extract(event, '$.stream.category')";
/// A dead letter's stream id within its category.
const DL_STREAM_ID: &str = "json_extract(event, '$.stream.id')";

/// The condition of a dead-letter query: `?1` consumer, `?2`/`?3` stream
/// category and id, `?4` text in the error, `?5` parked before (µs); each
/// NULL when not asked.
fn dead_letter_where() -> String {
    format!(
        "(?1 IS NULL OR consumer = ?1) AND (?2 IS NULL OR ({DL_CATEGORY} = ?2 AND {DL_STREAM_ID} = ?3)) \
         AND (?4 IS NULL OR instr(error, ?4) > 0) AND (?5 IS NULL OR parked_at < ?5)"
    )
}

fn schema(p: &str) -> String {
    format!(
        r"CREATE TABLE IF NOT EXISTS {p}events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    category TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (category, aggregate_id, stream_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS {p}events_event_id ON {p}events (event_id);
CREATE TABLE IF NOT EXISTS {p}snapshots (
    category TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (category, aggregate_id, version)
);
CREATE TABLE IF NOT EXISTS {p}checkpoints (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}key_values (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    consumer TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}dead_letters_consumer ON {p}dead_letters (consumer, parked_at, seq);
CREATE INDEX IF NOT EXISTS {p}dead_letters_stream ON {p}dead_letters (consumer, {DL_CATEGORY}, {DL_STREAM_ID});
CREATE TABLE IF NOT EXISTS {p}data_keys (
    subject TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    material BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}forgotten_subjects (
    subject TEXT PRIMARY KEY,
    forgotten_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {p}subject_streams (
    subject TEXT NOT NULL,
    category TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    PRIMARY KEY (subject, category, aggregate_id)
);
CREATE TABLE IF NOT EXISTS {p}leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"
    )
}

/// SQLite implementation of every storage port: [`EventStore`],
/// [`orchestrix::SnapshotStore`], [`orchestrix::CheckpointStore`],
/// [`orchestrix::KeyValueStore`] and [`orchestrix::DeadLetterStore`].
///
/// Cloning is cheap; clones share the pool, the writer lock and the
/// wake-ups.
///
/// ```
/// use orchestrix::{EventStore, ExpectedVersion, StreamId};
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

#[derive(Debug)]
struct Sql {
    append: String,
    /// The same as `append` as one autocommit statement that checks the
    /// stream's version `?3` itself (0: a new stream, which the unique
    /// index alone guards).
    append_checked: String,
    stream_version: String,
    read_stream: String,
    read_all: String,
    head: String,
    snapshot_save: String,
    snapshot_load: String,
    snapshot_delete: String,
    checkpoint_load: String,
    checkpoint_save: String,
    checkpoint_delete: String,
    kv_get: String,
    kv_put: String,
    kv_delete: String,
    kv_keys: String,
    dl_park: String,
    dl_list: String,
    dl_get: String,
    dl_remove: String,
    /// The letters of a dead-letter query ([`dead_letter_where`]).
    dl_query: String,
    /// How many letters it selects.
    dl_count: String,
    /// Removes the letters it selects.
    dl_purge: String,
    /// The first position above `?1` of an event matching any item of the
    /// JSON array `?2` (a query's items, ADR 0023): of one of the item's
    /// `event_types` (any if empty) and carrying every one of its `tags`.
    condition: String,
    /// The events whose ids are in the JSON array `?1` (ADR 0027).
    by_ids: String,
    /// The event whose id is `?1`.
    by_id: String,
}

const COLUMNS: &str = "global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
                       data, metadata, recorded_at";

impl Sql {
    fn new(p: &str) -> Self {
        Self {
            // One statement for the whole batch: a JSON array of
            // [id, type, schema version, data, metadata] tuples, the strings
            // kept verbatim.
            append: format!(
                "INSERT INTO {p}events (event_id, category, aggregate_id, stream_version, event_type, schema_version, \
                 data, metadata, recorded_at) \
                 SELECT json_extract(value, '$[0]'), ?1, ?2, ?3 + key + 1, json_extract(value, '$[1]'), \
                 json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), ?4 \
                 FROM json_each(?5) ORDER BY key RETURNING global_position, stream_version"
            ),
            append_checked: format!(
                "INSERT INTO {p}events (event_id, category, aggregate_id, stream_version, event_type, schema_version, \
                 data, metadata, recorded_at) \
                 SELECT json_extract(value, '$[0]'), ?1, ?2, ?3 + key + 1, json_extract(value, '$[1]'), \
                 json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), ?4 \
                 FROM json_each(?5) WHERE ?3 = 0 OR EXISTS (SELECT 1 FROM {p}events WHERE category = ?1 \
                 AND aggregate_id = ?2 AND stream_version = ?3) ORDER BY key RETURNING global_position, stream_version"
            ),
            stream_version: format!(
                "SELECT max(stream_version) FROM {p}events WHERE category = ?1 AND aggregate_id = ?2"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {p}events WHERE category = ?1 AND aggregate_id = ?2 AND stream_version >= ?3 \
                 ORDER BY stream_version LIMIT ?4"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {p}events WHERE global_position >= ?1 AND global_position <= ?2 \
                 AND (?3 IS NULL OR event_type IN (SELECT value FROM json_each(?3))) \
                 ORDER BY global_position LIMIT ?4"
            ),
            head: format!("SELECT max(global_position) FROM {p}events"),
            snapshot_save: format!(
                "INSERT OR REPLACE INTO {p}snapshots (category, aggregate_id, version, schema_version, state, taken_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            snapshot_load: format!(
                "SELECT version, schema_version, state, taken_at FROM {p}snapshots WHERE category = ?1 \
                 AND aggregate_id = ?2 AND version <= ?3 ORDER BY version DESC LIMIT 1"
            ),
            snapshot_delete: format!("DELETE FROM {p}snapshots WHERE category = ?1 AND aggregate_id = ?2"),
            checkpoint_load: format!("SELECT position FROM {p}checkpoints WHERE consumer = ?1"),
            checkpoint_save: format!(
                "INSERT INTO {p}checkpoints (consumer, position) VALUES (?1, ?2) \
                 ON CONFLICT (consumer) DO UPDATE SET position = excluded.position"
            ),
            checkpoint_delete: format!("DELETE FROM {p}checkpoints WHERE consumer = ?1"),
            kv_get: format!("SELECT value FROM {p}key_values WHERE key = ?1"),
            kv_put: format!(
                "INSERT INTO {p}key_values (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            kv_delete: format!("DELETE FROM {p}key_values WHERE key = ?1"),
            kv_keys: format!(
                "SELECT key FROM {p}key_values WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key"
            ),
            dl_park: format!(
                "INSERT INTO {p}dead_letters (id, consumer, event, error, attempts, parked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET consumer = excluded.consumer, \
                 event = excluded.event, error = excluded.error, attempts = excluded.attempts, \
                 parked_at = excluded.parked_at"
            ),
            dl_list: format!(
                "SELECT id, consumer, event, error, attempts, parked_at FROM {p}dead_letters \
                 WHERE ?1 IS NULL OR consumer = ?1 ORDER BY parked_at, seq"
            ),
            dl_get: format!("SELECT id, consumer, event, error, attempts, parked_at FROM {p}dead_letters WHERE id = ?1"),
            dl_remove: format!("DELETE FROM {p}dead_letters WHERE id = ?1"),
            by_ids: format!("SELECT {COLUMNS} FROM {p}events WHERE event_id IN (SELECT value FROM json_each(?1))"),
            by_id: format!("SELECT {COLUMNS} FROM {p}events WHERE event_id = ?1"),
            dl_query: format!(
                "SELECT id, consumer, event, error, attempts, parked_at FROM {p}dead_letters WHERE {} \
                 ORDER BY parked_at, seq",
                dead_letter_where()
            ),
            dl_count: format!("SELECT count(*) FROM {p}dead_letters WHERE {}", dead_letter_where()),
            dl_purge: format!("DELETE FROM {p}dead_letters WHERE {}", dead_letter_where()),
            condition: format!(
                "SELECT e.global_position FROM {p}events e WHERE e.global_position > ?1 AND EXISTS (\
                 SELECT 1 FROM json_each(?2) item WHERE \
                 (json_array_length(item.value, '$.event_types') = 0 \
                  OR e.event_type IN (SELECT value FROM json_each(item.value, '$.event_types'))) \
                 AND NOT EXISTS (SELECT 1 FROM json_each(item.value, '$.tags') wanted \
                  WHERE wanted.value NOT IN (SELECT value FROM json_each(e.metadata, '$.tags')))) \
                 ORDER BY e.global_position LIMIT 1"
            ),
        }
    }
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

    /// Creates the tables and indexes that are missing (so it also upgrades
    /// a database of an older version).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let _writer = self.inner.writer.lock().await;
        sqlx::raw_sql(&schema(&self.inner.config.prefix)).execute(&self.inner.pool).await.map_err(map_err)?;
        Ok(())
    }

    /// The pool, for queries of the application's own.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// A multi-stream append in one `BEGIN IMMEDIATE` transaction, checked
    /// against `condition` (if any) and then the parts' expectations; a
    /// failed one may be the retry of a stored one (ADR 0027).
    async fn append_checked(
        &self,
        condition: Option<&AppendCondition>,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let batches = appends.iter().map(|append| json_batch(&append.events)).collect::<Result<Vec<_>, _>>()?;
        let recorded_at = now_micros();
        let inserted = match self.insert_checked(condition, &appends, &batches, recorded_at).await {
            Ok(inserted) => inserted,
            Err(error) if may_be_retry(&error) => {
                let parts: Vec<_> = appends.iter().map(|append| (&append.stream, append.events.as_slice())).collect();
                return self.retried(&parts).await?.ok_or(error);
            }
            Err(error) => return Err(error),
        };
        if inserted.iter().any(|rows| !rows.is_empty()) {
            self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(appends
            .into_iter()
            .zip(inserted)
            .zip(batches)
            .map(|((append, rows), (ids, _))| recorded_events(&append.stream, recorded_at, rows, append.events, ids))
            .collect())
    }

    /// The events stored with the ids of `parts`, as the answer to an
    /// append that failed ([`orchestrix::idempotency::answer_retry`]).
    async fn retried(
        &self,
        parts: &[(&StreamId, &[NewEvent])],
    ) -> Result<Option<Vec<Vec<Arc<RecordedEvent>>>>, StoreError> {
        let ids: Vec<String> =
            parts.iter().flat_map(|(_, events)| events.iter()).map(|event| event.id.to_string()).collect();
        let rows = sqlx::query(&self.inner.sql.by_ids)
            .bind(serde_json::Value::from(ids).to_string())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_err)?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let record = event_row(row)?.into_record()?;
            stored.insert(record.id, record);
        }
        answer_retry(parts, |id| stored.get(&id).cloned())
    }

    /// [`SqliteStore::append_checked`]'s transaction: the rows inserted per
    /// part, or why nothing was.
    async fn insert_checked(
        &self,
        condition: Option<&AppendCondition>,
        appends: &[StreamAppend],
        batches: &[(Vec<Uuid>, String)],
        recorded_at: DateTime<chrono::Utc>,
    ) -> Result<Vec<Vec<(i64, i64)>>, StoreError> {
        {
            let _writer = self.inner.writer.lock().await;
            // One transaction under the file's write lock: every part's
            // version is read and checked first, then every part inserted.
            let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
            if let Some(condition) = condition.filter(|condition| !condition.query.is_empty()) {
                // Under the write lock, so no append can slip in between
                // the check and the insert.
                let items = serde_json::to_string(condition.query.items()).map_err(StoreError::backend)?;
                let first: Option<i64> = sqlx::query_scalar(&self.inner.sql.condition)
                    .bind(to_i64(condition.after.unwrap_or(0)))
                    .bind(items)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if let Some(position) = first {
                    return Err(StoreError::ConditionFailed {
                        position: u64::try_from(position).unwrap_or(0),
                        after: condition.after,
                    });
                }
            }
            let mut actual = Vec::with_capacity(appends.len());
            for append in appends {
                actual.push(self.fetch_version(&mut *tx, &append.stream).await?);
            }
            if let Some(conflict) = first_conflict(appends, &actual) {
                return Err(conflict);
            }
            let mut inserted = Vec::with_capacity(appends.len());
            for ((append, version), (_, batch)) in appends.iter().zip(&actual).zip(batches) {
                if append.events.is_empty() {
                    inserted.push(Vec::new());
                    continue;
                }
                let rows: Vec<(i64, i64)> = sqlx::query_as(&self.inner.sql.append)
                    .bind(append.stream.category())
                    .bind(append.stream.id())
                    .bind(to_i64(version.unwrap_or(0)))
                    .bind(recorded_at.timestamp_micros())
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                inserted.push(rows);
            }
            tx.commit().await.map_err(map_err)?;
            Ok(inserted)
        }
    }

    /// An append after the stream's current version, checked against
    /// `expected`, in a `BEGIN IMMEDIATE` transaction: the rows inserted.
    async fn insert_after(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &str,
        empty: bool,
        recorded_at: DateTime<chrono::Utc>,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let _writer = self.inner.writer.lock().await;
        let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let actual = self.fetch_version(&mut *tx, stream).await?;
        if !expected.admits(actual) {
            return Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual });
        }
        if empty {
            return Ok(Vec::new());
        }
        let inserted: Vec<(i64, i64)> = sqlx::query_as(&self.inner.sql.append)
            .bind(stream.category())
            .bind(stream.id())
            .bind(to_i64(actual.unwrap_or(0)))
            .bind(recorded_at.timestamp_micros())
            .bind(batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(inserted)
    }

    async fn fetch_version<'e, E>(&self, executor: E, stream: &StreamId) -> Result<Option<u64>, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        let version: Option<i64> = sqlx::query_scalar(&self.inner.sql.stream_version)
            .bind(stream.category())
            .bind(stream.id())
            .fetch_one(executor)
            .await
            .map_err(map_err)?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }
}

fn event_row(row: &SqliteRow) -> Result<EventRow, StoreError> {
    let global_position: i64 = row.try_get(0).map_err(map_err)?;
    let category: String = row.try_get(2).map_err(map_err)?;
    let aggregate_id: String = row.try_get(3).map_err(map_err)?;
    let stream_version: i64 = row.try_get(4).map_err(map_err)?;
    let id_text: String = row.try_get(1).map_err(map_err)?;
    let micros: i64 = row.try_get(9).map_err(map_err)?;
    let corrupt = |reason: String| match StreamId::new(category.as_str(), aggregate_id.as_str()) {
        Ok(stream) => StoreError::Corrupt { stream, version: u64::try_from(stream_version).unwrap_or(0), reason },
        Err(error) => StoreError::Backend(format!("corrupt row at position {global_position}: {error}").into()),
    };
    let event_id = Uuid::parse_str(&id_text).map_err(|error| corrupt(format!("event id `{id_text}`: {error}")))?;
    let recorded_at = DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt(format!("recorded time {micros} is out of range")))?;
    Ok(EventRow {
        global_position,
        event_id,
        stream_version,
        event_type: row.try_get(5).map_err(map_err)?,
        schema_version: row.try_get(6).map_err(map_err)?,
        data: row.try_get(7).map_err(map_err)?,
        metadata: row.try_get(8).map_err(map_err)?,
        recorded_at,
        category,
        aggregate_id,
    })
}

impl Inner {
    async fn read_global_chunk(
        &self,
        from: u64,
        upper: u64,
        types: Option<&str>,
    ) -> Result<(Vec<Arc<RecordedEvent>>, Option<StoreError>), StoreError> {
        let rows = sqlx::query(&self.sql.read_all)
            .bind(to_i64(from))
            .bind(to_i64(upper))
            .bind(types)
            .bind(CHUNK)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(decode_rows(&rows, |row| event_row(row)?.into_record()))
    }

    async fn head(&self) -> Result<Option<u64>, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(&self.sql.head).fetch_one(&self.pool).await.map_err(map_err)?;
        Ok(head.and_then(|h| u64::try_from(h).ok()))
    }
}

/// The ids given to `events` and the batch as the JSON array the append
/// statement reads: `[id, type, schema version, data, metadata]` tuples.
fn json_batch(events: &[NewEvent]) -> Result<(Vec<Uuid>, String), StoreError> {
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let mut rows = Vec::with_capacity(events.len());
    for (event, id) in events.iter().zip(&ids) {
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|error| StoreError::InvalidInput(format!("metadata cannot be serialized: {error}")))?;
        rows.push(serde_json::json!([
            id.to_string(),
            event.event_type,
            event.schema_version,
            event.data.get(),
            metadata
        ]));
    }
    Ok((ids, serde_json::Value::Array(rows).to_string()))
}

/// The filter's type names as a JSON array, for `json_each`.
fn types_json(filter: &EventFilter) -> Option<String> {
    filter.event_types().map(|types| serde_json::Value::from(types.to_vec()).to_string())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        orchestrix::store::validate_append(&events)?;
        let (ids, batch) = json_batch(&events)?;
        let recorded_at = now_micros();
        let base = match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => Some(0),
            ExpectedVersion::Exact(v) => Some(v),
            ExpectedVersion::Any => None,
        };
        if let (Some(base), false) = (base, events.is_empty()) {
            // One autocommit statement (one trip through sqlx's worker
            // thread) instead of a transaction of four: the statement
            // checks version `base` itself, and the unique index refuses
            // versions that exist.
            let _writer = self.inner.writer.lock().await;
            let result: Result<Vec<(i64, i64)>, _> = sqlx::query_as(&self.inner.sql.append_checked)
                .bind(stream.category())
                .bind(stream.id())
                .bind(to_i64(base))
                .bind(recorded_at.timestamp_micros())
                .bind(&batch)
                .fetch_all(&self.inner.pool)
                .await;
            match result {
                Ok(inserted) if inserted.len() == events.len() => {
                    drop(_writer);
                    self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
                    return Ok(recorded_events(stream, recorded_at, inserted, events, ids));
                }
                Ok(_) => {}
                Err(error) if crate::common::is_unique_violation(&error) => {}
                Err(error) => return Err(map_err(error)),
            }
            // Nothing was written: the append is the retry of a stored one
            // (ADR 0027), or the stream was not at `base` (unless another
            // process moved it there meanwhile; then the transaction below
            // decides).
            if let Some(mut answer) = self.retried(&[(stream, &events)]).await? {
                return Ok(answer.pop().unwrap_or_default());
            }
            let actual = self.fetch_version(&self.inner.pool, stream).await?;
            if !expected.admits(actual) {
                return Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual });
            }
        }
        let inserted = match self.insert_after(stream, expected, &batch, events.is_empty(), recorded_at).await {
            Ok(inserted) => inserted,
            Err(error) if may_be_retry(&error) && !events.is_empty() => {
                let mut answer = self.retried(&[(stream, &events)]).await?.ok_or(error)?;
                return Ok(answer.pop().unwrap_or_default());
            }
            Err(error) => return Err(error),
        };
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(recorded_events(stream, recorded_at, inserted, events, ids))
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
        let inner = &*self.inner;
        paged(from_version.max(1), move |from| async move {
            let rows = match sqlx::query(&inner.sql.read_stream)
                .bind(stream.category())
                .bind(stream.id())
                .bind(to_i64(from))
                .bind(CHUNK)
                .fetch_all(&inner.pool)
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
        })
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let inner = &*self.inner;
        let types = types_json(filter);
        let events = stream::once(async move { inner.head().await })
            .flat_map(move |head| match head {
                Err(error) => stream::once(async move { Err(error) }).boxed(),
                Ok(None) => stream::empty().boxed(),
                Ok(Some(head)) => {
                    let types = types.clone();
                    paged(from_position, move |from| {
                        let types = types.clone();
                        async move {
                            match inner.read_global_chunk(from, head, types.as_deref()).await {
                                Err(error) => (Vec::new(), Err(error)),
                                Ok((events, Some(error))) => (events, Err(error)),
                                Ok((events, None)) => {
                                    let next = next_cursor(&events, CHUNK, |event| event.global_position);
                                    (events, Ok(next))
                                }
                            }
                        }
                    })
                }
            })
            .boxed();
        // The tags are matched here, after the pages (the types in the query).
        filter.retain_tagged(events)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        let state = Subscription {
            inner: Arc::clone(&self.inner),
            wake: self.inner.wake.subscribe(),
            types: types_json(&filter),
            next: from_position.max(1),
            buffer: Vec::new().into_iter(),
            error: None,
            failed: false,
        };
        let events = stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed();
        filter.retain_tagged(events)
    }

    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        let row = sqlx::query(&self.inner.sql.by_id)
            .bind(id.to_string())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| event_row(&row)?.into_record()).transpose()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.fetch_version(&self.inner.pool, stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head().await
    }
}

/// The state of a live subscription.
struct Subscription {
    inner: Arc<Inner>,
    wake: watch::Receiver<u64>,
    types: Option<String>,
    next: u64,
    buffer: std::vec::IntoIter<Arc<RecordedEvent>>,
    /// An error to yield once the buffer is drained; then the stream ends.
    error: Option<StoreError>,
    failed: bool,
}

impl Subscription {
    /// A chunk of matching events up to the head. With a single writer,
    /// every position up to the head is committed, so once a chunk is not
    /// full the cursor can skip past the head (past filtered-out events).
    async fn read_to_head(&mut self) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let Some(head) = self.inner.head().await? else { return Ok(Vec::new()) };
        let (events, error) = self.inner.read_global_chunk(self.next, head, self.types.as_deref()).await?;
        if let Some(error) = error {
            self.buffer = events.into_iter();
            self.error = Some(error);
            return Ok(Vec::new());
        }
        match next_cursor(&events, CHUNK, |event| event.global_position) {
            Some(next) => self.next = next,
            None => self.next = self.next.max(head + 1),
        }
        Ok(events)
    }

    async fn next_item(&mut self) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        if self.failed {
            return None;
        }
        let mut retry_pause = Duration::from_millis(50);
        loop {
            if let Some(event) = self.buffer.next() {
                return Some(Ok(event));
            }
            if let Some(error) = self.error.take() {
                self.failed = true;
                return Some(Err(error));
            }
            self.wake.borrow_and_update();
            match self.read_to_head().await {
                Ok(events) => {
                    retry_pause = Duration::from_millis(50);
                    if !events.is_empty() {
                        self.buffer = events.into_iter();
                        continue;
                    }
                    if self.error.is_some() {
                        continue; // the buffer holds the events before it
                    }
                    let _ = tokio::time::timeout(self.inner.config.poll_interval, self.wake.changed()).await;
                }
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(%error, position = self.next, "orchestrix: subscription cannot read; retrying");
                    tokio::time::sleep(retry_pause).await;
                    retry_pause = (retry_pause * 2).min(Duration::from_secs(2));
                }
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
