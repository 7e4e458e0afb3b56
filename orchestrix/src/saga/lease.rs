//! A saga manager's runner under a lease: one active runner per saga kind
//! across everyone who shares the leases (ADR 0007, ADR 0032); and the
//! ticker that drives waiting instances (ADR 0038), with or without one.

use std::sync::Arc;
use std::time::Duration;

use super::{Saga, SagaManager};
use crate::error::{render_chain as render, StoreError};
use crate::lease::{self, Leases};
use crate::projection::{
    ProjectionEngine, ProjectionError, ProjectionHandle, ProjectionOptions, ProjectionState, RunnerControl,
};

/// How often a standby runner tries to take the lease.
pub(super) const LEASE_RETRY: Duration = Duration::from_secs(1);

/// How often the running manager checks (and so extends) its lease. It
/// must stay well below the shortest time to live of a lease store (the
/// SQLite store's default is 10 s).
pub(super) const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Why following the engine's runner ended.
enum Ended {
    /// The handle asked to stop.
    Stop,
    /// The lease could not be confirmed: stand by again.
    LeaseLost,
    /// The engine's runner ended by itself.
    Runner,
}

/// The task behind a leased manager's [`ProjectionHandle`]: wait for the
/// lease, resume unfinished instances, run the manager in `engine` while
/// the lease holds, and stand by again when it is lost.
pub(super) async fn run<S: Saga>(
    manager: SagaManager<S>,
    leases: Arc<dyn Leases>,
    engine: ProjectionEngine,
    options: ProjectionOptions,
    control: RunnerControl,
) -> Result<SagaManager<S>, ProjectionError> {
    let name = SagaManager::<S>::lease_name();
    let projection = SagaManager::<S>::category();
    loop {
        control.report(|s| s.state = ProjectionState::CatchingUp);
        let mut stop = control.stop_signal();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let lease = match lease::wait_for(&*leases, &name, LEASE_RETRY, stopped).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Ok(manager),
            Err(source) => return Err(ProjectionError::Store { projection, source }),
        };
        tracing::info!(saga = S::NAME, lease = %name, "holding the saga's lease; running");
        *manager.lease_slot().lock().await = Some(lease);
        // The previous holder may have left instances halfway.
        if let Err(error) = manager.resume_incomplete().await {
            tracing::warn!(saga = S::NAME, error = %render(&error), "could not resume every unfinished saga; their start events come again");
        }
        let mut runner = engine.spawn(manager.clone(), options);
        let mut ended = follow(&manager, &mut runner, &control, true).await;
        if matches!(ended, Ended::Runner) && manager.lease_slot().lock().await.is_none() {
            // The runner stopped because a step found the lease gone.
            ended = Ended::LeaseLost;
        }
        match ended {
            Ended::LeaseLost => {
                tracing::warn!(saga = S::NAME, lease = %name, "lost the saga's lease; stopping and standing by");
                let _ = runner.stop().await;
                manager.lease_slot().lock().await.take();
            }
            Ended::Stop | Ended::Runner => {
                let result = if matches!(ended, Ended::Stop) { runner.stop().await } else { runner.join().await };
                release(&manager, &name).await;
                return result;
            }
        }
    }
}

/// The task behind the handle of a manager without a lease whose
/// definition waits or decides: run the manager in `engine` and drive the
/// waiting instances every tick.
pub(super) async fn run_unleased<S: Saga>(
    manager: SagaManager<S>,
    engine: ProjectionEngine,
    options: ProjectionOptions,
    control: RunnerControl,
) -> Result<SagaManager<S>, ProjectionError> {
    let mut runner = engine.spawn(manager.clone(), options);
    match follow(&manager, &mut runner, &control, false).await {
        Ended::Stop => runner.stop().await,
        Ended::Runner | Ended::LeaseLost => runner.join().await,
    }
}

/// Mirrors the engine runner's status on the handle, checks the lease
/// every [`LEASE_CHECK`] if `leased`, drives the waiting instances every
/// tick if the definition waits or decides, and says why it stopped
/// following.
async fn follow<S: Saga>(
    manager: &SagaManager<S>,
    runner: &mut ProjectionHandle<SagaManager<S>>,
    control: &RunnerControl,
    leased: bool,
) -> Ended {
    enum Wake {
        Stop,
        Check,
        Tick,
        Moved,
    }
    let mut stop = control.stop_signal();
    let mut check = tokio::time::interval(LEASE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticking = manager.needs_ticker();
    let mut tick = tokio::time::interval(manager.tick_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let status = runner.status();
        let position = status.position;
        let over = matches!(status.state, ProjectionState::Stopped | ProjectionState::Failed(_));
        control.report(|s| *s = status);
        if over {
            return Ended::Runner;
        }
        if control.is_stopping() {
            return Ended::Stop;
        }
        let wake = tokio::select! {
            _ = stop.changed() => Wake::Stop,
            _ = check.tick(), if leased => Wake::Check,
            _ = tick.tick(), if ticking => Wake::Tick,
            _ = runner.wait_for_position(position + 1, LEASE_CHECK) => Wake::Moved,
        };
        match wake {
            Wake::Stop => return Ended::Stop,
            Wake::Moved => {}
            Wake::Tick => {
                if let Err(error) = manager.tick().await {
                    tracing::warn!(saga = S::NAME, error = %render(&error), "driving the waiting sagas failed; the next tick tries again");
                    if leased && matches!(error, super::SagaError::LeaseNotHeld { .. }) {
                        return Ended::LeaseLost;
                    }
                }
            }
            Wake::Check => {
                let mut held = manager.lease_slot().lock().await;
                let checked = match held.as_mut() {
                    Some(lease) => lease.check().await,
                    None => Err(StoreError::Unavailable("a step found the lease gone".into())),
                };
                if let Err(error) = checked {
                    tracing::warn!(saga = S::NAME, error = %render(&error), "the saga's lease could not be confirmed");
                    *held = None;
                    return Ended::LeaseLost;
                }
            }
        }
    }
}

/// Gives the lease up, so that a standby runner takes over at once.
async fn release<S: Saga>(manager: &SagaManager<S>, name: &str) {
    if let Some(lease) = manager.lease_slot().lock().await.take() {
        if let Err(error) = lease.release().await {
            tracing::warn!(lease = name, error = %render(&error), "could not release the saga's lease; it expires by itself");
        }
    }
}
