//! Commands applied once by their command id, and appends safe to retry
//! (ADR 0027), on the in-memory store: a repeated command, racing
//! duplicates in one process and in two, a creating command, a command id
//! reused for another aggregate, rejections (not remembered), a lost
//! acknowledgement, multi-stream appends and decisions.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::query::{Query, QueryItem};
use orchestrix::store::{EventStream, StreamAppend};
use orchestrix::{
    app::{CommandOptions, CommandOutcome},
    decision::Decision,
    envelope::{Envelope, NewEvent, RecordedEvent},
    repository::Repository,
    store::{EventFilter, EventStore, ExpectedVersion},
    StoreError, StreamId, Uuid,
};

#[event]
#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Noted { text: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BankError {
    #[error("insufficient funds")]
    InsufficientFunds,
}

#[aggregate(event = AccountEvent, error = BankError)]
#[derive(Debug, Default)]
struct Account {
    balance: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited { amount } = event {
            self.balance += amount;
        }
    }
}

#[derive(Debug, Clone)]
struct Open;

#[derive(Debug, Clone)]
struct Deposit {
    amount: u64,
}

/// Two events, so that the outcome of a repeat has more than one.
#[derive(Debug, Clone)]
struct DepositAndNote {
    amount: u64,
}

#[derive(Debug, Clone)]
struct Spend {
    amount: u64,
}

/// Counts how often the deposit handler ran: a repeat must not run it.
#[derive(Debug, Default)]
struct Calls(Arc<AtomicU32>);

#[command_handler]
impl Account {
    fn open(_: Open) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: "Ada".into() })
    }

    fn deposit(&self, cmd: Deposit, calls: &Calls) -> Result<AccountEvent, BankError> {
        calls.0.fetch_add(1, Ordering::SeqCst);
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }

    fn deposit_and_note(&self, cmd: DepositAndNote) -> Result<Vec<AccountEvent>, BankError> {
        Ok(vec![AccountEvent::Deposited { amount: cmd.amount }, AccountEvent::Noted { text: "twice".into() }])
    }

    fn spend(&self, cmd: Spend) -> Result<AccountEvent, BankError> {
        if cmd.amount > self.balance {
            return Err(BankError::InsufficientFunds);
        }
        Ok(AccountEvent::Noted { text: format!("spent {}", cmd.amount) })
    }
}

fn app_on(store: Arc<dyn EventStore>) -> Orchestrix {
    app_counting(store, Arc::default())
}

fn app_counting(store: Arc<dyn EventStore>, calls: Arc<AtomicU32>) -> Orchestrix {
    Orchestrix::builder().event_store(store).aggregate::<Account>().service(Calls(calls)).build().unwrap()
}

fn with_id(id: Uuid) -> CommandOptions {
    CommandOptions { command_id: Some(id), ..CommandOptions::default() }
}

async fn stream_of(store: &dyn EventStore, id: Uuid) -> Vec<Arc<RecordedEvent>> {
    let stream = Repository::<Account>::stream_id(id).unwrap();
    store.read_stream(&stream, 0).try_collect().await.unwrap()
}

/// What two outcomes must share: version, event ids, versions, positions,
/// events, correlation id.
/// An outcome's version, correlation id and events (id, version, position,
/// event).
type Key = (u64, Uuid, Vec<(Uuid, u64, u64, AccountEvent)>);

fn key(outcome: &CommandOutcome<AccountEvent>) -> Key {
    let events = outcome
        .events
        .iter()
        .map(|e: &Envelope<AccountEvent>| (e.id, e.stream_version, e.global_position, e.event.clone()))
        .collect();
    (outcome.version, outcome.correlation_id, events)
}

async fn opened(app: &Orchestrix) -> Uuid {
    let id = Uuid::now_v7();
    app.execute(id, Open).await.unwrap();
    id
}

