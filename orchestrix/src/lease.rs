//! One active runner at a time: named, exclusive leases held in a store.
//!
//! A runner that must be alone (a saga manager, a projection worker) takes
//! the lease of its name before it acts, checks it before each action that
//! must not happen twice, and gives it up when it stops. A second runner
//! of the same name waits, visibly: it logs that it waits and counts the
//! wait in [`crate::telemetry::LEASE_WAITS_TOTAL`]. Which store holds the
//! leases decides how far they reach:
//!
//! | implementation | reach | a dead holder loses it |
//! |---|---|---|
//! | [`InMemoryLeases`] | one process | when the lease is dropped |
//! | SQLite (`orchestrix-adapters`) | processes sharing the file | after its time to live |
//! | PostgreSQL (`orchestrix-adapters`) | processes sharing the database | when its connection closes |
//!
//! A lease is a fence only as strong as its [`Lease::check`]: an action
//! taken right after a successful check by a holder that then stalls for
//! longer than the lease's time to live can overlap its successor's. See
//! ADR 0032.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{render_chain as render, StoreError};
use crate::telemetry;

/// Hands out exclusive, named leases: while one holder has the lease of a
/// name, nobody else gets it. A holder that dies must lose its leases by
/// itself (a closed connection, an expiry).
#[async_trait]
pub trait Leases: Send + Sync + Debug + 'static {
    /// Takes the lease of `name`, or `None` if someone else holds it.
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;
}

/// A held lease.
#[async_trait]
pub trait Lease: Send + Debug {
    /// Verifies that the lease is still held, and extends it where it
    /// expires (call it more often than its time to live). An error means
    /// the holder must stop acting: another holder may have it.
    async fn check(&mut self) -> Result<(), StoreError>;

    /// Gives the lease up.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

#[async_trait]
impl<L: Leases + ?Sized> Leases for Arc<L> {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        (**self).try_acquire(name).await
    }
}

/// Waits until the lease of `name` is taken, trying again every `retry`,
/// and returns it; `None` if `stop` completes first.
///
/// When another holder has the lease, it logs once (at `info`) that it
/// waits and counts the wait in [`telemetry::LEASE_WAITS_TOTAL`] (label
/// `lease`); a store that is unavailable is retried with a warning; any
/// other error is returned.
pub async fn wait_for(
    leases: &dyn Leases,
    name: &str,
    retry: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Box<dyn Lease>>, StoreError> {
    let mut stop = std::pin::pin!(stop);
    let mut waiting = false;
    loop {
        match leases.try_acquire(name).await {
            Ok(Some(lease)) => {
                if waiting {
                    tracing::info!(lease = name, "took the lease another runner held; running");
                }
                return Ok(Some(lease));
            }
            Ok(None) if !waiting => {
                waiting = true;
                telemetry::lease_wait(name);
                tracing::info!(lease = name, "another runner holds the lease; waiting for it (standby)");
            }
            Ok(None) => {}
            Err(StoreError::Unavailable(error)) => {
                tracing::warn!(lease = name, error = %render(&*error), "cannot reach the store for the lease; retrying");
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = &mut stop => return Ok(None),
        }
    }
}

/// Leases within one process: for runners that share an in-memory store,
/// and for tests. Clones share the leases. A dropped lease is released.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLeases {
    /// The holder's token of every held name.
    held: Arc<Mutex<HashMap<String, u64>>>,
    next_token: Arc<std::sync::atomic::AtomicU64>,
}

impl InMemoryLeases {
    /// No lease held.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Leases for InMemoryLeases {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.contains_key(name) {
            return Ok(None);
        }
        let token = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        held.insert(name.to_owned(), token);
        Ok(Some(Box::new(InMemoryLease { held: Arc::clone(&self.held), name: name.to_owned(), token })))
    }
}

/// A lease of [`InMemoryLeases`].
#[derive(Debug)]
struct InMemoryLease {
    held: Arc<Mutex<HashMap<String, u64>>>,
    name: String,
    token: u64,
}

impl InMemoryLease {
    fn give_up(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.name) == Some(&self.token) {
            held.remove(&self.name);
        }
    }
}

#[async_trait]
impl Lease for InMemoryLease {
    async fn check(&mut self) -> Result<(), StoreError> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.name) == Some(&self.token) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("the lease `{}` is no longer held", self.name).into()))
        }
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.give_up();
        Ok(())
    }
}

impl Drop for InMemoryLease {
    fn drop(&mut self) {
        self.give_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_released_lease_is_free_again() {
        let leases = InMemoryLeases::new();
        let mut first = leases.try_acquire("saga:x").await.unwrap().expect("free");
        assert!(leases.try_acquire("saga:x").await.unwrap().is_none(), "held");
        assert!(leases.try_acquire("saga:y").await.unwrap().is_some(), "another name is another lease");
        first.check().await.unwrap();
        first.release().await.unwrap();
        let second = leases.try_acquire("saga:x").await.unwrap().expect("released");
        drop(second);
        assert!(leases.try_acquire("saga:x").await.unwrap().is_some(), "a dropped lease is released");
    }

    #[tokio::test]
    async fn wait_for_returns_none_when_stopped_while_another_holds_the_lease() {
        let leases = InMemoryLeases::new();
        let _held = leases.try_acquire("n").await.unwrap().unwrap();
        let waited = wait_for(&leases, "n", Duration::from_millis(5), tokio::time::sleep(Duration::from_millis(30)));
        assert!(waited.await.unwrap().is_none());
    }
}
