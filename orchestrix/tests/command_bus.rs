//! The builder and the command bus: what `build` refuses, a shared store
//! taken as it is, what `execute` answers for an unregistered command, a
//! missing or existing aggregate, a rejection, and a lost race (retried,
//! or given up without retries), and the aggregate cache's statistics.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use orchestrix::app::BuildError;
use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::retry::RetryPolicy;
use orchestrix::store::EventStore;

#[event]
#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Created,
    Added { amount: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CounterError {
    #[error("the counter would pass its limit")]
    TooMuch,
}

#[aggregate(event = CounterEvent, error = CounterError, id = String)]
#[derive(Debug, Default)]
struct Counter {
    total: u32,
}

impl Counter {
    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Added { amount } = event {
            self.total += amount;
        }
    }
}

#[derive(Debug, Clone)]
struct Create;

#[derive(Debug, Clone)]
struct Add {
    amount: u32,
}

/// Counts how often the handler of `Add` ran.
#[derive(Debug, Default)]
struct Runs(Arc<AtomicU32>);

#[command_handler]
impl Counter {
    fn create(_: Create) -> Result<CounterEvent, CounterError> {
        Ok(CounterEvent::Created)
    }

    fn add(&self, cmd: Add, runs: &Runs) -> Result<CounterEvent, CounterError> {
        runs.0.fetch_add(1, Ordering::SeqCst);
        if self.total + cmd.amount > 100 {
            return Err(CounterError::TooMuch);
        }
        Ok(CounterEvent::Added { amount: cmd.amount })
    }
}

/// A command of an aggregate the application does not register.
#[derive(Debug, Clone)]
struct Reset;

#[aggregate(event = CounterEvent, error = CounterError, id = String)]
#[derive(Debug, Default)]
struct Unregistered;

impl Unregistered {
    #[allow(clippy::unused_self)]
    fn apply(&mut self, _: &CounterEvent) {}
}

#[command_handler]
impl Unregistered {
    fn reset(&self, _: Reset) -> Result<Vec<CounterEvent>, CounterError> {
        Ok(Vec::new())
    }
}

fn app(store: &InMemoryEventStore, runs: &Arc<AtomicU32>, retry: RetryPolicy) -> Orchestrix {
    Orchestrix::builder()
        .event_store(store.clone())
        .aggregate::<Counter>()
        .service(Runs(Arc::clone(runs)))
        .retry(retry)
        .build()
        .unwrap()
}

#[test]
fn the_builder_needs_an_event_store() {
    let error = Orchestrix::builder().aggregate::<Unregistered>().build().unwrap_err();
    assert!(matches!(error, BuildError::MissingEventStore), "{error:?}");
    assert!(error.to_string().contains(".in_memory()"), "the message says how to fix it: {error}");
}

#[test]
fn the_builder_refuses_a_handler_whose_service_is_missing() {
    let error = Orchestrix::builder().in_memory().aggregate::<Counter>().build().unwrap_err();
    let BuildError::MissingService { command, service } = &error else { panic!("{error:?}") };
    assert!(command.contains("Add"), "{command}");
    assert!(service.contains("Runs"), "{service}");
}

#[test]
fn the_builder_refuses_two_handlers_of_one_command() {
    let error = Orchestrix::builder()
        .in_memory()
        .aggregate::<Counter>()
        .service(Runs::default())
        .aggregate::<Counter>()
        .build()
        .unwrap_err();
    let BuildError::DuplicateCommand { command, first, second } = &error else { panic!("{error:?}") };
    assert!(command.contains("Create"), "the first command registered twice: {command}");
    assert_eq!((*first, *second), ("Counter", "Counter"));
}

#[tokio::test]
async fn an_unregistered_command_is_a_typed_error_and_writes_nothing() {
    let store = InMemoryEventStore::new();
    let app = app(&store, &Arc::default(), RetryPolicy::none());
    let error = app.execute("a".to_owned(), Reset).await.unwrap_err();
    assert!(matches!(error, CommandError::Unregistered { .. }), "{error:?}");
    assert_eq!(store.head_position().await.unwrap(), None);
}

#[tokio::test]
async fn creating_and_existing_commands_check_existence() {
    let store = InMemoryEventStore::new();
    let app = app(&store, &Arc::default(), RetryPolicy::none());
    let missing = app.execute("a".to_owned(), Add { amount: 1 }).await.unwrap_err();
    assert!(matches!(missing, CommandError::AggregateNotFound { .. }), "{missing:?}");
    app.execute("a".to_owned(), Create).await.unwrap();
    let again = app.execute("a".to_owned(), Create).await.unwrap_err();
    assert!(matches!(again, CommandError::AggregateAlreadyExists { .. }), "{again:?}");
    assert_eq!(store.head_position().await.unwrap(), Some(1), "only the first create was written");
}

