//! The SQLite snapshot, checkpoint, key-value and dead-letter stores.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::store::{
    CheckpointStore, DeadLetter, DeadLetterQuery, DeadLetterStore, KeyValueStore, Snapshot, SnapshotStore,
};
use orchestrix::{StoreError, StreamId};
use sqlx::Row;
use uuid::Uuid;

use super::SqliteStore;
use crate::common::{checkpoint_from_sql, checkpoint_to_sql, map_err, snapshot_from_row, to_i64, validate_key};

fn time_from_micros(micros: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Backend(format!("{what}: time {micros} is out of range").into()))
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.snapshot_save)
            .bind(snapshot.stream.category())
            .bind(snapshot.stream.id())
            .bind(to_i64(snapshot.version))
            .bind(i64::from(snapshot.schema_version))
            .bind(snapshot.state.get())
            .bind(snapshot.taken_at.timestamp_micros())
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i64, String, i64)> = sqlx::query_as(&self.inner.sql.snapshot_load)
            .bind(stream.category())
            .bind(stream.id())
            .bind(at_or_before.map_or(i64::MAX, to_i64))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        let Some((version, schema_version, state, taken_at)) = row else { return Ok(None) };
        let Some(taken_at) = DateTime::from_timestamp_micros(taken_at) else {
            return Err(StoreError::Corrupt {
                stream: stream.clone(),
                version: u64::try_from(version).unwrap_or(0),
                reason: format!("snapshot: time {taken_at} is out of range"),
            });
        };
        snapshot_from_row(stream, version, schema_version, state, taken_at).map(Some)
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.snapshot_delete)
            .bind(stream.category())
            .bind(stream.id())
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        validate_key("consumer name", consumer)?;
        let position: Option<i64> = sqlx::query_scalar(&self.inner.sql.checkpoint_load)
            .bind(consumer)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(position.map(checkpoint_from_sql))
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError> {
        validate_key("consumer name", consumer)?;
        sqlx::query(&self.inner.sql.checkpoint_save)
            .bind(consumer)
            .bind(checkpoint_to_sql(position))
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete(&self, consumer: &str) -> Result<(), StoreError> {
        validate_key("consumer name", consumer)?;
        sqlx::query(&self.inner.sql.checkpoint_delete)
            .bind(consumer)
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl KeyValueStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key("key", key)?;
        let value: Option<Vec<u8>> = sqlx::query_scalar(&self.inner.sql.kv_get)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(value.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        validate_key("key", key)?;
        sqlx::query(&self.inner.sql.kv_put)
            .bind(key)
            .bind(value.as_ref())
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        validate_key("key", key)?;
        let done = sqlx::query(&self.inner.sql.kv_delete).bind(key).execute(&self.inner.pool).await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_key("key prefix", prefix)?;
        sqlx::query_scalar(&self.inner.sql.kv_keys).bind(prefix).fetch_all(&self.inner.pool).await.map_err(map_err)
    }
}

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        validate_key("consumer name", &letter.consumer)?;
        let event = serde_json::to_string(&letter.event).map_err(|error| {
            StoreError::InvalidInput(format!("the dead letter's event cannot be serialized: {error}"))
        })?;
        sqlx::query(&self.inner.sql.dl_park)
            .bind(letter.id.to_string())
            .bind(&letter.consumer)
            .bind(event)
            .bind(&letter.error)
            .bind(i64::from(letter.attempts))
            .bind(letter.parked_at.timestamp_micros())
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let rows =
            sqlx::query(&self.inner.sql.dl_list).bind(consumer).fetch_all(&self.inner.pool).await.map_err(map_err)?;
        rows.iter().map(letter_from_row).collect()
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        let row = sqlx::query(&self.inner.sql.dl_get)
            .bind(id.to_string())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(letter_from_row).transpose()
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.inner.sql.dl_remove)
            .bind(id.to_string())
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }
    async fn query(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = bind_query(&self.inner.sql.dl_query, query).fetch_all(&self.inner.pool).await.map_err(map_err)?;
        rows.iter().map(letter_from_row).collect()
    }

    async fn count(&self, query: &DeadLetterQuery) -> Result<u64, StoreError> {
        let row = bind_query(&self.inner.sql.dl_count, query).fetch_one(&self.inner.pool).await.map_err(map_err)?;
        let count: i64 = row.try_get(0).map_err(map_err)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64, StoreError> {
        let done = bind_query(&self.inner.sql.dl_purge, query).execute(&self.inner.pool).await.map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

/// `sql` (a dead-letter query's statement) with the query's conditions bound.
fn bind_query<'q>(
    sql: &'q str,
    query: &DeadLetterQuery,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(sql)
        .bind(query.consumer.clone())
        .bind(query.stream.as_ref().map(|stream| stream.category().to_owned()))
        .bind(query.stream.as_ref().map(|stream| stream.id().to_owned()))
        .bind(query.reason.clone())
        .bind(query.parked_before.map(|before| before.timestamp_micros()))
}

fn letter_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<DeadLetter, StoreError> {
    let id: String = row.try_get(0).map_err(map_err)?;
    let event: String = row.try_get(2).map_err(map_err)?;
    let attempts: i64 = row.try_get(4).map_err(map_err)?;
    let parked_at: i64 = row.try_get(5).map_err(map_err)?;
    let bad = |what: String| StoreError::Backend(format!("corrupt dead letter {id}: {what}").into());
    Ok(DeadLetter::new(
        Uuid::parse_str(&id).map_err(|error| bad(format!("id: {error}")))?,
        row.try_get::<String, _>(1).map_err(map_err)?,
        serde_json::from_str(&event).map_err(|error| bad(format!("event: {error}")))?,
        row.try_get::<String, _>(3).map_err(map_err)?,
        u32::try_from(attempts).map_err(|_| bad(format!("attempts {attempts} out of range")))?,
        time_from_micros(parked_at, "dead letter")?,
    ))
}
