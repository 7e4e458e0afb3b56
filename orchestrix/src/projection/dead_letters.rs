//! Retrying and dropping a projection's dead letters, in stream order, the
//! same way in every runner (ADR 0025).
//!
//! - **Retry** ([`Delivery::retry`]): retrying any letter of a stream
//!   replays that stream's parked events from the first, in order, one
//!   attempt each (no retry policy: the caller decides when to try again).
//!   Each applied event's letter is removed (in the same transaction, for
//!   a transactional runner). The first that fails again stays parked with
//!   its attempts incremented and its new error, and so does everything
//!   behind it: order is kept. When every letter of the stream is applied,
//!   the stream is released and its next events are delivered as usual.
//!   The event is handed to the projection whatever its checkpoint: the
//!   checkpoint passed parked events on purpose, and no runner compares a
//!   retried event with it. A handler that skips events at or below the
//!   last *global position* it applied would skip a retried event; one
//!   that remembers the last *stream version* per stream (as recommended
//!   for at-least-once delivery) applies it, since the events behind it
//!   were not applied either.
//! - **Retry all** ([`Delivery::retry_all`]): every parked stream, oldest
//!   first letter first; a failing stream does not stop the others.
//! - **Drop** ([`Delivery::drop_letter`]): removes one letter without
//!   handling its event. The letters behind it stay parked: the next one
//!   becomes the stream's first, to be retried (or dropped) in turn. The
//!   stream is released for automatic delivery only when its last letter
//!   is gone. A drop never applies an event the user did not ask for.
//!
//! A running projection serves these between two events, through its
//! [`super::ProjectionHandle`] (so its state is never touched
//! concurrently); a stopped one through [`super::ProjectionEngine`] or the
//! adapter's equivalent. Letters dropped or purged directly through the
//! [`DeadLetterStore`] release their streams too: a runner asks the store
//! before parking behind a stream it believes parked.

use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::delivery::{handle_span, Delivery, DeliveryError, Failure, Target};
use super::ProjectionError;
use crate::error::render_chain;
use crate::store::{DeadLetter, DeadLetterQuery, DeadLetterStore};

/// What a retry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryOutcome {
    /// The letters whose events were applied and removed, in the order
    /// they were applied.
    pub applied: Vec<Uuid>,
    /// The letters whose event failed again: they stay parked, with their
    /// attempts incremented (at most one per stream retried).
    pub failed: Vec<FailedRetry>,
    /// How many letters of the retried streams are still parked (the
    /// failed ones and those behind them).
    pub still_parked: u64,
}

impl RetryOutcome {
    /// Whether every letter retried was applied: its streams are released.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.still_parked == 0
    }

    fn add(&mut self, other: Self) {
        self.applied.extend(other.applied);
        self.failed.extend(other.failed);
        self.still_parked += other.still_parked;
    }
}

/// A parked event that failed again when retried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedRetry {
    /// The letter, still parked.
    pub id: Uuid,
    /// The handler's error, with its sources.
    pub error: String,
    /// The letter's attempts so far.
    pub attempts: u32,
}

/// What a drop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropOutcome {
    /// Whether the letter existed (and was this projection's).
    pub removed: bool,
    /// How many letters of its stream are still parked: the first of them
    /// is the stream's new first letter. 0: the stream is released.
    pub still_parked: u64,
}

impl Delivery {
    fn store(&self) -> Result<std::sync::Arc<dyn DeadLetterStore>, ProjectionError> {
        self.dead_letters.clone().ok_or_else(|| ProjectionError::NoDeadLetterStore(self.name.clone()))
    }

    /// This projection's letter `id`.
    async fn own_letter(&self, store: &dyn DeadLetterStore, id: Uuid) -> Result<DeadLetter, ProjectionError> {
        match store.get(id).await.map_err(|e| self.store_error(e))? {
            Some(letter) if letter.consumer == self.name => Ok(letter),
            _ => Err(ProjectionError::UnknownDeadLetter { projection: self.name.clone(), id }),
        }
    }

    /// Retries the stream of letter `id`: replays its parked events from
    /// the first, in order, until one fails again (see the
    /// [module](self) docs).
    pub async fn retry<T: Target>(
        &mut self,
        target: &mut T,
        id: Uuid,
    ) -> Result<RetryOutcome, DeliveryError<T::Interrupt>> {
        let store = self.store()?;
        let letter = self.own_letter(&*store, id).await?;
        let stream = letter.event.stream;
        let letters = self.stream_letters(&*store, &stream).await.map_err(|e| self.store_error(e))?;
        let total = u64::try_from(letters.len()).unwrap_or(u64::MAX);
        let mut outcome = RetryOutcome::default();
        for letter in letters {
            let span = handle_span(&self.name, &letter.event);
            match target.apply_parked(&*store, &letter).instrument(span.clone()).await {
                Ok(()) => outcome.applied.push(letter.id),
                Err(Failure::Handler(error)) => {
                    let error = render_chain(&*error);
                    span.record("attempts", letter.attempts + 1);
                    span.record("error", error.as_str());
                    span.record("otel.status_code", "ERROR");
                    let attempts = letter.attempts + 1;
                    let again = DeadLetter { attempts, error: error.clone(), ..letter };
                    outcome.failed.push(FailedRetry { id: again.id, error, attempts });
                    store.park(again).await.map_err(|e| self.store_error(e))?;
                    break;
                }
                Err(Failure::Store(error)) => return Err(self.store_error(error).into()),
                Err(Failure::Interrupted(interrupt)) => return Err(DeliveryError::Interrupted(interrupt)),
            }
        }
        outcome.still_parked = total - u64::try_from(outcome.applied.len()).unwrap_or(0);
        if outcome.still_parked == 0 {
            self.parked.remove(&stream);
        } else {
            self.parked.insert(stream);
        }
        Ok(outcome)
    }

