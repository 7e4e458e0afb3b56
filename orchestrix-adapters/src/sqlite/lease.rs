//! One active runner per name across the processes that share a database
//! file: a lease row with a holder, a fencing token and an expiry.

use std::time::Duration;

use async_trait::async_trait;
use orchestrix::lease::{Lease, Leases};
use orchestrix::StoreError;
use uuid::Uuid;

use super::SqliteStore;
use crate::common::{map_err, validate_key};

/// The default time to live of a lease ([`super::SqliteConfig::with_lease_ttl`]).
pub(super) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// A held lease of a [`SqliteStore`]: a row of `<prefix>leases` that names
/// this holder, with a fencing token and an expiry.
///
/// - **Taking** it inserts the row, or takes over a row whose expiry has
///   passed (the token goes up by one); a row that has not expired is
///   left alone, so a live holder keeps it.
/// - [`Lease::check`] extends the expiry by the store's lease time to
///   live, on the condition that the row still names this holder and
///   token: a holder that was taken over (it did not check for a whole
///   time to live) finds out there, and must stop.
/// - [`Lease::release`] deletes the row (only if it is still this
///   holder's); dropping the lease does the same in the background, and a
///   holder that dies loses it when its expiry passes.
///
/// Expiries are the holders' wall-clock time: the processes must share a
/// clock, which processes that share a database file usually do.
#[derive(Debug)]
pub struct SqliteLease {
    store: SqliteStore,
    name: String,
    holder: Uuid,
    token: i64,
    released: bool,
}

fn micros_from_now(ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    chrono::Utc::now().timestamp_micros().saturating_add(ttl)
}

impl SqliteStore {
    /// Tries to take the lease of `name` (one active runner per name
    /// across the processes sharing this file); `None` if a live holder
    /// has it. See [`SqliteLease`].
    pub async fn try_lease(&self, name: &str) -> Result<Option<SqliteLease>, StoreError> {
        validate_key("lease name", name)?;
        let p = &self.inner.config.prefix;
        let holder = Uuid::now_v7();
        let now = chrono::Utc::now().timestamp_micros();
        let expires_at = micros_from_now(self.inner.config.lease_ttl);
        let _writer = self.inner.writer.lock().await;
        let token: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {p}leases (name, holder, token, expires_at) VALUES (?1, ?2, 1, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = {p}leases.token + 1, \
             expires_at = excluded.expires_at WHERE {p}leases.expires_at <= ?4 \
             RETURNING token"
        ))
        .bind(name)
        .bind(holder.to_string())
        .bind(expires_at)
        .bind(now)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(map_err)?;
        Ok(token.map(|token| SqliteLease {
            store: self.clone(),
            name: name.to_owned(),
            holder,
            token,
            released: false,
        }))
    }
}

impl SqliteLease {
    /// The leased name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: it goes up by one every time the lease changes
    /// hands, so a larger token is a later holder.
    pub fn token(&self) -> u64 {
        u64::try_from(self.token).unwrap_or(0)
    }

    /// Extends the lease if it is still this holder's.
    async fn extend(&self) -> Result<bool, StoreError> {
        let inner = &self.store.inner;
        let p = &inner.config.prefix;
        let _writer = inner.writer.lock().await;
        let moved = sqlx::query(&format!(
            "UPDATE {p}leases SET expires_at = ?1 WHERE name = ?2 AND holder = ?3 AND token = ?4"
        ))
        .bind(micros_from_now(inner.config.lease_ttl))
        .bind(&self.name)
        .bind(self.holder.to_string())
        .bind(self.token)
        .execute(&inner.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        Ok(moved == 1)
    }

    async fn delete(store: &SqliteStore, name: &str, holder: Uuid, token: i64) -> Result<(), StoreError> {
        let p = &store.inner.config.prefix;
        let _writer = store.inner.writer.lock().await;
        sqlx::query(&format!("DELETE FROM {p}leases WHERE name = ?1 AND holder = ?2 AND token = ?3"))
            .bind(name)
            .bind(holder.to_string())
            .bind(token)
            .execute(&store.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl Lease for SqliteLease {
    async fn check(&mut self) -> Result<(), StoreError> {
        if self.extend().await? {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                format!("the lease `{}` was taken over by another holder after it expired", self.name).into(),
            ))
        }
    }

    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        self.released = true;
        Self::delete(&self.store, &self.name, self.holder, self.token).await
    }
}

impl Drop for SqliteLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Free the row for the next holder now rather than at its expiry.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, name, holder, token) =
                (self.store.clone(), std::mem::take(&mut self.name), self.holder, self.token);
            runtime.spawn(async move {
                let _ = Self::delete(&store, &name, holder, token).await;
            });
        }
    }
}

/// Leases in the database file: a holder that dies loses its lease when
/// its time to live passes ([`super::SqliteConfig::with_lease_ttl`]).
#[async_trait]
impl Leases for SqliteStore {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(self.try_lease(name).await?.map(|lease| Box::new(lease) as Box<dyn Lease>))
    }
}
