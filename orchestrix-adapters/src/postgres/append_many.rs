//! Atomic multi-stream appends on PostgreSQL (ADR 0018): every part in one
//! transaction, so one transaction id, so the global order of ADR 0008
//! holds unchanged.
//!
//! - Each part with events is one checked `INSERT ... SELECT FROM unnest`
//!   (the single-stream statement's shape) whose positions are offset by
//!   the events of the parts before it in the call: the call's events get
//!   positions `xid8 << 20 | 1..=n` in the call's order, consecutive in the
//!   global log and all visible at once when the transaction commits.
//! - A guard (a part without events, expecting `NoStream` or `Exact`)
//!   claims the stream's next version with a placeholder row and deletes
//!   it before commit. The claim holds the unique `(stream, version)` index
//!   entry until commit, so a concurrent append to the guarded stream waits
//!   for this transaction and then succeeds, or this one conflicts: the
//!   guard is checked atomically with the writes, not merely read. No
//!   reader ever sees the placeholder.
//! - Parts execute in the order of their stream names, so two calls over
//!   the same streams take the index entries in the same order and do not
//!   deadlock; a deadlock the server detects anyway is retried.
//! - On a conflict the transaction rolls back, the streams' versions are
//!   read, and the error names the first part (in the call's order) whose
//!   expectation fails; if none fails any more (the race resolved, or an
//!   `Any` part lost one), the whole call is retried.

use std::sync::Arc;

use orchestrix::envelope::RecordedEvent;
use orchestrix::query::AppendCondition;
use orchestrix::store::{first_conflict, validate_append_if, validate_append_many, ExpectedVersion, StreamAppend};
use orchestrix::StoreError;
use serde_json::value::RawValue;
use sqlx::{Postgres, Transaction};

use super::append::{Batch, ANY_RETRIES};
use super::{PgStore, MAX_BATCH};
use crate::common::{is_unique_violation, map_err, may_be_retry, now_micros, recorded_events, to_i64};

/// The event type of a guard's placeholder row; it never commits.
const GUARD_TYPE: &str = "$orchestrix-guard";

/// Why one attempt of a multi-stream append did not commit.
enum Failed {
    /// A part's expectation failed or a race was lost: look at the streams'
    /// versions, then report or retry.
    Conflict,
    /// Anything else: give up.
    Error(StoreError),
}

impl From<sqlx::Error> for Failed {
    fn from(error: sqlx::Error) -> Self {
        // 40P01: deadlock detected (a victim of a cycle; retried).
        let deadlock =
            error.as_database_error().and_then(sqlx::error::DatabaseError::code).is_some_and(|code| code == "40P01");
        if is_unique_violation(&error) || deadlock {
            Self::Conflict
        } else {
            Self::Error(map_err(error))
        }
    }
}

impl PgStore {
    /// [`orchestrix::store::EventStore::append_many`] for PostgreSQL.
    ///
    /// With a `condition` ([`orchestrix::store::EventStore::append_if`]), the
    /// transaction first locks and checks it ([`super::dcb`]).
    pub(super) async fn append_many_in_one_transaction(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        match condition {
            Some(condition) => validate_append_if(condition, &appends)?,
            None => validate_append_many(&appends)?,
        }
        let guards = appends.iter().filter(|a| a.is_guard() && a.expected != ExpectedVersion::Any).count();
        let total = appends.iter().map(|a| a.events.len()).sum::<usize>() + guards;
        if total > MAX_BATCH {
            return Err(StoreError::InvalidInput(format!(
                "a multi-stream append of {total} events and guards is too large; the limit is {MAX_BATCH}"
            )));
        }
        if appends.is_empty() && condition.is_none_or(|condition| condition.query.is_empty()) {
            return Ok(Vec::new());
        }
        let batches = appends.iter().map(|a| Batch::new(&a.events)).collect::<Result<Vec<_>, _>>()?;
        let recorded_at = now_micros();
        // Execution order: by stream name, so that concurrent calls over
        // the same streams lock them in the same order.
        let mut order: Vec<usize> = (0..appends.len()).collect();
        order.sort_by(|&a, &b| appends[a].stream.cmp(&appends[b].stream));
        for _ in 0..ANY_RETRIES {
            match self.try_append_many(&appends, &batches, &order, recorded_at, condition).await {
                Ok(rows) => {
                    let ids: Vec<_> = batches.iter().map(|batch| batch.ids.clone()).collect();
                    drop(batches);
                    if rows.iter().any(|rows| !rows.is_empty()) {
                        self.wake_local();
                    }
                    return Ok(appends
                        .into_iter()
                        .zip(rows)
                        .zip(ids)
                        .map(|((append, rows), ids)| {
                            recorded_events(&append.stream, recorded_at, rows, append.events, ids)
                        })
                        .collect());
                }
                Err(Failed::Error(error)) if may_be_retry(&error) => {
                    let parts: Vec<_> = appends.iter().map(|a| (&a.stream, a.events.as_slice())).collect();
                    return self.retried(&parts).await?.ok_or(error);
                }
                Err(Failed::Error(error)) => return Err(error),
                Err(Failed::Conflict) => {
                    // A retry of a stored call (ADR 0027), or a conflict.
                    let parts: Vec<_> = appends.iter().map(|a| (&a.stream, a.events.as_slice())).collect();
                    if let Some(answer) = self.retried(&parts).await? {
                        return Ok(answer);
                    }
                    let mut actual = Vec::with_capacity(appends.len());
                    for append in &appends {
                        actual.push(self.fetch_version(&append.stream).await?);
                    }
                    if let Some(conflict) = first_conflict(&appends, &actual) {
                        return Err(conflict);
                    }
                }
            }
        }
        Err(StoreError::Backend(
            format!("a multi-stream append of {} streams lost {ANY_RETRIES} races in a row; try again", appends.len())
                .into(),
        ))
    }