#[tokio::test]
async fn a_rejection_is_returned_and_writes_nothing() {
    let store = InMemoryEventStore::new();
    let app = app(&store, &Arc::default(), RetryPolicy::none());
    app.execute("a".to_owned(), Create).await.unwrap();
    app.execute("a".to_owned(), Add { amount: 60 }).await.unwrap();
    let error = app.execute("a".to_owned(), Add { amount: 60 }).await.unwrap_err();
    assert!(matches!(error, CommandError::Rejected(CounterError::TooMuch)), "{error:?}");
    assert!(!error.is_conflict());
    assert_eq!(app.load::<Counter>("a".to_owned()).await.unwrap().state.total, 60);
    assert_eq!(store.head_position().await.unwrap(), Some(2));
}

/// Two applications on one store: the first one's cached counter is stale
/// once the second has written, so its next command loses the race on the
/// first attempt. Under a retry policy it reloads, decides again and
/// wins; without one it gives up with a conflict and writes nothing.
#[tokio::test]
async fn a_lost_race_is_retried_under_the_policy_or_given_up() {
    let store = InMemoryEventStore::new();
    let runs = Arc::new(AtomicU32::new(0));
    let retrying = app(&store, &runs, RetryPolicy::fixed(3, std::time::Duration::from_millis(1)));
    let other = app(&store, &Arc::default(), RetryPolicy::none());
    retrying.execute("a".to_owned(), Create).await.unwrap();
    retrying.execute("a".to_owned(), Add { amount: 1 }).await.unwrap();
    other.execute("a".to_owned(), Add { amount: 10 }).await.unwrap();
    runs.store(0, Ordering::SeqCst);
    let outcome = retrying.execute("a".to_owned(), Add { amount: 5 }).await.unwrap();
    assert_eq!(outcome.version, 4, "appended after the other application's event");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "decided on the stale state, then again on the fresh one");
    assert_eq!(retrying.load::<Counter>("a".to_owned()).await.unwrap().state.total, 16);

    let runs = Arc::new(AtomicU32::new(0));
    let giving_up = app(&store, &runs, RetryPolicy::none());
    giving_up.execute("a".to_owned(), Add { amount: 1 }).await.unwrap();
    // A fresh application: `other` itself is stale by now.
    app(&store, &Arc::default(), RetryPolicy::none()).execute("a".to_owned(), Add { amount: 1 }).await.unwrap();
    let error = giving_up.execute("a".to_owned(), Add { amount: 1 }).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert!(matches!(error, CommandError::Conflict { attempts: 1, .. }), "{error:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one decision for each command, none again");
    assert_eq!(store.head_position().await.unwrap(), Some(6), "the lost attempt wrote nothing");
}

#[tokio::test]
async fn the_builder_keeps_a_shared_store_as_it_is() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let app = Orchestrix::builder().event_store(Arc::clone(&store)).build().unwrap();
    assert!(Arc::ptr_eq(app.event_store(), &store), "an Arc<dyn EventStore> is not wrapped again");
    let concrete = InMemoryEventStore::new();
    let app = Orchestrix::builder()
        .event_store(concrete.clone())
        .aggregate::<Counter>()
        .service(Runs::default())
        .build()
        .unwrap();
    app.execute("a".to_owned(), Create).await.unwrap();
    assert_eq!(concrete.head_position().await.unwrap(), Some(1));
}

/// An aggregate with a command, to count the cache's hits.
#[aggregate(event = CounterEvent, error = CounterError, id = String)]
#[derive(Debug, Default)]
struct Hopper {
    level: u32,
}

impl Hopper {
    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Added { amount } = event {
            self.level += amount;
        }
    }
}

/// Puts something in a hopper.
#[derive(Debug, Clone)]
struct Fill;

#[command_handler]
impl Hopper {
    #[command(requires = any)]
    fn fill(&self, _: Fill) -> Result<CounterEvent, CounterError> {
        Ok(CounterEvent::Added { amount: 1 })
    }
}

#[tokio::test]
async fn the_cache_reports_hits_misses_and_evictions() {
    let app = Orchestrix::builder().in_memory().aggregate::<Hopper>().cache_capacity(2).build().unwrap();
    assert_eq!(app.cache_stats::<Counter>(), None, "not registered");
    for hopper in ["a", "a", "b", "a", "c", "a", "b"] {
        app.execute(hopper.to_owned(), Fill).await.unwrap();
    }
    // a: miss, hit; b: miss; a: hit; c: miss (evicts b, the least recently
    // used); a: hit; b: miss (evicts c).
    let stats = app.cache_stats::<Hopper>().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (3, 4, 2));
    assert_eq!(stats.hit_rate(), Some(3.0 / 7.0));
    assert_eq!(app.load::<Hopper>("a".to_owned()).await.unwrap().state.level, 4);
}
