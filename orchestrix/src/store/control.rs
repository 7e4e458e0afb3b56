//! The control record of a consumer of the global log: whether an
//! operator asked it to pause, and whether a runner did (ADR 0050).

use chrono::{DateTime, Utc};

/// A consumer's control record, kept beside its checkpoint by a
/// [`CheckpointStore`](super::CheckpointStore): what an operator asked
/// ([`ConsumerControl::pause_requested`], written by
/// [`request_pause`](super::CheckpointStore::request_pause)) and what a
/// runner did ([`ConsumerControl::paused`], written by
/// [`acknowledge_pause`](super::CheckpointStore::acknowledge_pause)).
///
/// ```
/// use orchestrix::store::{ConsumerControl, PauseAck};
///
/// let control = ConsumerControl::new(true, Some(PauseAck::new("pid 7", 42, chrono::Utc::now())));
/// assert!(control.is_paused());
/// assert!(!ConsumerControl::new(true, None).is_paused(), "requested, not yet acknowledged");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerControl {
    /// Whether an operator asked the consumer to pause.
    pub pause_requested: bool,
    /// The runner's acknowledgement of the current request: which runner
    /// paused, at which position. Cleared whenever the request changes.
    pub paused: Option<PauseAck>,
}

impl ConsumerControl {
    /// A record with this request and acknowledgement.
    pub fn new(pause_requested: bool, paused: Option<PauseAck>) -> Self {
        Self { pause_requested, paused }
    }

    /// Whether a pause is requested and a runner acknowledged it: no
    /// runner handles the consumer's events.
    pub fn is_paused(&self) -> bool {
        self.pause_requested && self.paused.is_some()
    }
}

/// A runner's acknowledgement of a pause: it handles no event from now on
/// and its checkpoint is saved at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PauseAck {
    /// Which runner paused (a process id and a random id, for people).
    pub runner: String,
    /// The checkpoint it saved before pausing.
    pub position: u64,
    /// When it paused.
    pub at: DateTime<Utc>,
}

impl PauseAck {
    /// `runner` paused at `position`, at time `at`.
    pub fn new(runner: impl Into<String>, position: u64, at: DateTime<Utc>) -> Self {
        Self { runner: runner.into(), position, at }
    }
}
