//! The command bus's typed errors, services, standalone handlers and
//! correlation.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bank::{Account, AccountEvent, BankError, CloseAccount, Deposit, OpenAccount, Withdraw};
use orchestrix::app::BuildError;
use orchestrix::prelude::*;
use orchestrix::{app::CommandOptions, repository::Repository, Uuid};
use orchestrix_tests::read_stream;

fn bank() -> Orchestrix {
    Orchestrix::builder().in_memory().aggregate::<Account>().build().unwrap()
}

#[tokio::test]
async fn execute_returns_the_new_version_and_the_recorded_events() {
    let app = bank();
    let id = Uuid::now_v7();
    let opened = app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    assert_eq!(opened.version, 1);
    assert_eq!(opened.attempts, 1);
    let deposited = app.execute(id, Deposit { amount: 70 }).await.unwrap();
    assert_eq!(deposited.version, 2);
    assert_eq!(deposited.events.len(), 1);
    let envelope = &deposited.events[0];
    assert_eq!(envelope.event, AccountEvent::Deposited { amount: 70 });
    assert_eq!(envelope.stream_version, 2);
    assert_eq!(envelope.global_position, 2);
    assert_eq!(envelope.stream.category(), "Account");
    assert_eq!(envelope.stream.id(), id.to_string());
    assert_eq!(envelope.id.get_version_num(), 7, "event ids are UUID v7");
    assert_eq!(envelope.metadata.causation_id, Some(deposited.command_id));
    assert_eq!(envelope.metadata.correlation_id, Some(deposited.correlation_id));
}

#[tokio::test]
async fn each_failure_is_a_distinct_typed_error() {
    let app = bank();
    let id = Uuid::now_v7();
    let missing = app.execute(id, Deposit { amount: 1 }).await.unwrap_err();
    assert!(matches!(missing, CommandError::AggregateNotFound { aggregate: "Account", .. }), "{missing:?}");
    app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    let exists = app.execute(id, OpenAccount { owner: "Eve".into() }).await.unwrap_err();
    assert!(matches!(exists, CommandError::AggregateAlreadyExists { .. }), "{exists:?}");
    let rejected = app.execute(id, Withdraw { amount: 5, reason: "x".into() }).await.unwrap_err();
    assert_eq!(rejected.rejection(), Some(&BankError::InsufficientFunds { balance: 0, requested: 5 }));
    assert!(rejected.to_string().contains("insufficient funds"), "{rejected}");

    let unregistered = Orchestrix::builder().in_memory().build().unwrap();
    let error = unregistered.execute(id, Deposit { amount: 1 }).await.unwrap_err();
    assert!(matches!(error, CommandError::Unregistered { command: "Deposit", .. }), "{error:?}");
    assert!(error.to_string().contains("aggregate::<bank::Account>()"), "{error}");

    // Nothing but the opening was stored.
    let stream = Repository::<Account>::stream_id(id).unwrap();
    assert_eq!(read_stream(app.event_store().as_ref(), &stream).await.len(), 1);
}

#[tokio::test]
async fn a_handler_that_decides_nothing_appends_nothing() {
    let app = bank();
    let id = Uuid::now_v7();
    app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    app.execute(id, CloseAccount).await.unwrap();
    let again = app.execute(id, CloseAccount).await.unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.version, 2);
}

#[test]
fn the_builder_refuses_incomplete_or_ambiguous_configurations() {
    assert!(matches!(Orchestrix::builder().aggregate::<Account>().build(), Err(BuildError::MissingEventStore)));
    let twice = Orchestrix::builder().in_memory().aggregate::<Account>().aggregate::<Account>().build();
    assert!(matches!(twice, Err(BuildError::DuplicateCommand { .. })), "{twice:?}");
    let no_service = Orchestrix::builder().in_memory().aggregate::<Ledger>().build();
    match no_service {
        Err(BuildError::MissingService { command: "Post", service }) => assert!(service.ends_with("Auditor")),
        other => panic!("expected a missing service, got {other:?}"),
    }
    // `id: &String` where `id: &Self::Id` was meant: found at build, with the fix.
    let id_as_service = Orchestrix::builder().in_memory().aggregate::<Journal>().build();
    match id_as_service {
        Err(error @ BuildError::IdTakenAsService { command: "Note", aggregate: "Journal", .. }) => {
            assert!(error.to_string().contains("write the parameter as `id: &Self::Id`"), "{error}");
        }
        other => panic!("expected the id taken as a service, got {other:?}"),
    }
}