    /// One attempt: every part in one transaction, committed only if every
    /// expectation held. Returns the `(position, version)` rows per part.
    async fn try_append_many(
        &self,
        appends: &[StreamAppend],
        batches: &[Batch<'_>],
        order: &[usize],
        recorded_at: chrono::DateTime<chrono::Utc>,
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<Vec<(i64, i64)>>, Failed> {
        // Offsets in the call's order: events first, then guard claims.
        let mut offsets = Vec::with_capacity(appends.len());
        let mut next = 0_usize;
        for append in appends {
            offsets.push(next);
            next += append.events.len();
        }
        let mut tx = self.inner.pool.begin().await?;
        if let Some(condition) = condition {
            if let Some(position) = self.check_condition(&mut tx, condition, appends).await? {
                return Err(Failed::Error(super::dcb::condition_failed(position, condition)));
            }
        }
        let mut rows = vec![Vec::new(); appends.len()];
        let mut claims = Vec::new();
        for &index in order {
            let append = &appends[index];
            let expected = match append.expected {
                ExpectedVersion::Any if append.is_guard() => continue,
                ExpectedVersion::Any => -1,
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(v) => to_i64(v),
            };
            let placeholder;
            let (batch, offset) = if append.is_guard() {
                placeholder = Batch::placeholder();
                next += 1;
                (&placeholder, next - 1)
            } else {
                (&batches[index], offsets[index])
            };
            let written = self.insert_part(&mut tx, append, batch, expected, offset, recorded_at).await?;
            let wanted = if append.is_guard() { 1 } else { append.events.len() };
            if written.len() != wanted {
                return Err(Failed::Conflict); // the expectation failed; dropping `tx` rolls back
            }
            if append.is_guard() {
                claims.push(to_i64(offset as u64 + 1));
            } else {
                rows[index] = written;
            }
        }
        if !claims.is_empty() {
            let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint").fetch_one(&mut *tx).await?;
            for index in claims {
                sqlx::query(&self.inner.sql.guard_release).bind((xid << 20) | index).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(rows)
    }

    async fn insert_part(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        append: &StreamAppend,
        batch: &Batch<'_>,
        expected: i64,
        offset: usize,
        recorded_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        sqlx::query_as(&self.inner.sql.append_part)
            .bind(append.stream.category())
            .bind(append.stream.id())
            .bind(recorded_at)
            .bind(&batch.ids)
            .bind(&batch.types)
            .bind(&batch.schemas)
            .bind(&batch.data)
            .bind(&batch.metadata)
            .bind(expected)
            .bind(to_i64(offset as u64))
            .fetch_all(&mut **tx)
            .await
    }
}

impl Batch<'static> {
    /// The one row a guard claims: deleted again before its transaction
    /// commits, so nobody ever reads it.
    fn placeholder() -> Self {
        static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(|| RawValue::from_string("{}".to_owned()).expect("valid JSON"));
        Batch {
            ids: vec![uuid::Uuid::now_v7()],
            types: vec![GUARD_TYPE],
            schemas: vec![1],
            data: vec![empty.get()],
            metadata: vec!["{}".to_owned()],
        }
    }
}
