//! Sagas that decide, wait and run groups (ADR 0038), on the in-memory
//! store, SQLite and PostgreSQL: a dunning saga whose charge step stops
//! retrying once the invoice is paid (skip, retry later, finish, give up),
//! a wait that ends by its event or its deadline (also one that passed
//! while no manager ran), a spawned manager's ticker, and a group of
//! reservations that runs in parallel, compensates as a unit, and resumes
//! in its middle after a restart. Time comes from a `ManualClock`: nothing
//! sleeps for a deadline, and every wait for a spawned runner is bounded.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use orchestrix::error::BoxError;
use orchestrix::prelude::*;
use orchestrix::saga::{
    step_id, AfterWait, Clock, Decision, ManualClock, Saga, SagaEvent, SagaManager, SagaStatus, SagaStepStarted, Step,
    StepKind, StepState,
};
use orchestrix::{
    app::CommandOptions,
    envelope::{NewEvent, RecordedEvent},
    memory::{InMemoryCheckpointStore, InMemoryEventStore},
    projection::{ProjectionEngine, ProjectionOptions},
    repository::Repository,
    store::{EventStore, ExpectedVersion},
    Metadata, Uuid,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The domain: invoices that are charged or paid, stock that is reserved.
// ---------------------------------------------------------------------------

#[event]
#[derive(Debug, Clone, PartialEq)]
enum InvoiceEvent {
    Issued { amount: u64 },
    Charged { amount: u64 },
    Paid,
    CardFixed,
    Reminded,
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("card declined")]
    Declined,
    #[error("already paid")]
    AlreadyPaid,
    #[error("only {0} left")]
    Insufficient(u64),
}

#[aggregate(event = InvoiceEvent, error = Refused)]
#[derive(Debug, Default)]
struct Invoice {
    amount: u64,
    paid: bool,
    card_ok: bool,
    charges: u32,
    reminders: u32,
}

impl Invoice {
    fn apply(&mut self, event: &InvoiceEvent) {
        match event {
            InvoiceEvent::Issued { amount } => self.amount = *amount,
            InvoiceEvent::Charged { .. } => {
                self.paid = true;
                self.charges += 1;
            }
            InvoiceEvent::Paid => self.paid = true,
            InvoiceEvent::CardFixed => self.card_ok = true,
            InvoiceEvent::Reminded => self.reminders += 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Issue {
    amount: u64,
}

#[derive(Debug, Clone)]
struct Charge;

#[derive(Debug, Clone)]
struct Pay;

#[derive(Debug, Clone)]
struct FixCard;

#[derive(Debug, Clone)]
struct Remind;

#[command_handler]
impl Invoice {
    fn issue(cmd: Issue) -> Result<InvoiceEvent, Refused> {
        Ok(InvoiceEvent::Issued { amount: cmd.amount })
    }

    fn charge(&self, _: Charge) -> Result<InvoiceEvent, Refused> {
        if self.paid {
            return Err(Refused::AlreadyPaid);
        }
        if !self.card_ok {
            return Err(Refused::Declined);
        }
        Ok(InvoiceEvent::Charged { amount: self.amount })
    }

    fn pay(&self, _: Pay) -> Result<InvoiceEvent, Refused> {
        Ok(InvoiceEvent::Paid)
    }

    fn fix_card(&self, _: FixCard) -> Result<InvoiceEvent, Refused> {
        Ok(InvoiceEvent::CardFixed)
    }

    fn remind(&self, _: Remind) -> Result<InvoiceEvent, Refused> {
        Ok(InvoiceEvent::Reminded)
    }
}

#[event]
#[derive(Debug, Clone, PartialEq)]
enum StockEvent {
    Added { qty: u64 },
    Reserved { qty: u64 },
    Released { qty: u64 },
}

#[aggregate(event = StockEvent, error = Refused)]
#[derive(Debug, Default)]
struct Stock {
    available: u64,
}

impl Stock {
    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Added { qty } | StockEvent::Released { qty } => self.available += qty,
            StockEvent::Reserved { qty } => self.available -= qty,
        }
    }
}

#[derive(Debug, Clone)]
struct AddStock {
    qty: u64,
}

#[derive(Debug, Clone)]
struct Reserve {
    qty: u64,
}

#[derive(Debug, Clone)]
struct Release {
    qty: u64,
}

#[command_handler]
impl Stock {
    fn add(cmd: AddStock) -> Result<StockEvent, Refused> {
        Ok(StockEvent::Added { qty: cmd.qty })
    }

