//! The PostgreSQL snapshot, checkpoint, key-value and dead-letter stores.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::store::ExpectedVersion;
use orchestrix::store::{
    CheckpointStore, DeadLetter, DeadLetterQuery, DeadLetterStore, KeyValueStore, Snapshot, SnapshotStore,
};
use orchestrix::{StoreError, StreamId};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::PgStore;
use crate::common::{checkpoint_from_sql, checkpoint_to_sql, map_err, snapshot_from_row, to_i64, validate_key};

#[async_trait]
impl SnapshotStore for PgStore {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.snapshot_save)
            .bind(snapshot.stream.category())
            .bind(snapshot.stream.id())
            .bind(to_i64(snapshot.version))
            .bind(i64::from(snapshot.schema_version))
            .bind(snapshot.state.get())
            .bind(snapshot.taken_at)
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, i64, String, DateTime<Utc>)> = sqlx::query_as(&self.inner.sql.snapshot_load)
            .bind(stream.category())
            .bind(stream.id())
            .bind(at_or_before.map_or(i64::MAX, to_i64))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        let Some((version, schema_version, state, taken_at)) = row else { return Ok(None) };
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
impl CheckpointStore for PgStore {
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
impl KeyValueStore for PgStore {
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
impl DeadLetterStore for PgStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError> {
        park_query(&self.inner.sql.dl_park, &letter)?.execute(&self.inner.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let rows =
            sqlx::query(&self.inner.sql.dl_list).bind(consumer).fetch_all(&self.inner.pool).await.map_err(map_err)?;
        rows.iter().map(letter_from_row).collect()
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        let row =
            sqlx::query(&self.inner.sql.dl_get).bind(id).fetch_optional(&self.inner.pool).await.map_err(map_err)?;
        row.as_ref().map(letter_from_row).transpose()
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.inner.sql.dl_remove).bind(id).execute(&self.inner.pool).await.map_err(map_err)?;
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
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(query.consumer.clone())
        .bind(query.stream.as_ref().map(|stream| stream.category().to_owned()))
        .bind(query.stream.as_ref().map(|stream| stream.id().to_owned()))
        .bind(query.reason.as_ref().map(|reason| reason.replace('\0', "\u{fffd}")))
        .bind(query.parked_before)
}

fn letter_from_row(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, StoreError> {
    let id: Uuid = row.try_get(0).map_err(map_err)?;
    let event: String = row.try_get(2).map_err(map_err)?;
    let attempts: i64 = row.try_get(4).map_err(map_err)?;
    let bad = |what: String| StoreError::Backend(format!("corrupt dead letter {id}: {what}").into());
    Ok(DeadLetter::new(
        id,
        row.try_get::<String, _>(1).map_err(map_err)?,
        serde_json::from_str(&event).map_err(|error| bad(format!("event: {error}")))?,
        row.try_get::<String, _>(3).map_err(map_err)?,
        u32::try_from(attempts).map_err(|_| bad(format!("attempts {attempts} out of range")))?,
        row.try_get(5).map_err(map_err)?,
    ))
}

/// The statement that parks `letter` (replacing one with the same id),
/// ready to run on the pool or inside a transaction.
pub(super) fn park_query<'q>(
    sql: &'q str,
    letter: &DeadLetter,
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>, StoreError> {
    validate_key("consumer name", &letter.consumer)?;
    let event = serde_json::to_string(&letter.event)
        .map_err(|error| StoreError::InvalidInput(format!("the dead letter's event cannot be serialized: {error}")))?;
    Ok(sqlx::query(sql)
        .bind(letter.id)
        .bind(letter.consumer.clone())
        .bind(event)
        .bind(letter.error.replace('\0', "\u{fffd}"))
        .bind(i64::from(letter.attempts))
        .bind(letter.parked_at))
}

impl PgStore {
    /// Begins a transaction on the store's pool: the unit in which a
    /// projection updates a read model in this database and records its
    /// checkpoint with [`PgStore::save_checkpoint_in`], so that both commit
    /// or neither does (exactly-once effect).
    ///
    /// ```no_run
    /// # use orchestrix_adapters::postgres::PgStore;
    /// # #[allow(dead_code)]
    /// # async fn project(store: &PgStore, position: u64) -> Result<(), orchestrix::StoreError> {
    /// let mut tx = store.begin().await?;
    /// sqlx::query("UPDATE totals SET n = n + 1").execute(&mut *tx).await.map_err(orchestrix::StoreError::backend)?;
    /// store.save_checkpoint_in(&mut tx, "totals", Some(position - 1), position).await?;
    /// tx.commit().await.map_err(orchestrix::StoreError::backend)?;
    /// # Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.inner.pool.begin().await.map_err(map_err)
    }

    /// Moves `consumer`'s checkpoint from `expected` (what the runner
    /// loaded when it started; `None`: no checkpoint yet) to `position`
    /// inside `tx`: it commits with whatever else `tx` writes.
    ///
    /// The move is conditional, which fences off a runner that died with a
    /// commit still in flight: if that commit lands after a successor loaded
    /// the checkpoint, the successor's move finds the checkpoint moved (it
    /// waits for the zombie's row lock first) and fails with
    /// [`StoreError::WrongExpectedVersion`] on the pseudo-stream
    /// `$checkpoint/<consumer>`; rolling back and reloading then skips the
    /// events the zombie applied. Without the fence a read model could count
    /// an event twice.
    pub async fn save_checkpoint_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        consumer: &str,
        expected: Option<u64>,
        position: u64,
    ) -> Result<(), StoreError> {
        crate::common::validate_key("consumer name", consumer)?;
        let new = crate::common::checkpoint_to_sql(position);
        let moved = match expected {
            Some(previous) => sqlx::query(&self.inner.sql.checkpoint_move)
                .bind(consumer)
                .bind(new)
                .bind(crate::common::checkpoint_to_sql(previous)),
            None => sqlx::query(&self.inner.sql.checkpoint_create).bind(consumer).bind(new),
        }
        .execute(&mut **tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if moved == 1 {
            return Ok(());
        }
        let actual: Option<i64> = sqlx::query_scalar(&self.inner.sql.checkpoint_load)
            .bind(consumer)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_err)?;
        let actual = actual.map(crate::common::checkpoint_from_sql);
        let expected = expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match StreamId::new("$checkpoint", consumer) {
            Ok(stream) => Err(StoreError::WrongExpectedVersion { stream, expected, actual }),
            Err(_) => Err(StoreError::Backend(
                format!("the checkpoint of `{consumer}` moved to {actual:?}; the runner expected {expected}").into(),
            )),
        }
    }
}
