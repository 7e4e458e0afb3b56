//! Given/when/then fixtures for sagas.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use futures_util::StreamExt;

use super::{Saga, SagaError, SagaInstance, SagaManager, SagaStatus};
use crate::app::Orchestrix;
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::event::Event;
use crate::store::{EventFilter, ExpectedVersion};
use crate::stream::StreamId;

/// Tests a saga definition against an application (usually in memory):
/// given the application's state, when a start event is recorded, then
/// expect the saga's status, its completed, failed and compensated steps,
/// and the events its commands recorded.
///
/// The fixture drives the instance to its end inline, without a projection
/// engine, exactly as the running [`SagaManager`] would.
///
/// `orchestrix/tests/sagas.rs` uses it throughout; in outline:
///
/// ```text
/// let app = Orchestrix::builder().in_memory().aggregate::<Account>().build()?;
/// app.execute(alice, Open { .. }).await?; // given
/// SagaFixture::new(app, TransferSaga)
///     .when(stream, TransferRequested { from: alice, to: bob, amount: 30 }).await
///     .then_expect_status(SagaStatus::Completed)
///     .then_expect_steps(["debit", "credit"]);
/// ```
pub struct SagaFixture<S: Saga> {
    manager: SagaManager<S>,
}

impl<S: Saga> fmt::Debug for SagaFixture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaFixture").field("saga", &S::NAME).finish()
    }
}

impl<S: Saga> SagaFixture<S> {
    /// A fixture for `saga` running against `app`; set up the "given"
    /// state through `app` before calling [`SagaFixture::when`].
    pub fn new(app: Orchestrix, saga: S) -> Self {
        Self { manager: SagaManager::new(app, saga) }
    }

    /// The manager the fixture drives instances with.
    pub fn manager(&self) -> &SagaManager<S> {
        &self.manager
    }

    /// Compares deadlines with `clock` (a [`ManualClock`](super::ManualClock)
    /// the test moves), so that waits and deferrals pass without sleeping.
    #[must_use]
    pub fn with_clock(self, clock: impl super::Clock) -> Self {
        Self { manager: self.manager.with_clock(clock) }
    }

    /// Drives the instances left waiting ([`SagaManager::tick`]), as a
    /// spawned manager's ticker would, and returns the outcome for the
    /// instance `then` is about.
    pub async fn tick(&self, then: &SagaThen<S>) -> SagaThen<S> {
        let id = then.instance().id;
        let result = match self.manager.tick().await {
            Ok(_) => self.manager.status(id).await,
            Err(error) => Err(error),
        };
        SagaThen { manager: self.manager.clone(), result }
    }

    /// Records `event` in `stream` and hands it to the saga.
    pub async fn when<E: Event>(&self, stream: StreamId, event: E) -> SagaThen<S> {
        self.when_with(stream, event, Metadata::default()).await
    }

    /// [`SagaFixture::when`] with the event's metadata (correlation id, tenant, …).
    pub async fn when_with<E: Event>(&self, stream: StreamId, event: E, metadata: Metadata) -> SagaThen<S> {
        let new = NewEvent::encode(&event, metadata).expect("the start event serializes");
        let mut recorded = self
            .manager
            .app()
            .event_store()
            .append(&stream, ExpectedVersion::Any, vec![new])
            .await
            .expect("the start event is recorded");
        let recorded = recorded.pop().expect("one event was recorded");
        self.when_recorded(&recorded).await
    }

    /// Hands an already recorded event to the saga.
    pub async fn when_recorded(&self, event: &RecordedEvent) -> SagaThen<S> {
        let result = self.manager.handle_event(event).await;
        SagaThen { manager: self.manager.clone(), result }
    }
}

/// The outcome of [`SagaFixture::when`], with the expectations to check.
///
/// Every `then_*` method panics with a message saying what differs.
pub struct SagaThen<S: Saga> {
    manager: SagaManager<S>,
    result: Result<Option<SagaInstance<S::Data>>, SagaError>,
}

impl<S: Saga> fmt::Debug for SagaThen<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaThen").field("saga", &S::NAME).field("result", &self.result).finish_non_exhaustive()
    }
}

impl<S: Saga> SagaThen<S> {
    /// The instance the event started, as it ended.
    pub fn instance(&self) -> &SagaInstance<S::Data> {
        match &self.result {
            Ok(Some(instance)) => instance,
            Ok(None) => panic!("expected the event to start a `{}` saga, but it started none", S::NAME),
            Err(error) => panic!("expected the `{}` saga to run, but it failed: {error}", S::NAME),
        }
    }

    /// The manager, to query the instance further.
    pub fn manager(&self) -> &SagaManager<S> {
        &self.manager
    }

