//! An aggregate command that the application will send but does not handle
//! is found when the application is built, not on the first command
//! (ADR 0043): senders declared with `OrchestrixBuilder::sends`, sagas
//! declared with `OrchestrixBuilder::saga` (their steps' actions and
//! compensations).
#![allow(missing_docs)]

use orchestrix::app::BuildError;
use orchestrix::error::BoxError;
use orchestrix::prelude::*;
use orchestrix::saga::{Saga, Step, StepAction, StepError};
use orchestrix::{app::CommandOptions, envelope::RecordedEvent, Uuid};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

#[aggregate(event = AccountEvent, error = Refused)]
#[derive(Debug, Default)]
pub struct Account {
    balance: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deposit {
    amount: u64,
}

#[derive(Debug, Clone)]
pub struct Withdraw {
    amount: u64,
}

#[command_handler]
impl Account {
    #[command(requires = any)]
    fn deposit(&self, command: Deposit) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Deposited { amount: command.amount })
    }

    fn withdraw(&self, command: Withdraw) -> Result<AccountEvent, Refused> {
        if command.amount > self.balance {
            return Err(Refused);
        }
        Ok(AccountEvent::Withdrawn { amount: command.amount })
    }
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    Noted { text: String },
}

#[aggregate(event = AuditEvent, error = Refused)]
#[derive(Debug, Default)]
pub struct Audit {
    notes: usize,
}

impl Audit {
    fn apply(&mut self, _: &AuditEvent) {
        self.notes += 1;
    }
}

#[derive(Debug, Clone)]
pub struct Note {
    text: String,
}

#[command_handler]
impl Audit {
    #[command(requires = any)]
    fn note(&self, command: Note) -> Result<AuditEvent, Refused> {
        Ok(AuditEvent::Noted { text: command.text })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Payout {
    account: Uuid,
    amount: u64,
}

/// Withdraws, then notes it; a failed note is compensated by a deposit
/// and an audit note, depending on `compensation`.
struct PayoutSaga {
    compensation: Compensation,
}

#[derive(Clone, Copy)]
enum Compensation {
    /// `compensate_with` a command of `Audit`.
    Audited,
    /// `compensate_with` a command of `Audit`, then replaced by a custom one.
    Replaced,
}

struct Nothing;

#[orchestrix::async_trait]
impl StepAction<Payout> for Nothing {
    async fn execute(&self, _: &Orchestrix, _: &Payout, _: CommandOptions) -> Result<(), StepError> {
        Ok(())
    }
}

impl Saga for PayoutSaga {
    const NAME: &'static str = "payout";
    type Data = Payout;

    fn start_event_types(&self) -> Vec<String> {
        vec!["PayoutRequested".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<Payout>, BoxError> {
        Ok(Some(serde_json::from_str(event.data.get())?))
    }

    fn steps(&self) -> Vec<Step<Payout>> {
        let debit = Step::command("debit", |p: &Payout| (p.account, Withdraw { amount: p.amount }))
            .compensate_with(|p: &Payout| (p.account, Note { text: format!("refund {}", p.amount) }));
        let debit = match self.compensation {
            Compensation::Audited => debit,
            Compensation::Replaced => debit.compensate_with_custom(Nothing),
        };
        vec![debit, Step::custom("notify", Nothing)]
    }
}

fn unregistered(result: Result<Orchestrix, BuildError>) -> (&'static str, String, String) {
    match result {
        Err(BuildError::UnregisteredCommand { command, sender, registration }) => (command, sender, registration),
        Err(other) => panic!("expected UnregisteredCommand, got {other}"),
        Ok(_) => panic!("expected UnregisteredCommand, the application was built"),
    }
}

#[test]
fn a_declared_sender_of_an_unhandled_command_fails_the_build_with_a_message_that_says_what_to_do() {
    let result = Orchestrix::builder().in_memory().aggregate::<Audit>().sends::<Deposit>("the import job").build();
    let error = result.as_ref().map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        error,
        "command `Deposit` is sent by the import job, but the application does not handle it; \
         register its aggregate with `.aggregate::<registration::Account>()`"
    );
    let (command, sender, registration) = unregistered(result);
    assert_eq!(
        (command, sender.as_str(), registration.as_str()),
        ("Deposit", "the import job", "aggregate::<registration::Account>()")
    );
}

#[test]
fn a_declared_sender_is_checked_whatever_the_order_of_the_calls() {
    let before = Orchestrix::builder().in_memory().sends::<Deposit>("the import job").aggregate::<Account>().build();
    let after = Orchestrix::builder().in_memory().aggregate::<Account>().sends::<Deposit>("the import job").build();
    assert!(before.is_ok() && after.is_ok());
}

#[test]
fn a_saga_whose_step_sends_an_unhandled_command_fails_the_build_naming_the_step() {
    let saga = PayoutSaga { compensation: Compensation::Audited };
    let (command, sender, registration) =
        unregistered(Orchestrix::builder().in_memory().saga(&saga).aggregate::<Audit>().build());
    assert_eq!((command, sender.as_str()), ("Withdraw", "step `debit` of saga `payout`"));
    assert_eq!(registration, "aggregate::<registration::Account>()");
}

#[test]
fn a_saga_whose_compensation_sends_an_unhandled_command_fails_the_build() {
    let saga = PayoutSaga { compensation: Compensation::Audited };
    let (command, sender, _) =
        unregistered(Orchestrix::builder().in_memory().aggregate::<Account>().saga(&saga).build());
    assert_eq!((command, sender.as_str()), ("Note", "step `debit` of saga `payout`"));
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().aggregate::<Audit>().saga(&saga).build();
    assert!(app.is_ok());
}

#[test]
fn a_replaced_compensation_is_no_longer_required_and_custom_steps_are_not_checked() {
    let saga = PayoutSaga { compensation: Compensation::Replaced };
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().saga(&saga).build();
    assert!(app.is_ok());
}

#[tokio::test]
async fn without_a_declaration_the_first_command_is_refused_as_before() {
    let app = Orchestrix::builder().in_memory().aggregate::<Audit>().build().unwrap();
    let error = app.execute(Uuid::now_v7(), Deposit { amount: 1 }).await.unwrap_err();
    assert!(matches!(error, CommandError::Unregistered { command: "Deposit", .. }), "{error}");
}

#[tokio::test]
async fn a_saga_manager_refuses_to_spawn_on_an_application_that_does_not_handle_its_steps() {
    use orchestrix::memory::InMemoryCheckpointStore;
    use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
    use orchestrix::saga::{SagaError, SagaManager};

    let app = Orchestrix::builder().in_memory().aggregate::<Account>().build().unwrap();
    let engine = ProjectionEngine::new(app.event_store().clone(), InMemoryCheckpointStore::new());
    let manager = SagaManager::new(app.clone(), PayoutSaga { compensation: Compensation::Audited });
    let Err(error) = manager.spawn(&engine, ProjectionOptions::default()).await else {
        panic!("the manager spawned on an application without `Audit`");
    };
    assert!(
        matches!(&error, SagaError::Unregistered(BuildError::UnregisteredCommand { command: "Note", .. })),
        "{error}"
    );

    let app = Orchestrix::builder().in_memory().aggregate::<Account>().aggregate::<Audit>().build().unwrap();
    let engine = ProjectionEngine::new(app.event_store().clone(), InMemoryCheckpointStore::new());
    let manager = SagaManager::new(app.clone(), PayoutSaga { compensation: Compensation::Audited });
    let handle = manager.spawn(&engine, ProjectionOptions::default()).await.unwrap();
    handle.stop().await.unwrap();
}
