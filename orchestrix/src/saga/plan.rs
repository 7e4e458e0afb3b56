//! The shape of a saga definition as its instances record it (groups
//! flattened into their members), and what the runner does next with an
//! instance (ADR 0007, ADR 0038).

use std::ops::Range;

use chrono::{DateTime, Utc};

use super::state::{SagaInstance, SagaStatus, StepState};
use super::step::{Body, Step};

/// One recorded step of the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An action step, outside any group.
    Action { compensable: bool },
    /// A waiting step.
    Wait,
    /// A member of the group whose members are at `group`.
    Member { group: Range<usize>, compensable: bool },
}

/// A definition flattened: every step an instance records, in order.
pub(crate) struct Plan<D> {
    /// The recorded steps: top-level steps, and each group's members in
    /// its place, named `<group>/<member>`.
    pub(crate) steps: Vec<Step<D>>,
    pub(crate) slots: Vec<Slot>,
}

impl<D> Plan<D> {
    /// Flattens `steps`, or says why the definition cannot run.
    pub(crate) fn new(steps: &[Step<D>]) -> Result<Self, String> {
        let (mut flat, mut slots) = (Vec::new(), Vec::new());
        for step in steps {
            match &step.body {
                Body::Action { compensation, .. } => {
                    flat.push(step.clone());
                    slots.push(Slot::Action { compensable: compensation.is_some() });
                }
                Body::Wait(_) => {
                    if step.decide.is_some() {
                        return Err(format!(
                            "the wait `{}` has a decision hook; only action steps decide",
                            step.name()
                        ));
                    }
                    flat.push(step.clone());
                    slots.push(Slot::Wait);
                }
                Body::Group(members) => {
                    if members.is_empty() {
                        return Err(format!("the group `{}` has no members", step.name()));
                    }
                    if step.decide.is_some() {
                        return Err(format!(
                            "the group `{}` has a decision hook; only action steps decide",
                            step.name()
                        ));
                    }
                    let group = flat.len()..flat.len() + members.len();
                    for member in members {
                        let name = format!("{}/{}", step.name(), member.name());
                        match &member.body {
                            Body::Action { compensation, .. } if member.decide.is_none() => {
                                slots.push(Slot::Member { group: group.clone(), compensable: compensation.is_some() });
                                flat.push(member.renamed(name));
                            }
                            _ => {
                                return Err(format!(
                                    "the group member `{name}` must be an action step without a decision hook"
                                ))
                            }
                        }
                    }
                }
            }
        }
        Ok(Self { steps: flat, slots })
    }

    fn compensable(&self, step: usize) -> bool {
        matches!(
            self.slots.get(step),
            Some(Slot::Action { compensable: true } | Slot::Member { compensable: true, .. })
        )
    }
}

/// What the runner does next with an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Decide about (if the step has a hook) and run the action of `step`;
    /// `in_doubt` when it already started and its outcome is unknown.
    Act { step: usize, in_doubt: bool },
    /// Begin or check the wait of `step`.
    Wait { step: usize },
    /// Run these members of a group together (`in_doubt` each).
    Group { members: Vec<(usize, bool)> },
    /// Nothing before the deferred step's time: the instance waits.
    Park,
    /// While compensating, settle a step whose action is in doubt: record
    /// it completed if it took effect, skipped if not.
    Resolve { step: usize },
    /// Run the compensation of `step`; `in_doubt` as above.
    Compensate { step: usize, in_doubt: bool },
    /// Record that the saga completed.
    Complete,
    /// Record that every compensation ran.
    Fail,
    /// Nothing: the instance has ended.
    Done,
}

fn finished(state: StepState) -> bool {
    matches!(state, StepState::Completed | StepState::Skipped)
}

