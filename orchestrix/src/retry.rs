//! Retry policies, shared by the command bus and the consumers of the log.

use std::future::Future;
use std::time::Duration;

/// How the delay between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// Retry at once.
    Immediate,
    /// The same delay before every retry.
    Fixed(Duration),
    /// `initial`, then `initial + step`, `initial + 2 × step`, …
    Linear {
        /// The first delay.
        initial: Duration,
        /// What each retry adds.
        step: Duration,
    },
    /// `initial`, then doubling with each retry.
    Exponential {
        /// The first delay.
        initial: Duration,
    },
}

/// When and how often to try an operation again.
///
/// Delays are capped at `max_delay`; with `jitter` between 0 and 1, each
/// delay is shortened by a random fraction of up to `jitter` of itself, so
/// that competing writers do not retry in lockstep.
///
/// ```
/// use std::time::Duration;
/// use orchestrix::retry::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(10)).with_jitter(0.0);
/// assert_eq!(policy.delay_after(1), Some(Duration::from_millis(10)));
/// assert_eq!(policy.delay_after(3), Some(Duration::from_millis(40)));
/// assert_eq!(policy.delay_after(5), None); // five attempts made: give up
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    max_delay: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    /// The command bus's default: 10 attempts, exponential from 1 ms, capped
    /// at 200 ms, full jitter.
    fn default() -> Self {
        Self::exponential(10, Duration::from_millis(1)).with_max_delay(Duration::from_millis(200))
    }
}

impl RetryPolicy {
    /// Try once, never retry.
    pub fn none() -> Self {
        Self { max_attempts: 1, backoff: Backoff::Immediate, max_delay: Duration::ZERO, jitter: 0.0 }
    }

    /// Up to `max_attempts` attempts with the same delay between them.
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self::with_backoff(max_attempts, Backoff::Fixed(delay))
    }

    /// Up to `max_attempts` attempts with a delay growing by `step`.
    pub fn linear(max_attempts: u32, initial: Duration, step: Duration) -> Self {
        Self::with_backoff(max_attempts, Backoff::Linear { initial, step })
    }

    /// Up to `max_attempts` attempts with a doubling delay, jittered.
    pub fn exponential(max_attempts: u32, initial: Duration) -> Self {
        Self::with_backoff(max_attempts, Backoff::Exponential { initial }).with_jitter(1.0)
    }

    /// Up to `max_attempts` attempts (at least one) with the given backoff,
    /// capped at 30 s per delay and without jitter.
    pub fn with_backoff(max_attempts: u32, backoff: Backoff) -> Self {
        Self { max_attempts: max_attempts.max(1), backoff, max_delay: Duration::from_secs(30), jitter: 0.0 }
    }

    /// Caps every delay.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Shortens each delay by a random fraction of up to `jitter` (clamped
    /// to 0..=1) of itself.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        self
    }

    /// The most attempts this policy makes, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long to wait after `attempts_made` failed attempts, or `None`
    /// when the policy gives up.
    pub fn delay_after(&self, attempts_made: u32) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let retry = attempts_made.saturating_sub(1);
        let base = match self.backoff {
            Backoff::Immediate => Duration::ZERO,
            Backoff::Fixed(delay) => delay,
            Backoff::Linear { initial, step } => initial.saturating_add(step.saturating_mul(retry)),
            Backoff::Exponential { initial } => initial.saturating_mul(2u32.saturating_pow(retry.min(31))),
        }
        .min(self.max_delay);
        if self.jitter == 0.0 || base.is_zero() {
            return Some(base);
        }
        Some(base.mul_f64(1.0 - self.jitter * unit_random()))
    }

    /// Runs `operation` until it succeeds, fails with an error that
    /// `is_retryable` refuses, or the policy gives up; returns the last
    /// result and the number of attempts made.
    pub async fn run<T, E, Op, Fut>(&self, mut operation: Op, is_retryable: impl Fn(&E) -> bool) -> (Result<T, E>, u32)
    where
        Op: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            let result = operation(attempt).await;
            match &result {
                Err(error) if is_retryable(error) => match self.delay_after(attempt) {
                    Some(delay) => {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        attempt += 1;
                    }
                    None => return (result, attempt),
                },
                _ => return (result, attempt),
            }
        }
    }
}