#[tokio::test]
async fn a_repeated_command_id_returns_the_first_outcome_and_appends_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let app = app_counting(Arc::clone(&store), Arc::clone(&calls));
    let account = opened(&app).await;
    let command = Uuid::now_v7();
    let first = app.execute_with(account, Deposit { amount: 30 }, with_id(command)).await.unwrap();
    let again = app.execute_with(account, Deposit { amount: 30 }, with_id(command)).await.unwrap();
    assert_eq!(key(&again), key(&first));
    assert_eq!(again.command_id, command);
    assert_eq!(stream_of(&*store, account).await.len(), 2, "opened and one deposit");
    assert_eq!(app.load::<Account>(&account).await.unwrap().state.balance, 30);
    // The handler ran once: the repeat was recognised before it.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A fresh application (another process, an empty cache) knows it too.
    let other = app_on(Arc::clone(&store));
    let from_elsewhere = other.execute_with(account, Deposit { amount: 30 }, with_id(command)).await.unwrap();
    assert_eq!(key(&from_elsewhere), key(&first));
    // Two events: the repeat returns both.
    let two = Uuid::now_v7();
    let first = app.execute_with(account, DepositAndNote { amount: 5 }, with_id(two)).await.unwrap();
    let again = other.execute_with(account, DepositAndNote { amount: 5 }, with_id(two)).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert_eq!(key(&again), key(&first));
    assert_eq!(stream_of(&*store, account).await.len(), 4);
}

