//! Two saga runners on one SQLite file (ADR 0007, ADR 0032): a restart
//! that overlaps the old process, or the example started twice. Each
//! runner leases the saga kind from the store, so only one runs steps at a
//! time; the other logs that it waits, a metric counts the wait, and it
//! takes over when the first stops. Every step's effect lands exactly once
//! and the money is conserved.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bank::{Account, CloseAccount, Deposit, OpenAccount, RequestTransfer, Transfer, TransferSaga};
use futures_util::TryStreamExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use orchestrix::projection::{ProjectionEngine, ProjectionHandle, ProjectionOptions};
use orchestrix::saga::{step_id, SagaManager, SagaStatus, StepKind};
use orchestrix::{
    store::{EventFilter, EventStore},
    Orchestrix, Uuid,
};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

/// The log lines of this test binary (one global subscriber: the runners
/// log from the runtime's worker threads).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The metrics recorder of this test binary.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        handle
    })
}

struct Runner {
    app: Orchestrix,
    store: SqliteStore,
    manager: SagaManager<TransferSaga>,
    handle: ProjectionHandle<SagaManager<TransferSaga>>,
}

/// One "process": its own store instance on the file, application, engine
/// and leased saga manager.
async fn runner(path: &Path) -> Runner {
    let config = SqliteConfig::default().with_poll_interval(Duration::from_millis(20));
    let store = SqliteStore::open(path, config).await.unwrap();
    let app = Orchestrix::builder()
        .event_store(store.clone())
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .build()
        .unwrap();
    let engine = ProjectionEngine::new(store.clone(), store.clone());
    let manager = SagaManager::new(app.clone(), TransferSaga).with_leases(store.clone());
    let handle = manager.clone().spawn(&engine, ProjectionOptions::default()).await.unwrap();
    Runner { app, store, manager, handle }
}

/// Requests `count` transfers of 100 to 1,000 cents among `accounts`,
/// concurrently, and returns their start events' ids (the saga ids).
async fn request_transfers(app: &Orchestrix, accounts: &[Uuid], count: usize, seed: usize) -> Vec<Uuid> {
    let requests = (0..count).map(|i| {
        let n = seed + i;
        let from = accounts[n % accounts.len()];
        let to = accounts[(n * 7 + 3) % accounts.len()];
        let amount = 100 + (n as u64 * 137) % 900;
        let app = app.clone();
        tokio::spawn(async move {
            let requested = app.execute(Uuid::now_v7(), RequestTransfer { from, to, amount }).await.unwrap();
            requested.events[0].id
        })
    });
    let mut ids = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        ids.push(request.await.unwrap());
    }
    ids
}

/// Waits until every saga in `ids` has ended, and returns how many
/// completed and how many were compensated.
async fn ended(manager: &SagaManager<TransferSaga>, ids: &[Uuid]) -> (usize, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut counts = (0, 0);
        let mut open = 0;
        for id in ids {
            match manager.status(*id).await.unwrap() {
                Some(saga) if saga.status == SagaStatus::Completed => counts.0 += 1,
                Some(saga) if saga.status == SagaStatus::Failed => {
                    assert!(saga.is_compensated(), "saga {id} failed without compensation: {saga:?}");
                    counts.1 += 1;
                }
                _ => open += 1,
            }
        }
        if open == 0 {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} sagas did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_file_run_every_step_once() {
    let (logs, metrics) = (logs(), prometheus());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let first = runner(&path).await;
    let second = runner(&path).await;

    // Five funded accounts and a closed one: transfers to it are refunded.
    let mut accounts = Vec::new();
    for i in 0..5 {
        let id = Uuid::now_v7();
        first.app.execute(id, OpenAccount { owner: format!("owner {i}") }).await.unwrap();
        first.app.execute(id, Deposit { amount: 10_000 }).await.unwrap();
        accounts.push(id);
    }
    let closed = Uuid::now_v7();
    first.app.execute(closed, OpenAccount { owner: "gone".into() }).await.unwrap();
    first.app.execute(closed, CloseAccount).await.unwrap();
    accounts.push(closed);

    // Both runners follow the same log; requests come through both.
    let mut sagas = request_transfers(&first.app, &accounts, 30, 0).await;
    sagas.extend(request_transfers(&second.app, &accounts, 30, 30).await);
    // Stop the first runner halfway: the second takes the lease over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.handle.stop().await.unwrap();
    sagas.extend(request_transfers(&second.app, &accounts, 20, 60).await);
    let (completed, compensated) = ended(&second.manager, &sagas).await;
    assert_eq!(completed + compensated, sagas.len());
    assert!(compensated > 0, "the closed account refuses credits");
    assert!(second.manager.incomplete().await.unwrap().is_empty());

    // Every step execution's effect is recorded once, under its step id.
    let step_ids: HashSet<Uuid> = sagas
        .iter()
        .flat_map(|saga| {
            [(0, StepKind::Action), (0, StepKind::Compensation), (1, StepKind::Action)]
                .map(|(step, kind)| step_id(*saga, step, kind))
        })
        .collect();
    let log: Vec<_> = second.store.read_all(1, &EventFilter::all()).try_collect().await.unwrap();
    let mut effects: HashMap<Uuid, usize> = HashMap::new();
    for event in log.iter().filter(|e| e.stream.category() == "Account") {
        if let Some(cause) = event.metadata.causation_id.filter(|c| step_ids.contains(c)) {
            *effects.entry(cause).or_default() += 1;
        }
    }
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} step effects recorded more than once: {twice:?}", twice.len());
    // A completed saga has a debit and a credit, a compensated one a debit
    // and a refund (or nothing, if the debit was refused).
    assert!(effects.len() >= 2 * completed, "{} effects for {completed} completed sagas", effects.len());

    // Money is conserved.
    let mut total = 0;
    for account in &accounts {
        total += second.app.load::<Account>(account).await.unwrap().state.balance;
    }
    assert_eq!(total, 5 * 10_000);

    // The second runner was visible: it logged its wait, and the metric
    // counted it.
    let text = String::from_utf8(logs.lock().unwrap_or_else(PoisonError::into_inner).clone()).unwrap();
    assert!(text.contains("another runner holds the lease; waiting for it"), "{text}");
    assert!(text.contains("took the lease another runner held"), "{text}");
    let rendered = metrics.render();
    assert!(rendered.contains(r#"orchestrix_lease_waits_total{lease="saga:Transfer"}"#), "{rendered}");
    second.handle.stop().await.unwrap();
}
