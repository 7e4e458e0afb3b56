//! The handle of a running projection and the runner's end of it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::dead_letters::{DeadLetterRequest, DropOutcome, Request, RetryOutcome};
use super::ProjectionError;
use crate::store::{CheckpointStore, EventStore};

/// Where a projection is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Reading events recorded before it started.
    CatchingUp,
    /// Caught up; waiting for new events.
    Live,
    /// Paused through its control record (ADR 0050): its checkpoint is
    /// saved, it handles no event until resumed.
    Paused,
    /// Stopped on request.
    Stopped,
    /// Stopped by an error.
    Failed(String),
}

/// A snapshot of a running projection's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// Where it is.
    pub state: ProjectionState,
    /// The position of the last event it handled or parked.
    pub position: u64,
    /// Events handled since it started.
    pub handled: u64,
    /// Events parked since it started.
    pub parked: u64,
}

impl ProjectionStatus {
    /// A projection in `state` at `position`, having handled `handled` and
    /// parked `parked` events since it started (what a runner reports).
    pub fn new(state: ProjectionState, position: u64, handled: u64, parked: u64) -> Self {
        Self { state, position, handled, parked }
    }
}

/// Controls a projection running in its own task.
pub struct ProjectionHandle<P> {
    name: String,
    status: watch::Receiver<ProjectionStatus>,
    stop: watch::Sender<bool>,
    /// Set when the runner serves dead-letter requests.
    requests: Option<mpsc::Sender<DeadLetterRequest>>,
    /// The log the projection reads, for [`ProjectionHandle::wait_caught_up`].
    events: Option<Arc<dyn EventStore>>,
    /// The highest position waited for: the runner moves over skipped
    /// events up to it.
    wanted: watch::Sender<u64>,
    /// Where the projection's control record is kept, for
    /// [`ProjectionHandle::pause`] and [`ProjectionHandle::resume`].
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// Bumped to have the runner read its control record at once.
    nudge: watch::Sender<u64>,
    task: JoinHandle<Result<P, ProjectionError>>,
}

/// What a projection runner reports through and listens to: the other end
/// of a [`ProjectionHandle`].
///
/// The engine's runner uses it, and so can an adapter that runs
/// projections its own way (the PostgreSQL adapter's transactional
/// runner does), so that every running projection is controlled through
/// the same handle. See [`ProjectionHandle::spawn_runner`].
#[derive(Debug)]
pub struct RunnerControl {
    status: watch::Sender<ProjectionStatus>,
    stop: watch::Receiver<bool>,
    requests: Option<mpsc::Receiver<DeadLetterRequest>>,
    wanted: watch::Receiver<u64>,
    nudge: watch::Receiver<u64>,
}

impl RunnerControl {
    /// Changes the status the handle sees.
    pub fn report(&self, update: impl FnOnce(&mut ProjectionStatus)) {
        self.status.send_modify(update);
    }

