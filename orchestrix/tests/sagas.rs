//! Sagas against the in-memory stores: a money transfer between two
//! hand-written account aggregates, its success, its compensation, a step
//! timeout, a failing compensation, correlation and causation ids, resuming
//! a step in doubt, and a manager killed at random points again and again.

use std::collections::{HashMap, HashSet};
use std::future::{ready, Future};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use orchestrix::__private::{CommandDescriptor, HandlerResult};
use orchestrix::error::BoxError;
use orchestrix::event::{decode_versioned, encode_raw, EventType};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore};
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::saga::testing::SagaFixture;
use orchestrix::saga::{
    step_id, Saga, SagaEvent, SagaInstance, SagaManager, SagaStatus, SagaStepStarted, Step, StepAction, StepError,
    StepKind, StepState,
};
use orchestrix::store::{EventStream, StreamAppend};
use orchestrix::{
    app::CommandOptions,
    command::CommandSet,
    envelope::{NewEvent, RecordedEvent},
    error::DecodeErrorKind,
    store::{EventFilter, EventStore, ExpectedVersion},
    Aggregate, AggregateCommand, Event, Metadata, Orchestrix, StoreError, StreamId, Uuid,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------
// The domain, written by hand: accounts and transfer requests.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Amount {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Closed {}

#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened(Opened),
    Deposited(Amount),
    Withdrawn(Amount),
    Closed(Closed),
}

static ACCOUNT_TYPES: [EventType; 4] = [
    EventType::new("AccountOpened", 1),
    EventType::new("AccountDeposited", 1),
    EventType::new("AccountWithdrawn", 1),
    EventType::new("AccountClosed", 1),
];

impl Event for AccountEvent {
    fn event_types() -> &'static [EventType] {
        &ACCOUNT_TYPES
    }

    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened(_) => "AccountOpened",
            Self::Deposited(_) => "AccountDeposited",
            Self::Withdrawn(_) => "AccountWithdrawn",
            Self::Closed(_) => "AccountClosed",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        match self {
            Self::Opened(e) => encode_raw(e),
            Self::Deposited(e) | Self::Withdrawn(e) => encode_raw(e),
            Self::Closed(e) => encode_raw(e),
        }
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        match event_type {
            "AccountOpened" => decode_versioned(data, schema_version, 1, &[]).map(Self::Opened),
            "AccountDeposited" => decode_versioned(data, schema_version, 1, &[]).map(Self::Deposited),
            "AccountWithdrawn" => decode_versioned(data, schema_version, 1, &[]).map(Self::Withdrawn),
            "AccountClosed" => decode_versioned(data, schema_version, 1, &[]).map(Self::Closed),
            _ => Err(DecodeErrorKind::UnknownType),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum BankError {
    #[error("account closed")]
    Closed,
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

#[derive(Debug, Default)]
struct Account {
    owner: String,
    balance: u64,
    closed: bool,
}

impl Aggregate for Account {
    const NAME: &'static str = "Account";
    type Id = Uuid;
    type Event = AccountEvent;
    type Error = BankError;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(e) => self.owner.clone_from(&e.owner),
            AccountEvent::Deposited(e) => self.balance += e.amount,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount,
            AccountEvent::Closed(_) => self.closed = true,
        }
    }
}

/// How long deposits to each owner take: a service the async deposit
/// handler receives.
#[derive(Debug, Clone, Default)]
struct Latency {
    by_owner: Arc<Mutex<HashMap<String, Duration>>>,
    everyone: Arc<Mutex<Duration>>,
}

impl Latency {
    fn set(&self, owner: &str, delay: Duration) {
        self.by_owner.lock().unwrap().insert(owner.to_owned(), delay);
    }

    fn set_everyone(&self, delay: Duration) {
        *self.everyone.lock().unwrap() = delay;
    }

    fn of(&self, owner: &str) -> Duration {
        let everyone = *self.everyone.lock().unwrap();
        self.by_owner.lock().unwrap().get(owner).copied().unwrap_or(everyone)
    }
}

#[derive(Debug, Clone)]
struct Open {
    owner: String,
}

#[derive(Debug, Clone)]
struct Deposit {
    amount: u64,
}

#[derive(Debug, Clone)]
struct Withdraw {
    amount: u64,
}

#[derive(Debug, Clone)]
struct Close;

