//! The clock a saga manager compares deadlines with (ADR 0038).

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where a [`SagaManager`](super::SagaManager) reads the time: the
/// deadlines of waits and the times of deferred steps are compared with
/// it. [`SystemClock`] by default; [`ManualClock`] in tests.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: deadlines pass in a test without
/// sleeping. Clones share the time.
///
/// ```
/// use orchestrix::saga::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::default();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3 * 86_400));
/// assert_eq!((clock.now() - before).num_days(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Default for ManualClock {
    /// A clock standing at the system's current time.
    fn default() -> Self {
        Self::at(Utc::now())
    }
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self { now: Arc::new(Mutex::new(now)) }
    }

    /// Moves the clock forward by `by` (saturating at the largest time).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        *now = now.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `now + after`, saturating at the largest time.
pub(crate) fn later(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
