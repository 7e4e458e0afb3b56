//! What both SQL adapters share: error mapping, input validation, paging
//! and decoding rows into records; the snapshot, checkpoint, key-value and
//! dead-letter ports ([`ports`]) and the key store ([`keys`]).

pub(crate) mod keys;
pub(crate) mod ports;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::stream::{self, StreamExt};
use orchestrix::envelope::{Metadata, NewEvent, RecordedEvent};
use orchestrix::event::validate_event_type;
use orchestrix::retry::RetryPolicy;
use orchestrix::store::{EventStream, Snapshot};
use orchestrix::{StoreError, StreamId};
use serde_json::value::RawValue;
use uuid::Uuid;

/// How long a subscription of the SQL adapters waits after its
/// `outages`-th [`StoreError::Unavailable`] in a row before it reads
/// again: 50 ms, doubling up to 2 s, without jitter; it never gives up
/// (the consumer ends the stream by dropping it).
pub(crate) fn outage_pause(outages: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(2);
    RetryPolicy::exponential(u32::MAX, Duration::from_millis(50))
        .with_max_delay(MAX)
        .with_jitter(0.0)
        .delay_after(outages)
        .unwrap_or(MAX)
}

/// How many rows one keyset-paginated read fetches at a time.
pub(crate) const CHUNK: i64 = 512;

/// The longest consumer name or key the SQL stores accept, in bytes (it is
/// a primary key, and PostgreSQL b-tree entries are limited to ~2.7 kB).
pub(crate) const MAX_KEY_LEN: usize = 2048;

/// Maps a driver error to the port's typed error: lost connections, I/O
/// and pool timeouts are [`StoreError::Unavailable`] (retry later), the rest
/// [`StoreError::Backend`].
pub(crate) fn map_err(error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable(Box::new(error))
    } else if let Some(db) = error.as_database_error().filter(|db| db.code().as_deref() == Some("22P05")) {
        // PostgreSQL refuses `\u0000` inside jsonb strings.
        StoreError::InvalidInput(format!("the data cannot be stored: {}", db.message()))
    } else {
        StoreError::Backend(Box::new(error))
    }
}

/// Whether `error` means the database could not be reached or is going
/// away (retry later), rather than that it refused the request.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections;
            // SQLite 5/6: busy, locked.
            code.starts_with("08") || code.starts_with("57P0") || code == "53300" || code == "5" || code == "6"
        }),
        _ => false,
    }
}

/// Whether `error` is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Whether an append that failed with `error` may be the retry of one that
/// was stored (ADR 0027): a version conflict, a failed condition or a
/// unique violation (the event id's index, or a race for a version). Only
/// then do the adapters look the append's event ids up, so the check costs
/// nothing on the path of an append that succeeds.
pub(crate) fn may_be_retry(error: &StoreError) -> bool {
    match error {
        StoreError::WrongExpectedVersion { .. } | StoreError::ConditionFailed { .. } => true,
        StoreError::Backend(source) => source.downcast_ref::<sqlx::Error>().is_some_and(is_unique_violation),
        _ => false,
    }
}

/// Checks a schema name or table prefix: lowercase ASCII letters, digits
/// and `_`, starting with a letter or `_`, at most `max` bytes. Anything
/// else is refused, so names are safe to splice into SQL.
pub(crate) fn validate_identifier(what: &str, name: &str, max: usize, allow_empty: bool) -> Result<(), StoreError> {
    if name.is_empty() && allow_empty {
        return Ok(());
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= max {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "{what} `{}` is not a valid identifier: use 1 to {max} lowercase ASCII letters, digits and `_`, \
             not starting with a digit",
            name.escape_debug()
        )))
    }
}

/// Refuses consumer names and keys that are empty-safe but too long or
/// contain NUL (which SQL text cannot hold).
pub(crate) fn validate_key(what: &str, key: &str) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::InvalidInput(format!(
            "{what} is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(StoreError::InvalidInput(format!("{what} contains a NUL character")));
    }
    Ok(())
}

/// A `u64` position or version as the `bigint` SQL stores; values past
/// `i64::MAX` (never assigned) clamp to it.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A checkpoint (any `u64`) stored bit for bit in a `bigint`.
pub(crate) fn checkpoint_to_sql(position: u64) -> i64 {
    i64::from_be_bytes(position.to_be_bytes())
}

/// The inverse of [`checkpoint_to_sql`].
pub(crate) fn checkpoint_from_sql(stored: i64) -> u64 {
    u64::from_be_bytes(stored.to_be_bytes())
}

/// The current time at the microsecond precision both databases keep, so
/// that what an append returns equals what a read returns.
pub(crate) fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The events of an append as recorded, from the `(global_position,
/// stream_version)` rows the INSERT returned (in any order), the events
/// in batch order and the ids the adapter gave them.
pub(crate) fn recorded_events(
    stream: &StreamId,
    recorded_at: DateTime<Utc>,
    mut rows: Vec<(i64, i64)>,
    events: Vec<NewEvent>,
    ids: Vec<Uuid>,
) -> Vec<Arc<RecordedEvent>> {
    rows.sort_unstable_by_key(|&(_, version)| version);
    rows.into_iter()
        .zip(events)
        .zip(ids)
        .map(|(((position, version), event), id)| {
            Arc::new(RecordedEvent::new(
                event.with_id(id),
                stream.clone(),
                u64::try_from(version).unwrap_or(0),
                u64::try_from(position).unwrap_or(0),
                recorded_at,
            ))
        })
        .collect()
}

