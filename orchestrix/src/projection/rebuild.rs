//! Rebuilding a projection from the beginning of the log, with progress.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::delivery::{handle_span, DeliveryError, Interval};
use super::runner::Handler;
use super::{Projection, ProjectionEngine, ProjectionError, ProjectionOptions};
use crate::store::DeadLetterQuery;

/// Progress of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Events handled so far.
    pub events_done: u64,
    /// The position of the last event handled.
    pub position: u64,
    /// The head of the log when the rebuild started: where it will stop.
    pub head: u64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

impl Progress {
    /// `events_done` events handled up to `position`, of a rebuild that
    /// stops at `head` and started `elapsed` ago.
    pub fn new(events_done: u64, position: u64, head: u64, elapsed: Duration) -> Self {
        Self { events_done, position, head, elapsed }
    }

    /// Events handled per second so far.
    pub fn rate(&self) -> f64 {
        per_second(self.events_done, self.elapsed)
    }

    /// How far through the log, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        if self.head == 0 {
            1.0
        } else {
            ratio(self.position, self.head)
        }
    }

    /// The estimated time left, from the rate at which positions pass.
    pub fn eta(&self) -> Option<Duration> {
        let rate = per_second(self.position, self.elapsed);
        (rate > 0.0).then(|| Duration::from_secs_f64(ratio(self.head.saturating_sub(self.position), 1) / rate))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} events, {:.1}%, {:.0} events/s", self.events_done, self.fraction() * 100.0, self.rate())?;
        match self.eta() {
            Some(eta) => write!(f, ", about {:.1} s left", eta.as_secs_f64()),
            None => Ok(()),
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        ratio(count, 1) / secs
    } else {
        0.0
    }
}

impl ProjectionEngine {
    /// Rebuilds `projection` from the beginning of the log: resets its read
    /// model, forgets its checkpoint and its dead letters (they were
    /// parked against the read model being thrown away; events that still
    /// fail are parked again under `options`), replays every event up to
    /// the head as it was when the rebuild started, and saves the
    /// checkpoint there. `progress` is called about every 250 ms and once
    /// at the end. The projection must not be running meanwhile.
    pub async fn rebuild<P: Projection>(
        &self,
        projection: &mut P,
        options: ProjectionOptions,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Progress, ProjectionError> {
        let name = projection.name();
        let store_error = |source| ProjectionError::Store { projection: name.to_string(), source };
        self.start_over(projection, &name).await?;
        let mut delivery = self.delivery(&name, &options);
        let head = self.events.head_position().await.map_err(store_error)?.unwrap_or(0);
        let filter = projection.filter();
        let mut events = self.events.read_all(1, &filter);
        let started = Instant::now();
        let mut report = Progress { events_done: 0, position: 0, head, elapsed: Duration::ZERO };
        let mut report_due = Interval::new(Duration::from_millis(250));
        // Events since the last save: positions need not be consecutive
        // (PostgreSQL's jump at every transaction), so they are counted.
        let mut unsaved = 0;
        while let Some(event) = events.next().await {
            let event = event.map_err(store_error)?;
            if event.global_position > head {
                break;
            }
            let span = handle_span(&name, &event);
            delivery.deliver(&mut Handler(projection), &event, &span).await.map_err(|error| match error {
                DeliveryError::Projection(error) => error,
                DeliveryError::Interrupted(never) => match never {},
            })?;
            report.events_done += 1;
            report.position = event.global_position;
            unsaved += 1;
            if unsaved >= options.checkpoint_every {
                self.checkpoints.save(&name, report.position).await.map_err(store_error)?;
                unsaved = 0;
            }
            if report_due.tick() {
                report_due.restart();
                report.elapsed = started.elapsed();
                progress(&report);
            }
        }
        report.position = report.position.max(head);
        self.checkpoints.save(&name, report.position).await.map_err(store_error)?;
        report.elapsed = started.elapsed();
        progress(&report);
        Ok(report)
    }
}

impl ProjectionEngine {
    /// What every rebuild does first, the engine's and a running runner's
    /// ([`ProjectionHandle::rebuild`](super::ProjectionHandle::rebuild)):
    /// resets the read model of `projection` (named `name`), deletes its
    /// checkpoint and purges its dead letters, in that order. The first
    /// failure stops it and is returned.
    pub(super) async fn start_over<P: Projection>(
        &self,
        projection: &mut P,
        name: &str,
    ) -> Result<(), ProjectionError> {
        let store_error = |source| ProjectionError::Store { projection: name.to_owned(), source };
        projection.reset().await.map_err(|source| ProjectionError::Reset { projection: name.to_owned(), source })?;
        self.checkpoints.delete(name).await.map_err(store_error)?;
        if let Some(letters) = &self.dead_letters {
            letters.purge(&DeadLetterQuery::consumer(name.to_owned())).await.map_err(store_error)?;
        }
        Ok(())
    }
}
