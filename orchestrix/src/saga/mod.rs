//! Sagas (process managers) with compensation.
//!
//! A saga reacts to an event of the log by running a sequence of
//! [`Step`]s, each of which sends a command to an aggregate. When a step
//! fails (the aggregate refuses, or the step times out), the compensations
//! of the steps that completed run in reverse order. The saga instance's
//! own progress is event-sourced in a stream of its own, so a saga that
//! dies halfway resumes from where it was.
//!
//! - A [`Saga`] definition says which events start an instance, with what
//!   data, and which steps it runs.
//! - [`Step::command`] builds a step from a typed command;
//!   [`Step::compensate_with`] adds the command that undoes it.
//! - A [`SagaManager`] runs a definition as a
//!   [`Projection`](crate::projection::Projection): it gets checkpoints,
//!   catch-up then live delivery, retries and poison handling from the
//!   [`ProjectionEngine`](crate::projection::ProjectionEngine), and
//!   [`SagaManager::resume_incomplete`] drives instances that stopped
//!   halfway.
//!
//! # Exactly-once steps
//!
//! Every execution of a step's command carries a deterministic id
//! ([`step_id`]) derived from the saga id, the step's index and whether it
//! is the action or the compensation. The id is the command id and the
//! causation id of the events the command records. Before re-running a
//! step whose outcome is unknown (the saga died or the step timed out after
//! it started), the manager looks in the target aggregate's stream for an
//! event caused by that id: if there is one, the step took effect and is
//! not run again. A step that targets something other than an aggregate
//! stream cannot be checked this way; see [`StepAction::already_applied`].
//!
//! This holds with **one runner per saga kind at a time**. Two runners that
//! meet the same step in doubt can both find no effect yet and both run it.
//! A restart that overlaps the old process, or a program started twice,
//! is such a case: give the manager a lease with
//! [`SagaManager::with_leases`] (the SQLite or PostgreSQL store itself,
//! or [`crate::memory::InMemoryLeases`] within a process), and a second
//! runner waits for the first one (it logs that it waits and counts it in
//! [`crate::telemetry::LEASE_WAITS_TOTAL`]) instead of running steps
//! beside it (ADR 0032).
//!
//! # Steps that decide, wait and run together (ADR 0038)
//!
//! - [`Step::decide`] asks a hook before every attempt of a step's action
//!   (and after every refused attempt). It sees a [`StepContext`]: the
//!   data, the instance's state, the application to load the aggregates
//!   the step concerns, the [`Clock`]'s time, the step's refused attempts.
//!   It answers a [`Decision`]: run, skip, retry at a time (stored, so it
//!   survives restarts), finish the saga now, or fail the step.
//! - [`Step::wait_for`] waits for an event of a type in an aggregate's
//!   stream, keyed by the saga's data, or a deadline ([`Step::within`]),
//!   stored when the wait begins. [`AfterWait`] says what each outcome does.
//! - [`Step::group`] runs its members together; a refused member makes the
//!   completed ones compensate in the reverse order of their completion,
//!   then the steps before the group.
//! - An instance that waits ends its drive in [`SagaStatus::Waiting`]. The
//!   ticker of a spawned manager ([`SagaManager::with_tick`]) calls
//!   [`SagaManager::tick`]; [`SagaManager::resume_incomplete`] fires the
//!   deadlines that passed while no manager ran. [`ManualClock`]
//!   ([`SagaManager::with_clock`]) lets tests move time.
//!
//! # Stored events
//!
//! An instance of saga `S` lives in the stream `saga-<S::NAME>/<saga id>`
//! and records [`SagaEvent`]s, whose stored type names are shared by every
//! saga kind: `SagaStarted`, `SagaStepStarted`, `SagaStepCompleted`,
//! `SagaStepFailed`, `SagaCompensationStarted`, `SagaStepCompensated`,
//! `SagaCompleted` and `SagaFailed`, and since ADR 0038 `SagaStepDecided`,
//! `SagaStepAttemptFailed` and `SagaStepWaiting` (streams of the first
//! eight load as before). Every append expects the exact version
//! the runner last saw, so two runners never both record the same
//! transition: the loser of a race reloads and re-decides.
//!
//! ```
//! # #![allow(dead_code)]
//! use orchestrix::saga::{Saga, Step};
//! use orchestrix::error::BoxError;
//! use orchestrix::envelope::RecordedEvent;
//! # use orchestrix::{Aggregate, AggregateCommand, command::Existence, Event, error::DecodeErrorKind, Uuid};
//! # use orchestrix::command::HandlerResult;
//! # use orchestrix::event::EventType;
//! # #[derive(Debug)] pub struct Never;
//! # impl Event for Never {
//! #     fn event_types() -> &'static [EventType] { &[] }
//! #     fn event_type(&self) -> &'static str { unreachable!() }
//! #     fn schema_version(&self) -> u32 { 1 }
//! #     fn encode(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> { unreachable!() }
//! #     fn decode(_: &str, _: u32, _: &serde_json::value::RawValue) -> Result<Self, DecodeErrorKind> { Err(DecodeErrorKind::UnknownType) }
//! # }
//! # #[derive(Debug, thiserror::Error)] #[error("refused")] pub struct Refused;
//! # #[derive(Debug, Default)] pub struct Account;
//! # impl Aggregate for Account {
//! #     const NAME: &'static str = "Account";
//! #     type Id = Uuid; type Event = Never; type Error = Refused;
//! #     fn apply(&mut self, _: &Never) {}
//! # }
//! # #[derive(Clone)] pub struct Withdraw { amount: u64 }
//! # #[derive(Clone)] pub struct Deposit { amount: u64 }
//! # impl AggregateCommand for Withdraw {
//! #     type Aggregate = Account; type Service = ();
//! #     const NAME: &'static str = "Withdraw"; const REQUIRES: Existence = Existence::Existing;
//! #     fn handle<'a>(self, _: Option<&'a Uuid>, _: &'a Account, _: &'a ()) -> impl std::future::Future<Output = HandlerResult<Account>> + Send + 'a { async { Ok(vec![]) } }
//! # }
//! # impl AggregateCommand for Deposit {
//! #     type Aggregate = Account; type Service = ();
//! #     const NAME: &'static str = "Deposit"; const REQUIRES: Existence = Existence::Existing;
//! #     fn handle<'a>(self, _: Option<&'a Uuid>, _: &'a Account, _: &'a ()) -> impl std::future::Future<Output = HandlerResult<Account>> + Send + 'a { async { Ok(vec![]) } }
//! # }
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! pub struct Transfer { from: Uuid, to: Uuid, amount: u64 }
//!
//! pub struct TransferSaga;
//!
//! impl Saga for TransferSaga {
//!     const NAME: &'static str = "Transfer";
//!     type Data = Transfer;
//!
//!     fn start_event_types(&self) -> Vec<String> {
//!         vec!["TransferRequested".into()]
//!     }
//!
//!     fn start(&self, event: &RecordedEvent) -> Result<Option<Transfer>, BoxError> {
//!         Ok(Some(serde_json::from_str(event.data.get())?))
//!     }
//!
//!     fn steps(&self) -> Vec<Step<Transfer>> {
//!         vec![
//!             Step::command("debit", |t: &Transfer| (t.from, Withdraw { amount: t.amount }))
//!                 .compensate_with(|t: &Transfer| (t.from, Deposit { amount: t.amount })),
//!             Step::command("credit", |t: &Transfer| (t.to, Deposit { amount: t.amount })),
//!         ]
//!     }
//! }
//!
//! let names: Vec<_> = TransferSaga.steps().iter().map(|s| s.name().to_owned()).collect();
//! assert_eq!(names, ["debit", "credit"]);
//! ```

