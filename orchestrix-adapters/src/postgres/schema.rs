//! The PostgreSQL schema: embedded migrations and the SQL text of every
//! statement, built once per configured schema name.

use std::fmt::Write as _;

use orchestrix::StoreError;

use super::{PgConfig, PgStore};
use crate::common::map_err;

/// One embedded migration: its version, name and SQL for a schema.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) name: &'static str,
    pub(super) sql: fn(&str) -> String,
}

/// Every migration, oldest first. Never edit a released one: add another.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: initial },
    Migration { version: 2, name: "data_keys", sql: data_keys },
    Migration { version: 3, name: "tags", sql: tags },
    Migration { version: 4, name: "event_ids", sql: event_ids },
    Migration { version: 5, name: "forgotten_subjects", sql: forgotten_subjects },
    Migration { version: 6, name: "dead_letter_streams", sql: dead_letter_streams },
    Migration { version: 7, name: "consumer_controls", sql: consumer_controls },
];

/// The seventh migration: a control record per consumer of the log,
/// beside its checkpoint: an operator's pause request and a runner's
/// acknowledgement (ADR 0050).
fn consumer_controls(s: &str) -> String {
    format!(
        r#"
CREATE TABLE "{s}".consumer_controls (
    consumer text COLLATE "C" PRIMARY KEY,
    pause_requested boolean NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    paused_by text,
    paused_position bigint,
    paused_at timestamptz
);
"#
    )
}