impl AggregateCommand for Open {
    type Aggregate = Account;
    type Service = ();
    const NAME: &'static str = "Open";
    const REQUIRES: orchestrix::command::Existence = orchestrix::command::Existence::New;

    fn handle<'a>(
        self,
        _: Option<&'a Uuid>,
        _: &'a Account,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Account>> + Send + 'a {
        ready(Ok(vec![AccountEvent::Opened(Opened { owner: self.owner })]))
    }
}

impl AggregateCommand for Deposit {
    type Aggregate = Account;
    type Service = Latency;
    const NAME: &'static str = "Deposit";
    const REQUIRES: orchestrix::command::Existence = orchestrix::command::Existence::Existing;

    async fn handle<'a>(
        self,
        _: Option<&'a Uuid>,
        account: &'a Account,
        latency: &'a Latency,
    ) -> HandlerResult<Account> {
        let delay = latency.of(&account.owner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if account.closed {
            return Err(BankError::Closed);
        }
        Ok(vec![AccountEvent::Deposited(Amount { amount: self.amount })])
    }
}

impl AggregateCommand for Withdraw {
    type Aggregate = Account;
    type Service = ();
    const NAME: &'static str = "Withdraw";
    const REQUIRES: orchestrix::command::Existence = orchestrix::command::Existence::Existing;

    fn handle<'a>(
        self,
        _: Option<&'a Uuid>,
        account: &'a Account,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Account>> + Send + 'a {
        ready(if account.closed {
            Err(BankError::Closed)
        } else if account.balance < self.amount {
            Err(BankError::InsufficientFunds { balance: account.balance, asked: self.amount })
        } else {
            Ok(vec![AccountEvent::Withdrawn(Amount { amount: self.amount })])
        })
    }
}

impl AggregateCommand for Close {
    type Aggregate = Account;
    type Service = ();
    const NAME: &'static str = "Close";
    const REQUIRES: orchestrix::command::Existence = orchestrix::command::Existence::Existing;

    fn handle<'a>(
        self,
        _: Option<&'a Uuid>,
        _: &'a Account,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Account>> + Send + 'a {
        ready(Ok(vec![AccountEvent::Closed(Closed {})]))
    }
}

impl CommandSet for Account {
    fn commands() -> Vec<CommandDescriptor> {
        vec![
            CommandDescriptor::of::<Open>(),
            CommandDescriptor::of::<Deposit>(),
            CommandDescriptor::of::<Withdraw>(),
            CommandDescriptor::of::<Close>(),
        ]
    }
}

/// The start event: a transfer was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TransferRequested {
    from: Uuid,
    to: Uuid,
    amount: u64,
}

static TRANSFER_TYPES: [EventType; 1] = [EventType::new("TransferRequested", 1)];

impl Event for TransferRequested {
    fn event_types() -> &'static [EventType] {
        &TRANSFER_TYPES
    }

    fn event_type(&self) -> &'static str {
        "TransferRequested"
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        encode_raw(self)
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        match event_type {
            "TransferRequested" => decode_versioned(data, schema_version, 1, &[]),
            _ => Err(DecodeErrorKind::UnknownType),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("this transfer was already requested")]
struct AlreadyRequested;

#[derive(Debug, Default)]
struct Transfer {
    requested: bool,
}

impl Aggregate for Transfer {
    const NAME: &'static str = "Transfer";
    type Id = Uuid;
    type Event = TransferRequested;
    type Error = AlreadyRequested;

    fn apply(&mut self, _: &TransferRequested) {
        self.requested = true;
    }
}

#[derive(Debug, Clone)]
struct RequestTransfer {
    from: Uuid,
    to: Uuid,
    amount: u64,
}

impl AggregateCommand for RequestTransfer {
    type Aggregate = Transfer;
    type Service = ();
    const NAME: &'static str = "RequestTransfer";
    const REQUIRES: orchestrix::command::Existence = orchestrix::command::Existence::New;

    fn handle<'a>(
        self,
        _: Option<&'a Uuid>,
        _: &'a Transfer,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Transfer>> + Send + 'a {
        ready(Ok(vec![TransferRequested { from: self.from, to: self.to, amount: self.amount }]))
    }
}

impl CommandSet for Transfer {
    fn commands() -> Vec<CommandDescriptor> {
        vec![CommandDescriptor::of::<RequestTransfer>()]
    }
}

// ---------------------------------------------------------------------------
// The saga: debit the source, credit the target; refund the source if the
// credit fails.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TransferData {
    from: Uuid,
    to: Uuid,
    amount: u64,
}

