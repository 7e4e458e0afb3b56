//! Why a projection stopped or a projection operation failed.

use std::time::Duration;

use uuid::Uuid;

use crate::error::{BoxError, StoreError};
use crate::stream::StreamId;

/// The event a projection could not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Poison {
    /// The projection.
    pub projection: String,
    /// The event's global position.
    pub position: u64,
    /// The event's stream.
    pub stream: StreamId,
    /// The event's version in its stream.
    pub stream_version: u64,
    /// The event's type.
    pub event_type: String,
    /// The handler's last error, with its sources.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
}

/// Why a projection stopped or a projection operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// An event kept failing and the policy is [`PoisonPolicy::Stop`](super::PoisonPolicy::Stop).
    #[error(
        "projection `{}` stopped at event `{}` (position {}, `{}` version {}) after {} attempts: {}",
        .0.projection, .0.event_type, .0.position, .0.stream, .0.stream_version, .0.attempts, .0.error
    )]
    Poison(Box<Poison>),
    /// A port failed.
    #[error("projection `{projection}`: {source}")]
    Store {
        /// The projection.
        projection: String,
        /// The port's error.
        #[source]
        source: StoreError,
    },
    /// The policy is [`PoisonPolicy::Park`](super::PoisonPolicy::Park) but the engine has no dead-letter store.
    #[error("projection `{0}` parks poison events, but the engine has no dead-letter store; add one with `ProjectionEngine::with_dead_letters`")]
    NoDeadLetterStore(String),
    /// The read model could not be reset for a rebuild.
    #[error("projection `{projection}` could not reset its read model: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// The projection's error.
        #[source]
        source: BoxError,
    },
    /// The projection's runner does not offer this operation.
    #[error("projection `{projection}`: its runner does not support {operation}")]
    Unsupported {
        /// The projection.
        projection: String,
        /// What was asked.
        operation: &'static str,
    },
    /// The projection is running (another runner holds its lease), so it
    /// cannot be rebuilt now.
    #[error("projection `{0}` is running (its lease is held); stop it before rebuilding")]
    Running(String),
    /// The dead letter does not exist, or belongs to another consumer.
    #[error("projection `{projection}` has no dead letter with id {id}")]
    UnknownDeadLetter {
        /// The projection.
        projection: String,
        /// The id asked for.
        id: Uuid,
    },
    /// A wait ended before the projection got there.
    #[error("projection `{projection}` did not reach position {position} within {waited:?} (it is at {reached})")]
    Timeout {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position it had reached.
        reached: u64,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// A pause was requested, but the runner did not report
    /// [`Paused`](super::ProjectionState::Paused) in time (a long event in
    /// hand). The request stands: the runner pauses when it can, and
    /// [`ProjectionHandle::resume`](super::ProjectionHandle::resume)
    /// withdraws it (ADR 0050).
    #[error(
        "projection `{projection}` did not pause within {waited:?}; the pause stays requested (resume withdraws it)"
    )]
    PauseTimeout {
        /// The projection.
        projection: String,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The projection is paused (ADR 0050), so a rebuild that runs it
    /// would wait forever: resume it first.
    #[error("projection `{0}` is paused; resume it before rebuilding it this way")]
    Paused(String),
    /// The projection's task panicked or was aborted.
    #[error("projection `{0}` ended abnormally: {1}")]
    Ended(String, String),
}