    fn reserve(&self, cmd: Reserve) -> Result<StockEvent, Refused> {
        if cmd.qty > self.available {
            return Err(Refused::Insufficient(self.available));
        }
        Ok(StockEvent::Reserved { qty: cmd.qty })
    }

    fn release(&self, cmd: Release) -> Result<StockEvent, Refused> {
        Ok(StockEvent::Released { qty: cmd.qty })
    }
}

#[event]
#[derive(Debug, Clone, PartialEq)]
enum OrderEvent {
    Placed { a: Uuid, b: Uuid, c: Uuid, qty: u64 },
    Confirmed,
}

#[aggregate(event = OrderEvent, error = Refused)]
#[derive(Debug, Default)]
struct Order {
    confirmed: bool,
}

impl Order {
    fn apply(&mut self, event: &OrderEvent) {
        if let OrderEvent::Confirmed = event {
            self.confirmed = true;
        }
    }
}

#[derive(Debug, Clone)]
struct Place {
    a: Uuid,
    b: Uuid,
    c: Uuid,
    qty: u64,
}

#[derive(Debug, Clone)]
struct Confirm;

#[command_handler]
impl Order {
    fn place(cmd: Place) -> Result<OrderEvent, Refused> {
        Ok(OrderEvent::Placed { a: cmd.a, b: cmd.b, c: cmd.c, qty: cmd.qty })
    }

    fn confirm(&self, _: Confirm) -> Result<OrderEvent, Refused> {
        Ok(OrderEvent::Confirmed)
    }
}

// ---------------------------------------------------------------------------
// The sagas.
// ---------------------------------------------------------------------------

const DAY: Duration = Duration::from_hours(24);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dunning {
    invoice: Uuid,
}

fn dunning_of(event: &RecordedEvent) -> Result<Option<Dunning>, BoxError> {
    Ok(Some(Dunning { invoice: event.stream.id().parse()? }))
}

/// Reminds (unless paid), then charges: a declined charge is retried every
/// three days, three times at most, and not at all once the invoice is
/// paid. The motivating case of ADR 0038, in two hooks.
struct DunningSaga;

impl Saga for DunningSaga {
    const NAME: &'static str = "Dunning";
    type Data = Dunning;

