//! Driving one instance: the loop over what comes next, deciding and
//! running an action step, compensating, and recording each transition at
//! the version the runner saw (ADR 0007, ADR 0038).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::decide::{Decision, StepContext};
use super::events::{
    DecidedAs, SagaCompensationStarted, SagaCompleted, SagaEvent, SagaFailed, SagaStepAttemptFailed,
    SagaStepCompensated, SagaStepCompleted, SagaStepDecided, SagaStepFailed, SagaStepStarted,
};
use super::plan::{Next, Plan};
use super::state::{SagaInstance, SagaStatus};
use super::step::{step_id, StepAction, StepError, StepKind};
use super::{Saga, SagaError, SagaManager};
use crate::app::CommandOptions;
use crate::envelope::{Metadata, NewEvent};
use crate::error::{render_chain as render, BoxError, Error};
use crate::store::ExpectedVersion;

/// How one execution of an action or compensation ended.
pub(super) enum Outcome {
    Applied,
    Failed { error: String, timed_out: bool },
}

impl<S: Saga> SagaManager<S> {
    /// Drives the instance `saga_id` as far as it goes now and returns its
    /// state: to its end, or to a wait ([`SagaStatus::Waiting`](super::SagaStatus::Waiting))
    /// that [`SagaManager::tick`] or [`SagaManager::resume_incomplete`]
    /// takes up later.
    ///
    /// A step whose outcome is unknown (it started, but neither its
    /// completion nor its failure was recorded) is first checked with
    /// [`StepAction::already_applied`]: if it took effect, it is recorded
    /// as done rather than run again.
    pub async fn drive(&self, saga_id: Uuid) -> Result<SagaInstance<S::Data>, SagaError> {
        let span = tracing::info_span!("orchestrix.saga", saga = S::NAME, %saga_id);
        let _turn = self.driving().lock().await;
        let instance = self.drive_inner(saga_id).instrument(span).await?;
        self.remember(&instance);
        Ok(instance)
    }