/// The third migration: tags, generated from the metadata, with a GIN
/// index. Adding a stored generated column rewrites the events table once.
/// The index has no pending list (`fastupdate = off`): every search would
/// scan the list linearly, and a decision's read must stay fast; an
/// append pays for its few tags up front instead.
fn tags(s: &str) -> String {
    format!(
        r#"
CREATE FUNCTION "{s}".event_tags(metadata jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT COALESCE(ARRAY(SELECT jsonb_array_elements_text(
            CASE jsonb_typeof(metadata -> ''tags'') WHEN ''array'' THEN metadata -> ''tags'' ELSE ''[]''::jsonb END)),
        ''{{}}''::text[])';
ALTER TABLE "{s}".events ADD COLUMN tags text[] NOT NULL
    GENERATED ALWAYS AS ("{s}".event_tags(metadata)) STORED;
CREATE INDEX events_tags ON "{s}".events USING gin (tags) WITH (fastupdate = off);
COMMENT ON COLUMN "{s}".events.tags IS
    'metadata.tags, which consistency-by-query conditions select events by (Orchestrix ADR 0023)';
"#
    )
}

/// The fourth migration: event ids are unique across the store. Building
/// the index takes a lock that blocks appends while it runs; on a large
/// table, build it beforehand with `CREATE UNIQUE INDEX CONCURRENTLY
/// events_event_id ON <schema>.events (event_id)` (check that it is valid),
/// and the migration finds it there.
fn event_ids(s: &str) -> String {
    format!(
        r#"
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON "{s}".events (event_id);
COMMENT ON INDEX "{s}".events_event_id IS
    'event ids are unique: a retried append is recognised by its ids (Orchestrix ADR 0027)';
"#
    )
}

/// The fifth migration: which data subjects were forgotten (no key
/// material, just the id: their personal data is never sealed again until
/// they are re-admitted), and which streams hold each subject's personal
/// data, so that forgetting finds every snapshot and cached aggregate
/// (ADR 0031).
fn forgotten_subjects(s: &str) -> String {
    format!(
        r#"
CREATE TABLE "{s}".forgotten_subjects (
    subject text COLLATE "C" PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE "{s}".subject_streams (
    subject text COLLATE "C" NOT NULL,
    category text COLLATE "C" NOT NULL,
    aggregate_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (subject, category, aggregate_id)
);
"#
    )
}

/// The sixth migration: dead letters found by consumer and stream (ADR
/// 0025: a projection asks for a stream's letters before parking one of
/// its events behind them, and a retry replays them). The stream is read
/// from the stored event, so nothing is rewritten.
fn dead_letter_streams(s: &str) -> String {
    format!(
        r#"
CREATE INDEX dead_letters_stream ON "{s}".dead_letters (consumer, {DL_CATEGORY}, {DL_STREAM_ID});
"#
    )
}

/// A dead letter's stream category, from its stored event.
const DL_CATEGORY: &str = "((event::jsonb -> 'stream') ->> 'category')";
/// A dead letter's stream id within its category.
const DL_STREAM_ID: &str = "((event::jsonb -> 'stream') ->> 'id')";

/// The condition of a dead-letter query: `$1` consumer, `$2`/`$3` stream
/// category and id, `$4` text in the error, `$5` parked before; each NULL
/// when not asked.
fn dead_letter_where() -> String {
    format!(
        "($1::text IS NULL OR consumer = $1) \
         AND ($2::text IS NULL OR ({DL_CATEGORY} = $2 AND {DL_STREAM_ID} = $3::text)) \
         AND ($4::text IS NULL OR strpos(error, $4) > 0) \
         AND ($5::timestamptz IS NULL OR parked_at < $5)"
    )
}

/// The second migration: data subjects' keys for crypto-shredding
/// (`orchestrix::crypto`, ADR 0020). Deleting a row forgets a subject.
fn data_keys(s: &str) -> String {
    format!(
        r#"
CREATE TABLE "{s}".data_keys (
    subject text COLLATE "C" PRIMARY KEY,
    key_id uuid NOT NULL,
    material bytea NOT NULL CHECK (octet_length(material) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
"#
    )
}

/// The first migration: events, snapshots, checkpoints, key-value, dead
/// letters.
///
/// - `events.global_position` encodes the writing transaction's id and the
///   event's index in its batch (`xid8 << 20 | index`, see ADR 0008), so it
///   is the primary key and the only order readers need.
/// - `stream_key` is an MD5-derived UUID of the stream name: it keeps the
///   unique `(stream, version)` index small and within PostgreSQL's b-tree
///   entry limit even for 10 kB stream ids. Queries also compare the full
///   category and id, so a collision can never return another stream's
///   events; at worst it makes an append retry or conflict.
fn initial(s: &str) -> String {
    format!(
        r#"
CREATE TABLE "{s}".events (
    global_position bigint PRIMARY KEY CHECK (global_position > 0),
    event_id uuid NOT NULL,
    category text NOT NULL,
    aggregate_id text NOT NULL,
    stream_key uuid NOT NULL GENERATED ALWAYS AS (md5(category || '/' || aggregate_id)::uuid) STORED,
    stream_version bigint NOT NULL,
    event_type text NOT NULL,
    schema_version bigint NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON "{s}".events (stream_key, stream_version);
COMMENT ON COLUMN "{s}".events.global_position IS
    'pg_current_xact_id() << 20 | 1-based index of the event in its append; readers stop at pg_snapshot_xmin << 20 (Orchestrix ADR 0008)';

CREATE TABLE "{s}".snapshots (
    category text NOT NULL,
    aggregate_id text NOT NULL,
    stream_key uuid NOT NULL GENERATED ALWAYS AS (md5(category || '/' || aggregate_id)::uuid) STORED,
    version bigint NOT NULL,
    schema_version bigint NOT NULL,
    state text NOT NULL,
    taken_at timestamptz NOT NULL,
    PRIMARY KEY (stream_key, version)
);

CREATE TABLE "{s}".checkpoints (
    consumer text COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "{s}".key_values (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE "{s}".dead_letters (
    id uuid PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    consumer text NOT NULL,
    event text NOT NULL,
    error text NOT NULL,
    attempts bigint NOT NULL,
    parked_at timestamptz NOT NULL
);
CREATE INDEX dead_letters_consumer ON "{s}".dead_letters (consumer, parked_at, seq);
"#
    )
}

/// The whole schema as one SQL script, for users who apply migrations with
/// their own tooling: creates the schema and the bookkeeping table, and
/// applies every migration that is not recorded there yet, under a
/// transaction-scoped advisory lock. Running it twice is harmless.
fn script(config: &PgConfig) -> String {
    let s = config.schema();
    let mut out = format!(
        "-- Orchestrix PostgreSQL schema `{s}`\nBEGIN;\nSELECT pg_advisory_xact_lock({lock});\n\
         CREATE SCHEMA IF NOT EXISTS \"{s}\";\n{bookkeeping}\n",
        lock = migration_lock_key(s),
        bookkeeping = bookkeeping(s),
    );
    for migration in MIGRATIONS {
        let body = (migration.sql)(s).replace('\'', "''");
        let _ = write!(
            out,
            "DO $orchestrix$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM \"{s}\".schema_migrations WHERE version = {v}) THEN\n    \
             EXECUTE '{body}';\n    INSERT INTO \"{s}\".schema_migrations (version, name) VALUES ({v}, '{name}');\n  \
             END IF;\nEND $orchestrix$;\n",
            v = migration.version,
            name = migration.name,
        );
    }
    out.push_str("COMMIT;\n");
    out
}

/// The table that records applied migrations.
pub(super) fn bookkeeping(s: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{s}\".schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now());"
    )
}

/// The advisory lock key that serializes migrations of one schema (a
/// stable FNV-1a hash of the schema name, so that it is the same from the
/// SQL script and from [`super::PgStore::migrate`]).
pub(super) fn migration_lock_key(schema: &str) -> i64 {
    i64::from_be_bytes(fnv1a(&format!("orchestrix-migrate:{schema}")).to_be_bytes())
}

/// 64-bit FNV-1a.
pub(super) fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The watermark: positions below it belong to transactions that have all
/// finished, so no row can ever appear below it again.
const WATERMARK: &str = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)";

/// The columns of an event row, in the order [`super::event_row`] reads.
const COLUMNS: &str = "global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
                       data::text, metadata::text, recorded_at";

/// What an append statement checks of the stream before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// A new stream: versions start at 1, and the unique index alone
    /// refuses a stream that exists.
    New,
    /// The stream's last version must be `$9`: a point lookup of version
    /// `$9` on the unique index guards the insert of `$9 + 1`, … and the
    /// unique index refuses them if the stream has moved past `$9`. The
    /// cost does not depend on the stream's length or the table's
    /// statistics.
    Exact,
    /// Any version: the stream's last version is looked up and the events
    /// follow it.
    Any,
}

/// The append statement: one statement, one round trip.
///
/// - `check`: see [`Check`].
/// - `single`: bind one event as scalars; otherwise bind the batch as
///   arrays and unnest them.
///
/// Either way the unique `(stream, version)` index arbitrates races: a lost
/// race is a unique violation, never a gap or a duplicate.
fn append_sql(events: &str, stream_match: &str, check: Check, single: bool) -> String {
    if single && check == Check::New {
        // The most common append (one event, a new stream) is the plain
        // single-row INSERT a hand-written program would send.
        return format!(
            "INSERT INTO {events} (global_position, event_id, category, aggregate_id, stream_version, event_type, \
             schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, \
             $4::uuid, $1, $2, 1, $5, $6::int8, $7::text::jsonb, $8::text::jsonb, $3) \
             RETURNING global_position, stream_version"
        );
    }
    let source = if single {
        "(SELECT $4::uuid AS id, $5::text AS event_type, $6::int8 AS schema_version, $7::text AS data, \
         $8::text AS metadata, 1::int8 AS ord) e"
    } else {
        "unnest($4::uuid[], $5::text[], $6::int8[], $7::text[], $8::text[]) WITH ORDINALITY \
         AS e(id, event_type, schema_version, data, metadata, ord)"
    };
    let (with, from, version, filter) = match check {
        Check::New => (String::new(), "", "e.ord".to_owned(), String::new()),
        Check::Exact => (
            String::new(),
            "",
            "$9::int8 + e.ord".to_owned(),
            format!(" WHERE EXISTS (SELECT 1 FROM {events} WHERE {stream_match} AND stream_version = $9::int8)"),
        ),
        Check::Any => (
            format!(
                "WITH cur AS (SELECT COALESCE((SELECT stream_version FROM {events} WHERE {stream_match} \
                 ORDER BY stream_version DESC LIMIT 1), 0) AS v) "
            ),
            "cur, ",
            "cur.v + e.ord".to_owned(),
            String::new(),
        ),
    };
    format!(
        "{with}INSERT INTO {events} (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) \
         SELECT (pg_current_xact_id()::text::bigint << 20) | e.ord, e.id, $1, $2, {version}, e.event_type, \
         e.schema_version, e.data::jsonb, e.metadata::jsonb, $3 FROM {from}{source}{filter} \
         RETURNING global_position, stream_version"
    )
}

/// One part of a multi-stream append (ADR 0018): the batch bound as arrays
/// like [`append_sql`], always checked against the expectation (`$9`: -1
/// any, else the exact version, 0 for no stream), and with `$10` added to
/// each event's index, so that the parts of one transaction get distinct
/// positions `xid8 << 20 | (offset + index)` in the call's order (ADR 0008
/// unchanged: one transaction, one transaction id, indexes below 2^20).
fn append_part_sql(events: &str, stream_match: &str) -> String {
    format!(
        "WITH cur AS (SELECT COALESCE((SELECT stream_version FROM {events} WHERE {stream_match} \
         ORDER BY stream_version DESC LIMIT 1), 0) AS v) \
         INSERT INTO {events} (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) \
         SELECT (pg_current_xact_id()::text::bigint << 20) | ($10::int8 + e.ord), e.id, $1, $2, cur.v + e.ord, \
         e.event_type, e.schema_version, e.data::jsonb, e.metadata::jsonb, $3 \
         FROM cur, unnest($4::uuid[], $5::text[], $6::int8[], $7::text[], $8::text[]) WITH ORDINALITY \
         AS e(id, event_type, schema_version, data, metadata, ord) \
         WHERE $9::int8 < 0 OR cur.v = $9::int8 \
         RETURNING global_position, stream_version"
    )
}

/// The statement of a group commit ([`super::group_commit`], ADR 0024):
/// the events of several appends, each row with its stream, its append's
/// expectation (`-1` any, `0` no stream, else the exact version) and its
/// 1-based index in its append; `WITH ORDINALITY` numbers the rows of the
/// group, which gives the positions. An append expecting an exact version
/// that the snapshot lacks is left out whole (one check for all its rows);
/// everything else is arbitrated by the unique index, as in
/// [`append_sql`].
fn append_group_sql(events: &str) -> String {
    let stream_match = "x.stream_key = md5(e.category || '/' || e.aggregate_id)::uuid \
                        AND x.category = e.category AND x.aggregate_id = e.aggregate_id";
    format!(
        "INSERT INTO {events} (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) \
         SELECT (pg_current_xact_id()::text::bigint << 20) | e.pos, e.id, e.category, e.aggregate_id, \
         CASE WHEN e.expected >= 0 THEN e.expected ELSE COALESCE((SELECT x.stream_version FROM {events} x \
         WHERE {stream_match} ORDER BY x.stream_version DESC LIMIT 1), 0) END + e.ord, \
         e.event_type, e.schema_version, e.data::jsonb, e.metadata::jsonb, e.recorded_at \
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::uuid[], $6::text[], $7::int8[], \
         $8::text[], $9::text[], $10::timestamptz[]) WITH ORDINALITY \
         AS e(category, aggregate_id, expected, ord, id, event_type, schema_version, data, metadata, recorded_at, pos) \
         WHERE e.expected <= 0 OR EXISTS (SELECT 1 FROM {events} x WHERE {stream_match} \
         AND x.stream_version = e.expected) \
         RETURNING global_position, stream_version"
    )
}

/// The latest snapshot of a stream (`$3`: at or before) as a row at
/// position 0, then at most `$4` of its events from the snapshot's version
/// (from 1 without one): a load in one query (ADR 0054).
fn snapshot_and_tail_sql(s: &str, events: &str, stream_match: &str) -> String {
    format!(
        "WITH s AS (SELECT version, schema_version, state, taken_at FROM \"{s}\".snapshots \
             WHERE {stream_match} AND version <= $3 ORDER BY version DESC LIMIT 1) \
             SELECT 0::bigint, NULL::uuid, NULL::text, NULL::text, version, NULL::text, schema_version, state, \
             NULL::text, taken_at FROM s UNION ALL (SELECT {COLUMNS} FROM {events} WHERE {stream_match} \
             AND stream_version >= GREATEST(COALESCE((SELECT version FROM s), 1), 1) \
             ORDER BY stream_version LIMIT $4)"
    )
}

/// Saves a snapshot (replacing one at its version). A snapshot is a cache
/// (ADR 0006): its commit need not wait for the WAL flush (ADR 0054); a
/// crash may lose the latest ones, never keep one whose events are lost.
fn snapshot_save_sql(s: &str) -> String {
    format!(
        "INSERT INTO \"{s}\".snapshots (category, aggregate_id, version, schema_version, state, taken_at) \
             SELECT $1::text, $2::text, $3::bigint, $4::bigint, $5::text, $6::timestamptz \
             FROM (SELECT set_config('synchronous_commit', 'off', true)) unflushed \
             ON CONFLICT (stream_key, version) DO UPDATE SET \
             category = excluded.category, aggregate_id = excluded.aggregate_id, \
             schema_version = excluded.schema_version, state = excluded.state, taken_at = excluded.taken_at"
    )
}

/// The SQL text of every statement, for one schema.
#[derive(Debug)]
pub(super) struct Sql {
    /// The key store's statements.
    pub(super) keys: crate::common::keys::KeySql,
    /// An append after whatever the stream's current version is.
    pub(super) append_any: String,
    /// The same for a single event (no arrays).
    pub(super) append_any_one: String,
    /// An append that expects an exact, non-zero version.
    pub(super) append_exact: String,
    /// The same for a single event.
    pub(super) append_exact_one: String,
    /// An append that creates the stream (versions from 1).
    pub(super) append_new: String,
    /// The same for a single event.
    pub(super) append_new_one: String,
    /// One part of a multi-stream append (positions offset by `$10`).
    pub(super) append_part: String,
    /// The events of a group of appends (group commit).
    pub(super) append_group: String,
    /// Removes a guard's placeholder row (by position) before commit.
    pub(super) guard_release: String,
    pub(super) stream_version: String,
    /// A page of streams (ADR 0041), bytewise (`C`): `$1` type, `$2` id prefix, `$3`/`$4` after, `$5` limit.
    pub(super) list_streams: String,
    pub(super) read_stream: String,
    pub(super) head_and_watermark: String,
    /// The watermark of this statement's snapshot and whether committed
    /// rows wait above it: what a subscription's segment reads below.
    pub(super) watermark: String,
    /// The events from `$1` below `$2` (of the types `$3`, all if NULL), at
    /// most `$4`: a plain range scan, streamed by a subscription.
    pub(super) read_range: String,
    /// `read_range` of the events that also carry every tag of `$5`
    /// (`EventFilter::tags`), which the GIN index on `tags` can find: run
    /// unprepared, so that each read is planned for its tags (ADR 0036).
    pub(super) read_range_tagged: String,
    pub(super) notify: String,
    pub(super) snapshot_save: String,
    pub(super) snapshot_load: String,
    /// The latest snapshot (`$3`: at or before) as a row at position 0,
    /// then at most `$4` events from its version (ADR 0054).
    pub(super) snapshot_and_tail: String,
    pub(super) snapshot_delete: String,
    pub(super) checkpoint_load: String,
    pub(super) checkpoint_save: String,
    pub(super) checkpoint_delete: String,
    /// The consumers' control records (ADR 0050).
    pub(super) control: crate::common::ports::ControlSql,
    pub(super) checkpoint_move: String,
    pub(super) checkpoint_create: String,
    pub(super) kv_get: String,
    pub(super) kv_put: String,
    pub(super) kv_delete: String,
    pub(super) kv_keys: String,
    pub(super) dl_park: String,
    pub(super) dl_list: String,
    pub(super) dl_get: String,
    pub(super) dl_remove: String,
    /// The events whose ids are in `$1` (ADR 0027).
    pub(super) by_ids: String,
    /// The event whose id is `$1`.
    pub(super) by_id: String,
    /// The letters of a dead-letter query ([`dead_letter_where`]).
    pub(super) dl_query: String,
    /// How many letters a dead-letter query selects.
    pub(super) dl_count: String,
    /// Removes the letters a dead-letter query selects.
    pub(super) dl_purge: String,
    /// Removes every letter of the consumer `$1`.
    pub(super) dl_purge_consumer: String,
}

/// The statements of the consumers' control records (ADR 0050).
fn control_sql(s: &str) -> crate::common::ports::ControlSql {
    crate::common::ports::ControlSql {
        load: format!(
            "SELECT pause_requested, paused_by, paused_position, paused_at FROM \"{s}\".consumer_controls \
             WHERE consumer = $1"
        ),
        request: format!(
            "INSERT INTO \"{s}\".consumer_controls AS c (consumer, pause_requested) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET pause_requested = excluded.pause_requested, \
             requested_at = CASE WHEN c.pause_requested = excluded.pause_requested THEN c.requested_at \
             ELSE now() END, \
             paused_by = CASE WHEN c.pause_requested = excluded.pause_requested THEN c.paused_by END, \
             paused_position = CASE WHEN c.pause_requested = excluded.pause_requested \
             THEN c.paused_position END, \
             paused_at = CASE WHEN c.pause_requested = excluded.pause_requested THEN c.paused_at END"
        ),
        ack: format!(
            "UPDATE \"{s}\".consumer_controls SET paused_by = $2, paused_position = $3, paused_at = $4 \
             WHERE consumer = $1 AND pause_requested"
        ),
        clear: format!(
            "UPDATE \"{s}\".consumer_controls SET paused_by = NULL, paused_position = NULL, paused_at = NULL \
             WHERE consumer = $1"
        ),
    }
}

impl Sql {
    pub(super) fn new(s: &str) -> Self {
        let events = format!("\"{s}\".events");
        let stream_match =
            "stream_key = md5($1::text || '/' || $2::text)::uuid AND category = $1 AND aggregate_id = $2";
        Self {
            keys: super::keys::key_sql(s),
            append_any: append_sql(&events, stream_match, Check::Any, false),
            append_any_one: append_sql(&events, stream_match, Check::Any, true),
            append_exact: append_sql(&events, stream_match, Check::Exact, false),
            append_exact_one: append_sql(&events, stream_match, Check::Exact, true),
            append_new: append_sql(&events, stream_match, Check::New, false),
            append_new_one: append_sql(&events, stream_match, Check::New, true),
            append_part: append_part_sql(&events, stream_match),
            append_group: append_group_sql(&events),
            guard_release: format!("DELETE FROM {events} WHERE global_position = $1"),
            stream_version: format!(
                "SELECT stream_version FROM {events} WHERE {stream_match} ORDER BY stream_version DESC LIMIT 1"
            ),
            list_streams: format!(
                "SELECT category, aggregate_id, max(stream_version), count(*), max(global_position) FROM {events} \
                 WHERE ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR left(aggregate_id, length($2)) = $2) \
                 AND ($3::text IS NULL OR category COLLATE \"C\" > $3 OR (category = $3 AND aggregate_id COLLATE \"C\" > $4::text)) \
                 GROUP BY category, aggregate_id ORDER BY category COLLATE \"C\", aggregate_id COLLATE \"C\" LIMIT $5"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {events} WHERE {stream_match} AND stream_version >= $3 \
                 ORDER BY stream_version LIMIT $4"
            ),
            head_and_watermark: format!("SELECT (SELECT max(global_position) FROM {events}), {WATERMARK}"),
            watermark: format!(
                "SELECT m, COALESCE((SELECT max(global_position) FROM {events}) >= m, false) \
                 FROM (SELECT {WATERMARK} AS m) x"
            ),
            read_range: format!(
                "SELECT {COLUMNS} FROM {events} WHERE global_position >= $1 AND global_position < $2 \
                 AND ($3::text[] IS NULL OR event_type = ANY($3)) ORDER BY global_position LIMIT $4"
            ),
            read_range_tagged: format!(
                "SELECT {COLUMNS} FROM {events} WHERE global_position >= $1 AND global_position < $2 \
                 AND ($3::text[] IS NULL OR event_type = ANY($3)) AND tags @> $5::text[] \
                 ORDER BY global_position LIMIT $4"
            ),
            // A notification is a hint, never data: its commit need not
            // wait for the WAL flush that every append's commit waits for
            // (`set_config(..., true)` lasts until the end of this one
            // statement's transaction, its commit included).
            notify: "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')".to_owned(),
            snapshot_save: snapshot_save_sql(s),
            snapshot_load: format!(
                "SELECT version, schema_version, state, taken_at FROM \"{s}\".snapshots WHERE {stream_match} \
                 AND version <= $3 ORDER BY version DESC LIMIT 1"
            ),
            snapshot_and_tail: snapshot_and_tail_sql(s, &events, stream_match),
            snapshot_delete: format!("DELETE FROM \"{s}\".snapshots WHERE {stream_match}"),
            checkpoint_load: format!("SELECT position FROM \"{s}\".checkpoints WHERE consumer = $1"),
            checkpoint_save: format!(
                "INSERT INTO \"{s}\".checkpoints (consumer, position) VALUES ($1, $2) ON CONFLICT (consumer) \
                 DO UPDATE SET position = excluded.position, updated_at = now()"
            ),
            checkpoint_delete: format!("DELETE FROM \"{s}\".checkpoints WHERE consumer = $1"),
            control: control_sql(s),
            checkpoint_move: format!(
                "UPDATE \"{s}\".checkpoints SET position = $2, updated_at = now() WHERE consumer = $1 AND position = $3"
            ),
            checkpoint_create: format!(
                "INSERT INTO \"{s}\".checkpoints (consumer, position) VALUES ($1, $2) ON CONFLICT (consumer) DO NOTHING"
            ),
            kv_get: format!("SELECT value FROM \"{s}\".key_values WHERE key = $1"),
            kv_put: format!(
                "INSERT INTO \"{s}\".key_values (key, value) VALUES ($1, $2) ON CONFLICT (key) \
                 DO UPDATE SET value = excluded.value"
            ),
            kv_delete: format!("DELETE FROM \"{s}\".key_values WHERE key = $1"),
            kv_keys: format!(
                "SELECT key FROM \"{s}\".key_values WHERE starts_with(key, $1) ORDER BY key COLLATE \"C\""
            ),
            dl_park: format!(
                "INSERT INTO \"{s}\".dead_letters (id, consumer, event, error, attempts, parked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET consumer = excluded.consumer, \
                 event = excluded.event, error = excluded.error, attempts = excluded.attempts, \
                 parked_at = excluded.parked_at"
            ),
            dl_list: format!(
                "SELECT id, consumer, event, error, attempts, parked_at FROM \"{s}\".dead_letters \
                 WHERE $1::text IS NULL OR consumer = $1 ORDER BY parked_at, seq"
            ),
            dl_get: format!(
                "SELECT id, consumer, event, error, attempts, parked_at FROM \"{s}\".dead_letters WHERE id = $1"
            ),
            dl_remove: format!("DELETE FROM \"{s}\".dead_letters WHERE id = $1"),
            by_ids: format!("SELECT {COLUMNS} FROM {events} WHERE event_id = ANY($1::uuid[])"),
            by_id: format!("SELECT {COLUMNS} FROM {events} WHERE event_id = $1"),
            dl_query: format!(
                "SELECT id, consumer, event, error, attempts, parked_at FROM \"{s}\".dead_letters WHERE {} \
                 ORDER BY parked_at, seq",
                dead_letter_where()
            ),
            dl_count: format!("SELECT count(*) FROM \"{s}\".dead_letters WHERE {}", dead_letter_where()),
            dl_purge: format!("DELETE FROM \"{s}\".dead_letters WHERE {}", dead_letter_where()),
            dl_purge_consumer: format!("DELETE FROM \"{s}\".dead_letters WHERE consumer = $1"),
        }
    }
}

/// The SQL script that creates (or upgrades) the schema of `config`, for
/// users who apply migrations with their own tooling. It is idempotent and
/// records what it applied in `<schema>.schema_migrations`, exactly as
/// [`PgStore::migrate`] does.
pub fn migration_sql(config: &PgConfig) -> String {
    script(config)
}

impl PgStore {
    /// Creates the schema and tables, or applies the migrations that are
    /// missing; safe to call from many processes at once (they serialize on
    /// an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let s = &self.inner.config.schema;
        let mut tx = self.inner.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(migration_lock_key(s))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"; {}", bookkeeping(s)))
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
}