    fn start_event_types(&self) -> Vec<String> {
        vec!["InvoiceIssued".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<Dunning>, BoxError> {
        dunning_of(event)
    }

    fn steps(&self) -> Vec<Step<Dunning>> {
        vec![
            Step::command("remind", |d: &Dunning| (d.invoice, Remind)).decide(|ctx| async move {
                let invoice = ctx.load::<Invoice>(ctx.data().invoice).await?;
                Ok(if invoice.paid { Decision::Skip } else { Decision::Run })
            }),
            Step::command("charge", |d: &Dunning| (d.invoice, Charge)).decide(|ctx| async move {
                let invoice = ctx.load::<Invoice>(ctx.data().invoice).await?;
                Ok(match ctx.failures() {
                    _ if invoice.paid => Decision::Finish,
                    0 => Decision::Run,
                    _ if ctx.is_due() => Decision::Run,
                    n if n < 3 => ctx.retry_after(3 * DAY),
                    _ => Decision::Fail("three charges declined".into()),
                })
            }),
        ]
    }
}

/// Waits three days for the invoice to be paid, then thanks the customer;
/// without a payment the wait fails.
struct AwaitPayment;

impl Saga for AwaitPayment {
    const NAME: &'static str = "AwaitPayment";
    type Data = Dunning;

    fn start_event_types(&self) -> Vec<String> {
        vec!["InvoiceIssued".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<Dunning>, BoxError> {
        dunning_of(event)
    }

    fn steps(&self) -> Vec<Step<Dunning>> {
        vec![
            Step::wait_for::<Invoice, _>("paid", "InvoicePaid", |d: &Dunning| d.invoice).within(3 * DAY),
            Step::command("thank", |d: &Dunning| (d.invoice, Remind)),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fulfilment {
    order: Uuid,
    a: Uuid,
    b: Uuid,
    c: Uuid,
    qty: u64,
}

/// Reserves three stocks in parallel, then confirms the order.
struct Fulfil;

fn reserve(name: &'static str, pick: fn(&Fulfilment) -> Uuid) -> Step<Fulfilment> {
    Step::command(name, move |f: &Fulfilment| (pick(f), Reserve { qty: f.qty }))
        .compensate_with(move |f: &Fulfilment| (pick(f), Release { qty: f.qty }))
}

impl Saga for Fulfil {
    const NAME: &'static str = "Fulfil";
    type Data = Fulfilment;

    fn start_event_types(&self) -> Vec<String> {
        vec!["OrderPlaced".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<Fulfilment>, BoxError> {
        let OrderEvent::Placed { a, b, c, qty } = event.decode()? else { return Ok(None) };
        Ok(Some(Fulfilment { order: event.stream.id().parse()?, a, b, c, qty }))
    }

    fn steps(&self) -> Vec<Step<Fulfilment>> {
        vec![
            Step::group("reserve", vec![reserve("a", |f| f.a), reserve("b", |f| f.b), reserve("c", |f| f.c)]),
            Step::command("confirm", |f: &Fulfilment| (f.order, Confirm)),
        ]
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn app(store: Arc<dyn EventStore>) -> Orchestrix {
    Orchestrix::builder()
        .event_store(store)
        .aggregate::<Invoice>()
        .aggregate::<Stock>()
        .aggregate::<Order>()
        .build()
        .expect("a valid application")
}

/// The first event of `A`'s stream `id`: the saga's start event.
async fn first_event<A: Aggregate<Id = Uuid>>(app: &Orchestrix, id: Uuid) -> Arc<RecordedEvent> {
    let stream = Repository::<A>::stream_id(id).expect("a valid id");
    let first = app.event_store().read_stream(&stream, 1).next().await;
    first.expect("the stream exists").expect("a read")
}

async fn issue(app: &Orchestrix) -> (Uuid, Arc<RecordedEvent>) {
    let invoice = Uuid::now_v7();
    app.execute(invoice, Issue { amount: 120 }).await.expect("issued");
    (invoice, first_event::<Invoice>(app, invoice).await)
}

async fn invoice(app: &Orchestrix, id: Uuid) -> Invoice {
    app.load::<Invoice>(id).await.expect("a load").state
}

async fn stock(app: &Orchestrix, qty: u64) -> Uuid {
    let id = Uuid::now_v7();
    app.execute(id, AddStock { qty }).await.expect("stocked");
    id
}

async fn available(app: &Orchestrix, id: Uuid) -> u64 {
    app.load::<Stock>(id).await.expect("a load").state.available
}

async fn saga_event_types<S: Saga>(manager: &SagaManager<S>, saga: Uuid) -> Vec<String> {
    let history = manager.history(saga).await.expect("a history");
    history.iter().map(|e| orchestrix::Event::event_type(&e.event).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// The scenarios, run on every backend.
// ---------------------------------------------------------------------------

/// Declined twice, three days apart; paid in between the second and the
/// third attempt: the hook finishes the saga instead of charging again.
async fn dunning_stops_retrying_once_the_invoice_is_paid(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let (id, issued) = issue(&app).await;

    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Waiting);
    assert_eq!(saga.steps[0].state, StepState::Completed, "reminded");
    assert_eq!((saga.steps[1].state, saga.steps[1].failures), (StepState::Deferred, 1));
    assert_eq!(saga.steps[1].until, Some(clock.now() + chrono::Duration::days(3)), "the deferral's time is stored");
    assert_eq!(manager.waiting(), [saga.id]);

    clock.advance(2 * DAY);
    assert!(manager.tick().await.expect("ticked").is_empty(), "not due yet");
    clock.advance(DAY);
    let saga = manager.drive(saga.id).await.expect("driven");
    assert_eq!((saga.status, saga.steps[1].failures), (SagaStatus::Waiting, 2), "declined again, deferred again");

    app.execute(id, Pay).await.expect("paid by bank transfer");
    clock.advance(3 * DAY);
    let moved = manager.tick().await.expect("ticked");
    assert_eq!(moved.len(), 1);
    let saga = &moved[0];
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.finished_by.as_deref(), Some("charge"));
    assert!(manager.waiting().is_empty());
    let invoice = invoice(&app, id).await;
    assert_eq!((invoice.charges, invoice.reminders), (0, 1), "never charged, reminded once");
    let types = saga_event_types(&manager, saga.id).await;
    assert_eq!(types.iter().filter(|t| *t == "SagaStepAttemptFailed").count(), 2, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("SagaCompleted"));
}

/// Declined, then the card is fixed: the retry charges, once.
async fn dunning_charges_once_the_card_is_fixed(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let (id, issued) = issue(&app).await;
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Waiting);

    app.execute(id, FixCard).await.expect("fixed");
    clock.advance(3 * DAY);
    let saga = manager.drive(saga.id).await.expect("driven");
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.completed_steps(), ["remind", "charge"]);
    assert_eq!(saga.finished_by, None);
    assert_eq!(invoice(&app, id).await.charges, 1);
}

/// Three declines: the hook gives up, and the step fails.
async fn dunning_gives_up_after_three_declines(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let (_, issued) = issue(&app).await;
    let mut saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    for _ in 0..2 {
        assert_eq!(saga.status, SagaStatus::Waiting);
        clock.advance(3 * DAY);
        saga = manager.drive(saga.id).await.expect("driven");
    }
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(saga.failed_step(), Some("charge"));
    assert_eq!(saga.error.as_deref(), Some("three charges declined"));
    assert_eq!(saga.steps[1].failures, 3);
    assert!(saga.is_compensated());
}

/// Paid before the saga ran: the reminder is skipped and the charge
/// finishes the saga at once.
async fn a_paid_invoice_skips_the_reminder_and_finishes(store: Arc<dyn EventStore>) {
    let app = app(store);
    let manager = SagaManager::new(app.clone(), DunningSaga);
    let (id, issued) = issue(&app).await;
    app.execute(id, Pay).await.expect("paid");
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.skipped_steps(), ["remind", "charge"]);
    assert!(saga.completed_steps().is_empty());
    assert_eq!(invoice(&app, id).await.reminders, 0);
}

/// The awaited event arrives before the deadline: the saga goes on.
async fn a_wait_ends_when_its_event_arrives(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), AwaitPayment).with_clock(clock.clone());
    let (id, issued) = issue(&app).await;
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!((saga.status, saga.steps[0].state), (SagaStatus::Waiting, StepState::Waiting));
    assert_eq!(saga.steps[0].until, Some(clock.now() + chrono::Duration::days(3)));
    clock.advance(DAY);
    assert!(manager.tick().await.expect("ticked").is_empty());

    app.execute(id, Pay).await.expect("paid");
    let moved = manager.tick().await.expect("ticked");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].status, SagaStatus::Completed);
    assert_eq!(moved[0].completed_steps(), ["paid", "thank"]);
    assert_eq!(invoice(&app, id).await.reminders, 1);
}

/// No payment: the deadline fails the wait (not a second before it).
async fn a_wait_ends_at_its_deadline(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), AwaitPayment).with_clock(clock.clone());
    let (_, issued) = issue(&app).await;
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    clock.advance(Duration::from_secs(3 * 86_400 - 1));
    assert!(manager.tick().await.expect("ticked").is_empty(), "a second early");
    clock.advance(Duration::from_secs(1));
    let saga = manager.drive(saga.id).await.expect("driven");
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(saga.failed_step(), Some("paid"));
    assert!(saga.steps[0].timed_out);
    assert!(saga.error.as_deref().is_some_and(|e| e.contains("before the deadline")), "{:?}", saga.error);
}

/// The deadline passes while no manager runs: the next one to start fires
/// it at once, from the deadline stored in the saga's stream.
async fn a_deadline_that_passed_while_stopped_fires_on_restart(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let saga = {
        let before = SagaManager::new(app.clone(), AwaitPayment).with_clock(clock.clone());
        let (_, issued) = issue(&app).await;
        before.handle_event(&issued).await.expect("driven").expect("started")
    };
    assert_eq!(saga.status, SagaStatus::Waiting);
    clock.advance(4 * DAY);
    let after = SagaManager::new(app.clone(), AwaitPayment).with_clock(clock.clone());
    assert!(after.waiting().is_empty(), "a new process knows of no waiting saga");
    let resumed = after.resume_incomplete().await.expect("resumed");
    let resumed: Vec<_> = resumed.into_iter().filter(|s| s.id == saga.id).collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].status, SagaStatus::Failed);
    assert!(resumed[0].steps[0].timed_out);
}

/// A spawned manager's ticker notices the awaited event by itself.
async fn a_spawned_manager_ticks(store: Arc<dyn EventStore>) {
    let app = app(Arc::clone(&store));
    let engine = ProjectionEngine::new(store, InMemoryCheckpointStore::new());
    let manager = SagaManager::new(app.clone(), AwaitPayment)
        .with_clock(ManualClock::default())
        .with_tick(Duration::from_millis(20));
    let handle = manager.clone().spawn(&engine, ProjectionOptions::default()).await.expect("spawned");
    let (id, issued) = issue(&app).await;
    let saga = issued.id;
    let status = |wanted: SagaStatus| {
        let manager = manager.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let status = manager.status(saga).await.expect("a status").map(|s| s.status);
                if status == Some(wanted) || tokio::time::Instant::now() >= deadline {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(status(SagaStatus::Waiting).await, Some(SagaStatus::Waiting));
    app.execute(id, Pay).await.expect("paid");
    assert_eq!(status(SagaStatus::Completed).await, Some(SagaStatus::Completed));
    handle.stop().await.expect("stopped");
}

async fn order(app: &Orchestrix, stocks: [u64; 3], qty: u64) -> (Fulfilment, Arc<RecordedEvent>) {
    let (a, b, c) = (stock(app, stocks[0]).await, stock(app, stocks[1]).await, stock(app, stocks[2]).await);
    let order = Uuid::now_v7();
    app.execute(order, Place { a, b, c, qty }).await.expect("placed");
    (Fulfilment { order, a, b, c, qty }, first_event::<Order>(app, order).await)
}

async fn a_group_reserves_everything_then_confirms(store: Arc<dyn EventStore>) {
    let app = app(store);
    let manager = SagaManager::new(app.clone(), Fulfil);
    assert_eq!(manager.step_names(), ["reserve/a", "reserve/b", "reserve/c", "confirm"]);
    let (f, placed) = order(&app, [10, 10, 10], 4).await;
    let saga = manager.handle_event(&placed).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.completed_steps(), ["reserve/a", "reserve/b", "reserve/c", "confirm"]);
    for id in [f.a, f.b, f.c] {
        assert_eq!(available(&app, id).await, 6);
    }
    let ids: std::collections::HashSet<_> = saga.steps.iter().filter_map(|s| s.action_id).collect();
    assert_eq!(ids.len(), 4, "every member has a step id of its own");
}

async fn a_refused_member_compensates_the_others(store: Arc<dyn EventStore>) {
    let app = app(store);
    let manager = SagaManager::new(app.clone(), Fulfil);
    let (f, placed) = order(&app, [10, 1, 10], 4).await;
    let saga = manager.handle_event(&placed).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(saga.failed_step(), Some("reserve/b"));
    assert!(saga.is_compensated());
    let mut compensated = saga.compensated_steps();
    // Reverse order of completion: the stream says which finished last.
    let completed_at = |name: &str| saga.steps.iter().find(|s| s.name == name).and_then(|s| s.completed_at);
    assert!(completed_at(compensated[0]) > completed_at(compensated[1]), "{saga:?}");
    compensated.sort_unstable();
    assert_eq!(compensated, ["reserve/a", "reserve/c"]);
    assert_eq!((available(&app, f.a).await, available(&app, f.b).await, available(&app, f.c).await), (10, 1, 10));
    assert!(!app.load::<Order>(f.order).await.expect("a load").state.confirmed);
}

/// The runner died after every member started and the first one took
/// effect: the next drive runs only the other two, and the first once.
async fn a_restart_in_the_middle_of_a_group_runs_only_what_is_left(store: Arc<dyn EventStore>) {
    let app = app(store);
    let manager = SagaManager::new(app.clone(), Fulfil);
    let (f, placed) = order(&app, [10, 10, 10], 3).await;
    let saga = manager.begin(&placed).await.expect("begun").expect("started");
    let stream = SagaManager::<Fulfil>::stream_id(saga).expect("a stream");
    let started: Vec<NewEvent> = (0..3)
        .map(|step| {
            let event = SagaEvent::StepStarted(SagaStepStarted {
                step,
                name: manager.step_names()[step].clone(),
                step_id: step_id(saga, step, StepKind::Action),
            });
            NewEvent::encode(&event, Metadata::default()).expect("encoded")
        })
        .collect();
    app.event_store().append(&stream, ExpectedVersion::Exact(1), started).await.expect("appended");
    let first = step_id(saga, 0, StepKind::Action);
    let options = CommandOptions { command_id: Some(first), causation_id: Some(first), ..CommandOptions::default() };
    app.execute_with(f.a, Reserve { qty: 3 }, options).await.expect("the first member took effect");

    let saga = manager.drive(saga).await.expect("driven");
    assert_eq!(saga.status, SagaStatus::Completed);
    for id in [f.a, f.b, f.c] {
        assert_eq!(available(&app, id).await, 7, "reserved once");
    }
    let a_stream = Repository::<Stock>::stream_id(f.a).expect("a stream");
    let events: Vec<Arc<RecordedEvent>> =
        app.event_store().read_stream(&a_stream, 1).try_collect().await.expect("read");
    assert_eq!(events.iter().filter(|e| e.metadata.causation_id == Some(first)).count(), 1);
}

/// The runner died after member b was refused and recorded, while a and c
/// were in doubt (a had taken effect, c had not): compensation settles
/// them first by their step ids, undoes a, and never runs c.
async fn members_in_doubt_are_settled_before_compensating(store: Arc<dyn EventStore>) {
    use orchestrix::saga::SagaStepFailed;
    let app = app(store);
    let manager = SagaManager::new(app.clone(), Fulfil);
    let (f, placed) = order(&app, [10, 10, 10], 3).await;
    let saga = manager.begin(&placed).await.expect("begun").expect("started");
    let stream = SagaManager::<Fulfil>::stream_id(saga).expect("a stream");
    let names = manager.step_names();
    let mut events: Vec<SagaEvent> = (0..3)
        .map(|step| {
            let step_id = step_id(saga, step, StepKind::Action);
            SagaEvent::StepStarted(SagaStepStarted { step, name: names[step].clone(), step_id })
        })
        .collect();
    events.push(SagaEvent::StepFailed(SagaStepFailed {
        step: 1,
        name: names[1].clone(),
        error: "only 0 left".into(),
        timed_out: false,
    }));
    let events = events.iter().map(|e| NewEvent::encode(e, Metadata::default()).expect("encoded")).collect();
    app.event_store().append(&stream, ExpectedVersion::Exact(1), events).await.expect("appended");
    let first = step_id(saga, 0, StepKind::Action);
    let options = CommandOptions { command_id: Some(first), causation_id: Some(first), ..CommandOptions::default() };
    app.execute_with(f.a, Reserve { qty: 3 }, options).await.expect("a took effect");

    let saga = manager.drive(saga).await.expect("driven");
    assert_eq!(saga.status, SagaStatus::Failed);
    assert!(saga.is_compensated(), "{saga:?}");
    assert_eq!(saga.compensated_steps(), ["reserve/a"]);
    assert_eq!(saga.skipped_steps(), ["reserve/c"], "c had not taken effect: abandoned, never run");
    assert_eq!((available(&app, f.a).await, available(&app, f.b).await, available(&app, f.c).await), (10, 10, 10));
}

/// A wait with `AfterWait::Finish` on its event ends the saga early.
async fn a_wait_can_finish_the_saga(store: Arc<dyn EventStore>) {
    struct PaidEndsIt;
    impl Saga for PaidEndsIt {
        const NAME: &'static str = "PaidEndsIt";
        type Data = Dunning;
        fn start_event_types(&self) -> Vec<String> {
            vec!["InvoiceIssued".into()]
        }
        fn start(&self, event: &RecordedEvent) -> Result<Option<Dunning>, BoxError> {
            dunning_of(event)
        }
        fn steps(&self) -> Vec<Step<Dunning>> {
            vec![
                Step::wait_for::<Invoice, _>("paid", "InvoicePaid", |d: &Dunning| d.invoice)
                    .within(DAY)
                    .on_event(AfterWait::Finish)
                    .on_deadline(AfterWait::Continue),
                Step::command("remind", |d: &Dunning| (d.invoice, Remind)),
            ]
        }
    }
    let app = app(store);
    let clock = ManualClock::default();
    let manager = SagaManager::new(app.clone(), PaidEndsIt).with_clock(clock.clone());
    // Paid before the wait began: the event still counts.
    let (paid, issued) = issue(&app).await;
    app.execute(paid, Pay).await.expect("paid");
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!((saga.status, saga.finished_by.as_deref()), (SagaStatus::Completed, Some("paid")));
    assert_eq!(invoice(&app, paid).await.reminders, 0);
    // Unpaid: the deadline goes on to the reminder.
    let (unpaid, issued) = issue(&app).await;
    manager.handle_event(&issued).await.expect("driven").expect("started");
    clock.advance(DAY);
    let moved = manager.tick().await.expect("ticked");
    assert_eq!(moved[0].status, SagaStatus::Completed);
    assert_eq!(moved[0].skipped_steps(), ["paid"]);
    assert_eq!(invoice(&app, unpaid).await.reminders, 1);
}

/// Two runners without a lease drive the same due deferral at once: the
/// saga's stream takes one transition at a time, the step's command id
/// applies once, and the invoice is charged once.
async fn two_runners_drive_a_due_deferral_once(store: Arc<dyn EventStore>) {
    let app = app(store);
    let clock = ManualClock::default();
    let first = SagaManager::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let second = SagaManager::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let (id, issued) = issue(&app).await;
    let saga = first.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Waiting);
    app.execute(id, FixCard).await.expect("fixed");
    clock.advance(3 * DAY);
    let (a, b) = tokio::join!(first.drive(saga.id), second.drive(saga.id));
    let (a, b) = (a.expect("driven"), b.expect("driven"));
    assert_eq!((a.status, b.status), (SagaStatus::Completed, SagaStatus::Completed));
    assert_eq!(invoice(&app, id).await.charges, 1);
    let types = saga_event_types(&first, saga.id).await;
    assert_eq!(types.iter().filter(|t| *t == "SagaCompleted").count(), 1, "{types:?}");
}

/// Runs every scenario above as a test of its own, on one backend:
/// `$store` makes the store (`None` skips), `$cleanup` gets it afterwards.
macro_rules! scenarios {
    ($($kind:ident)?; $store:expr, $cleanup:expr) => {
        scenarios!(@each ($($kind)?) $store, $cleanup;
            dunning_stops_retrying_once_the_invoice_is_paid,
            dunning_charges_once_the_card_is_fixed,
            dunning_gives_up_after_three_declines,
            a_paid_invoice_skips_the_reminder_and_finishes,
            a_wait_ends_when_its_event_arrives,
            a_wait_ends_at_its_deadline,
            a_deadline_that_passed_while_stopped_fires_on_restart,
            a_spawned_manager_ticks,
            a_group_reserves_everything_then_confirms,
            a_refused_member_compensates_the_others,
            a_restart_in_the_middle_of_a_group_runs_only_what_is_left,
            a_wait_can_finish_the_saga,
            two_runners_drive_a_due_deferral_once,
            members_in_doubt_are_settled_before_compensating
        );
    };
    (@each $kind:tt $store:expr, $cleanup:expr; $($name:ident),*) => {
        $( scenarios!(@one $kind $store, $cleanup, $name); )*
    };
    (@one (pg) $store:expr, $cleanup:expr, $name:ident) => {
        #[cfg_attr(
            not(orchestrix_pg),
            ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
        )]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenarios!(@body $store, $cleanup, $name);
        }
    };
    (@one () $store:expr, $cleanup:expr, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenarios!(@body $store, $cleanup, $name);
        }
    };
    (@body $store:expr, $cleanup:expr, $name:ident) => {
        let Some(store) = $store.await else { return };
        let shared: Arc<dyn EventStore> = Arc::new(store.0.clone());
        super::$name(shared).await;
        ($cleanup)(store).await;
    };
}