/// An event row as read from either database, before validation.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub(crate) global_position: i64,
    pub(crate) event_id: Uuid,
    pub(crate) category: String,
    pub(crate) aggregate_id: String,
    pub(crate) stream_version: i64,
    pub(crate) event_type: String,
    pub(crate) schema_version: i64,
    pub(crate) data: String,
    pub(crate) metadata: String,
    pub(crate) recorded_at: DateTime<Utc>,
}

impl EventRow {
    /// Validates the row into a record; anything a hand-made row can get
    /// wrong is [`StoreError::Corrupt`] naming the stream and version.
    pub(crate) fn into_record(self) -> Result<Arc<RecordedEvent>, StoreError> {
        self.into_record_after(&mut None)
    }

    /// [`EventRow::into_record`] for a row read after one of stream
    /// `previous`: rows of the same stream share its id (no allocation, no
    /// second validation), which is most rows of a read of the global log,
    /// as appends write their events next to each other. `previous`
    /// becomes this row's stream.
    pub(crate) fn into_record_after(self, previous: &mut Option<StreamId>) -> Result<Arc<RecordedEvent>, StoreError> {
        let stream = match previous {
            Some(stream) if stream.category() == self.category && stream.id() == self.aggregate_id => stream.clone(),
            _ => {
                let stream = StreamId::new(self.category, self.aggregate_id).map_err(|error| {
                    StoreError::Backend(
                        format!("corrupt stream id in the row at global position {}: {error}", self.global_position)
                            .into(),
                    )
                })?;
                *previous = Some(stream.clone());
                stream
            }
        };
        let corrupt = |version: u64, reason: String| StoreError::Corrupt { stream: stream.clone(), version, reason };
        let version = u64::try_from(self.stream_version)
            .ok()
            .filter(|&v| v >= 1)
            .ok_or_else(|| corrupt(0, format!("stream version {} is not positive", self.stream_version)))?;
        let global_position = u64::try_from(self.global_position)
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| corrupt(version, format!("global position {} is not positive", self.global_position)))?;
        let schema_version = u32::try_from(self.schema_version)
            .map_err(|_| corrupt(version, format!("schema version {} is out of range", self.schema_version)))?;
        let data =
            RawValue::from_string(self.data).map_err(|error| corrupt(version, format!("data is not JSON: {error}")))?;
        // Events without metadata are common (and `{}` is how they are
        // stored): no parse for them.
        let metadata: Metadata = if self.metadata == "{}" {
            Metadata::default()
        } else {
            serde_json::from_str(&self.metadata)
                .map_err(|error| corrupt(version, format!("metadata is not valid: {error}")))?
        };
        validate_event_type(&self.event_type).map_err(|error| corrupt(version, error.to_string()))?;
        let event = NewEvent::from_parts(self.event_id, self.event_type, schema_version, data, metadata);
        Ok(Arc::new(RecordedEvent::new(event, stream, version, global_position, self.recorded_at)))
    }
}

/// A lazily read, keyset-paginated stream: `fetch` gets a cursor and
/// returns a chunk of events, then either the next cursor (`None`: the
/// end) or the error that cut the chunk short. The events before an error
/// are delivered, then the error, then the stream ends.
pub(crate) fn paged<'a, C, F, Fut>(first: C, fetch: F) -> EventStream<'a>
where
    C: Send + 'a,
    F: FnMut(C) -> Fut + Send + 'a,
    Fut: Future<Output = (Vec<Arc<RecordedEvent>>, Result<Option<C>, StoreError>)> + Send + 'a,
{
    stream::unfold((Some(first), fetch), |(cursor, mut fetch)| async move {
        let cursor = cursor?;
        let (events, next) = fetch(cursor).await;
        let (next, error) = match next {
            Ok(next) => (next, None),
            Err(error) => (None, Some(error)),
        };
        let items = events.into_iter().map(Ok).chain(error.map(Err));
        Some((stream::iter(items), (next, fetch)))
    })
    .flatten()
    .boxed()
}

