//! One active runner per projection across processes: a lease on a
//! PostgreSQL session advisory lock.

use std::time::Duration;

use orchestrix::StoreError;
use sqlx::{Connection, PgConnection, PgPool};

use super::schema::fnv1a;
use super::PgStore;
use crate::common::{map_err, validate_key};

/// A held lease: a session-level advisory lock (`pg_try_advisory_lock`)
/// on a dedicated connection, keyed by a hash of the schema and the name.
///
/// While it is held, no other [`PgLease`] on the same schema and name can be
/// taken, in this process or another. It is released by [`PgLease::release`],
/// by dropping it (the connection closes), or by the server when the
/// holder's connection dies, so a crashed runner never blocks its successor
/// for long. A holder that loses its connection loses the lease: call
/// [`PgLease::check`] before committing work that must be exclusive, or
/// better, commit the work with a checkpoint in one transaction (then a
/// second runner can at worst redo nothing, see [`super::PgStore::begin`]).
#[derive(Debug)]
pub struct PgLease {
    connection: PgConnection,
    key: i64,
    name: String,
}

impl PgLease {
    pub(super) async fn try_acquire(pool: &PgPool, schema: &str, name: &str) -> Result<Option<Self>, StoreError> {
        validate_key("lease name", name)?;
        // A dedicated connection, not a pooled one: the lock lives as long
        // as this session, and a pooled connection would carry it back into
        // the pool.
        let options = pool.connect_options();
        let mut connection = PgConnection::connect_with(&options).await.map_err(map_err)?;
        let key = i64::from_be_bytes(fnv1a(&format!("orchestrix-lease:{schema}:{name}")).to_be_bytes());
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut connection)
            .await
            .map_err(map_err)?;
        if taken {
            Ok(Some(Self { connection, key, name: name.to_owned() }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    /// Waits until the lease of `name` can be taken, trying every `retry`.
    pub async fn acquire(store: &super::PgStore, name: &str, retry: Duration) -> Result<Self, StoreError> {
        loop {
            if let Some(lease) = store.try_lease(name).await? {
                return Ok(lease);
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// The leased name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies that the lease is still held (its connection is alive and
    /// still owns the lock).
    pub async fn check(&mut self) -> Result<(), StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
             AND granted AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(self.key)
        .fetch_one(&mut self.connection)
        .await
        .map_err(map_err)?;
        if held {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("the lease `{}` is no longer held", self.name).into()))
        }
    }

    /// Releases the lease and closes its connection.
    pub async fn release(mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.connection)
            .await
            .map_err(map_err)?;
        self.connection.close().await.map_err(map_err)
    }
}

/// PostgreSQL session advisory locks ([`PgLease`]): a holder whose process
/// or connection dies loses its leases at once.
#[async_trait::async_trait]
impl orchestrix::lease::Leases for super::PgStore {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn orchestrix::lease::Lease>>, StoreError> {
        Ok(self.try_lease(name).await?.map(|lease| Box::new(lease) as Box<dyn orchestrix::lease::Lease>))
    }
}

#[async_trait::async_trait]
impl orchestrix::lease::Lease for PgLease {
    async fn check(&mut self) -> Result<(), StoreError> {
        PgLease::check(self).await
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        PgLease::release(*self).await
    }
}

impl PgStore {
    /// Tries to take the lease of `name` (one active runner per projection
    /// across processes); `None` if another holder has it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<PgLease>, StoreError> {
        PgLease::try_acquire(&self.inner.pool, &self.inner.config.schema, name).await
    }
}