mod memory {
    use super::*;

    #[allow(clippy::unused_async)] // the shape every backend's store() has
    async fn store() -> Option<(InMemoryEventStore, ())> {
        Some((InMemoryEventStore::new(), ()))
    }

    #[allow(clippy::unused_async)] // the shape every backend's cleanup has
    async fn nothing(_: (InMemoryEventStore, ())) {}

    scenarios!(; store(), nothing);
}

mod sqlite {
    use super::*;
    use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

    /// A database file, as a program has (its pool has several
    /// connections, for the members of a group that run together).
    async fn store() -> Option<(SqliteStore, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(dir.path().join("events.db"), SqliteConfig::default()).await.expect("a store");
        Some((store, dir))
    }

    #[allow(clippy::unused_async)] // the shape every backend's cleanup has
    async fn nothing(_: (SqliteStore, tempfile::TempDir)) {}

    scenarios!(; store(), nothing);
}

mod postgres {
    use super::*;
    use orchestrix_adapters::postgres::PgStore;

    async fn store() -> Option<(PgStore, ())> {
        Some((super::support::pg_store().await?, ()))
    }

    async fn drop_schema((store, ()): (PgStore, ())) {
        store.drop_schema().await.expect("dropped");
    }

    scenarios!(pg; store(), drop_schema);
}