/// An aggregate whose handler takes its id by its concrete type.
#[aggregate(event = LedgerEvent, error = Refused, id = String)]
#[derive(Debug, Default)]
struct Journal {
    notes: usize,
}

impl Journal {
    fn apply(&mut self, _: &LedgerEvent) {
        self.notes += 1;
    }
}

#[derive(Clone)]
struct Note;

#[command_handler]
impl Journal {
    #[command(requires = any)]
    #[allow(clippy::ptr_arg)] // the mistake under test: the id's concrete type
    fn note(&self, _: Note, id: &String) -> Result<LedgerEvent, Refused> {
        Ok(LedgerEvent::Posted { entry: id.clone(), audit: 0 })
    }
}

// An aggregate with an async, service-injected handler.

#[event]
#[derive(Debug, Clone, PartialEq)]
enum LedgerEvent {
    Posted { entry: String, audit: u32 },
}

#[derive(Debug, thiserror::Error)]
#[error("the auditor refused `{0}`")]
struct Refused(String);

#[aggregate(event = LedgerEvent, error = Refused, id = String)]
#[derive(Debug, Default)]
struct Ledger {
    entries: Vec<String>,
}

impl Ledger {
    fn apply(&mut self, event: &LedgerEvent) {
        let LedgerEvent::Posted { entry, .. } = event;
        self.entries.push(entry.clone());
    }
}

#[derive(Debug, Default)]
struct Auditor {
    calls: AtomicU32,
}

#[derive(Clone)]
struct Post {
    entry: String,
}

#[command_handler]
impl Ledger {
    #[command(requires = any)]
    async fn post(&self, cmd: Post, auditor: &Auditor) -> Result<LedgerEvent, Refused> {
        tokio::task::yield_now().await;
        if cmd.entry.contains("fraud") {
            return Err(Refused(cmd.entry));
        }
        let audit = auditor.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(LedgerEvent::Posted { entry: cmd.entry, audit })
    }
}

#[tokio::test]
async fn async_handlers_receive_their_service() {
    let app = Orchestrix::builder().in_memory().aggregate::<Ledger>().service(Auditor::default()).build().unwrap();
    let id = "books-2026".to_owned();
    let first = app.execute(id.clone(), Post { entry: "rent".into() }).await.unwrap();
    let second = app.execute(id.clone(), Post { entry: "salary".into() }).await.unwrap();
    assert_eq!(first.events[0].event, LedgerEvent::Posted { entry: "rent".into(), audit: 1 });
    assert_eq!(second.events[0].event, LedgerEvent::Posted { entry: "salary".into(), audit: 2 });
    let refused = app.execute(id.clone(), Post { entry: "fraud".into() }).await.unwrap_err();
    assert!(matches!(refused, CommandError::Rejected(Refused(_))));
    let ledger = app.load::<Ledger>(&id).await.unwrap();
    assert_eq!(ledger.state.entries, ["rent", "salary"]);
}

// A standalone handler that sends commands to two aggregates.

#[derive(Debug)]
struct Transfer {
    from: Uuid,
    to: Uuid,
    amount: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("transfer failed: {0}")]
