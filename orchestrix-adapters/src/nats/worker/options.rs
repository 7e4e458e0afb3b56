//! How a worker runs a projection, and where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orchestrix::projection::PoisonPolicy;
use orchestrix::retry::RetryPolicy;

/// How a [`ProjectionWorker`](super::ProjectionWorker) runs a projection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The base name of the durable consumers (`<name>-p<partition>`) and
    /// of the leases; default: the projection's name. ASCII letters,
    /// digits, `-` and `_`.
    pub name: Option<String>,
    /// The partitions this worker competes for; default: all of them.
    pub partitions: Option<Vec<u32>>,
    /// How many messages one pull asks for (default 100).
    pub batch: usize,
    /// How long the broker waits for an ack before redelivering (default
    /// 30 s).
    pub ack_wait: Duration,
    /// How a failing event is retried before it counts as poison.
    pub retry: RetryPolicy,
    /// What happens to poison: stop the worker, or park the event in the
    /// dead-letter store and ack it.
    pub poison: PoisonPolicy,
    /// How often leases are checked and free partitions claimed (default
    /// 1 s): how soon a survivor takes over a dead worker's partitions.
    pub lease_interval: Duration,
    /// Whether workers share the partitions fairly (default `true`): each
    /// worker holds a membership lease, counts the live workers `n` every
    /// `lease_interval`, claims at most `ceil(partitions / n)` and gives
    /// up what it holds above that, so a worker that starts later gets
    /// its share. With `false`, a worker claims every free partition and
    /// keeps it: failover only.
    pub balance: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            name: None,
            partitions: None,
            batch: 100,
            ack_wait: Duration::from_secs(30),
            retry: RetryPolicy::fixed(3, Duration::from_millis(10)),
            poison: PoisonPolicy::Stop,
            lease_interval: Duration::from_secs(1),
            balance: true,
        }
    }
}

impl WorkerOptions {
    /// Sets the base name of the durable consumers and leases.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the partitions this worker competes for.
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = u32>) -> Self {
        self.partitions = Some(partitions.into_iter().collect());
        self
    }

    /// Sets how many messages one pull asks for (at least 1).
    pub fn batch(mut self, messages: usize) -> Self {
        self.batch = messages.max(1);
        self
    }

    /// Sets how long the broker waits for an ack before redelivering.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Sets the retry policy of a failing event.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the poison policy.
    pub fn poison(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// Sets how often leases are checked and free partitions claimed.
    pub fn lease_interval(mut self, interval: Duration) -> Self {
        self.lease_interval = interval;
        self
    }

    /// Sets whether workers share the partitions fairly.
    pub fn balance(mut self, balance: bool) -> Self {
        self.balance = balance;
        self
    }
}

/// Where a worker is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The partitions this worker holds.
    pub partitions: BTreeSet<u32>,
    /// The live workers of this projection it counted last, itself
    /// included (with [`WorkerOptions::balance`]; 1 without).
    pub workers: usize,
    /// Events handled (deliveries, counting redeliveries).
    pub handled: u64,
    /// Messages acked without handling: their type is not in the
    /// projection's filter.
    pub skipped: u64,
    /// Events parked as poison.
    pub parked: u64,
    /// Deliveries that never reached this worker (lost on their way, with
    /// a dying server): each made it restart its partition from the
    /// acknowledged floor, so that later messages did not overtake them.
    pub missed: u64,
    /// Per held partition, the global position of the last event this
    /// worker finished there (handled, parked or skipped, and its ack
    /// sent), or, on taking the partition, the position of the event at
    /// its acknowledged floor. A partition's events are finished in
    /// order, so every event of partition `p` at or before
    /// `positions[p]` is finished: once the relay has published up to a
    /// position, waiting until each partition's entry reaches its last
    /// event up to there waits until the worker has passed it (what the
    /// engine's `wait_caught_up` does for one log). A partition appears
    /// once it has a position (a new consumer's partition, or one whose
    /// floor message retention removed: after its next event) and goes
    /// when it is left. A message that is not an event has no position.
    pub positions: BTreeMap<u32, u64>,
    /// Why the worker stopped, if it failed.
    pub failed: Option<String>,
}
