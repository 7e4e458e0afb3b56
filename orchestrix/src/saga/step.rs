//! Steps: what a saga does, how it is undone, and how long it may take.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::app::{CommandOptions, Orchestrix};
use crate::command::AggregateCommand;
use crate::error::{render_chain as render, BoxError, CommandError, Error};
use crate::repository::Repository;
use crate::stream::StreamId;

use super::decide::{AfterWait, DecideFn, Decision, StepContext};

/// How long a step may run before it counts as failed, unless
/// [`Step::timeout`] says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which half of a step an id or an execution belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// The step's action.
    Action,
    /// The step's compensation.
    Compensation,
}

/// The deterministic id of one step execution: a UUID (version 8) hashed
/// from the saga id, the step's index and its kind.
///
/// It is the command id and the causation id of the step's command, so the
/// events a step records point back at it, and a runner can tell whether a
/// step whose outcome it does not know already took effect. The hash
/// (128-bit FNV-1a) is fixed here and never depends on the toolchain, so
/// ids stay the same across releases.
///
/// ```
/// use orchestrix::saga::{step_id, StepKind};
/// use orchestrix::Uuid;
///
/// let saga = Uuid::nil();
/// assert_eq!(step_id(saga, 0, StepKind::Action), step_id(saga, 0, StepKind::Action));
/// assert_ne!(step_id(saga, 0, StepKind::Action), step_id(saga, 0, StepKind::Compensation));
/// assert_ne!(step_id(saga, 0, StepKind::Action), step_id(saga, 1, StepKind::Action));
/// assert_eq!(step_id(saga, 0, StepKind::Action).get_version_num(), 8);
/// ```
pub fn step_id(saga_id: Uuid, step: usize, kind: StepKind) -> Uuid {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let kind = match kind {
        StepKind::Action => b'a',
        StepKind::Compensation => b'c',
    };
    let step = u64::try_from(step).unwrap_or(u64::MAX).to_be_bytes();
    let input = b"orchestrix.saga.step".iter().chain(saga_id.as_bytes()).chain(&step).chain(std::iter::once(&kind));
    let hash = input.fold(OFFSET, |hash, byte| (hash ^ u128::from(*byte)).wrapping_mul(PRIME));
    uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
}

/// Why a step's action or compensation did not take effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The step failed for good (the aggregate refused the command): the
    /// saga compensates.
    #[error("{0}")]
    Failed(String),
    /// The outcome is unknown or the failure may pass (a store that did not
    /// answer, a conflict that outlasted the retries): the step stays in
    /// doubt and is checked and tried again later.
    #[error(transparent)]
    Transient(BoxError),
}

/// One half of a step, type-erased: runs through an application and tells
/// whether an execution with a given id already took effect.
///
/// [`Step::command`] and [`Step::compensate_with`] build these from typed
/// commands; implement it yourself for steps of another kind.
#[async_trait]
pub trait StepAction<D: Send + Sync + 'static>: Send + Sync + 'static {
    /// Runs the action with `options`, whose command id and causation id are
    /// the execution's [`step_id`].
    async fn execute(&self, app: &Orchestrix, data: &D, options: CommandOptions) -> Result<(), StepError>;

    /// Whether an execution with this `step_id` already took effect.
    ///
    /// The manager asks before running an execution whose outcome it does
    /// not know. The default answers `false`, which makes the action run
    /// again: an action that cannot be checked is at least once, not
    /// exactly once, and one that timed out is assumed not to have happened.
    async fn already_applied(&self, app: &Orchestrix, data: &D, step_id: Uuid) -> Result<bool, Error> {
        let _ = (app, data, step_id);
        Ok(false)
    }
}

/// A step's action: a command for an aggregate, made from the saga's data.
struct CommandAction<C, F> {
    make: F,
    command: PhantomData<fn() -> C>,
}

