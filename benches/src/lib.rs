//! A small side-by-side benchmark harness, and the two implementations of
//! one domain the core benchmark compares: with the macros and by hand.
//!
//! Each benchmark runs a candidate and its baseline in alternating rounds
//! in the same process, so that both see the same machine state, and
//! reports the median throughput of each and their ratio.

pub mod hand;
pub mod macros;

use std::future::Future;
use std::time::{Duration, Instant};

/// Throughput of one side of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Median operations per second over the rounds.
    pub per_second: f64,
    /// Median time per operation.
    pub per_op: Duration,
}

/// Runs `candidate` and `baseline` for `rounds` alternating rounds of
/// `ops` operations each (after one warm-up round each), prints a line
/// with both medians and the ratio, and returns the ratio.
pub async fn compare<C, CF, B, BF>(name: &str, rounds: usize, ops: u64, mut candidate: C, mut baseline: B) -> f64
where
    C: FnMut(u64) -> CF,
    CF: Future<Output = ()>,
    B: FnMut(u64) -> BF,
    BF: Future<Output = ()>,
{
    candidate(ops).await;
    baseline(ops).await;
    let mut candidate_times = Vec::with_capacity(rounds);
    let mut baseline_times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternate which side goes first, so neither always runs warm.
        if round % 2 == 0 {
            candidate_times.push(time(ops, &mut candidate).await);
            baseline_times.push(time(ops, &mut baseline).await);
        } else {
            baseline_times.push(time(ops, &mut baseline).await);
            candidate_times.push(time(ops, &mut candidate).await);
        }
    }
    let (c, b) = (median_rate(ops, candidate_times), median_rate(ops, baseline_times));
    let ratio = c.per_second / b.per_second;
    println!(
        "{name:<44} {:>12.0}/s {:>9.2?}/op | baseline {:>12.0}/s {:>9.2?}/op | ratio {ratio:.3}",
        c.per_second, c.per_op, b.per_second, b.per_op
    );
    ratio
}

async fn time<F: FnMut(u64) -> Fut, Fut: Future<Output = ()>>(ops: u64, f: &mut F) -> Duration {
    let start = Instant::now();
    f(ops).await;
    start.elapsed()
}

fn median_rate(ops: u64, mut times: Vec<Duration>) -> Rate {
    times.sort_unstable();
    let median = times[times.len() / 2];
    #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
    let per_second = ops as f64 / median.as_secs_f64();
    Rate { per_second, per_op: median / u32::try_from(ops).unwrap_or(u32::MAX) }
}
