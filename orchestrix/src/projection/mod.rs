//! Projections: read models and reactions fed from the global event log.
//!
//! A [`Projection`] declares the event types it wants and handles them one
//! at a time. The [`ProjectionEngine`] runs each projection in its own task:
//! it catches up from the projection's checkpoint, then follows the log
//! live, saving the checkpoint as it goes. Delivery is **at least once**:
//! after a crash, the events since the last saved checkpoint are delivered
//! again, so handlers must be idempotent (for example, remember the last
//! position or stream version applied per read-model row). Adapters whose
//! read model lives in the same database as the checkpoint can do better
//! (one transaction for both); see their documentation.
//!
//! The module is split along its jobs: the engine's task per projection
//! ([`ProjectionEngine`]), [`delivery`] (retry, poison, parking in stream
//! order: what every runner uses, the in-process engine, the PostgreSQL
//! transactional runner and the NATS worker alike), [`dead_letters`]
//! (retrying and dropping parked events in stream order), the handle
//! ([`ProjectionHandle`]: status, waits with timeouts, stop, dead-letter
//! requests, pause and resume) and the rebuild
//! ([`ProjectionEngine::rebuild`]). ADR 0025 has the semantics of the
//! awkward cases of dead letters; [`control`] (ADR 0050) pauses and
//! resumes a projection from any process, through a durable record beside
//! its checkpoint.

pub mod control;
pub mod dead_letters;
pub mod delivery;
mod error;
mod handle;
mod options;
mod rebuild;
mod runner;

use std::borrow::Cow;

use async_trait::async_trait;

pub use dead_letters::{DropOutcome, FailedRetry, RetryOutcome};
pub use error::{Poison, ProjectionError};
pub use handle::{ProjectionHandle, ProjectionState, ProjectionStatus, RunnerControl};
pub use options::{PoisonPolicy, ProjectionOptions};
pub use rebuild::Progress;
pub use runner::ProjectionEngine;

use crate::envelope::RecordedEvent;
use crate::error::BoxError;
use crate::store::EventFilter;

/// A consumer of the global event log with a checkpoint of its own.
///
/// ```
/// use orchestrix::projection::Projection;
/// use orchestrix::{store::EventFilter, envelope::RecordedEvent};
/// use orchestrix::error::BoxError;
///
/// #[derive(Default)]
/// struct Counter { seen: u64 }
///
/// #[orchestrix::async_trait]
/// impl Projection for Counter {
///     fn name(&self) -> std::borrow::Cow<'static, str> { "counter".into() }
///     fn filter(&self) -> EventFilter { EventFilter::types(["AccountOpened"]) }
///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), BoxError> {
///         self.seen += 1;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut counter = Counter::default();
/// # let _ = counter.filter();
/// # assert_eq!(counter.name(), "counter");
/// # let _ = &mut counter;
/// # }
/// ```
#[async_trait]
pub trait Projection: Send + 'static {
    /// The stable name: the key of the projection's checkpoint and dead
    /// letters. Renaming a projection rebuilds it from the beginning.
    fn name(&self) -> Cow<'static, str>;

    /// Which events the projection wants; the store filters the rest out.
    fn filter(&self) -> EventFilter;

    /// Handles one event. An error is retried under the projection's retry
    /// policy, then treated by its [`PoisonPolicy`].
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError>;

    /// Empties the read model before a rebuild from the beginning.
    async fn reset(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
