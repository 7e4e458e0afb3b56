//! Why a saga operation failed.

use uuid::Uuid;

use crate::error::{BoxError, Error, StoreError};

/// Why a saga operation failed. Every variant but
/// [`SagaError::DefinitionChanged`], [`SagaError::InvalidDefinition`] and
/// [`SagaError::Data`] may pass: the
/// instance stays where it was, and driving it again picks it up there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// A port failed, or a stored event could not be decoded.
    #[error(transparent)]
    Framework(#[from] Error),
    /// The saga's [`Saga::start`](super::Saga::start) failed on an event.
    #[error("saga `{saga}` could not decide whether event `{event}` starts an instance: {source}")]
    Start {
        /// The saga kind.
        saga: &'static str,
        /// The event's id.
        event: Uuid,
        /// The saga's error.
        #[source]
        source: BoxError,
    },
    /// No instance has this id.
    #[error("saga `{saga}` has no instance `{id}`")]
    NotFound {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
    },
    /// The instance was started by a definition with other steps.
    #[error(
        "saga `{saga}` instance `{id}` was started with the steps {stored:?}, but the definition now has {defined:?}; \
         finish it with the code that started it, or give changed steps to a new saga kind"
    )]
    DefinitionChanged {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The step names the instance recorded.
        stored: Vec<String>,
        /// The step names of the definition.
        defined: Vec<String>,
    },
    /// The instance's data does not deserialize into [`Saga::Data`](super::Saga::Data).
    #[error("saga `{saga}` instance `{id}`: the stored data does not match the saga's data type: {source}")]
    Data {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The definition cannot run: a group without members, or with a
    /// member that is not a plain action step, or a wait or a group with a
    /// decision hook (ADR 0038).
    #[error("saga `{saga}`: the definition cannot run: {reason}")]
    InvalidDefinition {
        /// The saga kind.
        saga: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The instance's stream does not begin with `SagaStarted`.
    #[error("saga `{saga}` instance `{id}`: its stream does not begin with `SagaStarted`")]
    Corrupt {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
    },
    /// A step's outcome is unknown for now (its store did not answer, its
    /// command kept conflicting); the step is checked and tried again when
    /// the instance is driven again.
    #[error("saga `{saga}` instance `{id}`, step `{step}`: {source}")]
    Step {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The step's name.
        step: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The manager runs under a lease ([`SagaManager::with_leases`](super::SagaManager::with_leases)) and
    /// does not hold it, or no longer: another runner may, so this one
    /// did not run the step. The instance stays where it was.
    #[error("saga `{saga}`: this runner does not hold the lease `{lease}`, so it runs no step: {source}")]
    LeaseNotHeld {
        /// The saga kind.
        saga: &'static str,
        /// The lease's name.
        lease: String,
        /// Why the lease is not held.
        #[source]
        source: StoreError,
    },
}

impl From<StoreError> for SagaError {
    fn from(error: StoreError) -> Self {
        Self::Framework(Error::Store(error))
    }
}