/// A manager under a lease ticks too (the lease's runner drives the
/// waiting instances while it holds the lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_manager_ticks() {
    let store = InMemoryEventStore::new();
    let app = app(Arc::new(store.clone()));
    let engine = ProjectionEngine::new(store, InMemoryCheckpointStore::new());
    let manager = SagaManager::new(app.clone(), AwaitPayment)
        .with_clock(ManualClock::default())
        .with_tick(Duration::from_millis(20))
        .with_leases(orchestrix::memory::InMemoryLeases::new());
    let handle = manager.clone().spawn(&engine, ProjectionOptions::default()).await.expect("spawned");
    let (id, issued) = issue(&app).await;
    app.execute(id, Pay).await.expect("paid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = manager.status(issued.id).await.expect("a status").map(|s| s.status);
        if status == Some(SagaStatus::Completed) || tokio::time::Instant::now() >= deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, Some(SagaStatus::Completed));
    handle.stop().await.expect("stopped");
}

/// The fixture moves a manual clock and ticks: given/when/then for a saga
/// that waits.
#[tokio::test]
async fn the_fixture_moves_time() {
    use orchestrix::saga::testing::SagaFixture;
    let app = app(Arc::new(InMemoryEventStore::new()));
    let clock = ManualClock::default();
    let fixture = SagaFixture::new(app.clone(), DunningSaga).with_clock(clock.clone());
    let (id, issued) = issue(&app).await;
    let then = fixture.when_recorded(&issued).await.then_expect_status(SagaStatus::Waiting);
    app.execute(id, Pay).await.expect("paid");
    clock.advance(3 * DAY);
    fixture
        .tick(&then)
        .await
        .then_expect_status(SagaStatus::Completed)
        .then_expect_finished_by("charge")
        .then_expect_skipped(["charge"])
        .then_expect_steps(["remind"]);
}

