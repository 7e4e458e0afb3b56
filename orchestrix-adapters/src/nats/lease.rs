//! Who runs which partition: leases.

use std::fmt::Debug;

use async_trait::async_trait;
use orchestrix::StoreError;

/// Hands out exclusive, named leases across processes: while one holder
/// has the lease of a name, nobody else gets it. A holder that dies must
/// lose its leases by itself (a closed connection, an expiry).
#[async_trait]
pub trait Leases: Send + Sync + Debug + 'static {
    /// Takes the lease of `name`, or `None` if someone else holds it.
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;
}

/// A held lease.
#[async_trait]
pub trait Lease: Send + Debug {
    /// Verifies that the lease is still held.
    async fn check(&mut self) -> Result<(), StoreError>;

    /// Gives the lease up.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

/// Grants every lease: for a deployment with a single worker process,
/// where nothing needs coordinating.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleWorker;

#[derive(Debug)]
struct Granted;

#[async_trait]
impl Lease for Granted {
    async fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Leases for SoleWorker {
    async fn try_acquire(&self, _name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(Some(Box::new(Granted)))
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use async_trait::async_trait;
    use orchestrix::StoreError;

    use super::{Lease, Leases};
    use crate::postgres::{PgLease, PgStore};

    /// PostgreSQL session advisory locks ([`PgLease`]): a worker whose
    /// process or connection dies loses its leases at once.
    #[async_trait]
    impl Leases for PgStore {
        async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
            Ok(self.try_lease(name).await?.map(|lease| Box::new(lease) as Box<dyn Lease>))
        }
    }

    #[async_trait]
    impl Lease for PgLease {
        async fn check(&mut self) -> Result<(), StoreError> {
            PgLease::check(self).await
        }

        async fn release(self: Box<Self>) -> Result<(), StoreError> {
            PgLease::release(*self).await
        }
    }
}
