//! Steps that wait for an event or a deadline, and groups whose members
//! run in parallel (ADR 0038).

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde_json::Value;
use tracing::Instrument;

use super::decide::AfterWait;
use super::drive::{record_step, Outcome};
use super::events::{
    DecidedAs, SagaEvent, SagaStepCompleted, SagaStepDecided, SagaStepFailed, SagaStepStarted, SagaStepWaiting,
};
use super::plan::Plan;
use super::state::{SagaInstance, StepState};
use super::step::{step_id, Body, StepKind};
use super::{Saga, SagaError, SagaManager};
use crate::error::Error;
use crate::stream::StreamId;

impl<S: Saga> SagaManager<S> {
    /// Begins the wait of `step` (recording its absolute deadline) or
    /// checks it: the awaited event first, then the deadline. Returns
    /// `false` when the instance goes on waiting.
    pub(super) async fn wait(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        data: &S::Data,
        step: usize,
    ) -> Result<bool, SagaError> {
        let definition = &plan.steps[step];
        let Body::Wait(wait) = &definition.body else { return Err(Self::not_an_action(definition.name())) };
        let name = definition.name().to_owned();
        let id = step_id(instance.id, step, StepKind::Action);
        let stream = (wait.stream)(data)?;
        let now = self.now();
        if instance.steps[step].state != StepState::Waiting {
            let waiting = SagaStepWaiting {
                step,
                name: name.clone(),
                event_type: wait.event_type.clone(),
                stream: stream.to_string(),
                deadline: wait.within.map(|within| super::clock::later(now, within)),
            };
            // Lost a race: re-decide from what the other runner recorded.
            return self.record(instance, SagaEvent::StepWaiting(waiting), id).await;
        }
        let found = self.holds(&stream, &wait.event_type).await?;
        let then = if found {
            wait.on_event
        } else if instance.steps[step].until.is_some_and(|deadline| deadline <= now) {
            wait.on_deadline
        } else {
            return Ok(false);
        };
        tracing::debug!(step = %name, found, ?then, "saga wait ended");
        let decided = |decision, reason: String| {
            SagaEvent::StepDecided(SagaStepDecided {
                step,
                name: name.clone(),
                decision,
                until: None,
                reason: Some(reason),
            })
        };
        let reason = if found {
            format!("`{}` arrived in `{stream}`", wait.event_type)
        } else {
            format!("no `{}` in `{stream}` before the deadline", wait.event_type)
        };
        let event = match then {
            AfterWait::Continue if found => SagaEvent::StepCompleted(SagaStepCompleted { step, name: name.clone() }),
            AfterWait::Continue => decided(DecidedAs::Skip, reason),
            AfterWait::Finish => decided(DecidedAs::Finish, reason),
            AfterWait::Fail => {
                SagaEvent::StepFailed(SagaStepFailed { step, name: name.clone(), error: reason, timed_out: !found })
            }
        };
        self.record(instance, event, id).await?;
        Ok(true)
    }

    /// Whether `stream` holds an event of type `event_type`.
    async fn holds(&self, stream: &StreamId, event_type: &str) -> Result<bool, Error> {
        let mut events = self.app().event_store().read_stream(stream, 1);
        while let Some(event) = events.next().await {
            if event?.event_type == event_type {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs the unfinished members of a group together: every start is
    /// recorded first, and once every member has ended, their outcomes in
    /// the order they ended (so the stream holds the order of completion).
    /// A refused member fails the group; a member in doubt leaves the group
    /// to be driven again.
    pub(super) async fn group(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        data: &S::Data,
        members: &[(usize, bool)],
    ) -> Result<(), SagaError> {
        let saga_id = instance.id;
        let mut runs = Vec::with_capacity(members.len());
        for &(step, in_doubt) in members {
            let definition = &plan.steps[step];
            let Some((action, _)) = definition.action() else { return Err(Self::not_an_action(definition.name())) };
            let id = step_id(saga_id, step, StepKind::Action);
            runs.push((step, definition, action, id, in_doubt));
        }
        for &(step, definition, _, id, in_doubt) in &runs {
            if !in_doubt {
                let started = SagaStepStarted { step, name: definition.name().to_owned(), step_id: id };
                if !self.record(instance, SagaEvent::StepStarted(started), id).await? {
                    return Ok(());
                }
            }
        }
        self.fence().await?;
        let snapshot = instance.clone();
        let mut running: FuturesUnordered<_> = runs
            .iter()
            .map(|&(step, definition, action, id, in_doubt)| {
                let span = Self::step_span(saga_id, definition.name(), "action", id);
                let snapshot = &snapshot;
                async move {
                    let timeout = definition.step_timeout();
                    let outcome =
                        self.run(action, data, snapshot, id, timeout, in_doubt).instrument(span.clone()).await;
                    record_step(&span, &outcome);
                    (step, outcome)
                }
            })
            .collect();
        // Outcomes in the order the members ended. Nothing is recorded
        // while members still run: one may hold the store (a writer lock)
        // that the saga's own append would wait for.
        let mut ended = Vec::with_capacity(runs.len());
        while let Some(result) = running.next().await {
            ended.push(result);
        }
        drop(running);
        let mut in_doubt = None;
        for (step, outcome) in ended {
            let name = plan.steps[step].name().to_owned();
            let id = step_id(saga_id, step, StepKind::Action);
            let event = match outcome {
                Err(source) => {
                    in_doubt.get_or_insert_with(|| Self::step_error(saga_id, &name, source));
                    continue;
                }
                Ok(Outcome::Applied) => SagaEvent::StepCompleted(SagaStepCompleted { step, name }),
                Ok(Outcome::Failed { error, timed_out }) => {
                    tracing::info!(step = %name, %error, timed_out, "saga group member failed; compensating the group");
                    SagaEvent::StepFailed(SagaStepFailed { step, name, error, timed_out })
                }
            };
            if !self.record(instance, event, id).await? {
                // Another runner moved the saga: re-decide from its state.
                return Ok(());
            }
        }
        in_doubt.map_or(Ok(()), Err)
    }

    /// While compensating, settles a member whose action is in doubt: by
    /// its step id, completed (and so compensated) or skipped (never run
    /// again).
    pub(super) async fn resolve(
        &self,
        plan: &Plan<S::Data>,
        instance: &mut SagaInstance<Value>,
        data: &S::Data,
        step: usize,
    ) -> Result<(), SagaError> {
        let definition = &plan.steps[step];
        let Some((action, _)) = definition.action() else { return Err(Self::not_an_action(definition.name())) };
        let name = definition.name().to_owned();
        let id = step_id(instance.id, step, StepKind::Action);
        let applied = action
            .already_applied(self.app(), data, id)
            .await
            .map_err(|error| Self::step_error(instance.id, &name, Box::new(error)))?;
        let event = if applied {
            SagaEvent::StepCompleted(SagaStepCompleted { step, name })
        } else {
            SagaEvent::StepDecided(SagaStepDecided {
                step,
                name,
                decision: DecidedAs::Skip,
                until: None,
                reason: Some("abandoned: the saga compensates and the step had not taken effect".into()),
            })
        };
        self.record(instance, event, id).await?;
        Ok(())
    }
}
