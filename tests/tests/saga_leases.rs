//! Saga managers under a lease (ADR 0032): two runners in one process
//! share `InMemoryLeases` and only one runs; a runner whose lease can no
//! longer be confirmed runs no step until it holds the lease again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use bank::{Account, Deposit, OpenAccount, RequestTransfer, Transfer, TransferSaga};
use orchestrix::lease::{Lease, Leases};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore, InMemoryLeases};
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::saga::{SagaError, SagaManager, SagaStatus};
use orchestrix::{async_trait, Orchestrix, StoreError, Uuid};

fn app(events: &InMemoryEventStore) -> Orchestrix {
    Orchestrix::builder().event_store(events.clone()).aggregate::<Account>().aggregate::<Transfer>().build().unwrap()
}

async fn accounts(app: &Orchestrix) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [a, b] {
        app.execute(id, OpenAccount { owner: "o".into() }).await.unwrap();
        app.execute(id, Deposit { amount: 1_000 }).await.unwrap();
    }
    (a, b)
}

async fn status_after(manager: &SagaManager<TransferSaga>, saga: Uuid, wait: Duration) -> Option<SagaStatus> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let status = manager.status(saga).await.unwrap().map(|s| s.status);
        if matches!(status, Some(SagaStatus::Completed | SagaStatus::Failed)) || tokio::time::Instant::now() >= deadline
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manager_stands_by_until_the_first_stops() {
    let events = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let leases = InMemoryLeases::new();
    let app = app(&events);
    let engine = ProjectionEngine::new(events.clone(), checkpoints.clone());
    let first = SagaManager::new(app.clone(), TransferSaga).with_leases(leases.clone());
    let second = SagaManager::new(app.clone(), TransferSaga).with_leases(leases.clone());
    let first_handle = first.clone().spawn(&engine, ProjectionOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second_handle = second.clone().spawn(&engine, ProjectionOptions::default()).await.unwrap();
    let (a, b) = accounts(&app).await;

    let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: a, to: b, amount: 10 }).await.unwrap();
    let saga = requested.events[0].id;
    assert_eq!(status_after(&first, saga, Duration::from_secs(10)).await, Some(SagaStatus::Completed));
    // The standby follows nothing.
    assert_eq!(second_handle.status().position, 0);

    first_handle.stop().await.unwrap();
    let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: a, to: b, amount: 20 }).await.unwrap();
    let saga = requested.events[0].id;
    assert_eq!(status_after(&second, saga, Duration::from_secs(10)).await, Some(SagaStatus::Completed));
    assert_eq!(app.load::<Account>(&b).await.unwrap().state.balance, 1_030);
    second_handle.stop().await.unwrap();
}

/// Leases whose holders can be made to fail their checks, as a holder
/// that was taken over would.
#[derive(Debug, Clone, Default)]
struct Revocable {
    inner: InMemoryLeases,
    revoked: Arc<AtomicBool>,
}

#[derive(Debug)]
struct RevocableLease {
    inner: Box<dyn Lease>,
    revoked: Arc<AtomicBool>,
}

#[async_trait]
impl Leases for Revocable {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        if self.revoked.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let lease = self.inner.try_acquire(name).await?;
        Ok(lease.map(|inner| Box::new(RevocableLease { inner, revoked: Arc::clone(&self.revoked) }) as Box<dyn Lease>))
    }
}

#[async_trait]
impl Lease for RevocableLease {
    async fn check(&mut self) -> Result<(), StoreError> {
        if self.revoked.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("revoked".into()));
        }
        self.inner.check().await
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.release().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_lost_its_lease_runs_no_step_until_it_holds_it_again() {
    let events = InMemoryEventStore::new();
    let leases = Revocable::default();
    let app = app(&events);
    let engine = ProjectionEngine::new(events.clone(), InMemoryCheckpointStore::new());
    let manager = SagaManager::new(app.clone(), TransferSaga).with_leases(leases.clone());
    let handle = manager.clone().spawn(&engine, ProjectionOptions::default()).await.unwrap();
    let (a, b) = accounts(&app).await;
    let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: a, to: b, amount: 10 }).await.unwrap();
    assert_eq!(
        status_after(&manager, requested.events[0].id, Duration::from_secs(10)).await,
        Some(SagaStatus::Completed)
    );

    // Lost: within a check interval the runner stops, and no step runs.
    leases.revoked.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: a, to: b, amount: 20 }).await.unwrap();
    let saga = requested.events[0].id;
    let meanwhile = status_after(&manager, saga, Duration::from_millis(1_500)).await;
    assert!(!matches!(meanwhile, Some(SagaStatus::Completed | SagaStatus::Failed)), "{meanwhile:?}");
    // Handing it to the manager by hand is refused as well: the instance
    // starts (recording that is harmless), its first step does not run.
    let start = app.event_store().read_stream(&requested.events[0].stream, 1).next().await.unwrap().unwrap();
    let refused = manager.handle_event(&start).await;
    assert!(matches!(refused, Err(SagaError::LeaseNotHeld { .. })), "{refused:?}");
    assert_eq!(app.load::<Account>(&a).await.unwrap().state.balance, 990, "no debit without the lease");

    // Held again: the runner takes over where it stopped.
    leases.revoked.store(false, Ordering::SeqCst);
    assert_eq!(status_after(&manager, saga, Duration::from_secs(10)).await, Some(SagaStatus::Completed));
    assert_eq!(app.load::<Account>(&a).await.unwrap().state.balance, 970);
    handle.stop().await.unwrap();
}