mod clock;
mod decide;
mod drive;
mod error;
mod events;
mod flow;
mod lease;
mod manager;
mod plan;
mod state;
mod step;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, SystemClock};
pub use decide::{AfterWait, Decision, StepContext};
pub use error::SagaError;
pub use events::{
    DecidedAs, SagaCompensationStarted, SagaCompleted, SagaEvent, SagaFailed, SagaStarted, SagaStepAttemptFailed,
    SagaStepCompensated, SagaStepCompleted, SagaStepDecided, SagaStepFailed, SagaStepStarted, SagaStepWaiting,
};
pub use manager::{SagaManager, DEFAULT_TICK};
pub use state::{SagaInstance, SagaStatus, StepRecord, StepState};
pub use step::{step_id, Step, StepAction, StepError, StepKind, DEFAULT_STEP_TIMEOUT};

use crate::envelope::RecordedEvent;
use crate::error::BoxError;

/// A saga definition: which events start an instance, with what data, and
/// the steps every instance runs.
///
/// Implement it on a type of your own (it may hold configuration, such as
/// timeouts) and run it with a [`SagaManager`].
pub trait Saga: Send + Sync + 'static {
    /// The saga kind's stable name: part of its streams' category
    /// (`saga-<NAME>`) and of its manager's projection name. It must not
    /// contain `/`.
    const NAME: &'static str;

    /// What an instance carries from its start to its end: the input of
    /// every step. Stored as JSON in the instance's `SagaStarted` event.
    type Data: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// The stored type names of the events that may start an instance: the
    /// filter of the manager's subscription.
    fn start_event_types(&self) -> Vec<String>;

    /// Decides whether `event` starts an instance, and with what data.
    /// `Ok(None)` ignores the event; an error is retried and then treated
    /// as a poison event by the projection engine.
    fn start(&self, event: &RecordedEvent) -> Result<Option<Self::Data>, BoxError>;

    /// The id of the instance that `event` starts. It must be derived from
    /// the event alone, so that a redelivered event (delivery is at least
    /// once) finds the instance it started rather than starting another.
    /// The default is the event's own id.
    fn saga_id(&self, event: &RecordedEvent, data: &Self::Data) -> Uuid {
        let _ = data;
        event.id
    }

    /// The steps, in the order they run. An instance records the names of
    /// its steps when it starts (a group's members as `<group>/<member>`);
    /// a manager refuses to drive an instance whose stored step names
    /// differ from these.
    fn steps(&self) -> Vec<Step<Self::Data>>;
}
