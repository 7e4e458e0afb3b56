//! A small side-by-side benchmark harness, and the two implementations of
//! one domain the core benchmark compares: with the macros and by hand.
//!
//! Each benchmark runs a candidate and its baseline in alternating rounds
//! in the same process, so that both see the same machine state, and
//! reports the median throughput of each and their ratio.
//!
//! [`ledger`] is the domain of the benchmark suite (`benches/suite`),
//! written for Orchestrix and for the peer framework, cqrs-es.

pub mod hand;
pub mod ledger;
pub mod macros;
pub mod raw_log;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A projection that only counts the events it is handed: what catch-up
/// costs with nothing to do per event.
#[derive(Debug)]
pub struct Counting {
    name: String,
    /// How many events it has handled.
    pub seen: u64,
}

impl Counting {
    /// A counting projection named `name` (its checkpoint's key).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), seen: 0 }
    }
}

#[async_trait::async_trait]
impl orchestrix::projection::Projection for Counting {
    fn name(&self) -> Cow<'static, str> {
        Cow::Owned(self.name.clone())
    }

    fn filter(&self) -> orchestrix::store::EventFilter {
        orchestrix::store::EventFilter::all()
    }

    async fn handle(&mut self, _: &orchestrix::envelope::RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
        self.seen += 1;
        Ok(())
    }
}

/// Throughput of one side of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Median operations per second over the rounds.
    pub per_second: f64,
    /// Median time per operation.
    pub per_op: Duration,
}

/// One contestant's rounds: called with the number of operations to run,
/// it runs them and completes. Made with [`round`].
pub type Round<'a> = Box<dyn FnMut(u64) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// Boxes a contestant: `f(ops)` runs `ops` operations.
pub fn round<'a, F, Fut>(mut f: F) -> Round<'a>
where
    F: FnMut(u64) -> Fut + 'a,
    Fut: Future<Output = ()> + 'a,
{
    Box::new(move |ops| Box::pin(f(ops)))
}

/// Runs every contestant once to warm up, then `rounds` rounds of `ops`
/// operations each, the contestants taking turns within a round and the
/// one that goes first rotating from round to round, so that drift in the
/// machine's state hits all of them alike. Returns each one's median rate,
/// in the order given.
pub async fn race(rounds: usize, ops: u64, contestants: &mut [Round<'_>]) -> Vec<Rate> {
    for contestant in contestants.iter_mut() {
        contestant(ops).await;
    }
    let n = contestants.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for r in 0..rounds.max(1) {
        for k in 0..n {
            let i = (r + k) % n;
            times[i].push(time(ops, &mut contestants[i]).await);
        }
    }
    times.into_iter().map(|t| median_rate(ops, t)).collect()
}

/// Runs `candidate` and `baseline` for `rounds` alternating rounds of
/// `ops` operations each (after one warm-up round each), prints a line
/// with both medians and the ratio, and returns the ratio.
pub async fn compare<'a, C, CF, B, BF>(name: &str, rounds: usize, ops: u64, candidate: C, baseline: B) -> f64
where
    C: FnMut(u64) -> CF + 'a,
    CF: Future<Output = ()> + 'a,
    B: FnMut(u64) -> BF + 'a,
    BF: Future<Output = ()> + 'a,
{
    let rates = race(rounds, ops, &mut [round(candidate), round(baseline)]).await;
    let (c, b) = (rates[0], rates[1]);
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