    /// The status as last reported.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Whether the handle asked the runner to stop (or was dropped).
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow() || self.status.is_closed()
    }

    /// A receiver that changes when the handle asks the runner to stop, for
    /// `tokio::select!`: `_ = stop.changed() => ...` (an error means the
    /// handle was dropped, which also means stop).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// The highest position a caller of
    /// [`ProjectionHandle::wait_for_position`] waits for, for
    /// `tokio::select!` (`_ = wanted.changed() => ...`): while it is above
    /// the position, an idle runner moves over the events its filter
    /// leaves out ([`skippable`](super::delivery::skippable)).
    pub fn wanted_signal(&self) -> watch::Receiver<u64> {
        self.wanted.clone()
    }

    /// A receiver that changes when the handle paused or resumed the
    /// projection, for `tokio::select!`: read the control record at once
    /// ([`PauseGate`](super::control::PauseGate)).
    pub fn nudge_signal(&self) -> watch::Receiver<u64> {
        self.nudge.clone()
    }

    /// The next request (retry, drop, rebuild) sent through the handle,
    /// for `tokio::select!`; pending forever when the runner was spawned
    /// with [`ProjectionHandle::spawn_runner`] (which serves none) or the
    /// handle is gone. Serve it with
    /// [`Delivery::serve`](super::delivery::Delivery::serve).
    pub async fn request(&mut self) -> DeadLetterRequest {
        match self.requests.as_mut() {
            Some(requests) => match requests.recv().await {
                Some(request) => request,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// A dead-letter request that is waiting, if any.
    pub fn try_request(&mut self) -> Option<DeadLetterRequest> {
        self.requests.as_mut().and_then(|requests| requests.try_recv().ok())
    }
}

impl<P> fmt::Debug for ProjectionHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<P: Send + 'static> ProjectionHandle<P> {
    /// Runs `run` in its own task as a projection named `name`, and returns
    /// the handle that controls it. `run` reports its progress and learns
    /// that it should stop through the [`RunnerControl`] it is given; when
    /// it returns, the handle's state becomes
    /// [`ProjectionState::Stopped`] or [`ProjectionState::Failed`].
    ///
    /// For adapters that run projections their own way;
    /// [`ProjectionEngine::spawn`](super::ProjectionEngine::spawn) is the
    /// usual way to run one. Dead-letter requests through such a handle
    /// are refused with [`ProjectionError::Unsupported`]; a runner that
    /// serves them is spawned with [`ProjectionHandle::spawn_serving_runner`].
    pub fn spawn_runner<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(RunnerControl) -> Fut,
        Fut: std::future::Future<Output = Result<P, ProjectionError>> + Send + 'static,
    {
        Self::spawn_with(name.into(), false, run)
    }

    /// [`ProjectionHandle::spawn_runner`] for a runner that serves the
    /// dead-letter requests of the handle ([`ProjectionHandle::retry_dead_letter`]
    /// and its siblings): it must take them from
    /// [`RunnerControl::request`] between two events and answer them with
    /// [`Delivery::serve`](super::delivery::Delivery::serve), or they wait.
    pub fn spawn_serving_runner<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(RunnerControl) -> Fut,
        Fut: std::future::Future<Output = Result<P, ProjectionError>> + Send + 'static,
    {
        Self::spawn_with(name.into(), true, run)
    }

    fn spawn_with<F, Fut>(name: String, serving: bool, run: F) -> Self
    where
        F: FnOnce(RunnerControl) -> Fut,
        Fut: std::future::Future<Output = Result<P, ProjectionError>> + Send + 'static,
    {
        let (status_tx, status) =
            watch::channel(ProjectionStatus { state: ProjectionState::CatchingUp, position: 0, handled: 0, parked: 0 });
        let (stop, stop_rx) = watch::channel(false);
        let (requests, requests_rx) = if serving {
            let (tx, rx) = mpsc::channel(16);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (wanted, wanted_rx) = watch::channel(0);
        let (nudge, nudge_rx) = watch::channel(0);
        let reporter = status_tx.clone();
        let work = run(RunnerControl {
            status: status_tx,
            stop: stop_rx,
            requests: requests_rx,
            wanted: wanted_rx,
            nudge: nudge_rx,
        });
        let task = tokio::spawn(async move {
            let result = work.await;
            reporter.send_modify(|s| {
                s.state = match &result {
                    Ok(_) => ProjectionState::Stopped,
                    Err(error) => ProjectionState::Failed(error.to_string()),
                };
            });
            result
        });
        Self { name, status, stop, requests, events: None, wanted, checkpoints: None, nudge, task }
    }

    /// Tells the handle where the projection's control record is kept
    /// (its checkpoint store), so that [`ProjectionHandle::pause`] and
    /// [`ProjectionHandle::resume`] work (the engine and the adapters'
    /// runners do this).
    #[must_use]
    pub fn controlled_by(mut self, checkpoints: Arc<dyn CheckpointStore>) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    fn control_store(&self, operation: &'static str) -> Result<&Arc<dyn CheckpointStore>, ProjectionError> {
        self.checkpoints
            .as_ref()
            .ok_or_else(|| ProjectionError::Unsupported { projection: self.name.clone(), operation })
    }

    /// Pauses the projection (ADR 0050): writes the durable pause request
    /// to its control record (so every runner of it, in any process,
    /// pauses, and one that starts later starts paused) and waits, for at
    /// most `timeout`, until this runner has finished the event in hand,
    /// saved its checkpoint and reports [`ProjectionState::Paused`].
    /// Returns the status then (an ended projection's says how it ended),
    /// or [`ProjectionError::PauseTimeout`] (the request stays: the runner
    /// pauses when it can; [`ProjectionHandle::resume`] withdraws it).
    pub async fn pause(&self, timeout: Duration) -> Result<ProjectionStatus, ProjectionError> {
        let store = self.control_store("pausing (see `ProjectionHandle::controlled_by`)")?;
        store
            .request_pause(&self.name, true)
            .await
            .map_err(|source| ProjectionError::Store { projection: self.name.clone(), source })?;
        self.nudge.send_modify(|n| *n = n.wrapping_add(1));
        let paused = |s: &ProjectionStatus| {
            matches!(s.state, ProjectionState::Paused | ProjectionState::Stopped | ProjectionState::Failed(_))
        };
        let mut status = self.status.clone();
        let waited = tokio::time::timeout(timeout, status.wait_for(paused)).await.map(|r| r.map(|s| s.clone()));
        match waited {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Ok(self.status()),
            Err(_) => Err(ProjectionError::PauseTimeout { projection: self.name.clone(), waited: timeout }),
        }
    }

    /// Withdraws the pause request of the projection (in every process):
    /// its runners reload their checkpoints and parked streams and go on.
    /// A projection that is not paused is left as it is. Returns without
    /// waiting; the status leaves [`ProjectionState::Paused`] within
    /// [`CONTROL_EVERY`](super::control::CONTROL_EVERY), at once for this
    /// handle's runner.
    pub async fn resume(&self) -> Result<(), ProjectionError> {
        let store = self.control_store("resuming (see `ProjectionHandle::controlled_by`)")?;
        store
            .request_pause(&self.name, false)
            .await
            .map_err(|source| ProjectionError::Store { projection: self.name.clone(), source })?;
        self.nudge.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Tells the handle which log the projection reads, so that
    /// [`ProjectionHandle::wait_caught_up`] can ask for its head (the
    /// engine and the adapters' runners do this).
    #[must_use]
    pub fn reading(mut self, events: Arc<dyn EventStore>) -> Self {
        self.events = Some(events);
        self
    }

    /// The projection's progress.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Waits until the projection has passed `position` (handled, parked,
    /// or skipped an event at or after it: an idle projection's position
    /// moves over the events its filter leaves out), or has ended, for at
    /// most `timeout`. Returns the status then (an ended projection's
    /// state says how it ended), or [`ProjectionError::Timeout`].
    pub async fn wait_for_position(
        &mut self,
        position: u64,
        timeout: Duration,
    ) -> Result<ProjectionStatus, ProjectionError> {
        self.wanted.send_if_modified(|wanted| {
            let raise = *wanted < position;
            *wanted = (*wanted).max(position);
            raise
        });
        let reached = |s: &ProjectionStatus| {
            s.position >= position || matches!(s.state, ProjectionState::Stopped | ProjectionState::Failed(_))
        };
        let waited = tokio::time::timeout(timeout, self.status.wait_for(reached)).await.map(|r| r.map(|s| s.clone()));
        match waited {
            Ok(Ok(status)) => Ok(status),
            // The runner's end of the channel is gone: it ended.
            Ok(Err(_)) => Ok(self.status()),
            Err(_) => Err(ProjectionError::Timeout {
                projection: self.name.clone(),
                position,
                reached: self.status().position,
                waited: timeout,
            }),
        }
    }

    /// Waits until the projection has passed everything appended before
    /// this call (the store's head position now), for at most `timeout`;
    /// see [`ProjectionHandle::wait_for_position`]. An empty log is
    /// reached at once.
    pub async fn wait_caught_up(&mut self, timeout: Duration) -> Result<ProjectionStatus, ProjectionError> {
        let Some(events) = self.events.clone() else {
            return Err(ProjectionError::Unsupported {
                projection: self.name.clone(),
                operation: "waiting to catch up (the handle does not know the log; see `ProjectionHandle::reading`)",
            });
        };
        let head = events
            .head_position()
            .await
            .map_err(|source| ProjectionError::Store { projection: self.name.clone(), source })?
            .unwrap_or(0);
        self.wait_for_position(head, timeout).await
    }

    async fn ask<A>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<A, ProjectionError>>) -> Request,
    ) -> Result<A, ProjectionError> {
        let Some(requests) = &self.requests else {
            return Err(ProjectionError::Unsupported {
                projection: self.name.clone(),
                operation: "requests through its handle (dead letters, rebuild)",
            });
        };
        let ended = || ProjectionError::Ended(self.name.clone(), "the projection is not running".into());
        let (reply, answer) = oneshot::channel();
        requests.send(DeadLetterRequest(request(reply))).await.map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Retries the stream of the parked event `id` in the running
    /// projection, between two events: its parked events are replayed in
    /// order until one fails again; see
    /// [`Delivery::retry`](super::delivery::Delivery::retry) for what
    /// happens in each case.
    pub async fn retry_dead_letter(&self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        self.ask(|reply| Request::Retry(id, reply)).await
    }

    /// Retries every parked stream of the running projection; see
    /// [`Delivery::retry_all`](super::delivery::Delivery::retry_all).
    pub async fn retry_dead_letters(&self) -> Result<RetryOutcome, ProjectionError> {
        self.ask(Request::RetryAll).await
    }

    /// Drops the parked event `id` without handling it; the letters behind
    /// it in its stream stay parked. See
    /// [`Delivery::drop_letter`](super::delivery::Delivery::drop_letter).
    pub async fn drop_dead_letter(&self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.ask(|reply| Request::Drop(id, reply)).await
    }

    /// Rebuilds the running projection in place (ADR 0050): between two
    /// events its runner resets the read model
    /// ([`Projection::reset`](super::Projection::reset)), deletes the
    /// checkpoint and purges the dead letters (as
    /// [`ProjectionEngine::rebuild`](super::ProjectionEngine::rebuild)
    /// does), reloads its parked streams and follows the log again from
    /// position 1, as a catch-up ([`ProjectionState::CatchingUp`], then
    /// [`ProjectionState::Live`]). Events that still fail are parked
    /// again. Returns once the reset is done, not when caught up: the
    /// status reads position 0 then, and
    /// [`ProjectionHandle::wait_caught_up`] waits for the replay.
    ///
    /// The PostgreSQL transactional runner does the same, its reset,
    /// checkpoint and dead letters in one transaction. Refused with
    /// [`ProjectionError::Paused`] while the projection is paused (resume
    /// it first), with [`ProjectionError::Ended`] when its runner has
    /// ended, and with [`ProjectionError::Unsupported`] by a runner that
    /// does not rebuild itself (one of [`ProjectionHandle::spawn_runner`],
    /// or a serving runner that does not take
    /// [`DeadLetterRequest::into_rebuild`](super::dead_letters::DeadLetterRequest::into_rebuild)).
    /// A failed reset is returned; the engine's runner then goes on from
    /// its checkpoint as the failure left it (none once deleted: from
    /// position 1), so ask again.
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        self.ask(Request::Rebuild).await
    }

    /// Asks the projection to stop after the event in hand, saves its
    /// checkpoint, and returns it.
    pub async fn stop(self) -> Result<P, ProjectionError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for the projection to end by itself (the store closed its
    /// subscription, or an error stopped it).
    pub async fn join(self) -> Result<P, ProjectionError> {
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(ProjectionError::Ended(self.name, error.to_string())),
        }
    }

    /// Kills the task at once, as a crash would: no checkpoint is saved.
    pub fn abort(self) {
        self.task.abort();
    }
}