    /// Retries every parked stream of this projection, the stream with the
    /// oldest letter first; a stream that fails again stays parked and the
    /// others are still retried.
    pub async fn retry_all<T: Target>(&mut self, target: &mut T) -> Result<RetryOutcome, DeliveryError<T::Interrupt>> {
        let store = self.store()?;
        let letters =
            store.query(&DeadLetterQuery::consumer(self.name.clone())).await.map_err(|e| self.store_error(e))?;
        let mut streams = Vec::new();
        for letter in letters {
            if !streams.iter().any(|(stream, _)| *stream == letter.event.stream) {
                streams.push((letter.event.stream.clone(), letter.id));
            }
        }
        let mut outcome = RetryOutcome::default();
        for (_, id) in streams {
            outcome.add(self.retry(target, id).await?);
        }
        Ok(outcome)
    }

    /// Drops letter `id` without handling its event; the letters behind it
    /// stay parked (see the [module](self) docs).
    pub async fn drop_letter(&mut self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        let store = self.store()?;
        let letter = match self.own_letter(&*store, id).await {
            Ok(letter) => letter,
            Err(ProjectionError::UnknownDeadLetter { .. }) => {
                return Ok(DropOutcome { removed: false, still_parked: 0 })
            }
            Err(error) => return Err(error),
        };
        let removed = store.remove(id).await.map_err(|e| self.store_error(e))?;
        let left = self.stream_letters(&*store, &letter.event.stream).await.map_err(|e| self.store_error(e))?;
        if left.is_empty() {
            self.parked.remove(&letter.event.stream);
        }
        Ok(DropOutcome { removed, still_parked: u64::try_from(left.len()).unwrap_or(u64::MAX) })
    }

    /// Serves a request sent through a [`super::ProjectionHandle`] and
    /// answers it. An interruption is answered with an error and returned
    /// to the runner, which deals with it as with any other.
    pub async fn serve<T: Target>(&mut self, target: &mut T, request: DeadLetterRequest) -> Result<(), T::Interrupt> {
        match request.0 {
            Request::Retry(id, reply) => {
                let result = self.retry(target, id).await;
                self.answer(reply, result)
            }
            Request::RetryAll(reply) => {
                let result = self.retry_all(target).await;
                self.answer(reply, result)
            }
            Request::Drop(id, reply) => {
                let _ = reply.send(self.drop_letter(id).await);
                Ok(())
            }
            // A runner that rebuilds itself takes the request before it
            // gets here (`DeadLetterRequest::into_rebuild`): ADR 0050.
            Request::Rebuild(reply) => {
                let _ = reply.send(Err(ProjectionError::Unsupported {
                    projection: self.name.clone(),
                    operation: "rebuilding through its handle (stop it and rebuild it)",
                }));
                Ok(())
            }
        }
    }

    fn answer<A, I: std::fmt::Display>(
        &self,
        reply: oneshot::Sender<Result<A, ProjectionError>>,
        result: Result<A, DeliveryError<I>>,
    ) -> Result<(), I> {
        match result {
            Ok(answer) => {
                let _ = reply.send(Ok(answer));
                Ok(())
            }
            Err(DeliveryError::Projection(error)) => {
                let _ = reply.send(Err(error));
                Ok(())
            }
            Err(DeliveryError::Interrupted(interrupt)) => {
                let _ = reply.send(Err(ProjectionError::Ended(
                    self.name.clone(),
                    format!("the runner was interrupted ({interrupt}); what was applied is removed from the dead letters, try again for the rest"),
                )));
                Err(interrupt)
            }
        }
    }
}

/// What a [`DeadLetterRequest`] asks, with where to answer.
#[derive(Debug)]
pub(super) enum Request {
    Retry(Uuid, oneshot::Sender<Result<RetryOutcome, ProjectionError>>),
    RetryAll(oneshot::Sender<Result<RetryOutcome, ProjectionError>>),
    Drop(Uuid, oneshot::Sender<Result<DropOutcome, ProjectionError>>),
    Rebuild(oneshot::Sender<Result<(), ProjectionError>>),
}

/// A retry, drop or rebuild asked through a [`super::ProjectionHandle`],
/// for the runner to serve between two events with [`Delivery::serve`]
/// (which refuses a rebuild with [`ProjectionError::Unsupported`]: a
/// runner that rebuilds itself takes it first with
/// [`DeadLetterRequest::into_rebuild`], ADR 0050).
#[derive(Debug)]
pub struct DeadLetterRequest(pub(super) Request);

impl DeadLetterRequest {
    /// The rebuild asked through
    /// [`ProjectionHandle::rebuild`](super::ProjectionHandle::rebuild), if
    /// this request is one, for a runner that rebuilds itself (ADR 0050);
    /// any other request is given back, to be served with
    /// [`Delivery::serve`].
    pub fn into_rebuild(self) -> Result<RebuildRequest, Self> {
        match self.0 {
            Request::Rebuild(reply) => Ok(RebuildRequest(reply)),
            other => Err(Self(other)),
        }
    }
}

/// A rebuild asked through a [`super::ProjectionHandle`], taken from a
/// [`DeadLetterRequest`] by a runner that rebuilds itself (ADR 0050).
#[derive(Debug)]
pub struct RebuildRequest(oneshot::Sender<Result<(), ProjectionError>>);

impl RebuildRequest {
    /// Answers the handle: `Ok` once the read model, the checkpoint and
    /// the dead letters are reset (not once caught up again), or why not.
    pub fn answer(self, result: Result<(), ProjectionError>) {
        let _ = self.0.send(result);
    }
}