    pub(super) fn step_span(saga_id: Uuid, step: &str, kind: &'static str, step_id: Uuid) -> tracing::Span {
        tracing::info_span!(
            "orchestrix.saga.step",
            saga = S::NAME,
            %saga_id,
            step,
            kind,
            %step_id,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }

    async fn drive_inner(&self, saga_id: Uuid) -> Result<SagaInstance<S::Data>, SagaError> {
        let plan = self.plan()?;
        let mut instance = self.load(saga_id).await?.ok_or(SagaError::NotFound { saga: S::NAME, id: saga_id })?;
        Self::check_definition(plan, &instance)?;
        let data: S::Data = serde_json::from_value(instance.data.clone()).map_err(|source| SagaError::Data {
            saga: S::NAME,
            id: saga_id,
            source,
        })?;
        loop {
            match instance.next(plan, self.now()) {
                Next::Done | Next::Park => break,
                Next::Complete => {
                    let cause = instance.trigger;
                    self.record(&mut instance, SagaEvent::Completed(SagaCompleted {}), cause).await?;
                }
                Next::Fail => {
                    let failed = SagaFailed {
                        error: instance.error.clone().unwrap_or_default(),
                        failed_compensation: None,
                        compensation_error: None,
                    };
                    let cause = instance.trigger;
                    self.record(&mut instance, SagaEvent::Failed(failed), cause).await?;
                }
                Next::Act { step, in_doubt } => {
                    self.act(plan, &mut instance, &data, step, in_doubt).await?;
                    if instance.status == SagaStatus::Waiting {
                        // A deferral ends this drive even if its time has
                        // come: a hook that keeps deferring to the past is
                        // asked once a tick, not in a loop.
                        break;
                    }
                }
                Next::Wait { step } => {
                    if !self.wait(plan, &mut instance, &data, step).await? {
                        break;
                    }
                }
                Next::Group { members } => self.group(plan, &mut instance, &data, &members).await?,
                Next::Resolve { step } => self.resolve(plan, &mut instance, &data, step).await?,
                Next::Compensate { step, in_doubt } => {
                    self.compensate(plan, &mut instance, &data, step, in_doubt).await?;
                }
            }
        }
        tracing::debug!(status = ?instance.status, "saga driven");
        Self::typed(instance)
    }

    /// Asks the step's hook, if it has one, what to do; records a decision
    /// other than [`Decision::Run`] and returns `None`, or returns the
    /// go-ahead.
    async fn ask(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        step: usize,
    ) -> Result<Option<()>, SagaError> {
        let definition = &plan.steps[step];
        let Some(decide) = definition.decide.as_ref() else { return Ok(Some(())) };
        let name = definition.name().to_owned();
        let id = step_id(instance.id, step, StepKind::Action);
        let context = StepContext::new(self.app().clone(), Self::typed(instance.clone())?, step, self.now());
        let decision = decide(context).await.map_err(|e| Self::step_error(instance.id, &name, e))?;
        tracing::debug!(step = %name, ?decision, "saga step decided");
        let decided = |decision, until| {
            SagaEvent::StepDecided(SagaStepDecided { step, name: name.clone(), decision, until, reason: None })
        };
        let event = match decision {
            Decision::Run => return Ok(Some(())),
            Decision::Skip => decided(DecidedAs::Skip, None),
            Decision::Finish => decided(DecidedAs::Finish, None),
            Decision::RetryAt(until) => decided(DecidedAs::Retry, Some(until)),
            Decision::Fail(error) => {
                SagaEvent::StepFailed(SagaStepFailed { step, name: name.clone(), error, timed_out: false })
            }
        };
        self.record(instance, event, id).await?;
        Ok(None)
    }

    /// Decides about, starts, runs and records the action of `step`.
    async fn act(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        data: &S::Data,
        step: usize,
        in_doubt: bool,
    ) -> Result<(), SagaError> {
        let definition = &plan.steps[step];
        let Some((action, _)) = definition.action() else { return Err(Self::not_an_action(definition.name())) };
        let name = definition.name().to_owned();
        let saga_id = instance.id;
        let id = step_id(saga_id, step, StepKind::Action);
        if !in_doubt {
            if self.ask(plan, instance, step).await?.is_none() {
                return Ok(());
            }
            let started = SagaStepStarted { step, name: name.clone(), step_id: id };
            if !self.record(instance, SagaEvent::StepStarted(started), id).await? {
                return Ok(());
            }
        }
        self.fence().await?;
        let span = Self::step_span(saga_id, &name, "action", id);
        let outcome =
            self.run(action, data, instance, id, definition.step_timeout(), in_doubt).instrument(span.clone()).await;
        record_step(&span, &outcome);
        let event = match outcome.map_err(|e| Self::step_error(saga_id, &name, e))? {
            Outcome::Applied => SagaEvent::StepCompleted(SagaStepCompleted { step, name }),
            Outcome::Failed { error, timed_out } if definition.has_decision() => {
                tracing::info!(step = %name, %error, timed_out, "saga step attempt refused; its hook decides");
                SagaEvent::StepAttemptFailed(SagaStepAttemptFailed { step, name, error, timed_out })
            }
            Outcome::Failed { error, timed_out } => {
                tracing::info!(step = %name, %error, timed_out, "saga step failed; compensating");
                SagaEvent::StepFailed(SagaStepFailed { step, name, error, timed_out })
            }
        };
        self.record(instance, event, id).await?;
        Ok(())
    }

    /// Starts (unless in doubt), runs and records the compensation of `step`.
    async fn compensate(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        data: &S::Data,
        step: usize,
        in_doubt: bool,
    ) -> Result<(), SagaError> {
        let definition = &plan.steps[step];
        let name = definition.name().to_owned();
        let saga_id = instance.id;
        let id = step_id(saga_id, step, StepKind::Compensation);
        let Some(compensation) = definition.action().and_then(|(_, compensation)| compensation) else {
            // Only reachable if the definition lost a compensation since
            // the instance began compensating: nothing to undo.
            let done = SagaStepCompensated { step, name };
            self.record(instance, SagaEvent::StepCompensated(done), id).await?;
            return Ok(());
        };
        if !in_doubt {
            let started = SagaCompensationStarted { step, name: name.clone(), step_id: id };
            if !self.record(instance, SagaEvent::CompensationStarted(started), id).await? {
                return Ok(());
            }
        }
        self.fence().await?;
        let span = Self::step_span(saga_id, &name, "compensation", id);
        let outcome = self
            .run(compensation, data, instance, id, definition.step_timeout(), in_doubt)
            .instrument(span.clone())
            .await;
        record_step(&span, &outcome);
        let event = match outcome.map_err(|e| Self::step_error(saga_id, &name, e))? {
            Outcome::Applied => SagaEvent::StepCompensated(SagaStepCompensated { step, name }),
            Outcome::Failed { error, .. } => {
                tracing::warn!(step = %name, %error, "saga compensation failed; the saga needs a human");
                SagaEvent::Failed(SagaFailed {
                    error: instance.error.clone().unwrap_or_default(),
                    failed_compensation: Some(step),
                    compensation_error: Some(format!("compensation of `{name}` failed: {error}")),
                })
            }
        };
        self.record(instance, event, id).await?;
        Ok(())
    }

    /// Runs one execution of an action or compensation, checking first
    /// whether an execution in doubt already took effect.
    pub(super) async fn run(
        &self,
        action: &dyn StepAction<S::Data>,
        data: &S::Data,
        instance: &SagaInstance<Value>,
        id: Uuid,
        timeout: Duration,
        in_doubt: bool,
    ) -> Result<Outcome, BoxError> {
        let app = self.app();
        if in_doubt && action.already_applied(app, data, id).await? {
            tracing::info!(step_id = %id, "a step in doubt had taken effect; not running it again");
            return Ok(Outcome::Applied);
        }
        let options = CommandOptions {
            command_id: Some(id),
            correlation_id: Some(instance.correlation_id),
            causation_id: Some(id),
            tenant: instance.tenant.clone(),
            traceparent: instance.traceparent.clone(),
            ..CommandOptions::default()
        };
        match tokio::time::timeout(timeout, action.execute(app, data, options)).await {
            Ok(Ok(())) => Ok(Outcome::Applied),
            Ok(Err(StepError::Failed(error))) => Ok(Outcome::Failed { error, timed_out: false }),
            Ok(Err(StepError::Transient(error))) => Err(error),
            Err(_) => {
                // The execution was dropped; it may have taken effect before.
                if action.already_applied(app, data, id).await? {
                    Ok(Outcome::Applied)
                } else {
                    Ok(Outcome::Failed { error: format!("timed out after {timeout:?}"), timed_out: true })
                }
            }
        }
    }

    pub(super) fn step_error(id: Uuid, step: &str, source: BoxError) -> SagaError {
        tracing::warn!(step, error = %render(&*source), "saga step in doubt; it will be checked and retried");
        SagaError::Step { saga: S::NAME, id, step: step.to_owned(), source }
    }

    pub(super) fn not_an_action(step: &str) -> SagaError {
        SagaError::InvalidDefinition { saga: S::NAME, reason: format!("the step `{step}` has no action") }
    }

    fn check_definition(plan: &Plan<S::Data>, instance: &SagaInstance<Value>) -> Result<(), SagaError> {
        let defined = plan.steps.iter().map(super::step::Step::name);
        if instance.steps.iter().map(|s| s.name.as_str()).eq(defined) {
            return Ok(());
        }
        Err(SagaError::DefinitionChanged {
            saga: S::NAME,
            id: instance.id,
            stored: instance.steps.iter().map(|s| s.name.clone()).collect(),
            defined: plan.steps.iter().map(|s| s.name().to_owned()).collect(),
        })
    }

    pub(super) fn typed(instance: SagaInstance<Value>) -> Result<SagaInstance<S::Data>, SagaError> {
        let id = instance.id;
        let data = serde_json::from_value(instance.data.clone()).map_err(|source| SagaError::Data {
            saga: S::NAME,
            id,
            source,
        })?;
        Ok(instance.map_data(|_| data))
    }

    /// Rebuilds the instance from its stream.
    pub(super) async fn load(&self, saga_id: Uuid) -> Result<Option<SagaInstance<Value>>, SagaError> {
        let stream = Self::stream_id(saga_id)?;
        let mut records = self.app().event_store().read_stream(&stream, 1);
        let mut instance: Option<SagaInstance<Value>> = None;
        while let Some(record) = records.next().await {
            let record = record?;
            let event: SagaEvent = record.decode().map_err(Error::from)?;
            if let Some(instance) = &mut instance {
                instance.apply(&event, record.stream_version);
            } else {
                let mut first = SagaInstance::from_first(saga_id, &event)
                    .ok_or(SagaError::Corrupt { saga: S::NAME, id: saga_id })?;
                first.version = record.stream_version;
                instance = Some(first);
            }
        }
        Ok(instance)
    }

    /// Appends one event if the instance's stream is still where `instance`
    /// says. On a conflict (another runner moved it), reloads `instance` and
    /// returns `false`.
    pub(super) async fn record(
        &self,
        instance: &mut SagaInstance<Value>,
        event: SagaEvent,
        causation_id: Uuid,
    ) -> Result<bool, SagaError> {
        let metadata = Metadata {
            correlation_id: Some(instance.correlation_id),
            causation_id: Some(causation_id),
            tenant: instance.tenant.clone(),
            traceparent: instance.traceparent.clone(),
            ..Metadata::default()
        };
        let stream = Self::stream_id(instance.id)?;
        let expected = ExpectedVersion::Exact(instance.version);
        match self.app().event_store().append(&stream, expected, vec![encode(&event, metadata)?]).await {
            Ok(records) => {
                let version = records.last().map_or(instance.version + 1, |r| r.stream_version);
                instance.apply(&event, version);
                Ok(true)
            }
            Err(error) if error.is_conflict() => {
                tracing::debug!(saga_id = %instance.id, "another runner moved the saga; reloading");
                *instance =
                    self.load(instance.id).await?.ok_or(SagaError::NotFound { saga: S::NAME, id: instance.id })?;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Records how a saga step's execution ended on its span.
pub(super) fn record_step(span: &tracing::Span, outcome: &Result<Outcome, BoxError>) {
    match outcome {
        Ok(Outcome::Applied) => {
            span.record("outcome", "applied");
        }
        Ok(Outcome::Failed { error, timed_out }) => {
            span.record("outcome", if *timed_out { "timed_out" } else { "failed" });
            span.record("error", error.as_str());
        }
        Err(error) => {
            span.record("outcome", "in_doubt");
            span.record("error", tracing::field::display(render(&**error)));
            span.record("otel.status_code", "ERROR");
        }
    }
}

pub(super) fn encode(event: &SagaEvent, metadata: Metadata) -> Result<NewEvent, Error> {
    NewEvent::encode(event, metadata).map_err(|source| Error::Serialize { what: "a saga event", source })
}
