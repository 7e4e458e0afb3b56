//! Typed errors: what went wrong, where, and what to do about it.
//!
//! # Did I lose a race?
//!
//! Optimistic concurrency fails in three shapes, one per way of writing:
//!
//! | written by | the error |
//! |---|---|
//! | [`Orchestrix::execute`](crate::app::Orchestrix::execute) (after its retries) | [`CommandError::Conflict`] |
//! | [`Orchestrix::decide`](crate::app::Orchestrix::decide) (after its retries) | [`CommandError::Framework`] of a [`StoreError::ConditionFailed`] or [`StoreError::WrongExpectedVersion`] |
//! | [`Orchestrix::append_many`](crate::app::Orchestrix::append_many), a [`crate::repository::Repository`], a store | [`Error::Store`] or [`StoreError`]: [`StoreError::WrongExpectedVersion`], [`StoreError::ConditionFailed`] |
//!
//! One question answers all of them: `is_conflict()`, on [`StoreError`],
//! [`Error`] and [`CommandError`] alike. When it is true, nothing was
//! written, and the same operation may succeed if tried again on fresh
//! state: read again, decide again, write again. Every other error is not a
//! race (a rejection, a missing or existing aggregate, a bad input, a
//! backend failure) and retrying it unchanged does not help, with one
//! exception: [`StoreError::Unavailable`], which says so itself.
//!
//! ```
//! use orchestrix::{CommandError, Error, store::ExpectedVersion, StoreError, StreamId};
//!
//! let stream = StreamId::new("Account", "1").unwrap();
//! let lost = StoreError::WrongExpectedVersion { stream, expected: ExpectedVersion::NoStream, actual: Some(1) };
//! assert!(lost.is_conflict());
//! assert!(StoreError::ConditionFailed { position: 7, after: Some(5) }.is_conflict());
//! assert!(Error::Store(lost).is_conflict());
//! let gave_up: CommandError<std::io::Error> = CommandError::Conflict { aggregate: "Account", id: "1".into(), attempts: 3 };
//! assert!(gave_up.is_conflict());
//! assert!(!CommandError::Rejected(std::io::Error::other("insufficient funds")).is_conflict());
//! ```

use crate::stream::{ExpectedVersion, InvalidStreamId, StreamId};

/// A boxed error from an adapter's backend (a driver, a socket, a parser).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a storage or messaging port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream's current version did not match the expected one; nothing
    /// was written.
    #[error("stream `{stream}` is at version {actual:?}, but the append expected {expected}")]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's actual last version (`None`: the stream does not exist).
        actual: Option<u64>,
    },
    /// The condition of a conditional append
    /// ([`crate::store::EventStore::append_if`]) failed: an event matching its
    /// query was stored after the position the decision read. Nothing was
    /// written; read again, decide again, append again.
    #[error(
        "an event matching the append condition was stored at position {position}, after the position read ({after:?})"
    )]
    ConditionFailed {
        /// The global position of the first event that breaks the condition.
        position: u64,
        /// The position the condition allowed events up to.
        after: Option<u64>,
    },
    /// The store does not implement an operation (for example a conditional
    /// append on an adapter without consistency by query); nothing was
    /// written.
    #[error("unsupported by this store: {0}")]
    Unsupported(String),
    /// The input cannot be stored (an oversized id, a NUL byte, a bad name).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A stored record cannot be read back (a corrupt row, a truncated value).
    #[error("corrupt record in stream `{stream}` at version {version}: {reason}")]
    Corrupt {
        /// The stream holding the record.
        stream: StreamId,
        /// The record's version in its stream.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Personal data of a data subject that was forgotten
    /// ([`crate::crypto::CryptoStore::forget`]) was about to be written:
    /// nothing was written. A forgotten subject gets no new key unless
    /// [`crate::store::KeyStore::readmit`] re-admits it (ADR 0031).
    #[error(
        "data subject `{subject}` was forgotten: its personal data is not written again; \
         call `KeyStore::readmit` if the subject came back and gave its data anew"
    )]
    SubjectForgotten {
        /// The subject, as the key store names it.
        subject: String,
    },
    /// Outcome unknown: the operation may or may not have taken effect;
    /// retrying an append with the same event ids is safe.
    ///
    /// The backend could not be reached, or the connection broke or timed
    /// out before it answered, so an append may have been stored and only
    /// its acknowledgement lost. Retry it with the same `NewEvent`s (their
    /// [`crate::envelope::NewEvent::id`]s): if the first attempt was stored, the retry
    /// is answered with the stored events and writes nothing (ADR 0027); a
    /// command retried with the same command id is applied once. Reads may
    /// simply be retried.
    #[error("backend unavailable (the outcome is unknown; an append may be retried with the same event ids): {0}")]
    Unavailable(#[source] BoxError),
    /// An event id of the append is already stored, and the append is not
    /// a repetition of the one that stored it: only some of its ids are
    /// stored, or they are stored in another stream or order. Nothing was
    /// written. Event ids are unique across a store; an append whose ids
    /// are *all* stored, as consecutive events of its stream in its order,
    /// is a retry and is answered with the stored events instead (ADR 0027).
    #[error(
        "event id {id} is already stored, at `{stream}` version {version}, by an append this one does not repeat          (a retry repeats every id, in order, to the same stream); nothing was written. Give new events new ids          (or, for a command, a new command id)"
    )]
    DuplicateEventId {
        /// The first id of the append (in its order) that is stored but
        /// does not fit a retry.
        id: uuid::Uuid,
        /// Where that id is stored.
        stream: StreamId,
        /// Its version there.
        version: u64,
    },
    /// The backend answered with an error.
    #[error("backend error: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }

    /// Whether the write lost an optimistic-concurrency race and may be
    /// tried again on fresh state: [`StoreError::WrongExpectedVersion`] or
    /// [`StoreError::ConditionFailed`]; nothing was written. See
    /// [the module documentation](self#did-i-lose-a-race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::WrongExpectedVersion { .. } | Self::ConditionFailed { .. })
    }

    /// True for [`StoreError::DuplicateEventId`].
    pub fn is_duplicate_event_id(&self) -> bool {
        matches!(self, Self::DuplicateEventId { .. })
    }

    /// True for [`StoreError::ConditionFailed`].
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Self::ConditionFailed { .. })
    }
}

