//! The SQLite schema: the idempotent script that creates (or upgrades) the
//! tables, and the SQL text of every statement, built once per prefix.

use orchestrix::StoreError;

use super::{SqliteConfig, SqliteStore};
use crate::common::map_err;

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
CREATE TABLE IF NOT EXISTS {p}consumer_controls (
    consumer TEXT PRIMARY KEY,
    pause_requested INTEGER NOT NULL,
    paused_by TEXT,
    paused_position INTEGER,
    paused_at INTEGER
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

#[derive(Debug)]
pub(super) struct Sql {
    /// The key store's statements.
    pub(super) keys: crate::common::keys::KeySql,
    pub(super) append: String,
    /// The same as `append` as one autocommit statement that checks the
    /// stream's version `?3` itself (0: a new stream, which the unique
    /// index alone guards).
    pub(super) append_checked: String,
    /// `append_checked` of one event bound as columns (`?5` id, `?6` type,
    /// `?7` schema version, `?8` data, `?9` metadata): no JSON to build
    /// and parse for the most common append.
    pub(super) append_checked_one: String,
    pub(super) stream_version: String,
    /// A page of streams (ADR 0041): `?1` type, `?2` id prefix, `?3`/`?4`
    /// after (type, id), `?5` limit; TEXT compares bytewise (BINARY).
    pub(super) list_streams: String,
    pub(super) read_stream: String,
    pub(super) read_all: String,
    pub(super) head: String,
    pub(super) snapshot_save: String,
    pub(super) snapshot_load: String,
    /// The latest snapshot (`?3`: at or before) as a row at position 0,
    /// then at most `?4` events from its version (ADR 0054).
    pub(super) snapshot_and_tail: String,
    pub(super) snapshot_delete: String,
    pub(super) checkpoint_load: String,
    pub(super) checkpoint_save: String,
    pub(super) checkpoint_delete: String,
    /// The consumers' control records (ADR 0050).
    pub(super) control: crate::common::ports::ControlSql,
    pub(super) kv_get: String,
    pub(super) kv_put: String,
    pub(super) kv_delete: String,
    pub(super) kv_keys: String,
    pub(super) dl_park: String,
    pub(super) dl_list: String,
    pub(super) dl_get: String,
    pub(super) dl_remove: String,
    /// The letters of a dead-letter query ([`dead_letter_where`]).
    pub(super) dl_query: String,
    /// How many letters it selects.
    pub(super) dl_count: String,
    /// Removes the letters it selects.
    pub(super) dl_purge: String,
    /// The first position above `?1` of an event matching any item of the
    /// JSON array `?2` (a query's items, ADR 0023): of one of the item's
    /// `event_types` (any if empty) and carrying every one of its `tags`.
    pub(super) condition: String,
    /// The events whose ids are in the JSON array `?1` (ADR 0027).
    pub(super) by_ids: String,
    /// The event whose id is `?1`.
    pub(super) by_id: String,
}

/// `append_checked` of one event bound as columns: no JSON to build and
/// parse for the most common append.
fn append_checked_one_sql(p: &str) -> String {
    format!(
        "INSERT INTO {p}events (event_id, category, aggregate_id, stream_version, event_type, schema_version, \
             data, metadata, recorded_at) SELECT ?5, ?1, ?2, ?3 + 1, ?6, ?7, ?8, ?9, ?4 \
             WHERE ?3 = 0 OR EXISTS (SELECT 1 FROM {p}events WHERE category = ?1 AND aggregate_id = ?2 \
             AND stream_version = ?3) RETURNING global_position, stream_version"
    )
}

/// The latest snapshot of a stream (`?3`: at or before) as a row at
/// position 0, then at most `?4` of its events from the snapshot's version
/// (from 1 without one): a load in one query (ADR 0054).
fn snapshot_and_tail_sql(p: &str) -> String {
    format!(
        "WITH s AS (SELECT version, schema_version, state, taken_at FROM {p}snapshots WHERE category = ?1 \
             AND aggregate_id = ?2 AND version <= ?3 ORDER BY version DESC LIMIT 1) \
             SELECT 0, NULL, NULL, NULL, version, NULL, schema_version, state, NULL, taken_at FROM s \
             UNION ALL SELECT * FROM (SELECT {COLUMNS} FROM {p}events WHERE category = ?1 AND aggregate_id = ?2 \
             AND stream_version >= max(coalesce((SELECT version FROM s), 1), 1) ORDER BY stream_version LIMIT ?4)"
    )
}

const COLUMNS: &str = "global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
                       data, metadata, recorded_at";

/// The statements of the consumers' control records (ADR 0050).
fn control_sql(p: &str) -> crate::common::ports::ControlSql {
    crate::common::ports::ControlSql {
        load: format!(
            "SELECT pause_requested, paused_by, paused_position, paused_at FROM {p}consumer_controls \
             WHERE consumer = ?1"
        ),
        request: format!(
            "INSERT INTO {p}consumer_controls (consumer, pause_requested) VALUES (?1, ?2) \
             ON CONFLICT (consumer) DO UPDATE SET pause_requested = excluded.pause_requested, \
             paused_by = CASE WHEN pause_requested = excluded.pause_requested THEN paused_by END, \
             paused_position = CASE WHEN pause_requested = excluded.pause_requested THEN paused_position END, \
             paused_at = CASE WHEN pause_requested = excluded.pause_requested THEN paused_at END"
        ),
        ack: format!(
            "UPDATE {p}consumer_controls SET paused_by = ?2, paused_position = ?3, paused_at = ?4 \
             WHERE consumer = ?1 AND pause_requested"
        ),
        clear: format!(
            "UPDATE {p}consumer_controls SET paused_by = NULL, paused_position = NULL, paused_at = NULL \
             WHERE consumer = ?1"
        ),
    }
}

impl Sql {
    pub(super) fn new(p: &str) -> Self {
        Self {
            keys: super::keys::key_sql(p),
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
            append_checked_one: append_checked_one_sql(p),
            stream_version: format!(
                "SELECT max(stream_version) FROM {p}events WHERE category = ?1 AND aggregate_id = ?2"
            ),
            list_streams: format!(
                "SELECT category, aggregate_id, max(stream_version), count(*), max(global_position) FROM {p}events \
                 WHERE (?1 IS NULL OR category = ?1) AND (?2 IS NULL OR substr(aggregate_id, 1, length(?2)) = ?2) \
                 AND (?3 IS NULL OR category > ?3 OR (category = ?3 AND aggregate_id > ?4)) \
                 GROUP BY category, aggregate_id ORDER BY category, aggregate_id LIMIT ?5"
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
            snapshot_and_tail: snapshot_and_tail_sql(p),
            snapshot_delete: format!("DELETE FROM {p}snapshots WHERE category = ?1 AND aggregate_id = ?2"),
            checkpoint_load: format!("SELECT position FROM {p}checkpoints WHERE consumer = ?1"),
            checkpoint_save: format!(
                "INSERT INTO {p}checkpoints (consumer, position) VALUES (?1, ?2) \
                 ON CONFLICT (consumer) DO UPDATE SET position = excluded.position"
            ),
            checkpoint_delete: format!("DELETE FROM {p}checkpoints WHERE consumer = ?1"),
            control: control_sql(p),
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
    /// Creates the tables and indexes that are missing (so it also upgrades
    /// a database of an older version).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let _writer = self.inner.writer.lock().await;
        sqlx::raw_sql(&schema(&self.inner.config.prefix)).execute(&self.inner.pool).await.map_err(map_err)?;
        Ok(())
    }
}
