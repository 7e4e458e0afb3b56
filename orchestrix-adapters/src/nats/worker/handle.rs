//! The handle of a running worker.

use std::fmt;
use std::marker::PhantomData;

use orchestrix::projection::{DropOutcome, ProjectionError, RetryOutcome};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::WorkerStatus;
use crate::nats::NatsError;

/// A dead-letter request sent through a [`WorkerHandle`].
pub(super) enum Request {
    Retry(Uuid, oneshot::Sender<Result<RetryOutcome, ProjectionError>>),
    RetryAll(oneshot::Sender<Result<RetryOutcome, ProjectionError>>),
    Drop(Uuid, oneshot::Sender<Result<DropOutcome, ProjectionError>>),
}

/// Controls a projection running in a [`ProjectionWorker`](super::ProjectionWorker).
pub struct WorkerHandle<P> {
    pub(super) status: watch::Receiver<WorkerStatus>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) requests: mpsc::Sender<Request>,
    pub(super) task: JoinHandle<Result<P, NatsError>>,
    pub(super) _projection: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for WorkerHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle").field("status", &*self.status.borrow()).finish_non_exhaustive()
    }
}

impl<P> WorkerHandle<P> {
    /// The worker's progress.
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }

    /// Waits until `done` holds for the status, or the worker ended.
    pub async fn wait_for(&mut self, mut done: impl FnMut(&WorkerStatus) -> bool) -> WorkerStatus {
        let _ = self.status.wait_for(|s| done(s) || s.failed.is_some()).await;
        self.status()
    }

    async fn ask<A>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<A, ProjectionError>>) -> Request,
    ) -> Result<A, ProjectionError> {
        let ended = || ProjectionError::Ended("worker".into(), "the worker is not running".into());
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).await.map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Retries the stream of the parked event `id`, between two
    /// deliveries, with the semantics of the engine
    /// ([`Delivery::retry`](orchestrix::projection::delivery::Delivery::retry): the stream's letters in order, until one
    /// fails again). Only the worker that holds the stream's partition
    /// retries it; others answer [`ProjectionError::Unsupported`].
    pub async fn retry_dead_letter(&self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        self.ask(|reply| Request::Retry(id, reply)).await
    }

    /// Retries every parked stream of the partitions this worker holds.
    pub async fn retry_dead_letters(&self) -> Result<RetryOutcome, ProjectionError> {
        self.ask(Request::RetryAll).await
    }

    /// Drops the parked event `id` without handling it; the letters behind
    /// it stay parked ([`Delivery::drop_letter`](orchestrix::projection::delivery::Delivery::drop_letter)).
    pub async fn drop_dead_letter(&self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.ask(|reply| Request::Drop(id, reply)).await
    }

    /// Stops after the event in hand, gives up the partitions, and
    /// returns the projection.
    pub async fn stop(self) -> Result<P, NatsError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(NatsError::Ended("worker", error.to_string())),
        }
    }

    /// Kills the task at once, as a crash would. Its leases go when their
    /// connections drop.
    pub fn abort(self) {
        self.task.abort();
    }
}