struct TransferSaga {
    credit_timeout: Duration,
}

impl Default for TransferSaga {
    fn default() -> Self {
        Self { credit_timeout: Duration::from_secs(10) }
    }
}

impl Saga for TransferSaga {
    const NAME: &'static str = "Transfer";
    type Data = TransferData;

    fn start_event_types(&self) -> Vec<String> {
        vec!["TransferRequested".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<TransferData>, BoxError> {
        let requested: TransferRequested = event.decode()?;
        Ok(Some(TransferData { from: requested.from, to: requested.to, amount: requested.amount }))
    }

    fn steps(&self) -> Vec<Step<TransferData>> {
        vec![
            Step::command("debit", |t: &TransferData| (t.from, Withdraw { amount: t.amount }))
                .compensate_with(|t: &TransferData| (t.from, Deposit { amount: t.amount })),
            Step::command("credit", |t: &TransferData| (t.to, Deposit { amount: t.amount }))
                .timeout(self.credit_timeout),
        ]
    }
}

/// A transfer whose credit step closes the source account and then fails,
/// so that the refund (the debit's compensation) is refused.
struct FragileTransferSaga;

struct CloseSourceThenFail;

#[async_trait]
impl StepAction<TransferData> for CloseSourceThenFail {
    async fn execute(&self, app: &Orchestrix, data: &TransferData, options: CommandOptions) -> Result<(), StepError> {
        app.execute_with(data.from, Close, options).await.map_err(|e| StepError::Transient(Box::new(e)))?;
        Err(StepError::Failed("the bank of the target is on fire".into()))
    }
}

impl Saga for FragileTransferSaga {
    const NAME: &'static str = "FragileTransfer";
    type Data = TransferData;

    fn start_event_types(&self) -> Vec<String> {
        vec!["TransferRequested".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<TransferData>, BoxError> {
        TransferSaga::default().start(event)
    }

    fn steps(&self) -> Vec<Step<TransferData>> {
        vec![
            Step::command("debit", |t: &TransferData| (t.from, Withdraw { amount: t.amount }))
                .compensate_with(|t: &TransferData| (t.from, Deposit { amount: t.amount })),
            Step::custom("credit", CloseSourceThenFail),
        ]
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn app_over(events: Arc<dyn EventStore>, latency: &Latency) -> Orchestrix {
    Orchestrix::builder()
        .event_store(events)
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .service(latency.clone())
        .build()
        .unwrap()
}

fn app(latency: &Latency) -> Orchestrix {
    app_over(Arc::new(InMemoryEventStore::new()), latency)
}

async fn open(app: &Orchestrix, owner: &str, balance: u64) -> Uuid {
    let id = Uuid::now_v7();
    app.execute(id, Open { owner: owner.into() }).await.unwrap();
    if balance > 0 {
        app.execute(id, Deposit { amount: balance }).await.unwrap();
    }
    id
}

async fn balance(app: &Orchestrix, id: Uuid) -> u64 {
    app.load::<Account>(&id).await.unwrap().state.balance
}

fn transfer_stream() -> StreamId {
    StreamId::new("Transfer", Uuid::now_v7().to_string()).unwrap()
}

async fn all_events(store: &dyn EventStore, types: &[&str]) -> Vec<Arc<RecordedEvent>> {
    let filter = EventFilter::types(types.iter().copied());
    store.read_all(1, &filter).try_collect().await.unwrap()
}

// ---------------------------------------------------------------------------
// Fixture tests.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_transfer_debits_then_credits() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    let then = SagaFixture::new(app.clone(), TransferSaga::default())
        .when(transfer_stream(), TransferRequested { from: alice, to: bob, amount: 30 })
        .await
        .then_expect_status(SagaStatus::Completed)
        .then_expect_steps(["debit", "credit"])
        .then_expect_compensated([])
        .then_expect_step_event_types(["AccountWithdrawn", "AccountDeposited"])
        .await;
    assert_eq!(then.instance().data.amount, 30);
    assert_eq!(then.instance().failed_step(), None);
    assert_eq!((balance(&app, alice).await, balance(&app, bob).await), (70, 30));
    let history = then.manager().history(then.instance().id).await.unwrap();
    let types: Vec<_> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "SagaStarted",
            "SagaStepStarted",
            "SagaStepCompleted",
            "SagaStepStarted",
            "SagaStepCompleted",
            "SagaCompleted"
        ]
    );
}

#[tokio::test]
async fn a_refused_credit_refunds_the_source() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    app.execute(bob, Close).await.unwrap();
    let then = SagaFixture::new(app.clone(), TransferSaga::default())
        .when(transfer_stream(), TransferRequested { from: alice, to: bob, amount: 30 })
        .await
        .then_expect_status(SagaStatus::Failed)
        .then_expect_steps(["debit"])
        .then_expect_failed_step("credit")
        .then_expect_compensated(["debit"])
        .then_expect_error_containing("account closed")
        .then_expect_step_event_types(["AccountWithdrawn", "AccountDeposited"])
        .await;
    let instance = then.instance();
    assert!(instance.is_compensated());
    assert_eq!(instance.steps[0].state, StepState::Compensated);
    assert_eq!(instance.steps[1].state, StepState::Failed);
    assert!(!instance.steps[1].timed_out);
    assert_eq!((balance(&app, alice).await, balance(&app, bob).await), (100, 0));
    let history = then.manager().history(instance.id).await.unwrap();
    let types: Vec<_> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "SagaStarted",
            "SagaStepStarted",
            "SagaStepCompleted",
            "SagaStepStarted",
            "SagaStepFailed",
            "SagaCompensationStarted",
            "SagaStepCompensated",
            "SagaFailed"
        ]
    );
}