impl<D> SagaInstance<D> {
    /// Decides what to do next at `now`.
    pub(crate) fn next<P>(&self, plan: &Plan<P>, now: DateTime<Utc>) -> Next {
        match self.status {
            SagaStatus::Completed | SagaStatus::Failed => Next::Done,
            SagaStatus::Compensating => {
                if let Some(step) = self.steps.iter().position(|s| s.state == StepState::Started) {
                    return Next::Resolve { step };
                }
                if let Some(step) = self.steps.iter().position(|s| s.state == StepState::Compensating) {
                    return Next::Compensate { step, in_doubt: true };
                }
                // The last completed first: reverse order of completion.
                let last = self
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| s.state == StepState::Completed && plan.compensable(*i))
                    .max_by_key(|(i, s)| (s.completed_at, *i));
                last.map_or(Next::Fail, |(step, _)| Next::Compensate { step, in_doubt: false })
            }
            _ => {
                if self.finished_by.is_some() {
                    return Next::Complete;
                }
                let Some(step) = self.steps.iter().position(|s| !finished(s.state)) else { return Next::Complete };
                match plan.slots.get(step) {
                    Some(Slot::Member { group, .. }) => Next::Group {
                        members: group
                            .clone()
                            .filter(|i| !finished(self.steps[*i].state))
                            .map(|i| (i, self.steps[i].state == StepState::Started))
                            .collect(),
                    },
                    Some(Slot::Wait) => Next::Wait { step },
                    _ => match self.steps[step].state {
                        StepState::Deferred if self.steps[step].until.is_some_and(|until| until > now) => Next::Park,
                        StepState::Started => Next::Act { step, in_doubt: true },
                        _ => Next::Act { step, in_doubt: false },
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use uuid::Uuid;

    use super::super::events::*;
    use super::super::state::StepState;
    use super::*;

    fn sequential(n: usize, compensable: impl Fn(usize) -> bool) -> Plan<()> {
        Plan { steps: Vec::new(), slots: (0..n).map(|i| Slot::Action { compensable: compensable(i) }).collect() }
    }

    fn now() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

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
        let all = sequential(2, |_| true);
        assert_eq!(saga.status, SagaStatus::Pending);
        assert_eq!(saga.next(&all, now()), Next::Act { step: 0, in_doubt: false });
        saga.apply(&step_started(0), 2);
        assert_eq!(saga.status, SagaStatus::InProgress);
        assert_eq!(saga.next(&all, now()), Next::Act { step: 0, in_doubt: true }, "a started step is in doubt");
        saga.apply(&step_completed(0), 3);
        assert_eq!(saga.next(&all, now()), Next::Act { step: 1, in_doubt: false });
        saga.apply(&step_started(1), 4);
        saga.apply(&step_completed(1), 5);
        assert_eq!(saga.next(&all, now()), Next::Complete);
        saga.apply(&SagaEvent::Completed(SagaCompleted {}), 6);
        assert_eq!(saga.status, SagaStatus::Completed);
        assert_eq!(saga.next(&all, now()), Next::Done);
        assert_eq!(saga.version, 6);
        assert_eq!(saga.completed_steps(), ["a", "b"]);
    }

    #[test]
    fn compensates_completed_steps_in_reverse_skipping_those_without_compensation() {
        let mut saga = started(&["a", "b", "c", "d"]);
        let compensable = sequential(4, |i| i != 1);
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
        assert_eq!(saga.next(&compensable, now()), Next::Compensate { step: 2, in_doubt: false });
        saga.apply(
            &SagaEvent::CompensationStarted(SagaCompensationStarted {
                step: 2,
                name: "c".into(),
                step_id: Uuid::nil(),
            }),
            0,
        );
        assert_eq!(saga.next(&compensable, now()), Next::Compensate { step: 2, in_doubt: true });
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 2, name: "c".into() }), 0);
        assert_eq!(
            saga.next(&compensable, now()),
            Next::Compensate { step: 0, in_doubt: false },
            "b has no compensation"
        );
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 0, name: "a".into() }), 0);
        assert_eq!(saga.next(&compensable, now()), Next::Fail);
        saga.apply(
            &SagaEvent::Failed(SagaFailed { error: "no".into(), failed_compensation: None, compensation_error: None }),
            0,
        );
        assert_eq!(saga.status, SagaStatus::Failed);
        assert!(saga.is_compensated());
        assert_eq!(saga.compensated_steps(), ["c", "a"]);
        assert_eq!(saga.completed_steps(), ["a", "b", "c"]);
        assert_eq!(saga.next(&compensable, now()), Next::Done);
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

    fn decided(step: usize, decision: DecidedAs, until: Option<DateTime<Utc>>) -> SagaEvent {
        SagaEvent::StepDecided(SagaStepDecided { step, name: "a".into(), decision, until, reason: None })
    }

    #[test]
    fn a_deferred_step_parks_until_its_time_then_is_decided_again() {
        let plan = sequential(2, |_| true);
        let mut saga = started(&["a", "b"]);
        let later = now() + chrono::Duration::days(3);
        saga.apply(&decided(0, DecidedAs::Retry, Some(later)), 2);
        assert_eq!(saga.status, SagaStatus::Waiting);
        assert_eq!(saga.steps[0].state, StepState::Deferred);
        assert_eq!(saga.next(&plan, now()), Next::Park);
        assert_eq!(saga.next(&plan, later), Next::Act { step: 0, in_doubt: false }, "due at its time");
        saga.apply(&step_started(0), 3);
        assert_eq!(saga.status, SagaStatus::InProgress);
        saga.apply(
            &SagaEvent::StepAttemptFailed(SagaStepAttemptFailed {
                step: 0,
                name: "a".into(),
                error: "declined".into(),
                timed_out: false,
            }),
            4,
        );
        assert_eq!(saga.steps[0].failures, 1);
        assert_eq!(saga.steps[0].state, StepState::Pending);
        assert_eq!(saga.status, SagaStatus::InProgress, "a refused attempt does not compensate");
        assert_eq!(saga.next(&plan, now()), Next::Act { step: 0, in_doubt: false });
    }

    #[test]
    fn skip_goes_on_and_finish_completes_early() {
        let plan = sequential(3, |_| true);
        let mut saga = started(&["a", "b", "c"]);
        saga.apply(&decided(0, DecidedAs::Skip, None), 2);
        assert_eq!(saga.next(&plan, now()), Next::Act { step: 1, in_doubt: false });
        saga.apply(&decided(1, DecidedAs::Finish, None), 3);
        assert_eq!(saga.finished_by.as_deref(), Some("a"));
        assert_eq!(saga.next(&plan, now()), Next::Complete);
        assert_eq!(saga.skipped_steps(), ["a", "b"]);
    }

    #[test]
    fn a_group_runs_its_unfinished_members_and_compensates_in_reverse_order_of_completion() {
        // a, then the group g = [1, 2, 3], then d.
        let mut slots = vec![Slot::Action { compensable: true }];
        slots.extend((1..4).map(|_| Slot::Member { group: 1..4, compensable: true }));
        slots.push(Slot::Action { compensable: true });
        let plan: Plan<()> = Plan { steps: Vec::new(), slots };
        let mut saga = started(&["a", "g/1", "g/2", "g/3", "d"]);
        saga.apply(&step_started(0), 2);
        saga.apply(&step_completed(0), 3);
        assert_eq!(saga.next(&plan, now()), Next::Group { members: vec![(1, false), (2, false), (3, false)] });
        for i in 1..4 {
            saga.apply(&step_started(i), 3 + i as u64);
        }
        saga.apply(&step_completed(3), 7);
        // A restart here: the started members are in doubt, the completed one is done.
        assert_eq!(saga.next(&plan, now()), Next::Group { members: vec![(1, true), (2, true)] });
        saga.apply(&step_completed(1), 8);
        saga.apply(
            &SagaEvent::StepFailed(SagaStepFailed {
                step: 2,
                name: "g/2".into(),
                error: "no".into(),
                timed_out: false,
            }),
            9,
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        // g/1 completed last: undone first, then g/3, then a.
        assert_eq!(saga.next(&plan, now()), Next::Compensate { step: 1, in_doubt: false });
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 1, name: "g/1".into() }), 10);
        assert_eq!(saga.next(&plan, now()), Next::Compensate { step: 3, in_doubt: false });
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 3, name: "g/3".into() }), 11);
        assert_eq!(saga.next(&plan, now()), Next::Compensate { step: 0, in_doubt: false });
        saga.apply(&SagaEvent::StepCompensated(SagaStepCompensated { step: 0, name: "a".into() }), 12);
        assert_eq!(saga.next(&plan, now()), Next::Fail);
        assert_eq!(saga.compensated_steps(), ["g/1", "g/3", "a"]);
    }

    #[test]
    fn a_member_in_doubt_is_resolved_before_compensating() {
        let slots = (0..2).map(|_| Slot::Member { group: 0..2, compensable: true }).collect();
        let plan: Plan<()> = Plan { steps: Vec::new(), slots };
        let mut saga = started(&["g/1", "g/2"]);
        saga.apply(&step_started(0), 2);
        saga.apply(&step_started(1), 3);
        saga.apply(
            &SagaEvent::StepFailed(SagaStepFailed {
                step: 1,
                name: "g/2".into(),
                error: "no".into(),
                timed_out: false,
            }),
            4,
        );
        assert_eq!(saga.next(&plan, now()), Next::Resolve { step: 0 });
        saga.apply(&decided(0, DecidedAs::Skip, None), 5);
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert_eq!(saga.next(&plan, now()), Next::Fail, "a member that never took effect has nothing to undo");
    }

    #[test]
    fn invalid_groups_are_refused() {
        let empty: Vec<Step<()>> = vec![Step::group("g", Vec::new())];
        assert!(Plan::new(&empty).err().is_some_and(|e| e.contains("no members")));
        let nested: Vec<Step<()>> = vec![Step::group("g", vec![Step::group("h", Vec::new())])];
        assert!(Plan::new(&nested).err().is_some_and(|e| e.contains("g/h")));
    }
}