/// A number in `[0, 1)` for jitter: std's per-process random SipHash keys
/// (a fresh `RandomState` differs from the last one), so no generator
/// crate is compiled for it. Not for secrets.
fn unit_random() -> f64 {
    use std::hash::BuildHasher as _;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0_u8);
    #[allow(clippy::cast_precision_loss)] // 53 bits: exact in an f64
    let unit = (bits >> 11) as f64 / (1_u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_grow_as_configured_and_stop() {
        let fixed = RetryPolicy::fixed(3, 5 * MS);
        assert_eq!(
            [fixed.delay_after(1), fixed.delay_after(2), fixed.delay_after(3)],
            [Some(5 * MS), Some(5 * MS), None]
        );
        let linear = RetryPolicy::linear(4, 2 * MS, 3 * MS);
        assert_eq!(
            [linear.delay_after(1), linear.delay_after(2), linear.delay_after(3)],
            [Some(2 * MS), Some(5 * MS), Some(8 * MS)]
        );
        let capped = RetryPolicy::exponential(40, MS).with_jitter(0.0).with_max_delay(50 * MS);
        assert_eq!(capped.delay_after(39), Some(50 * MS));
        assert_eq!(RetryPolicy::none().delay_after(1), None);
        assert_eq!(RetryPolicy::fixed(0, MS).max_attempts(), 1);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = RetryPolicy::fixed(2, 100 * MS).with_jitter(0.5);
        for _ in 0..1000 {
            let d = policy.delay_after(1).unwrap();
            assert!(d >= 50 * MS && d <= 100 * MS, "{d:?}");
        }
        assert!(RetryPolicy::fixed(2, MS).with_jitter(f64::NAN).jitter.abs() < f64::EPSILON);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let samples: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let low = samples.iter().filter(|&&x| x < 0.5).count();
        assert!((350..=650).contains(&low), "{low} of 1000 below one half");
        let mut distinct = samples.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() > 990, "{} distinct values", distinct.len());
    }

    #[test]
    fn exponential_backoff_with_full_jitter_stays_under_its_doubling_cap() {
        // The command bus's default: 1 ms doubling, capped at 200 ms, full
        // jitter. Every delay lies in [0, min(2^(n-1) ms, 200 ms)].
        let policy = RetryPolicy::default();
        for attempts_made in 1..policy.max_attempts() {
            let ceiling = (MS * 2u32.pow(attempts_made - 1)).min(200 * MS);
            let delays: Vec<Duration> = (0..500).map(|_| policy.delay_after(attempts_made).unwrap()).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempts_made}: above {ceiling:?}");
            // Full jitter spreads the delays over the whole range: some in
            // each half, and hardly two alike.
            let low = delays.iter().filter(|d| **d < ceiling / 2).count();
            assert!((100..=400).contains(&low), "attempt {attempts_made}: {low} of 500 in the lower half");
            let mut distinct = delays.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(distinct.len() > 400, "attempt {attempts_made}: {} distinct delays", distinct.len());
        }
        assert_eq!(policy.delay_after(policy.max_attempts()), None, "gives up after its last attempt");
    }

    #[test]
    fn partial_jitter_keeps_a_floor_and_never_lengthens_a_delay() {
        let policy = RetryPolicy::exponential(8, 4 * MS).with_jitter(0.25);
        for attempts_made in 1..8 {
            let base = 4 * MS * 2u32.pow(attempts_made - 1);
            for _ in 0..200 {
                let d = policy.delay_after(attempts_made).unwrap();
                assert!(
                    d <= base && d >= base.mul_f64(0.75),
                    "attempt {attempts_made}: {d:?} outside [0.75, 1] × {base:?}"
                );
            }
        }
        let clamped = RetryPolicy::exponential(3, MS).with_jitter(7.0);
        assert!((clamped.jitter - 1.0).abs() < f64::EPSILON, "jitter above 1 is clamped to full jitter");
        let none = RetryPolicy::exponential(3, MS).with_jitter(-1.0);
        assert_eq!(none.delay_after(2), Some(2 * MS), "jitter below 0 is none");
    }

    #[test]
    fn huge_attempt_counts_saturate_instead_of_overflowing() {
        let policy = RetryPolicy::exponential(u32::MAX, Duration::from_secs(1)).with_jitter(0.0);
        assert_eq!(policy.delay_after(u32::MAX - 1), Some(Duration::from_secs(30)), "the default cap");
        let linear = RetryPolicy::linear(u32::MAX, Duration::MAX, Duration::MAX).with_max_delay(Duration::MAX);
        assert_eq!(linear.delay_after(1_000), Some(Duration::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_only_retryable_errors() {
        let policy = RetryPolicy::fixed(5, MS);
        let (result, attempts) = policy
            .run(
                |n| async move {
                    if n < 3 {
                        Err(n)
                    } else {
                        Ok(n)
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!((result, attempts), (Ok(3), 3));
        let (result, attempts) = policy.run(|n| async move { Err::<(), _>(n) }, |e| *e != 2).await;
        assert_eq!((result, attempts), (Err(2), 2));
        let (result, attempts) = policy.run(|n| async move { Err::<(), _>(n) }, |_| true).await;
        assert_eq!((result, attempts), (Err(5), 5));
    }
}