#[tokio::test]
async fn a_refused_first_step_has_nothing_to_compensate() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 10).await;
    let bob = open(&app, "bob", 0).await;
    SagaFixture::new(app.clone(), TransferSaga::default())
        .when(transfer_stream(), TransferRequested { from: alice, to: bob, amount: 30 })
        .await
        .then_expect_status(SagaStatus::Failed)
        .then_expect_steps([])
        .then_expect_failed_step("debit")
        .then_expect_compensated([])
        .then_expect_error_containing("insufficient funds")
        .then_expect_step_event_types([])
        .await;
}

#[tokio::test]
async fn a_step_that_times_out_is_compensated() {
    let latency = Latency::default();
    latency.set("bob", Duration::from_secs(30));
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    let saga = TransferSaga { credit_timeout: Duration::from_millis(50) };
    let started = std::time::Instant::now();
    let then = SagaFixture::new(app.clone(), saga)
        .when(transfer_stream(), TransferRequested { from: alice, to: bob, amount: 30 })
        .await
        .then_expect_status(SagaStatus::Failed)
        .then_expect_failed_step("credit")
        .then_expect_compensated(["debit"])
        .then_expect_error_containing("timed out");
    assert!(started.elapsed() < Duration::from_secs(10), "the step did not wait for the slow handler");
    assert!(then.instance().steps[1].timed_out);
    assert_eq!((balance(&app, alice).await, balance(&app, bob).await), (100, 0));
}

#[tokio::test]
async fn a_failed_compensation_ends_the_saga_failed_with_its_error() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    let then = SagaFixture::new(app.clone(), FragileTransferSaga)
        .when(transfer_stream(), TransferRequested { from: alice, to: bob, amount: 30 })
        .await
        .then_expect_status(SagaStatus::Failed)
        .then_expect_failed_step("credit")
        .then_expect_compensated([])
        .then_expect_error_containing("on fire")
        .then_expect_compensation_error("account closed");
    let instance = then.instance();
    assert!(!instance.is_compensated());
    assert_eq!(instance.steps[0].state, StepState::CompensationFailed);
    assert_eq!(balance(&app, alice).await, 70, "the debit stays: a human must look");
}

#[tokio::test]
async fn an_event_that_is_not_a_start_event_starts_nothing() {
    struct Picky;
    impl Saga for Picky {
        const NAME: &'static str = "Picky";
        type Data = TransferData;
        fn start_event_types(&self) -> Vec<String> {
            vec!["TransferRequested".into()]
        }
        fn start(&self, _: &RecordedEvent) -> Result<Option<TransferData>, BoxError> {
            Ok(None)
        }
        fn steps(&self) -> Vec<Step<TransferData>> {
            Vec::new()
        }
    }
    let app = app(&Latency::default());
    SagaFixture::new(app, Picky)
        .when(transfer_stream(), TransferRequested { from: Uuid::nil(), to: Uuid::nil(), amount: 1 })
        .await
        .then_expect_no_saga();
}