    /// Expects the event to start no instance.
    pub fn then_expect_no_saga(self) -> Self {
        if let Ok(Some(instance)) = &self.result {
            panic!("expected no `{}` saga, but instance `{}` started", S::NAME, instance.id);
        }
        self
    }

    /// Expects the saga to fail to run (not a failed step: an error of the
    /// manager, such as a store that does not answer) and returns the error.
    pub fn then_expect_error(self) -> SagaError {
        match self.result {
            Err(error) => error,
            Ok(instance) => panic!("expected the `{}` saga to fail to run, but it ran: {instance:?}", S::NAME),
        }
    }

    /// Expects the instance to have ended with `status`.
    pub fn then_expect_status(self, status: SagaStatus) -> Self {
        let instance = self.instance();
        assert_eq!(
            instance.status,
            status,
            "saga `{}` instance `{}`: status (error: {:?})",
            S::NAME,
            instance.id,
            instance.error
        );
        self
    }

    /// Expects exactly these steps' actions to have taken effect, in order
    /// (including steps compensated since).
    pub fn then_expect_steps<'a>(self, steps: impl IntoIterator<Item = &'a str>) -> Self {
        let expected: Vec<&str> = steps.into_iter().collect();
        assert_eq!(self.instance().completed_steps(), expected, "saga `{}`: completed steps", S::NAME);
        self
    }

    /// Expects exactly these steps to have been skipped (by a decision, or
    /// a wait that went on without its event), in order.
    pub fn then_expect_skipped<'a>(self, steps: impl IntoIterator<Item = &'a str>) -> Self {
        let expected: Vec<&str> = steps.into_iter().collect();
        assert_eq!(self.instance().skipped_steps(), expected, "saga `{}`: skipped steps", S::NAME);
        self
    }

    /// Expects the saga to have been finished early by `step`'s decision.
    pub fn then_expect_finished_by(self, step: &str) -> Self {
        assert_eq!(self.instance().finished_by.as_deref(), Some(step), "saga `{}`: finished by", S::NAME);
        self
    }

    /// Expects `step` to be the step that failed.
    pub fn then_expect_failed_step(self, step: &str) -> Self {
        assert_eq!(self.instance().failed_step(), Some(step), "saga `{}`: failed step", S::NAME);
        self
    }

    /// Expects exactly these steps to have been compensated, in the order
    /// the compensations ran.
    pub fn then_expect_compensated<'a>(self, steps: impl IntoIterator<Item = &'a str>) -> Self {
        let expected: Vec<&str> = steps.into_iter().collect();
        assert_eq!(self.instance().compensated_steps(), expected, "saga `{}`: compensated steps", S::NAME);
        self
    }

    /// Expects a compensation to have failed with an error containing `text`.
    pub fn then_expect_compensation_error(self, text: &str) -> Self {
        let error = self.instance().compensation_error();
        assert!(
            error.is_some_and(|e| e.contains(text)),
            "saga `{}`: expected a compensation error containing {text:?}, got {error:?}",
            S::NAME
        );
        self
    }

    /// Expects the saga's error (the failing step's) to contain `text`.
    pub fn then_expect_error_containing(self, text: &str) -> Self {
        let error = self.instance().error.as_deref();
        assert!(
            error.is_some_and(|e| e.contains(text)),
            "saga `{}`: expected an error containing {text:?}, got {error:?}",
            S::NAME
        );
        self
    }

    /// Every event the instance's steps' commands recorded (actions and
    /// compensations; not the saga's own events), in the order of the
    /// global log.
    pub async fn step_events(&self) -> Vec<Arc<RecordedEvent>> {
        let instance = self.instance();
        let ids: HashSet<_> = instance.steps.iter().flat_map(|s| [s.action_id, s.compensation_id]).flatten().collect();
        let filter = EventFilter::all();
        let store = self.manager.app().event_store();
        let mut events = store.read_all(1, &filter);
        let mut caused = Vec::new();
        while let Some(event) = events.next().await {
            let event = event.expect("the global log is readable");
            let own = event.stream.category() == SagaManager::<S>::category();
            if !own && event.metadata.causation_id.is_some_and(|id| ids.contains(&id)) {
                caused.push(event);
            }
        }
        caused
    }

    /// Expects the steps to have recorded events of exactly these types,
    /// in order.
    pub async fn then_expect_step_event_types<'a>(self, types: impl IntoIterator<Item = &'a str>) -> Self {
        let expected: Vec<&str> = types.into_iter().collect();
        let events = self.step_events().await;
        let actual: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(actual, expected, "saga `{}`: event types recorded by the steps", S::NAME);
        self
    }
}
