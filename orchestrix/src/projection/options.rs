//! How a projection runs: its poison policy, retries and checkpoint
//! cadence.

use std::time::Duration;

use crate::retry::RetryPolicy;

/// What a projection does with an event it still cannot handle after its
/// retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoisonPolicy {
    /// Stop the projection with [`ProjectionError::Poison`](super::ProjectionError::Poison); its checkpoint
    /// stays before the event, so a restart tries it again.
    #[default]
    Stop,
    /// Park the event in the dead-letter store with its error and go on.
    Park,
}

/// How a projection runs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ProjectionOptions {
    /// What to do with an event that keeps failing.
    pub poison: PoisonPolicy,
    /// How to retry a failing event before it counts as poison.
    pub retry: RetryPolicy,
    /// Save the checkpoint at least every this many events (it is also
    /// saved every [`ProjectionOptions::checkpoint_interval`] while busy,
    /// once the projection has caught up with the log and the log stayed
    /// quiet for 20 ms, and when the projection stops). Each save is a
    /// write to the checkpoint store (a durable commit in the SQL
    /// adapters), so a small value slows catch-up; a large one means more
    /// events handled again after a crash (delivery is at least once).
    pub checkpoint_every: u64,
    /// Save the checkpoint at least this often while events keep coming,
    /// however few: a slow projection's crash redelivers at most this
    /// much work.
    pub checkpoint_interval: Duration,
}

impl Default for ProjectionOptions {
    /// Stop on poison, 3 attempts 10 ms apart, a checkpoint every 10,000
    /// events or every second, whichever comes first.
    fn default() -> Self {
        Self {
            poison: PoisonPolicy::Stop,
            retry: RetryPolicy::fixed(3, Duration::from_millis(10)),
            // Each save is a synchronous commit on the SQL adapters: 100
            // events cost PostgreSQL catch-up five times its speed, 1,000
            // still a third of it (ADR 13). 10,000 events are a few
            // milliseconds of catch-up to redeliver after a crash; the
            // interval bounds it for slow projections.
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

impl ProjectionOptions {
    /// Sets the poison policy.
    pub fn poison(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many events may pass between two saves of the
    /// checkpoint while busy (at least 1).
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets how much time may pass between two saves of the checkpoint
    /// while busy.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }
}