struct TransferFailed(#[from] CommandError<BankError>);

#[command_handler]
async fn transfer(cmd: Transfer, app: &Orchestrix) -> Result<u64, TransferFailed> {
    app.execute(cmd.from, Withdraw { amount: cmd.amount, reason: "transfer".into() }).await?;
    let credited = app.execute(cmd.to, Deposit { amount: cmd.amount }).await?;
    Ok(credited.version)
}

#[tokio::test]
async fn standalone_handlers_share_correlation_and_record_their_command_as_cause() {
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().command::<Transfer>().build().unwrap();
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    app.execute(ada, OpenAccount { owner: "Ada".into() }).await.unwrap();
    app.execute(ada, Deposit { amount: 100 }).await.unwrap();
    app.execute(bob, OpenAccount { owner: "Bob".into() }).await.unwrap();

    let request = Uuid::now_v7();
    let options = CommandOptions::default().correlation_id(request).tenant("acme");
    let version = app.dispatch_with(Transfer { from: ada, to: bob, amount: 40 }, options).await.unwrap();
    assert_eq!(version, 2);

    let store = app.event_store();
    let from = read_stream(store.as_ref(), &Repository::<Account>::stream_id(ada).unwrap()).await;
    let to = read_stream(store.as_ref(), &Repository::<Account>::stream_id(bob).unwrap()).await;
    let (withdrawn, deposited) = (from.last().unwrap(), to.last().unwrap());
    for event in [withdrawn, deposited] {
        assert_eq!(event.metadata.correlation_id, Some(request));
        assert_eq!(event.metadata.tenant.as_deref(), Some("acme"));
    }
    assert_eq!(withdrawn.metadata.causation_id, deposited.metadata.causation_id, "both caused by the transfer");

    let failed = app.dispatch(Transfer { from: ada, to: bob, amount: 1_000 }).await.unwrap_err();
    assert!(matches!(failed, CommandError::Rejected(TransferFailed(CommandError::Rejected(_)))), "{failed:?}");
    let unregistered = bank().dispatch(Transfer { from: ada, to: bob, amount: 1 }).await.unwrap_err();
    assert!(matches!(unregistered, CommandError::Unregistered { command: "Transfer", .. }));
}

#[tokio::test]
async fn execute_once_reports_a_conflict_instead_of_retrying() {
    let events: Arc<dyn orchestrix::store::EventStore> = Arc::new(orchestrix::memory::InMemoryEventStore::new());
    let one = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let two = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let id = Uuid::now_v7();
    one.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    one.execute(id, Deposit { amount: 1 }).await.unwrap(); // `one` caches version 2
    two.execute(id, Deposit { amount: 1 }).await.unwrap(); // the store moves to 3 behind its back
    let conflict = one.execute_once(id, Deposit { amount: 1 }, CommandOptions::default()).await.unwrap_err();
    assert!(matches!(conflict, CommandError::Conflict { attempts: 1, .. }), "{conflict:?}");
    assert!(conflict.is_conflict(), "the third shape of a lost race answers the same question");
    // The conflict dropped the stale cache entry; a retrying execute succeeds.
    let retried = one.execute(id, Deposit { amount: 1 }).await.unwrap();
    assert_eq!(retried.version, 4);
}

#[tokio::test]
async fn a_refusal_based_on_a_stale_cache_is_rechecked() {
    let events: Arc<dyn orchestrix::store::EventStore> = Arc::new(orchestrix::memory::InMemoryEventStore::new());
    let one = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let two = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let id = Uuid::now_v7();
    one.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap(); // `one` caches a zero balance
    two.execute(id, Deposit { amount: 50 }).await.unwrap();
    let outcome = one.execute(id, Withdraw { amount: 30, reason: "rent".into() }).await.unwrap();
    assert_eq!(outcome.version, 3);
    assert_eq!(outcome.attempts, 2, "refused on the stale state, then accepted on the fresh one");
}

#[tokio::test]
async fn a_creating_command_needs_no_read_and_still_refuses_an_existing_aggregate() {
    let events: Arc<dyn orchestrix::store::EventStore> = Arc::new(orchestrix::memory::InMemoryEventStore::new());
    let one = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let two = Orchestrix::builder().event_store(Arc::clone(&events)).aggregate::<Account>().build().unwrap();
    let id = Uuid::now_v7();
    one.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    // `two` has nothing cached: it appends expecting no stream, and the
    // store's refusal is final, not a conflict to retry.
    let error = two.execute(id, OpenAccount { owner: "Eve".into() }).await.unwrap_err();
    assert!(matches!(error, CommandError::AggregateAlreadyExists { aggregate: "Account", .. }), "{error:?}");
    assert!(!error.is_conflict(), "an existing aggregate is final, not a race to retry");
    let stream = Repository::<Account>::stream_id(id).unwrap();
    assert_eq!(read_stream(events.as_ref(), &stream).await.len(), 1, "nothing was appended");
}
