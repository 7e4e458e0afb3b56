//! Appends that are safe to retry on PostgreSQL (ADR 0027).
//!
//! - Migration 4 adds a unique index on `events.event_id`: ids are unique
//!   across the store. Ids are UUID v7 by default (and the command bus's
//!   derived ids keep the command id's timestamp), so new entries land at
//!   the right edge of the B-tree, like the primary key's.
//! - An append looks its ids up only when it failed (its expectation or
//!   condition did not hold, or a unique index refused a row): then
//!   [`orchestrix::idempotency::answer_retry`] decides whether it is the
//!   retry of a stored append (answered with the stored events), a partial
//!   repeat ([`orchestrix::StoreError::DuplicateEventId`]) or a plain
//!   failure. An append that succeeds pays only the index entry.
//! - Group commit needs nothing more: a group whose statement hits the
//!   index fails whole, and each of its appends runs again alone, where
//!   the lookup above answers it.

use std::collections::HashMap;
use std::sync::Arc;

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::idempotency::answer_retry;
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::read::event_row;
use super::PgStore;
use crate::common::map_err;

impl PgStore {
    /// The answer to an append of `parts` that failed: the stored events
    /// if it is a retry, `None` if none of its ids is stored.
    pub(super) async fn retried(
        &self,
        parts: &[(&StreamId, &[NewEvent])],
    ) -> Result<Option<Vec<Vec<Arc<RecordedEvent>>>>, StoreError> {
        let ids: Vec<Uuid> = parts.iter().flat_map(|(_, events)| events.iter()).map(|event| event.id).collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let rows = sqlx::query(&self.inner.sql.by_ids).bind(&ids).fetch_all(&self.inner.pool).await.map_err(map_err)?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let record = event_row(row)?.into_record()?;
            stored.insert(record.id, record);
        }
        answer_retry(parts, |id| stored.get(&id).cloned())
    }

    /// [`orchestrix::store::EventStore::read_event`]: one lookup in the id index.
    pub(super) async fn event_by_id(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        let row =
            sqlx::query(&self.inner.sql.by_id).bind(id).fetch_optional(&self.inner.pool).await.map_err(map_err)?;
        row.map(|row| event_row(&row)?.into_record()).transpose()
    }
}