#[tokio::test]
async fn a_creating_command_repeated_is_not_already_exists() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let (app, other) = (app_on(Arc::clone(&store)), app_on(Arc::clone(&store)));
    let (account, command) = (Uuid::now_v7(), Uuid::now_v7());
    let first = app.execute_with(account, Open, with_id(command)).await.unwrap();
    for repeat in [&app, &other] {
        let again = repeat.execute_with(account, Open, with_id(command)).await.unwrap();
        assert_eq!(key(&again), key(&first));
    }
    let error = app.execute(account, Open).await.unwrap_err();
    assert!(matches!(error, CommandError::AggregateAlreadyExists { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_racing_deliveries_in_two_processes_apply_once() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let apps = [app_on(Arc::clone(&store)), app_on(Arc::clone(&store))];
    let account = opened(&apps[0]).await;
    // Both caches hold the account, so both decide on the same state.
    apps[1].load::<Account>(&account).await.unwrap();
    for round in 0..20 {
        let command = Uuid::now_v7();
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let app = apps[n % 2].clone();
                tokio::spawn(async move { app.execute_with(account, Deposit { amount: 1 }, with_id(command)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        for outcome in &outcomes[1..] {
            assert_eq!(key(outcome), key(&outcomes[0]), "round {round}");
        }
        assert_eq!(stream_of(&*store, account).await.len(), round + 2, "round {round}: one deposit per command id");
    }
    assert_eq!(apps[0].load::<Account>(&account).await.unwrap().state.balance, 20);
}

#[tokio::test]
async fn a_command_id_belongs_to_the_aggregate_it_applied_to() {
    let app = app_on(Arc::new(InMemoryEventStore::new()));
    let (a, b) = (opened(&app).await, opened(&app).await);
    let command = Uuid::now_v7();
    app.execute_with(a, Deposit { amount: 1 }, with_id(command)).await.unwrap();
    let error = app.execute_with(b, Deposit { amount: 1 }, with_id(command)).await.unwrap_err();
    assert!(
        matches!(&error, CommandError::Framework(orchestrix::Error::Store(StoreError::DuplicateEventId { stream, .. }))
            if stream.id() == a.to_string()),
        "{error:?}"
    );
    assert_eq!(app.load::<Account>(&b).await.unwrap().state.balance, 0);
}

#[tokio::test]
async fn a_rejection_is_not_remembered() {
    let app = app_on(Arc::new(InMemoryEventStore::new()));
    let account = opened(&app).await;
    let command = Uuid::now_v7();
    let refused = app.execute_with(account, Spend { amount: 5 }, with_id(command)).await.unwrap_err();
    assert_eq!(refused.rejection(), Some(&BankError::InsufficientFunds));
    app.execute(account, Deposit { amount: 10 }).await.unwrap();
    // Nothing recorded the refusal: the same id runs again, and succeeds.
    let spent = app.execute_with(account, Spend { amount: 5 }, with_id(command)).await.unwrap();
    assert_eq!(spent.events.len(), 1);
}

/// A store whose first append is stored but answered `Unavailable`: the
/// acknowledgement is lost.
#[derive(Debug)]
struct LosesFirstAck {
    inner: InMemoryEventStore,
    appends: AtomicUsize,
}

#[async_trait]
impl EventStore for LosesFirstAck {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let recorded = self.inner.append(stream, expected, events).await?;
        if self.appends.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(StoreError::Unavailable("the connection broke before the answer".into()));
        }
        Ok(recorded)
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.inner.append_many(appends).await
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        self.inner.read_stream(stream, from_version)
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        self.inner.read_all(from_position, filter)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        self.inner.subscribe(from_position, filter)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head_position().await
    }
}

#[tokio::test]
async fn a_command_whose_acknowledgement_was_lost_is_retried_safely() {
    // `LosesFirstAck` does not override `read_event`: the port's default
    // (a scan of the log) answers, slowly but correctly.
    let store: Arc<dyn EventStore> =
        Arc::new(LosesFirstAck { inner: InMemoryEventStore::new(), appends: AtomicUsize::new(0) });
    let app = app_on(Arc::clone(&store));
    let account = opened(&app).await;
    let command = Uuid::now_v7();
    let lost = app.execute_with(account, Deposit { amount: 7 }, with_id(command)).await.unwrap_err();
    assert!(matches!(lost, CommandError::Framework(orchestrix::Error::Store(StoreError::Unavailable(_)))), "{lost:?}");
    let retried = app.execute_with(account, Deposit { amount: 7 }, with_id(command)).await.unwrap();
    assert_eq!(retried.version, 2);
    assert_eq!(stream_of(&*store, account).await.len(), 2, "the deposit is stored once");
    assert_eq!(app.load::<Account>(&account).await.unwrap().state.balance, 7);
}

#[tokio::test]
async fn a_retried_append_with_any_is_stored_once() {
    let store = InMemoryEventStore::new();
    let stream = StreamId::new("Account", "1").unwrap();
    let events =
        vec![NewEvent::encode(&AccountEvent::Deposited { amount: 1 }, orchestrix::Metadata::default()).unwrap()];
    let first = store.append(&stream, ExpectedVersion::Any, events.clone()).await.unwrap();
    let retry = store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    assert_eq!((retry[0].id, retry[0].global_position), (first[0].id, first[0].global_position));
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(1));
}

#[tokio::test]
async fn append_many_and_decisions_with_a_command_id_are_applied_once() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let app = app_on(Arc::clone(&store));
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let batch = || {
        Decision::new()
            .append::<Account>(a, ExpectedVersion::NoStream, [AccountEvent::Opened { owner: "A".into() }])
            .append::<Account>(b, ExpectedVersion::NoStream, [AccountEvent::Opened { owner: "B".into() }])
    };
    let command = Uuid::now_v7();
    let first = app.append_many(batch(), with_id(command)).await.unwrap();
    let again = app.append_many(batch(), with_id(command)).await.unwrap();
    let ids = |parts: &Vec<Vec<Arc<RecordedEvent>>>| parts.iter().flatten().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(store.head_position().await.unwrap(), Some(2));

    let query = Query::new([QueryItem::types(["AccountNoted"])]);
    let decide = |model: &[Envelope<AccountEvent>]| {
        let text = format!("note {}", model.len());
        Ok::<_, Infallible>(Decision::new().append::<Account>(a, ExpectedVersion::Any, [AccountEvent::Noted { text }]))
    };
    let command = Uuid::now_v7();
    let first = app.decide(query.clone(), with_id(command), decide).await.unwrap();
    let again = app.decide(query, with_id(command), decide).await.unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), first.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(first[0].data.get(), r#"{"text":"note 0"}"#);
    assert_eq!(store.head_position().await.unwrap(), Some(3));
}

/// `execute_decision`: a retried request whose first call's own events
/// now break the rule is answered with those events without deciding
/// again; a stream that moved between load and append makes it decide
/// again on the new state; an empty decision appends nothing; a refusal
/// without a command id is returned as such.
#[tokio::test]
async fn execute_decision_applies_once_and_decides_again_after_a_conflict() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let app = app_on(Arc::clone(&store));
    let (a, b) = (opened(&app).await, opened(&app).await);
    let runs = Arc::new(AtomicUsize::new(0));
    // Move one unit from `a` to `b` once: refused when `a` is empty.
    let transfer = |runs: Arc<AtomicUsize>| {
        move |app: Orchestrix| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let (from, to) = (app.load::<Account>(a).await?, app.load::<Account>(b).await?);
                if from.state.balance == 0 {
                    return Err(CommandError::Rejected(BankError::InsufficientFunds));
                }
                Ok(Decision::new()
                    .append::<Account>(a, from.expected_version(), [AccountEvent::Noted { text: "out".into() }])
                    .append::<Account>(b, to.expected_version(), [AccountEvent::Deposited { amount: 1 }]))
            }
        }
    };

    // Refused without a command id: nothing is written.
    let refused = app.execute_decision(CommandOptions::default(), transfer(Arc::clone(&runs))).await;
    assert!(matches!(refused, Err(CommandError::Rejected(BankError::InsufficientFunds))), "{refused:?}");
    assert_eq!(stream_of(&*store, b).await.len(), 1);

    app.execute(a, Deposit { amount: 1 }).await.unwrap();
    let command = Uuid::now_v7();
    runs.store(0, Ordering::SeqCst);
    let first = app.execute_decision(with_id(command), transfer(Arc::clone(&runs))).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Newer events on `a` since the first call: the retry is still answered
    // by the first call's events.
    app.execute(a, Spend { amount: 1 }).await.unwrap();
    let again = app.execute_decision(with_id(command), transfer(Arc::clone(&runs))).await.unwrap();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), first.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the retry does not decide again");
    assert_eq!(stream_of(&*store, b).await.len(), 2, "applied once");

    // A writer moves `a` between the decision's load and its append: the
    // decision runs again on the new state and its append then holds.
    app.execute(a, Deposit { amount: 5 }).await.unwrap();
    let interfered = Arc::new(AtomicUsize::new(0));
    let racing = {
        let interfered = Arc::clone(&interfered);
        move |app: Orchestrix| {
            let interfered = Arc::clone(&interfered);
            async move {
                let (from, to) = (app.load::<Account>(a).await?, app.load::<Account>(b).await?);
                if interfered.fetch_add(1, Ordering::SeqCst) == 0 {
                    app.execute(a, Deposit { amount: 1 }).await.map_err(|e| match e {
                        CommandError::Framework(e) => CommandError::Framework(e),
                        other => panic!("the interfering deposit failed: {other}"),
                    })?;
                }
                Ok(Decision::new()
                    .append::<Account>(a, from.expected_version(), [AccountEvent::Noted { text: "seen".into() }])
                    .append::<Account>(b, to.expected_version(), [AccountEvent::Deposited { amount: 1 }]))
            }
        }
    };
    let written = app.execute_decision::<BankError, _, _>(CommandOptions::default(), racing).await.unwrap();
    assert_eq!(interfered.load(Ordering::SeqCst), 2, "decided twice: once before the conflict, once after");
    assert_eq!(written.len(), 2);
    assert_eq!(app.load::<Account>(a).await.unwrap().state.balance, 7, "1 + 5 + the interfering 1");

    // An empty decision appends nothing.
    let head = store.head_position().await.unwrap();
    let nothing = app
        .execute_decision::<BankError, _, _>(with_id(Uuid::now_v7()), |_app: Orchestrix| async { Ok(Decision::new()) })
        .await
        .unwrap();
    assert!(nothing.is_empty());
    assert_eq!(store.head_position().await.unwrap(), head);
}
