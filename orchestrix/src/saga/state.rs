//! A saga instance's state, folded from its events, and what to do next.

use serde_json::Value;
use uuid::Uuid;

use super::events::SagaEvent;

/// Where a saga instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SagaStatus {
    /// Started; no step has run yet.
    Pending,
    /// Running its steps.
    InProgress,
    /// A step failed; the completed steps are being compensated.
    Compensating,
    /// Every step completed.
    Completed,
    /// A step failed, and the compensations ran (see
    /// [`SagaInstance::is_compensated`]) or one of them failed too (see
    /// [`SagaInstance::compensation_error`]).
    Failed,
}

impl SagaStatus {
    /// Whether the instance has ended (completed or failed).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// Where one step of an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepState {
    /// Not run yet.
    Pending,
    /// The action started; its outcome is not recorded yet.
    Started,
    /// The action took effect.
    Completed,
    /// The action failed for good.
    Failed,
    /// The compensation started; its outcome is not recorded yet.
    Compensating,
    /// The compensation took effect.
    Compensated,
    /// The compensation failed: the action's effect stays.
    CompensationFailed,
}

/// One step of an instance, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// Where it is.
    pub state: StepState,
    /// The id the action's command carried, once started.
    pub action_id: Option<Uuid>,
    /// The id the compensation's command carried, once started.
    pub compensation_id: Option<Uuid>,
    /// The action's or the compensation's error, if one failed.
    pub error: Option<String>,
    /// Whether the action ran out of time.
    pub timed_out: bool,
}

/// A saga instance's state, rebuilt from the events of its stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaInstance<D> {
    /// The instance's id.
    pub id: Uuid,
    /// The saga kind.
    pub saga: String,
    /// The data every step reads.
    pub data: D,
    /// The correlation id of every command the instance sends.
    pub correlation_id: Uuid,
    /// The id of the event that started the instance.
    pub trigger: Uuid,
    /// The tenant of the starting event.
    pub tenant: Option<String>,
    /// The W3C `traceparent` of the starting event.
    pub traceparent: Option<String>,
    /// Where it is.
    pub status: SagaStatus,
    /// Its steps, in order.
    pub steps: Vec<StepRecord>,
    /// Why it failed, if it did: the failing step's error.
    pub error: Option<String>,
    /// The version of the instance's stream this state includes.
    pub version: u64,
}

impl<D> SagaInstance<D> {
    /// The name of the step that failed, if one did.
    pub fn failed_step(&self) -> Option<&str> {
        self.steps.iter().find(|s| s.state == StepState::Failed).map(|s| s.name.as_str())
    }

    /// The names of the steps whose action took effect (including those
    /// compensated since), in order.
    pub fn completed_steps(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    StepState::Completed
                        | StepState::Compensating
                        | StepState::Compensated
                        | StepState::CompensationFailed
                )
            })
            .map(|s| s.name.as_str())
            .collect()
    }

    /// The names of the compensated steps, in the order they were
    /// compensated (the reverse of the steps' order).
    pub fn compensated_steps(&self) -> Vec<&str> {
        self.steps.iter().rev().filter(|s| s.state == StepState::Compensated).map(|s| s.name.as_str()).collect()
    }

    /// The error of the compensation that failed, if one did.
    pub fn compensation_error(&self) -> Option<&str> {
        self.steps.iter().find(|s| s.state == StepState::CompensationFailed).and_then(|s| s.error.as_deref())
    }

    /// Whether the instance failed and every compensation it needed ran.
    pub fn is_compensated(&self) -> bool {
        self.status == SagaStatus::Failed && self.compensation_error().is_none()
    }

    /// The same instance with other data (used to decode the stored JSON).
    pub fn map_data<T>(self, f: impl FnOnce(D) -> T) -> SagaInstance<T> {
        SagaInstance {
            id: self.id,
            saga: self.saga,
            data: f(self.data),
            correlation_id: self.correlation_id,
            trigger: self.trigger,
            tenant: self.tenant,
            traceparent: self.traceparent,
            status: self.status,
            steps: self.steps,
            error: self.error,
            version: self.version,
        }
    }
}