// ---------------------------------------------------------------------------
// Ids, redelivery, resumption.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_event_carries_the_correlation_id_and_its_step_as_cause() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    app.execute(bob, Close).await.unwrap();
    let request = Uuid::now_v7();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
    let options = CommandOptions::default().correlation_id(request).tenant("acme").traceparent(traceparent.clone());
    let outcome =
        app.execute_with(Uuid::now_v7(), RequestTransfer { from: alice, to: bob, amount: 5 }, options).await.unwrap();
    let trigger = Arc::clone(&outcome.events[0].record);
    let then = SagaFixture::new(app.clone(), TransferSaga::default()).when_recorded(&trigger).await;
    let instance = then.instance().clone();
    assert_eq!(instance.id, trigger.id, "the saga id is the start event's id");
    assert_eq!(instance.correlation_id, request);
    assert_eq!(instance.tenant.as_deref(), Some("acme"));

    let debit = step_id(instance.id, 0, StepKind::Action);
    let credit = step_id(instance.id, 1, StepKind::Action);
    let refund = step_id(instance.id, 0, StepKind::Compensation);
    assert_eq!(instance.steps[0].action_id, Some(debit));
    assert_eq!(instance.steps[1].action_id, Some(credit));
    assert_eq!(instance.steps[0].compensation_id, Some(refund));

    let step_events = then.step_events().await;
    assert_eq!(step_events.len(), 2, "the debit and the refund; the credit was refused");
    for (event, cause) in step_events.iter().zip([debit, refund]) {
        assert_eq!(event.metadata.correlation_id, Some(request), "{}", event.event_type);
        assert_eq!(event.metadata.causation_id, Some(cause), "{}", event.event_type);
        assert_eq!(event.metadata.tenant.as_deref(), Some("acme"));
        assert_eq!(event.metadata.traceparent.as_ref(), Some(&traceparent), "one trace follows the saga");
        assert_eq!(event.stream.id(), alice.to_string());
    }
    for event in then.manager().history(instance.id).await.unwrap() {
        assert_eq!(event.metadata.correlation_id, Some(request), "{}", event.event_type);
        assert_eq!(event.stream.category(), "saga-Transfer");
    }
    let history = then.manager().history(instance.id).await.unwrap();
    assert_eq!(history[0].metadata.causation_id, Some(trigger.id), "the saga was caused by its start event");
}

#[tokio::test]
async fn a_redelivered_start_event_does_not_start_a_second_saga() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    let fixture = SagaFixture::new(app.clone(), TransferSaga::default());
    let outcome = app.execute(Uuid::now_v7(), RequestTransfer { from: alice, to: bob, amount: 10 }).await.unwrap();
    let trigger = Arc::clone(&outcome.events[0].record);
    for _ in 0..3 {
        fixture.when_recorded(&trigger).await.then_expect_status(SagaStatus::Completed);
    }
    assert_eq!((balance(&app, alice).await, balance(&app, bob).await), (90, 10));
    assert_eq!(fixture.manager().history(trigger.id).await.unwrap().len(), 6);
    assert!(fixture.manager().incomplete().await.unwrap().is_empty());
}