/// Decodes rows in order up to the first bad one: the good records, and
/// the error that stopped the decoding.
pub(crate) fn decode_rows<R>(
    rows: &[R],
    decode: impl Fn(&R) -> Result<Arc<RecordedEvent>, StoreError>,
) -> (Vec<Arc<RecordedEvent>>, Option<StoreError>) {
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        match decode(row) {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

/// The cursor after a chunk of at most `limit` events: past its last event,
/// or `None` when the chunk was the last.
pub(crate) fn next_cursor(
    events: &[Arc<RecordedEvent>],
    limit: i64,
    key: impl Fn(&RecordedEvent) -> u64,
) -> Option<u64> {
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
    events.last().filter(|_| full).map(|last| key(last) + 1)
}

/// A chunk of a paginated read (at most `limit` rows, or the error that
/// fetched none): its records up to the first bad row, and the cursor after
/// it ([`next_cursor`] by `key`) or the decoding error.
pub(crate) fn decode_chunk<R>(
    rows: Result<Vec<R>, sqlx::Error>,
    limit: i64,
    decode: impl Fn(&R) -> Result<Arc<RecordedEvent>, StoreError>,
    key: impl Fn(&RecordedEvent) -> u64,
) -> (Vec<Arc<RecordedEvent>>, Result<Option<u64>, StoreError>) {
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => return (Vec::new(), Err(map_err(error))),
    };
    match decode_rows(&rows, decode) {
        (events, Some(error)) => (events, Err(error)),
        (events, None) => {
            let next = next_cursor(&events, limit, key);
            (events, Ok(next))
        }
    }
}

/// Folds the count of forgotten subjects and the time of the latest forget
/// into the one number `KeyStore::erasure_mark` returns: a forget adds a
/// row with a later time, a re-admission removes one.
pub(crate) fn fold_mark(count: i64, latest: i64) -> u64 {
    u64::from_ne_bytes(count.to_ne_bytes()).rotate_left(40) ^ u64::from_ne_bytes(latest.to_ne_bytes())
}

/// Validates a snapshot row; a bad one is [`StoreError::Corrupt`].
pub(crate) fn snapshot_from_row(
    stream: &StreamId,
    version: i64,
    schema_version: i64,
    state: String,
    taken_at: DateTime<Utc>,
) -> Result<Snapshot, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        stream: stream.clone(),
        version: u64::try_from(version).unwrap_or(0),
        reason: format!("snapshot: {reason}"),
    };
    let version_u64 = u64::try_from(version).map_err(|_| corrupt(format!("version {version} is negative")))?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| corrupt(format!("schema version {schema_version} is out of range")))?;
    let state = RawValue::from_string(state).map_err(|error| corrupt(format!("state is not JSON: {error}")))?;
    Ok(Snapshot::new(stream.clone(), version_u64, schema_version, state, taken_at))
}

/// A row of the grouped stream listing (type, id, version, count, last
/// position) as an [`orchestrix::store::StreamSummary`]; a stored name
/// that is no stream id is a [`StoreError::Backend`] error.
pub(crate) fn stream_summary(
    (category, id, version, events, last): (String, String, i64, i64, i64),
) -> Result<orchestrix::store::StreamSummary, StoreError> {
    let stream = StreamId::new(category, id)
        .map_err(|e| StoreError::backend(format!("a stored stream name is not a stream id: {e}")))?;
    let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(orchestrix::store::StreamSummary::new(stream, unsigned(version), unsigned(events), unsigned(last)))
}

/// The parameters of the grouped stream listing, in its order: type, id
/// prefix, after (type, id), limit.
pub(crate) fn listing_params(
    listing: &orchestrix::store::StreamListing,
) -> (Option<&str>, Option<&str>, Option<&str>, Option<&str>, i64) {
    let after = listing.after_stream();
    (
        listing.category(),
        listing.id_prefix(),
        after.map(StreamId::category),
        after.map(StreamId::id),
        i64::try_from(listing.limit()).unwrap_or(i64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_hostile_names() {
        for bad in [
            "",
            "Public",
            "1abc",
            "a-b",
            "a b",
            "x\"; DROP SCHEMA public CASCADE; --",
            "é",
            "a\0b",
            "tab\tle",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(validate_identifier("schema", bad, 48, false), Err(StoreError::InvalidInput(_))),
                "{bad:?} was accepted"
            );
        }
        for good in ["orchestrix", "_x", "tenant_42", &"a".repeat(48)] {
            assert!(validate_identifier("schema", good, 48, false).is_ok(), "{good:?} was refused");
        }
        assert!(validate_identifier("prefix", "", 32, true).is_ok());
    }

    #[test]
    fn corrupt_rows_name_stream_and_version() {
        let row = EventRow {
            global_position: 7,
            event_id: Uuid::now_v7(),
            category: "Account".to_owned(),
            aggregate_id: "1".to_owned(),
            stream_version: 3,
            event_type: "Opened".to_owned(),
            schema_version: 1,
            data: "{not json".to_owned(),
            metadata: "{}".to_owned(),
            recorded_at: Utc::now(),
        };
        match row.into_record() {
            Err(StoreError::Corrupt { stream, version, .. }) => {
                assert_eq!(stream.to_string(), "Account/1");
                assert_eq!(version, 3);
            }
            other => panic!("expected Corrupt, found {other:?}"),
        }
    }

    #[test]
    fn outage_pauses_double_from_50_ms_up_to_2_s() {
        let pauses: Vec<u128> = (1..=8).map(|outages| super::outage_pause(outages).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(super::outage_pause(u32::MAX), std::time::Duration::from_secs(2));
    }
}
