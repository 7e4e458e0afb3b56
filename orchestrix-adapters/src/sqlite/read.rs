//! Reads: streams, the global log up to the head, events by id.

use std::sync::Arc;

use chrono::DateTime;
use futures_util::stream::{self, StreamExt};
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, EventStream};
use orchestrix::{StoreError, StreamId};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::{Inner, SqliteStore};
use crate::common::{decode_chunk, decode_rows, map_err, next_cursor, paged, to_i64, EventRow, CHUNK};
#[cfg(doc)]
use orchestrix::store::EventStore;

impl SqliteStore {
    /// [`EventStore::read_stream`]: pages of one stream.
    pub(super) fn read_stream_from<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        let inner = &*self.inner;
        paged(from_version.max(1), move |from| async move {
            let rows = sqlx::query(&inner.sql.read_stream)
                .bind(stream.category())
                .bind(stream.id())
                .bind(to_i64(from))
                .bind(CHUNK)
                .fetch_all(&inner.pool)
                .await;
            // Every row is of `stream`: its id is shared, not rebuilt per row.
            decode_chunk(
                rows,
                CHUNK,
                |row| event_row(row)?.into_record_after(&mut Some(stream.clone())),
                |event| event.stream_version,
            )
        })
    }

    /// [`EventStore::read_all`]: pages of the global log up to the head
    /// taken once at the start.
    pub(super) fn read_all_from<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
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

    /// [`EventStore::read_event`]: the event with this id, if stored.
    pub(super) async fn event_by_id(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        let row = sqlx::query(&self.inner.sql.by_id)
            .bind(id.to_string())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| event_row(&row)?.into_record()).transpose()
    }

    pub(super) async fn fetch_version<'e, E>(&self, executor: E, stream: &StreamId) -> Result<Option<u64>, StoreError>
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

pub(super) fn event_row(row: &SqliteRow) -> Result<EventRow, StoreError> {
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
    pub(super) async fn read_global_chunk(
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

    pub(super) async fn head(&self) -> Result<Option<u64>, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(&self.sql.head).fetch_one(&self.pool).await.map_err(map_err)?;
        Ok(head.and_then(|h| u64::try_from(h).ok()))
    }
}

/// The filter's type names as a JSON array, for `json_each`.
pub(super) fn types_json(filter: &EventFilter) -> Option<String> {
    filter.event_types().map(|types| serde_json::Value::from(types.to_vec()).to_string())
}