/// The runner died after the debit's command took effect but before it
/// recorded the step's completion: resuming recognises the debit by its
/// causation id and does not debit twice.
#[tokio::test]
async fn a_step_in_doubt_that_took_effect_is_not_run_again() {
    let latency = Latency::default();
    let app = app(&latency);
    let alice = open(&app, "alice", 100).await;
    let bob = open(&app, "bob", 0).await;
    let manager = SagaManager::new(app.clone(), TransferSaga::default());
    let outcome = app.execute(Uuid::now_v7(), RequestTransfer { from: alice, to: bob, amount: 10 }).await.unwrap();
    let saga_id = manager.begin(&outcome.events[0].record).await.unwrap().unwrap();

    // What a runner does before it dies: record the start, run the command.
    let debit = step_id(saga_id, 0, StepKind::Action);
    let started = SagaEvent::StepStarted(SagaStepStarted::new(0, "debit", debit));
    let stream = SagaManager::<TransferSaga>::stream_id(saga_id).unwrap();
    let record = NewEvent::encode(&started, Metadata::default()).unwrap();
    app.event_store().append(&stream, ExpectedVersion::Exact(1), vec![record]).await.unwrap();
    let options = CommandOptions::default().command_id(debit).causation_id(debit);
    app.execute_with(alice, Withdraw { amount: 10 }, options).await.unwrap();
    let in_doubt = manager.status(saga_id).await.unwrap().unwrap();
    assert_eq!((in_doubt.status, in_doubt.steps[0].state), (SagaStatus::InProgress, StepState::Started));
    assert_eq!(manager.incomplete().await.unwrap(), [saga_id]);

    let resumed = manager.resume_incomplete().await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].status, SagaStatus::Completed);
    assert_eq!((balance(&app, alice).await, balance(&app, bob).await), (90, 10), "debited once");
    assert!(manager.incomplete().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_changed_definition_is_refused() {
    struct Renamed;
    impl Saga for Renamed {
        const NAME: &'static str = "Transfer";
        type Data = TransferData;
        fn start_event_types(&self) -> Vec<String> {
            vec!["TransferRequested".into()]
        }
        fn start(&self, event: &RecordedEvent) -> Result<Option<TransferData>, BoxError> {
            TransferSaga::default().start(event)
        }
        fn steps(&self) -> Vec<Step<TransferData>> {
            vec![Step::command("withdraw", |t: &TransferData| (t.from, Withdraw { amount: t.amount }))]
        }
    }
    let app = app(&Latency::default());
    let alice = open(&app, "alice", 100).await;
    let outcome = app.execute(Uuid::now_v7(), RequestTransfer { from: alice, to: alice, amount: 10 }).await.unwrap();
    let saga_id =
        SagaManager::new(app.clone(), TransferSaga::default()).begin(&outcome.events[0].record).await.unwrap().unwrap();
    let error = SagaManager::new(app.clone(), Renamed).drive(saga_id).await.unwrap_err();
    assert!(error.to_string().contains("\"withdraw\""), "{error}");
    assert_eq!(balance(&app, alice).await, 100);
}

// ---------------------------------------------------------------------------
// The kill test.
// ---------------------------------------------------------------------------

/// An event store that yields to the scheduler before and after every
/// append, so that a task aborted "at a random point" can stop between any
/// two writes: after a command's events and before the saga records them.
#[derive(Debug)]
struct Yielding(InMemoryEventStore);

#[async_trait]
impl EventStore for Yielding {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        tokio::task::yield_now().await;
        let recorded = self.0.append(stream, expected, events).await;
        tokio::task::yield_now().await;
        recorded
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        tokio::task::yield_now().await;
        let recorded = self.0.append_many(appends).await;
        tokio::task::yield_now().await;
        recorded
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        self.0.read_stream(stream, from_version)
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        self.0.read_all(from_position, filter)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        self.0.subscribe(from_position, filter)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.0.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.0.head_position().await
    }
}

const SAGAS: usize = 50;
const KILLS: usize = 20;

/// Ten accounts with 1,000 each, the last two closed (transfers to them
/// fail at the credit and must be refunded), and `SAGAS` transfer requests.
/// Returns the accounts and the saga ids.
async fn kill_test_setup(app: &Orchestrix, rng: &mut fastrand::Rng) -> (Vec<Uuid>, Vec<Uuid>) {
    let mut accounts = Vec::new();
    for n in 0..10 {
        let id = open(app, &format!("owner-{n}"), 1_000).await;
        if n >= 8 {
            app.execute(id, Close).await.unwrap();
        }
        accounts.push(id);
    }
    let mut saga_ids = Vec::new();
    for _ in 0..SAGAS {
        let from = accounts[rng.usize(0..8)];
        let to = accounts[rng.usize(0..10)];
        let amount = rng.u64(1..100);
        let outcome = app.execute(Uuid::now_v7(), RequestTransfer { from, to, amount }).await.unwrap();
        saga_ids.push(outcome.events[0].id);
    }
    (accounts, saga_ids)
}

/// Starts a manager (a new process: new application, same stores) and
/// kills it at a random point, `KILLS` times. Returns how many unfinished
/// sagas the restarts found.
async fn kill_repeatedly(
    events: &Arc<dyn EventStore>,
    engine: &ProjectionEngine,
    latency: &Latency,
    rng: &mut fastrand::Rng,
) -> usize {
    let mut found_unfinished = 0;
    for _ in 0..KILLS {
        let manager = SagaManager::new(app_over(Arc::clone(events), latency), TransferSaga::default());
        found_unfinished += manager.incomplete().await.unwrap().len();
        let spawn = manager.spawn(engine, ProjectionOptions::default());
        // A timeout here kills the manager while it resumes.
        if let Ok(handle) = tokio::time::timeout(Duration::from_millis(rng.u64(0..15)), spawn).await {
            let handle = handle.unwrap();
            tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
            handle.abort();
        }
        tokio::task::yield_now().await;
    }
    found_unfinished
}