#[async_trait]
impl<D, C, F> StepAction<D> for CommandAction<C, F>
where
    D: Send + Sync + 'static,
    C: AggregateCommand + Clone,
    F: Fn(&D) -> (<C::Aggregate as Aggregate>::Id, C) + Send + Sync + 'static,
{
    async fn execute(&self, app: &Orchestrix, data: &D, options: CommandOptions) -> Result<(), StepError> {
        let (id, command) = (self.make)(data);
        match app.execute_with(id, command, options).await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    /// Looks for an event caused by `step_id` in the aggregate's stream.
    async fn already_applied(&self, app: &Orchestrix, data: &D, step_id: Uuid) -> Result<bool, Error> {
        let (id, _) = (self.make)(data);
        let stream = Repository::<C::Aggregate>::stream_id(&id)?;
        let mut events = app.event_store().read_stream(&stream, 1);
        while let Some(event) = events.next().await {
            if event?.metadata.causation_id == Some(step_id) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A domain refusal fails the step; a framework failure leaves it in doubt.
fn classify<E: std::error::Error + Send + Sync + 'static>(error: CommandError<E>) -> StepError {
    match error {
        CommandError::Rejected(_)
        | CommandError::AggregateNotFound { .. }
        | CommandError::AggregateAlreadyExists { .. }
        | CommandError::Unregistered { .. } => StepError::Failed(render(&error)),
        other => StepError::Transient(Box::new(other)),
    }
}

/// One step of a saga: a name, an action, an optional compensation and a
/// timeout; or a wait for an event ([`Step::wait_for`]); or a group of
/// steps run in parallel ([`Step::group`]). An action step may have a
/// decision hook ([`Step::decide`]).
///
/// ```
/// # #![allow(dead_code)]
/// # use orchestrix::saga::Step;
/// # use std::time::Duration;
/// # fn steps<C: orchestrix::AggregateCommand<Aggregate = A> + Clone, A: orchestrix::Aggregate<Id = u64>>(
/// #     make: fn(&u64) -> C, undo: fn(&u64) -> C) {
/// let step: Step<u64> = Step::command("reserve", move |n: &u64| (*n, make(n)))
///     .compensate_with(move |n: &u64| (*n, undo(n)))
///     .timeout(Duration::from_secs(5));
/// assert_eq!(step.name(), "reserve");
/// assert!(step.has_compensation());
/// # }
/// ```
pub struct Step<D> {
    name: Cow<'static, str>,
    pub(crate) body: Body<D>,
    pub(crate) decide: Option<DecideFn<D>>,
    timeout: Duration,
}

/// What a step does.
pub(crate) enum Body<D> {
    /// Runs an action, undone by a compensation.
    Action { action: Arc<dyn StepAction<D>>, compensation: Option<Arc<dyn StepAction<D>>> },
    /// Waits for an event or a deadline.
    Wait(Arc<WaitFor<D>>),
    /// Runs its members in parallel.
    Group(Vec<Step<D>>),
}

impl<D> Clone for Body<D> {
    fn clone(&self) -> Self {
        match self {
            Self::Action { action, compensation } => {
                Self::Action { action: Arc::clone(action), compensation: compensation.clone() }
            }
            Self::Wait(wait) => Self::Wait(Arc::clone(wait)),
            Self::Group(members) => Self::Group(members.clone()),
        }
    }
}

/// Where a waiting step looks for its event, from the saga's data.
pub(crate) type StreamOf<D> = Box<dyn Fn(&D) -> Result<StreamId, Error> + Send + Sync>;

/// An action step's action and compensation.
pub(crate) type ActionPair<'a, D> = (&'a dyn StepAction<D>, Option<&'a dyn StepAction<D>>);

/// What a waiting step waits for.
pub(crate) struct WaitFor<D> {
    pub(crate) event_type: String,
    pub(crate) stream: StreamOf<D>,
    pub(crate) within: Option<Duration>,
    pub(crate) on_event: AfterWait,
    pub(crate) on_deadline: AfterWait,
}

impl<D> fmt::Debug for Step<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Step");
        out.field("name", &self.name);
        match &self.body {
            Body::Action { compensation, .. } => out.field("compensation", &compensation.is_some()),
            Body::Wait(wait) => out.field("waits_for", &wait.event_type).field("within", &wait.within),
            Body::Group(members) => out.field("group", members),
        };
        out.field("decides", &self.decide.is_some()).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl<D> Clone for Step<D> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), body: self.body.clone(), decide: self.decide.clone(), timeout: self.timeout }
    }
}

