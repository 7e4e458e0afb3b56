//! A saga declared to the application's builder, so that an application
//! that does not handle a command of the saga's steps is refused when it is
//! built (ADR 0043).

use super::{Saga, Step};
use crate::app::OrchestrixBuilder;
use crate::command::CommandUse;

/// The aggregate commands that `steps` of saga `S` send, each with the
/// step that sends it.
pub(super) fn sends<S: Saga>(steps: &[Step<S::Data>]) -> Vec<(String, CommandUse)> {
    steps
        .iter()
        .flat_map(|step| {
            let sender = format!("step `{}` of saga `{}`", step.name(), S::NAME);
            step.sends().map(move |used| (sender.clone(), used.clone()))
        })
        .collect()
}

impl OrchestrixBuilder {
    /// Declares that `saga` runs on this application (through a
    /// [`SagaManager`](super::SagaManager) made from it), so that
    /// [`build`](Self::build) fails with
    /// [`BuildError::UnregisteredCommand`](crate::app::BuildError::UnregisteredCommand),
    /// naming the step, when a command that a step sends ([`Step::command`](super::Step::command),
    /// [`Step::compensate_with`](super::Step::compensate_with)) is not handled by a
    /// registered aggregate. Without it, such a step fails when it first
    /// runs, and the saga compensates (a [`SagaManager::spawn`](super::SagaManager::spawn)
    /// makes the same check when it starts). Steps of your own
    /// ([`Step::custom`](super::Step::custom)) are not checked; declare their
    /// commands with [`sends`](Self::sends).
    pub fn saga<S: Saga>(self, saga: &S) -> Self {
        self.sent_by(sends::<S>(&saga.steps()))
    }
}
