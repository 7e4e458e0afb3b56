//! Who runs which partition: leases.

use async_trait::async_trait;
use orchestrix::StoreError;

// The lease port lives in the runtime, where saga managers use it too;
// it is re-exported here, where the workers first needed it.
pub use orchestrix::lease::{Lease, Leases};

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