/// What the runner does next with an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Run the action of `step`; `in_doubt` when it already started and its
    /// outcome is unknown.
    Act { step: usize, in_doubt: bool },
    /// Run the compensation of `step`; `in_doubt` as above.
    Compensate { step: usize, in_doubt: bool },
    /// Record that every step completed.
    Complete,
    /// Record that every compensation ran.
    Fail,
    /// Nothing: the instance has ended.
    Done,
}

impl SagaInstance<Value> {
    /// Starts a state from the instance's first event.
    pub(crate) fn from_first(id: Uuid, event: &SagaEvent) -> Option<Self> {
        let SagaEvent::Started(started) = event else { return None };
        Some(Self {
            id,
            saga: started.saga.clone(),
            data: started.data.clone(),
            correlation_id: started.correlation_id,
            trigger: started.trigger,
            tenant: started.tenant.clone(),
            traceparent: started.traceparent.clone(),
            status: SagaStatus::Pending,
            steps: started
                .steps
                .iter()
                .map(|name| StepRecord {
                    name: name.clone(),
                    state: StepState::Pending,
                    action_id: None,
                    compensation_id: None,
                    error: None,
                    timed_out: false,
                })
                .collect(),
            error: None,
            version: 1,
        })
    }
}

impl<D> SagaInstance<D> {
    /// Evolves the state by one event at `version`. Events that name a step
    /// the instance does not have are ignored (they cannot be written by
    /// this module).
    pub(crate) fn apply(&mut self, event: &SagaEvent, version: u64) {
        self.version = version;
        match event {
            SagaEvent::Started(_) => {}
            SagaEvent::StepStarted(e) => {
                self.status = SagaStatus::InProgress;
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Started;
                    step.action_id = Some(e.step_id);
                }
            }
            SagaEvent::StepCompleted(e) => {
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Completed;
                }
            }
            SagaEvent::StepFailed(e) => {
                self.status = SagaStatus::Compensating;
                self.error = Some(e.error.clone());
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Failed;
                    step.error = Some(e.error.clone());
                    step.timed_out = e.timed_out;
                }
            }
            SagaEvent::CompensationStarted(e) => {
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Compensating;
                    step.compensation_id = Some(e.step_id);
                }
            }
            SagaEvent::StepCompensated(e) => {
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Compensated;
                }
            }
            SagaEvent::Completed(_) => self.status = SagaStatus::Completed,
            SagaEvent::Failed(e) => {
                self.status = SagaStatus::Failed;
                self.error = Some(e.error.clone());
                if let (Some(index), Some(error)) = (e.failed_compensation, &e.compensation_error) {
                    if let Some(step) = self.steps.get_mut(index) {
                        step.state = StepState::CompensationFailed;
                        step.error = Some(error.clone());
                    }
                }
            }
        }
    }

    /// Decides what to do next. `has_compensation(i)` tells whether step
    /// `i` can be undone.
    pub(crate) fn next(&self, has_compensation: impl Fn(usize) -> bool) -> Next {
        match self.status {
            SagaStatus::Completed | SagaStatus::Failed => Next::Done,
            SagaStatus::Pending | SagaStatus::InProgress => {
                match self.steps.iter().position(|s| s.state != StepState::Completed) {
                    None => Next::Complete,
                    Some(step) => Next::Act { step, in_doubt: self.steps[step].state == StepState::Started },
                }
            }
            SagaStatus::Compensating => {
                let pending = self.steps.iter().enumerate().rev().find_map(|(i, s)| match s.state {
                    StepState::Compensating => Some(Next::Compensate { step: i, in_doubt: true }),
                    StepState::Completed if has_compensation(i) => Some(Next::Compensate { step: i, in_doubt: false }),
                    _ => None,
                });
                pending.unwrap_or(Next::Fail)
            }
        }
    }
}