/// An upcaster refused to convert old event data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// Explains why the data cannot be upcast.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// Why stored event data could not become a typed event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The type name is not one of the event type's names.
    #[error("the type is unknown to this code")]
    UnknownType,
    /// The data was written by newer code than this one.
    #[error("the stored schema version is newer than the code, which knows up to version {supported}")]
    NewerThanCode {
        /// The newest version this code reads.
        supported: u32,
    },
    /// No chain of upcasters leads from the stored version to the current one.
    #[error("no upcaster chain leads from the stored schema version to version {supported}")]
    NoUpcaster {
        /// The version the code reads.
        supported: u32,
    },
    /// An upcaster refused the data.
    #[error("the upcaster from version {from} failed: {error}")]
    Upcast {
        /// The version the failing upcaster starts from.
        from: u32,
        /// Its explanation.
        #[source]
        error: UpcastError,
    },
    /// The JSON does not match the event's fields.
    #[error("the data does not match the event's fields: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// A stored event that cannot be decoded, with where it is stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode event `{event_type}` (schema v{schema_version}) at `{stream}` version {stream_version}: {kind}")]
#[non_exhaustive]
pub struct DecodeError {
    /// The stream holding the event.
    pub stream: StreamId,
    /// The event's version in its stream.
    pub stream_version: u64,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// What went wrong.
    #[source]
    pub kind: DecodeErrorKind,
}

/// A framework error that is not the domain's: storage, decoding,
/// serialization, configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A port failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] Box<DecodeError>),
    /// A stored snapshot could not be decoded.
    #[error("cannot decode the snapshot of `{stream}` at version {version}: {source}")]
    Snapshot {
        /// The snapshotted stream.
        stream: StreamId,
        /// The version the snapshot was taken at.
        version: u64,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// An event or snapshot could not be serialized.
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A handler needs a service that was not registered with the builder.
    #[error("no service of type `{service}` is registered; add it with `Orchestrix::builder().service(...)`")]
    MissingService {
        /// The missing service's type name.
        service: &'static str,
    },
}

impl Error {
    /// Whether a store write lost an optimistic-concurrency race
    /// ([`StoreError::is_conflict`]) and may be tried again on fresh state.
    /// See [the module documentation](self#did-i-lose-a-race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_conflict())
    }
}

impl From<InvalidStreamId> for StoreError {
    fn from(error: InvalidStreamId) -> Self {
        Self::InvalidInput(error.0)
    }
}

impl From<InvalidStreamId> for Error {
    fn from(error: InvalidStreamId) -> Self {
        Self::Store(StoreError::from(error))
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Self {
        Self::Decode(Box::new(error))
    }
}

/// The error of executing a command: the domain's rejection, or one of the
/// framework's distinct failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The handler rejected the command with a domain error.
    #[error("command rejected: {0}")]
    Rejected(#[source] E),
    /// The command needs an existing aggregate and there is none.
    #[error("{aggregate} `{id}` does not exist")]
    AggregateNotFound {
        /// The aggregate type.
        aggregate: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The command creates an aggregate and one already exists.
    #[error("{aggregate} `{id}` already exists")]
    AggregateAlreadyExists {
        /// The aggregate type.
        aggregate: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The command's type was not registered with the application.
    #[error("command `{command}` is not registered; register its handler with `Orchestrix::builder().{registration}`")]
    Unregistered {
        /// The command type.
        command: &'static str,
        /// The builder call that registers it.
        registration: String,
    },
    /// Every attempt lost an optimistic-concurrency race.
    #[error("{aggregate} `{id}` kept changing concurrently; gave up after {attempts} attempts")]
    Conflict {
        /// The aggregate type.
        aggregate: &'static str,
        /// The aggregate id.
        id: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Storage, decoding or configuration failed.
    #[error(transparent)]
    Framework(#[from] Error),
}

impl<E> CommandError<E> {
    /// The domain error, if the handler rejected the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the command lost an optimistic-concurrency race, and may
    /// succeed if executed again: [`CommandError::Conflict`] (every attempt
    /// lost) or a [`CommandError::Framework`] error that
    /// [`Error::is_conflict`] (a decision by query whose condition kept
    /// failing). See [the module documentation](self#did-i-lose-a-race).
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Conflict { .. } => true,
            Self::Framework(error) => error.is_conflict(),
            _ => false,
        }
    }
}

impl<E> From<StoreError> for CommandError<E> {
    fn from(error: StoreError) -> Self {
        Self::Framework(Error::Store(error))
    }
}

impl<E> From<InvalidStreamId> for CommandError<E> {
    fn from(error: InvalidStreamId) -> Self {
        Self::Framework(Error::from(error))
    }
}

impl<E> From<DecodeError> for CommandError<E> {
    fn from(error: DecodeError) -> Self {
        Self::Framework(Error::from(error))
    }
}

/// An error with its chain of sources, on one line (a cause already at the
/// end of the text is not repeated).
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(orchestrix::error::render_chain(&error), "disk full");
/// ```
pub fn render_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut rendered = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !rendered.ends_with(&cause_text) {
            rendered.push_str(": ");
            rendered.push_str(&cause_text);
        }
        source = cause.source();
    }
    rendered
}
