//! Many tasks, one aggregate: nothing lost, nothing duplicated, versions
//! contiguous, the state equal to the sum of what was accepted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bank::{Account, AccountEvent, BankError, Deposit, OpenAccount, Withdraw};
use orchestrix::memory::{InMemoryEventStore, InMemorySnapshotStore};
use orchestrix::{
    repository::Repository,
    retry::RetryPolicy,
    store::{EventStore, SnapshotStore},
    CommandError, Orchestrix, Uuid,
};
use orchestrix_tests::read_stream;

const TASKS: u64 = 100;
const COMMANDS_PER_TASK: u64 = 100;

fn app(events: &Arc<dyn EventStore>, snapshots: &Arc<dyn SnapshotStore>, cache: usize) -> Orchestrix {
    Orchestrix::builder()
        .event_store(Arc::clone(events))
        .snapshot_store(Arc::clone(snapshots))
        .aggregate::<Account>()
        .cache_capacity(cache)
        .retry(RetryPolicy::exponential(100, Duration::from_micros(200)).with_max_delay(Duration::from_millis(20)))
        .build()
        .unwrap()
}

/// Sends `TASKS × COMMANDS_PER_TASK` commands to one account through the
/// given applications (round robin) and checks the outcome.
async fn hammer(apps: Vec<Orchestrix>) {
    let id = Uuid::now_v7();
    apps[0].execute(id, OpenAccount { owner: "shared".into() }).await.unwrap();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let app = apps[usize::try_from(task).unwrap() % apps.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut net: i64 = 0;
            let mut accepted = Vec::new();
            for i in 0..COMMANDS_PER_TASK {
                // Unique amounts identify each command's event in the log.
                let amount = task * 1_000 + i + 1;
                let result = if i % 3 == 2 {
                    app.execute(id, Withdraw { amount, reason: format!("{task}/{i}") }).await
                } else {
                    app.execute(id, Deposit { amount }).await
                };
                match result {
                    Ok(outcome) => {
                        assert_eq!(outcome.events.len(), 1);
                        net +=
                            if i % 3 == 2 { -i64::try_from(amount).unwrap() } else { i64::try_from(amount).unwrap() };
                        accepted.push(amount);
                    }
                    Err(CommandError::Rejected(BankError::InsufficientFunds { .. })) => {}
                    Err(other) => panic!("unexpected failure: {other}"),
                }
            }
            (net, accepted)
        }));
    }
    let mut net = 0;
    let mut accepted = Vec::new();
    for handle in handles {
        let (task_net, task_accepted) = handle.await.unwrap();
        net += task_net;
        accepted.extend(task_accepted);
    }

    let store = apps[0].event_store();
    let stream = Repository::<Account>::stream_id(id).unwrap();
    let records = read_stream(store.as_ref(), &stream).await;
    assert_eq!(records.len(), accepted.len() + 1, "one event per accepted command, plus the opening");
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.stream_version, u64::try_from(index).unwrap() + 1, "versions are contiguous");
    }
    let mut seen = HashSet::new();
    for record in &records[1..] {
        let amount = match record.decode::<AccountEvent>().unwrap() {
            AccountEvent::Deposited { amount } | AccountEvent::Withdrawn { amount, .. } => amount,
            other => panic!("unexpected event {other:?}"),
        };
        assert!(seen.insert(amount), "the command with amount {amount} was recorded twice");
    }
    let accepted: HashSet<u64> = accepted.into_iter().collect();
    assert_eq!(seen, accepted, "the log holds exactly the accepted commands");

    for app in &apps {
        let account = app.load::<Account>(&id).await.unwrap();
        assert_eq!(i64::try_from(account.state.balance).unwrap(), net, "the balance is the sum of accepted commands");
        assert_eq!(account.version, u64::try_from(records.len()).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_application_hundred_tasks_hundred_commands_each() {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(InMemorySnapshotStore::new());
    hammer(vec![app(&events, &snapshots, 1_000)]).await;
}

/// Two applications over one store stand for two processes: their caches
/// go stale, appends conflict, and the bus reloads and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applications_conflict_and_retry() {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(InMemorySnapshotStore::new());
    hammer(vec![app(&events, &snapshots, 1_000), app(&events, &snapshots, 1_000)]).await;
}

/// Without a cache every command loads the aggregate (snapshot plus tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_cache() {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(InMemorySnapshotStore::new());
    hammer(vec![app(&events, &snapshots, 0), app(&events, &snapshots, 0)]).await;
}
