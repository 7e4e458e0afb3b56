//! Appends: one autocommit statement that checks the expected version, or
//! a `BEGIN IMMEDIATE` transaction (any version, several streams), behind
//! the store's writer lock.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::idempotency::answer_retry;
use orchestrix::query::AppendCondition;
use orchestrix::store::{first_conflict, ExpectedVersion, StreamAppend};
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::read::event_row;
use super::SqliteStore;
use crate::common::{map_err, may_be_retry, now_micros, recorded_events, to_i64};
#[cfg(doc)]
use orchestrix::store::EventStore;

impl SqliteStore {
    /// [`EventStore::append`]: one autocommit statement that checks the
    /// expected version, or a `BEGIN IMMEDIATE` transaction for any version.
    pub(super) async fn append_events(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        orchestrix::store::validate_append(&events)?;
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        // The batch as JSON, made only when a statement needs it (not for
        // one event checked in one statement).
        let mut batch = None;
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
            let writer = self.inner.writer.lock().await;
            let result: Result<Vec<(i64, i64)>, _> = if let [event] = events.as_slice() {
                sqlx::query_as(&self.inner.sql.append_checked_one)
                    .bind(stream.category())
                    .bind(stream.id())
                    .bind(to_i64(base))
                    .bind(recorded_at.timestamp_micros())
                    .bind(event.id.to_string())
                    .bind(event.event_type.as_str())
                    .bind(i64::from(event.schema_version))
                    .bind(event.data.get())
                    .bind(metadata_text(event)?)
                    .fetch_all(&self.inner.pool)
                    .await
            } else {
                let rows = json_batch(&events)?.1;
                let result = sqlx::query_as(&self.inner.sql.append_checked)
                    .bind(stream.category())
                    .bind(stream.id())
                    .bind(to_i64(base))
                    .bind(recorded_at.timestamp_micros())
                    .bind(&rows)
                    .fetch_all(&self.inner.pool)
                    .await;
                batch = Some(rows);
                result
            };
            match result {
                Ok(inserted) if inserted.len() == events.len() => {
                    drop(writer);
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
        let batch = match batch {
            Some(batch) => batch,
            None => json_batch(&events)?.1,
        };
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

    /// A multi-stream append in one `BEGIN IMMEDIATE` transaction, checked
    /// against `condition` (if any) and then the parts' expectations; a
    /// failed one may be the retry of a stored one (ADR 0027).
    pub(super) async fn append_checked(
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
}

/// The ids given to `events` and the batch as the JSON array the append
/// statement reads: `[id, type, schema version, data, metadata]` tuples.
fn json_batch(events: &[NewEvent]) -> Result<(Vec<Uuid>, String), StoreError> {
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let mut rows = Vec::with_capacity(events.len());
    for (event, id) in events.iter().zip(&ids) {
        let metadata = metadata_text(event)?;
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

/// An event's metadata as the JSON text its row holds.
fn metadata_text(event: &NewEvent) -> Result<String, StoreError> {
    serde_json::to_string(&event.metadata)
        .map_err(|error| StoreError::InvalidInput(format!("metadata cannot be serialized: {error}")))
}
