//! The PostgreSQL snapshot, checkpoint, key-value and dead-letter stores:
//! the shared SQL ports ([`crate::common::ports`]) with native timestamps
//! and UUIDs, and the transactional checkpoint of a projection whose read
//! model lives in the same database.

use chrono::{DateTime, Utc};
use orchestrix::store::ExpectedVersion;
use orchestrix::{StoreError, StreamId};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::PgStore;
use crate::common::map_err;
use crate::common::ports::{impl_sql_ports, Dialect};

/// How PostgreSQL columns hold times and ids.
pub(super) struct PgDialect;

impl Dialect for PgDialect {
    type Time = DateTime<Utc>;
    type Id = Uuid;

    fn time_to_sql(time: DateTime<Utc>) -> DateTime<Utc> {
        time
    }

    fn time_from_sql(time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(time)
    }

    fn id_to_sql(id: Uuid) -> Uuid {
        id
    }

    fn id_from_sql(id: &Uuid) -> Result<Uuid, String> {
        Ok(*id)
    }

    /// PostgreSQL text cannot hold NUL: it becomes U+FFFD.
    fn text_to_sql(text: &str) -> String {
        text.replace('\0', "\u{fffd}")
    }
}

impl_sql_ports!(PgStore, sqlx::Postgres, PgDialect);

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