/// A step whose data lost a personal value (its subject was forgotten, ADR
/// 0031) fails for good: the saga compensates rather than act without it.
/// `required(data.email.as_ref(), "email")?` in a step does this.
impl From<crate::personal::PersonalDataErased> for super::step::StepError {
    fn from(erased: crate::personal::PersonalDataErased) -> Self {
        Self::Failed(erased.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::*;
    use super::*;

    fn started(steps: &[&str]) -> SagaInstance<Value> {
        let event = SagaEvent::Started(SagaStarted {
            saga: "T".into(),
            data: Value::Null,
            correlation_id: Uuid::nil(),
            trigger: Uuid::nil(),
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            tenant: None,
            traceparent: None,
        });
        SagaInstance::from_first(Uuid::nil(), &event).unwrap()
    }

    fn step_started(step: usize) -> SagaEvent {
        SagaEvent::StepStarted(SagaStepStarted { step, name: String::new(), step_id: Uuid::nil() })
    }

    fn step_completed(step: usize) -> SagaEvent {
        SagaEvent::StepCompleted(SagaStepCompleted { step, name: String::new() })
    }

    #[test]
    fn runs_steps_in_order_then_completes() {
        let mut saga = started(&["a", "b"]);
        let all = |_| true;
        assert_eq!(saga.status, SagaStatus::Pending);
        assert_eq!(saga.next(all), Next::Act { step: 0, in_doubt: false });
        saga.apply(&step_started(0), 2);
        assert_eq!(saga.status, SagaStatus::InProgress);
        assert_eq!(saga.next(all), Next::Act { step: 0, in_doubt: true }, "a started step is in doubt");
        saga.apply(&step_completed(0), 3);
        assert_eq!(saga.next(all), Next::Act { step: 1, in_doubt: false });
        saga.apply(&step_started(1), 4);
        saga.apply(&step_completed(1), 5);
        assert_eq!(saga.next(all), Next::Complete);
        saga.apply(&SagaEvent::Completed(SagaCompleted {}), 6);
        assert_eq!(saga.status, SagaStatus::Completed);
        assert_eq!(saga.next(all), Next::Done);
        assert_eq!(saga.version, 6);
        assert_eq!(saga.completed_steps(), ["a", "b"]);
    }

    #[test]
    fn compensates_completed_steps_in_reverse_skipping_those_without_compensation() {
        let mut saga = started(&["a", "b", "c", "d"]);
        let compensable = |i| i != 1;
        for i in 0..3 {
            saga.apply(&step_started(i), 0);
            saga.apply(&step_completed(i), 0);
        }
        saga.apply(&step_started(3), 0);
        saga.apply(
            &SagaEvent::StepFailed(SagaStepFailed { step: 3, name: "d".into(), error: "no".into(), timed_out: true }),
            0,
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert_eq!(saga.failed_step(), Some("d"));
        assert_eq!(saga.next(compensable), Next::Compensate { step: 2, in_doubt: false });
        saga.apply(
            &SagaEvent::CompensationStarted(SagaCompensationStarted {
                step: 2,
                name: "c".into(),
                step_id: Uuid::nil(),
            }),
            0,
        );
        assert_eq!(saga.next(compensable), Next::Compensate { step: 2, in_doubt: true });
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 2, name: "c".into() }), 0);
        assert_eq!(saga.next(compensable), Next::Compensate { step: 0, in_doubt: false }, "b has no compensation");
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 0, name: "a".into() }), 0);
        assert_eq!(saga.next(compensable), Next::Fail);
        saga.apply(
            &SagaEvent::Failed(SagaFailed { error: "no".into(), failed_compensation: None, compensation_error: None }),
            0,
        );
        assert_eq!(saga.status, SagaStatus::Failed);
        assert!(saga.is_compensated());
        assert_eq!(saga.compensated_steps(), ["c", "a"]);
        assert_eq!(saga.completed_steps(), ["a", "b", "c"]);
        assert_eq!(saga.next(compensable), Next::Done);
    }

    #[test]
    fn a_failed_compensation_is_visible() {
        let mut saga = started(&["a", "b"]);
        saga.apply(&step_started(0), 0);
        saga.apply(&step_completed(0), 0);
        saga.apply(
            &SagaEvent::StepFailed(SagaStepFailed { step: 1, name: "b".into(), error: "no".into(), timed_out: false }),
            0,
        );
        saga.apply(
            &SagaEvent::Failed(SagaFailed {
                error: "no".into(),
                failed_compensation: Some(0),
                compensation_error: Some("refused".into()),
            }),
            0,
        );
        assert_eq!(saga.status, SagaStatus::Failed);
        assert!(!saga.is_compensated());
        assert_eq!(saga.compensation_error(), Some("refused"));
        assert_eq!(saga.steps[0].state, StepState::CompensationFailed);
    }
}
