//! A saga instance's state, folded from its events, and what to do next.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::events::{DecidedAs, SagaEvent};

/// Where a saga instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SagaStatus {
    /// Started; no step has run yet.
    Pending,
    /// Running its steps.
    InProgress,
    /// Parked: a step waits for an event or a deadline, or was deferred to
    /// a later time (ADR 0038). [`SagaManager::tick`](super::SagaManager::tick)
    /// and [`SagaManager::resume_incomplete`](super::SagaManager::resume_incomplete)
    /// drive it on.
    Waiting,
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
    /// Not run yet (or its last attempt was refused and its hook decides
    /// again: see [`StepRecord::failures`]).
    Pending,
    /// Its hook decided not to run it (or a wait's outcome went on
    /// without it): nothing to compensate.
    Skipped,
    /// Its hook deferred it until [`StepRecord::until`].
    Deferred,
    /// It waits for an event, until [`StepRecord::until`] if bounded.
    Waiting,
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
    /// How many attempts of the action were refused (steps with a
    /// decision hook; otherwise the first refusal fails the step).
    pub failures: u32,
    /// When a deferred step is decided again, or a waiting step's deadline.
    pub until: Option<DateTime<Utc>>,
    /// The version of the instance's stream at which the action completed:
    /// compensation runs in the reverse of this order.
    pub completed_at: Option<u64>,
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
    /// The step whose decision finished the saga early, if one did.
    pub finished_by: Option<String>,
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
    /// compensated (the reverse of the order their actions completed in,
    /// which is the reverse of the steps' order outside groups).
    pub fn compensated_steps(&self) -> Vec<&str> {
        let mut compensated: Vec<(usize, &StepRecord)> =
            self.steps.iter().enumerate().filter(|(_, s)| s.state == StepState::Compensated).collect();
        compensated.sort_by_key(|(i, s)| std::cmp::Reverse((s.completed_at, *i)));
        compensated.into_iter().map(|(_, s)| s.name.as_str()).collect()
    }

    /// The names of the steps that were skipped (by a decision, or a wait
    /// that went on without its event), in order.
    pub fn skipped_steps(&self) -> Vec<&str> {
        self.steps.iter().filter(|s| s.state == StepState::Skipped).map(|s| s.name.as_str()).collect()
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
            finished_by: self.finished_by,
            version: self.version,
        }
    }
}

impl SagaInstance<Value> {
    /// Starts the state of the instance `id` from its stream's first event
    /// (at version 1): `None` unless it is [`SagaEvent::Started`]. With
    /// [`SagaInstance::apply`] for each later event, this is how the
    /// manager rebuilds an instance, and how a tool that knows no saga
    /// definition (the console, ADR 0052) reads any kind's instances.
    pub fn from_first(id: Uuid, event: &SagaEvent) -> Option<Self> {
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
                    failures: 0,
                    until: None,
                    completed_at: None,
                })
                .collect(),
            error: None,
            finished_by: None,
            version: 1,
        })
    }
}

impl<D> SagaInstance<D> {
    /// Evolves the state by one event at `version`. Events that name a step
    /// the instance does not have are ignored (they cannot be written by
    /// this module).
    pub fn apply(&mut self, event: &SagaEvent, version: u64) {
        self.version = version;
        match event {
            SagaEvent::Started(_) => {}
            SagaEvent::StepStarted(e) => {
                self.running();
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Started;
                    step.action_id = Some(e.step_id);
                }
            }
            SagaEvent::StepCompleted(e) => {
                self.running();
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Completed;
                    step.until = None;
                    step.completed_at = Some(version);
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
            SagaEvent::StepAttemptFailed(e) => {
                self.running();
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Pending;
                    step.failures = step.failures.saturating_add(1);
                    step.error = Some(e.error.clone());
                    step.timed_out = e.timed_out;
                }
            }
            SagaEvent::StepDecided(e) => {
                if e.decision == DecidedAs::Retry {
                    if self.status != SagaStatus::Compensating {
                        self.status = SagaStatus::Waiting;
                    }
                } else {
                    self.running();
                }
                if e.decision == DecidedAs::Finish {
                    self.finished_by = Some(e.name.clone());
                }
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = if e.decision == DecidedAs::Retry { StepState::Deferred } else { StepState::Skipped };
                    step.until = e.until;
                }
            }
            SagaEvent::StepWaiting(e) => {
                if self.status != SagaStatus::Compensating {
                    self.status = SagaStatus::Waiting;
                }
                if let Some(step) = self.steps.get_mut(e.step) {
                    step.state = StepState::Waiting;
                    step.until = e.deadline;
                }
            }
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

    /// Back to running, unless compensating.
    fn running(&mut self) {
        if matches!(self.status, SagaStatus::Pending | SagaStatus::Waiting) {
            self.status = SagaStatus::InProgress;
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