impl<D: Send + Sync + 'static> Step<D> {
    /// A step that sends the command `make` returns (the target
    /// aggregate's id and the command) to that aggregate.
    ///
    /// The command runs through [`Orchestrix::execute_with`], so it is
    /// retried on version conflicts. The aggregate's refusal fails the
    /// step; the step's id makes a re-run after a crash checkable.
    pub fn command<C, F>(name: impl Into<Cow<'static, str>>, make: F) -> Self
    where
        C: AggregateCommand + Clone,
        F: Fn(&D) -> (<C::Aggregate as Aggregate>::Id, C) + Send + Sync + 'static,
    {
        Self::custom(name, CommandAction { make, command: PhantomData })
    }

    /// A step whose action is of your own making.
    pub fn custom(name: impl Into<Cow<'static, str>>, action: impl StepAction<D>) -> Self {
        let body = Body::Action { action: Arc::new(action), compensation: None };
        Self { name: name.into(), body, decide: None, timeout: DEFAULT_STEP_TIMEOUT }
    }

    /// A step that waits until an event of the stored type `event_type`
    /// is in the stream of the aggregate `A` whose id `key` takes from the
    /// saga's data, or until the deadline [`Step::within`] sets, whichever
    /// the runner finds first (ADR 0038).
    ///
    /// The wait's deadline is stored when the wait begins, so it survives
    /// restarts. A matching event recorded before the wait began counts
    /// too. By default the event continues the saga ([`Step::on_event`])
    /// and the deadline fails the step ([`Step::on_deadline`]). A wait
    /// has nothing to compensate.
    pub fn wait_for<A, F>(name: impl Into<Cow<'static, str>>, event_type: impl Into<String>, key: F) -> Self
    where
        A: Aggregate,
        F: Fn(&D) -> A::Id + Send + Sync + 'static,
    {
        let wait = WaitFor {
            event_type: event_type.into(),
            stream: Box::new(move |data: &D| Ok(Repository::<A>::stream_id(key(data))?)),
            within: None,
            on_event: AfterWait::Continue,
            on_deadline: AfterWait::Fail,
        };
        Self { name: name.into(), body: Body::Wait(Arc::new(wait)), decide: None, timeout: DEFAULT_STEP_TIMEOUT }
    }

    /// A step that runs the actions of `members` in parallel and
    /// compensates them as a unit (ADR 0038): if one is refused, the others
    /// are awaited, and the completed ones are compensated in the reverse
    /// order of their completion, before the steps that came earlier.
    ///
    /// Members are recorded as steps of their own, named
    /// `<group>/<member>`. They must be action steps ([`Step::command`],
    /// [`Step::custom`]) without a decision hook; anything else makes the
    /// manager refuse the definition with
    /// [`SagaError::InvalidDefinition`](super::SagaError::InvalidDefinition).
    pub fn group(name: impl Into<Cow<'static, str>>, members: Vec<Step<D>>) -> Self {
        Self { name: name.into(), body: Body::Group(members), decide: None, timeout: DEFAULT_STEP_TIMEOUT }
    }

    /// Undoes the step, once it completed, by sending the command `make`
    /// returns, when a later step fails.
    pub fn compensate_with<C, F>(self, make: F) -> Self
    where
        C: AggregateCommand + Clone,
        F: Fn(&D) -> (<C::Aggregate as Aggregate>::Id, C) + Send + Sync + 'static,
    {
        self.compensate_with_custom(CommandAction { make, command: PhantomData })
    }

    /// Undoes the step with a compensation of your own making. Ignored on
    /// a wait or a group (compensate a group's members instead).
    pub fn compensate_with_custom(mut self, compensation: impl StepAction<D>) -> Self {
        if let Body::Action { compensation: slot, .. } = &mut self.body {
            *slot = Some(Arc::new(compensation));
        }
        self
    }

    /// Asks `decide` before every attempt of the step's action, and after
    /// every refused attempt: run, skip, retry at a time, finish the saga
    /// or fail the step ([`Decision`], ADR 0038). A refused attempt of a
    /// step with a hook is recorded as an attempt, not as the step's
    /// failure; the hook says what comes next.
    ///
    /// ```text
    /// Step::command("charge", |d: &Dunning| (d.invoice, Charge))
    ///     .decide(|ctx| async move {
    ///         let invoice = ctx.load::<Invoice>(ctx.data().invoice).await?;
    ///         Ok(match ctx.failures() {
    ///             _ if invoice.paid => Decision::Finish,
    ///             0 => Decision::Run,
    ///             _ if ctx.is_due() => Decision::Run,
    ///             n if n < 3 => ctx.retry_after(Duration::from_secs(3 * 86_400)),
    ///             _ => Decision::Fail("three charges declined".into()),
    ///         })
    ///     })
    /// ```
    pub fn decide<F, Fut>(mut self, decide: F) -> Self
    where
        F: Fn(StepContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Decision, BoxError>> + Send + 'static,
    {
        self.decide = Some(Arc::new(move |context| Box::pin(decide(context))));
        self
    }

    /// How long a wait ([`Step::wait_for`]) lasts at most; without it a
    /// wait lasts until its event comes. Ignored on other steps.
    pub fn within(mut self, within: Duration) -> Self {
        if let Body::Wait(wait) = &mut self.body {
            if let Some(wait) = Arc::get_mut(wait) {
                wait.within = Some(within);
            }
        }
        self
    }

    /// What the awaited event does (default [`AfterWait::Continue`]).
    /// Ignored on steps that do not wait.
    pub fn on_event(mut self, then: AfterWait) -> Self {
        if let Body::Wait(wait) = &mut self.body {
            if let Some(wait) = Arc::get_mut(wait) {
                wait.on_event = then;
            }
        }
        self
    }

    /// What a passed deadline does (default [`AfterWait::Fail`]). Ignored
    /// on steps that do not wait.
    pub fn on_deadline(mut self, then: AfterWait) -> Self {
        if let Body::Wait(wait) = &mut self.body {
            if let Some(wait) = Arc::get_mut(wait) {
                wait.on_deadline = then;
            }
        }
        self
    }

    /// How long the action (and, separately, the compensation) may take
    /// (default [`DEFAULT_STEP_TIMEOUT`]). An action that runs out of time
    /// and did not take effect fails the step.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<D> Step<D> {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the step has a compensation.
    pub fn has_compensation(&self) -> bool {
        matches!(&self.body, Body::Action { compensation: Some(_), .. })
    }

    /// Whether the step has a decision hook.
    pub fn has_decision(&self) -> bool {
        self.decide.is_some()
    }

    /// Whether the step waits for an event.
    pub fn is_wait(&self) -> bool {
        matches!(self.body, Body::Wait(_))
    }

    /// The members of a group ([`Step::group`]); empty for other steps.
    pub fn members(&self) -> &[Step<D>] {
        match &self.body {
            Body::Group(members) => members,
            _ => &[],
        }
    }

    /// The step's timeout.
    pub fn step_timeout(&self) -> Duration {
        self.timeout
    }

    /// The action and compensation of an action step.
    pub(crate) fn action(&self) -> Option<ActionPair<'_, D>> {
        match &self.body {
            Body::Action { action, compensation } => Some((action.as_ref(), compensation.as_deref())),
            _ => None,
        }
    }

    /// The same step under another name (a group's member, flattened).
    pub(crate) fn renamed(&self, name: String) -> Self {
        Self { name: Cow::Owned(name), body: self.body.clone(), decide: self.decide.clone(), timeout: self.timeout }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_are_stable_and_distinct() {
        let saga = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let id = step_id(saga, 3, StepKind::Action);
        // Fixed forever: stored sagas rely on it.
        assert_eq!(id, step_id(saga, 3, StepKind::Action));
        assert_eq!(id.get_version_num(), 8);
        let mut seen = std::collections::HashSet::new();
        for step in 0..100 {
            for kind in [StepKind::Action, StepKind::Compensation] {
                assert!(seen.insert(step_id(saga, step, kind)));
                assert!(seen.insert(step_id(Uuid::nil(), step, kind)));
            }
        }
    }

    #[test]
    fn rendering_keeps_sources_without_repeating_them() {
        #[derive(Debug, thiserror::Error)]
        #[error("account closed")]
        struct Closed;
        let error: CommandError<Closed> = CommandError::Rejected(Closed);
        assert_eq!(render(&error), "command rejected: account closed");
        assert!(matches!(classify(error), StepError::Failed(message) if message.contains("closed")));
        let conflict: CommandError<Closed> = CommandError::Conflict { aggregate: "A", id: "1".into(), attempts: 3 };
        assert!(matches!(classify(conflict), StepError::Transient(_)));
    }
}
