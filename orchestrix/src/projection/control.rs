//! Pausing a running projection from any process (ADR 0050): the one
//! place every runner (the engine's, the PostgreSQL transactional one)
//! reads its consumer's control record and holds still while it says so.
//!
//! A runner makes a [`PauseGate`], asks
//! [`PauseGate::pause_requested`] when it starts and whenever
//! [`PauseGate::due`] says so (at most every [`CONTROL_EVERY`], compared
//! with a clock the runner reads anyway: nothing per event reaches the
//! store), finishes the event or batch in hand, saves its checkpoint,
//! drops its subscription and calls [`PauseGate::hold`]. That
//! acknowledges the pause, reports [`ProjectionState::Paused`], serves the
//! handle's dead-letter requests and returns when the pause is withdrawn
//! ([`Held::Resumed`]: the runner reloads its checkpoint and parked
//! streams, then follows the log again) or the runner is stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use uuid::Uuid;

use super::dead_letters::RebuildRequest;
use super::delivery::{Delivery, Target};
use super::{ProjectionError, ProjectionState, RunnerControl};
use crate::store::{CheckpointStore, PauseAck};

/// How often a runner reads its control record, running or paused.
pub const CONTROL_EVERY: Duration = Duration::from_millis(500);

/// How a [`PauseGate::hold`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Held<I> {
    /// The pause was withdrawn: reload the checkpoint and the parked
    /// streams, then go on.
    Resumed,
    /// The handle asked the runner to stop (its checkpoint is saved
    /// already).
    Stopped,
    /// Serving a dead-letter request was interrupted (an outage of a
    /// transactional runner): handle it as the runner does elsewhere.
    Interrupted(I),
    /// The pause was withdrawn and a rebuild was asked meanwhile (ADR
    /// 0050): rebuild, then go on from position 1.
    Rebuild(RebuildRequest),
}

/// A runner's view of its consumer's control record. See the
/// [module](self) docs.
#[derive(Debug)]
pub struct PauseGate {
    checkpoints: Arc<dyn CheckpointStore>,
    name: String,
    runner: String,
    next: Instant,
}

impl PauseGate {
    /// The gate of projection `name`, whose record `checkpoints` keeps.
    /// The runner is named after its process and a random id (shown in
    /// acknowledgements).
    pub fn new(name: impl Into<String>, checkpoints: Arc<dyn CheckpointStore>) -> Self {
        let runner = format!("pid {} runner {}", std::process::id(), Uuid::now_v7().simple());
        Self { checkpoints, name: name.into(), runner, next: Instant::now() }
    }

    /// Who this runner is, as its acknowledgements say.
    pub fn runner(&self) -> &str {
        &self.runner
    }

    /// Whether the record is due to be read again at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// When the record is due to be read again (for an idle runner's
    /// `tokio::time::sleep_until`).
    pub fn next_check(&self) -> Instant {
        self.next
    }

    /// Reads the record: whether a pause is requested. A store that
    /// cannot answer (unavailable, or keeping no records) leaves the
    /// runner running; it is asked again after [`CONTROL_EVERY`].
    pub async fn pause_requested(&mut self) -> bool {
        self.next = Instant::now() + CONTROL_EVERY;
        match self.checkpoints.load_control(&self.name).await {
            Ok(record) => record.is_some_and(|record| record.pause_requested),
            Err(error) => {
                tracing::debug!(projection = %self.name, %error, "cannot read the control record; running on");
                false
            }
        }
    }

    /// Records that this runner paused at `position`; whether it was
    /// recorded (not when the pause was withdrawn meanwhile).
    async fn acknowledge(&self, position: u64) -> bool {
        let ack = PauseAck::new(self.runner.clone(), position, Utc::now());
        match self.checkpoints.acknowledge_pause(&self.name, Some(ack)).await {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(projection = %self.name, %error, "cannot acknowledge the pause; trying again");
                false
            }
        }
    }

    /// Holds the runner paused at `position` (its checkpoint saved, no
    /// subscription, no transaction): acknowledges, reports
    /// [`ProjectionState::Paused`], serves the handle's dead-letter
    /// requests with `target` (a rebuild is refused with
    /// [`ProjectionError::Paused`] unless the record, read at once, says
    /// the pause was withdrawn: [`Held::Rebuild`]), and reads the record every
    /// [`CONTROL_EVERY`] (at once when the handle nudges) until the pause
    /// is withdrawn or the runner is stopped.
    pub async fn hold<T: Target>(
        &mut self,
        control: &mut RunnerControl,
        delivery: &mut Delivery,
        target: &mut T,
        position: u64,
    ) -> Held<T::Interrupt> {
        let mut acknowledged = self.acknowledge(position).await;
        control.report(|s| s.state = ProjectionState::Paused);
        tracing::info!(projection = %self.name, position, runner = %self.runner, "paused");
        let mut stop = control.stop_signal();
        let mut nudge = control.nudge_signal();
        let mut rebuild: Option<RebuildRequest> = None;
        loop {
            if let Some(refused) = rebuild.take() {
                refused.answer(Err(ProjectionError::Paused(self.name.clone())));
            }
            tokio::select! {
                _ = stop.changed() => return Held::Stopped,
                () = tokio::time::sleep(CONTROL_EVERY) => {}
                _ = nudge.changed() => {}
                request = control.request() => match request.into_rebuild() {
                    // The record decides, read at once below: a paused
                    // projection refuses (it would have to run, ADR
                    // 0050), a resume written a moment ago lets it go.
                    Ok(asked) => rebuild = Some(asked),
                    Err(request) => {
                        if let Err(interrupt) = delivery.serve(target, request).await {
                            return Held::Interrupted(interrupt);
                        }
                        continue;
                    }
                }
            }
            if control.is_stopping() {
                return Held::Stopped;
            }
            self.next = Instant::now() + CONTROL_EVERY;
            match self.checkpoints.load_control(&self.name).await {
                Ok(Some(record)) if record.pause_requested => {
                    // A changed request cleared the acknowledgement (a
                    // resume and a new pause in between): give it again.
                    if record.paused.is_none() || !acknowledged {
                        acknowledged = self.acknowledge(position).await;
                    }
                }
                Ok(_) => {
                    if let Err(error) = self.checkpoints.acknowledge_pause(&self.name, None).await {
                        tracing::warn!(projection = %self.name, %error, "cannot clear the pause's acknowledgement");
                    }
                    control.report(|s| s.state = ProjectionState::CatchingUp);
                    tracing::info!(projection = %self.name, "resumed");
                    return rebuild.map_or(Held::Resumed, Held::Rebuild);
                }
                Err(error) => {
                    tracing::warn!(projection = %self.name, %error, "cannot read the control record; staying paused");
                }
            }
        }
    }
}