/// Checks that every step's command took effect at most once (counting the
/// account events per causation id, which is the step id), and exactly once
/// where the saga says so.
fn check_steps_ran_once(instances: &[SagaInstance<TransferData>], account_events: &[Arc<RecordedEvent>]) {
    let mut per_cause: HashMap<Uuid, usize> = HashMap::new();
    for event in account_events {
        if let Some(cause) = event.metadata.causation_id {
            *per_cause.entry(cause).or_default() += 1;
        }
    }
    let count = |id: Option<Uuid>| id.map_or(0, |id| per_cause.get(&id).copied().unwrap_or(0));
    let (mut completed, mut compensated) = (0, 0);
    for instance in instances {
        let (debit, credit) = (&instance.steps[0], &instance.steps[1]);
        match instance.status {
            SagaStatus::Completed => {
                completed += 1;
                assert_eq!((count(debit.action_id), count(credit.action_id)), (1, 1), "{instance:?}");
                assert_eq!(count(Some(step_id(instance.id, 0, StepKind::Compensation))), 0);
            }
            SagaStatus::Failed => {
                compensated += 1;
                assert!(instance.is_compensated(), "{instance:?}");
                assert_eq!(instance.failed_step(), Some("credit"), "{instance:?}");
                assert_eq!(count(debit.action_id), 1, "{instance:?}");
                assert_eq!(count(credit.action_id), 0, "{instance:?}");
                assert_eq!(count(debit.compensation_id), 1, "{instance:?}");
            }
            other => panic!("saga {} ended {other:?}", instance.id),
        }
    }
    assert_eq!(completed + compensated, SAGAS);
    assert!(completed > 0 && compensated > 0, "{completed} completed, {compensated} compensated");
    let step_ids: HashSet<Uuid> = instances
        .iter()
        .flat_map(|i| i.steps.iter().flat_map(|s| [s.action_id, s.compensation_id]))
        .flatten()
        .collect();
    assert!(per_cause.iter().filter(|(id, _)| step_ids.contains(id)).all(|(_, n)| *n == 1));
}

#[tokio::test]
async fn killed_managers_leave_every_step_done_once_or_compensated() {
    let events: Arc<dyn EventStore> = Arc::new(Yielding(InMemoryEventStore::new()));
    let checkpoints = Arc::new(InMemoryCheckpointStore::new());
    let engine = ProjectionEngine::new(Arc::clone(&events), checkpoints);
    let latency = Latency::default();
    let setup = app_over(Arc::clone(&events), &latency);
    let mut rng = fastrand::Rng::with_seed(7);
    let (accounts, saga_ids) = kill_test_setup(&setup, &mut rng).await;

    // Deposits take a moment, so that kills land in the middle of steps too.
    latency.set_everyone(Duration::from_millis(1));
    let found_unfinished = kill_repeatedly(&events, &engine, &latency, &mut rng).await;
    assert!(found_unfinished > 0, "no kill landed in the middle of a saga");

    // The last restart runs to the end.
    let manager = SagaManager::new(app_over(Arc::clone(&events), &latency), TransferSaga::default());
    let handle = manager.clone().spawn(&engine, ProjectionOptions::default()).await.unwrap();
    let mut instances = Vec::new();
    for &id in &saga_ids {
        let instance = loop {
            if let Some(instance) = manager.status(id).await.unwrap().filter(|i| i.status.is_terminal()) {
                break instance;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        instances.push(instance);
    }
    handle.stop().await.unwrap();

    check_steps_ran_once(&instances, &all_events(&*events, &["AccountWithdrawn", "AccountDeposited"]).await);
    assert_eq!(all_events(&*events, &["SagaStarted"]).await.len(), SAGAS, "no saga started twice");

    // Money is conserved, and nothing reached a closed account.
    let mut balances = Vec::new();
    for id in &accounts {
        balances.push(balance(&setup, *id).await);
    }
    assert_eq!(balances.iter().sum::<u64>(), 10 * 1_000);
    assert_eq!(balances[8..], [1_000, 1_000]);
}