/// A hook that defers to a time already past is asked once a drive, not
/// in a loop: the drive ends waiting, and each tick asks it once more.
#[tokio::test]
async fn a_deferral_to_the_past_ends_the_drive() {
    struct Stubborn;
    impl Saga for Stubborn {
        const NAME: &'static str = "Stubborn";
        type Data = Dunning;
        fn start_event_types(&self) -> Vec<String> {
            vec!["InvoiceIssued".into()]
        }
        fn start(&self, event: &RecordedEvent) -> Result<Option<Dunning>, BoxError> {
            dunning_of(event)
        }
        fn steps(&self) -> Vec<Step<Dunning>> {
            vec![Step::command("remind", |d: &Dunning| (d.invoice, Remind))
                .decide(|ctx| async move { Ok(Decision::RetryAt(ctx.now() - chrono::Duration::seconds(1))) })]
        }
    }
    let app = app(Arc::new(InMemoryEventStore::new()));
    let manager = SagaManager::new(app.clone(), Stubborn).with_clock(ManualClock::default());
    let (_, issued) = issue(&app).await;
    let saga = manager.handle_event(&issued).await.expect("driven").expect("started");
    assert_eq!(saga.status, SagaStatus::Waiting);
    assert_eq!(saga.version, 2, "started, deferred once");
    assert!(manager.tick().await.expect("ticked").is_empty());
    assert_eq!(manager.status(saga.id).await.expect("a status").expect("stored").version, 3, "once more a tick");
}
