//! What a step sees and decides before it runs, and what ends a wait
//! (ADR 0038).

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::state::{SagaInstance, StepRecord, StepState};
use crate::aggregate::Aggregate;
use crate::app::Orchestrix;
use crate::error::{BoxError, Error};

/// What a step's decision hook ([`Step::decide`](super::Step::decide))
/// decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Run the step's action now.
    Run,
    /// Do not run the step; go on with the next one. A skipped step has
    /// nothing to compensate.
    Skip,
    /// Do not run the step now: ask again at this time. The time is
    /// stored in the saga's stream, so it survives restarts.
    RetryAt(DateTime<Utc>),
    /// Complete the saga now: this step and those after it do not run, and
    /// nothing is compensated.
    Finish,
    /// Fail the step with this reason: the completed steps are compensated.
    Fail(String),
}

/// How a waiting step ([`Step::wait_for`](super::Step::wait_for)) goes on
/// when the awaited event arrives or its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterWait {
    /// Go on with the next step.
    Continue,
    /// Complete the saga now; the steps after the wait do not run.
    Finish,
    /// Fail the step: the completed steps are compensated.
    Fail,
}

/// What a decision hook sees: the saga's data and state, the application
/// to load the aggregates the step concerns, and the time.
///
/// A hook's error leaves the step where it was, to be asked again (the
/// store did not answer, say). A hook whose data lost a personal value
/// (ADR 0031) that it needs should answer [`Decision::Fail`] with the
/// [`PersonalDataErased`](crate::personal::PersonalDataErased) message
/// rather than return the error, which would ask it again and again.
///
/// The context owns what it holds, so a hook is an `async move` block:
///
/// ```text
/// .decide(|ctx| async move {
///     let invoice = ctx.load::<Invoice>(ctx.data().invoice).await?;
///     Ok(if invoice.paid { Decision::Finish } else { Decision::Run })
/// })
/// ```
#[derive(Debug)]
pub struct StepContext<D> {
    app: Orchestrix,
    instance: SagaInstance<D>,
    step: usize,
    now: DateTime<Utc>,
}

impl<D> StepContext<D> {
    pub(crate) fn new(app: Orchestrix, instance: SagaInstance<D>, step: usize, now: DateTime<Utc>) -> Self {
        Self { app, instance, step, now }
    }

    /// The saga's data.
    pub fn data(&self) -> &D {
        &self.instance.data
    }

    /// The instance as stored: its status and every step's state. The
    /// events themselves are [`SagaManager::history`](super::SagaManager::history).
    pub fn instance(&self) -> &SagaInstance<D> {
        &self.instance
    }

    /// The application, to read whatever the decision needs.
    pub fn app(&self) -> &Orchestrix {
        &self.app
    }

    /// The manager's clock's time ([`SagaManager::with_clock`](super::SagaManager::with_clock)).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The index of the step deciding, in the instance's steps.
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// The step deciding, as recorded.
    pub fn step(&self) -> &StepRecord {
        &self.instance.steps[self.step]
    }

    /// How many attempts of this step's action were refused so far.
    pub fn failures(&self) -> u32 {
        self.step().failures
    }

    /// The error of the last refused attempt, if one was.
    pub fn last_error(&self) -> Option<&str> {
        self.step().error.as_deref()
    }

    /// Whether the hook is asked because a deferral it decided
    /// ([`Decision::RetryAt`]) fell due.
    pub fn is_due(&self) -> bool {
        self.step().state == StepState::Deferred
    }

    /// [`Decision::RetryAt`] `after` from now.
    pub fn retry_after(&self, after: Duration) -> Decision {
        Decision::RetryAt(super::clock::later(self.now, after))
    }

    /// Loads the aggregate `id` of type `A` through the application and
    /// returns its state.
    pub async fn load<A: Aggregate>(&self, id: impl Borrow<A::Id>) -> Result<A, Error> {
        Ok(self.app.load::<A>(id).await?.state)
    }
}

/// A decision hook, type-erased.
pub(crate) type DecideFn<D> =
    Arc<dyn Fn(StepContext<D>) -> BoxFuture<'static, Result<Decision, BoxError>> + Send + Sync>;
