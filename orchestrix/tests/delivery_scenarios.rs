//! The delivery scenarios (`orchestrix::testing::delivery`, ADR 0025)
//! against the in-process engine and the in-memory stores.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::error::BoxError;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{
    DropOutcome, PoisonPolicy, Projection, ProjectionEngine, ProjectionError, ProjectionHandle, ProjectionOptions,
    ProjectionStatus, RetryOutcome,
};
use orchestrix::testing::delivery::{self, Capabilities, Faults, Harness, Running};
use orchestrix::{
    envelope::RecordedEvent,
    retry::RetryPolicy,
    store::{DeadLetterStore, EventFilter, EventStore},
    StreamId, Uuid,
};

type Journal = Arc<Mutex<Vec<(StreamId, u64)>>>;

struct Scenario {
    name: String,
    faults: Faults,
    journal: Journal,
}

#[async_trait]
impl Projection for Scenario {
    fn name(&self) -> Cow<'static, str> {
        self.name.clone().into()
    }

    fn filter(&self) -> EventFilter {
        delivery::filter()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.faults.check(event)?;
        self.journal.lock().unwrap().push((event.stream.clone(), event.stream_version));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.journal.lock().unwrap().clear();
        Ok(())
    }
}

struct InProcess {
    events: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    dead_letters: InMemoryDeadLetterStore,
    engine: ProjectionEngine,
    journals: Mutex<HashMap<String, Journal>>,
}

impl InProcess {
    fn new() -> Self {
        let (events, dead_letters) = (InMemoryEventStore::new(), InMemoryDeadLetterStore::new());
        let checkpoints = InMemoryCheckpointStore::new();
        let engine = ProjectionEngine::new(events.clone(), checkpoints.clone()).with_dead_letters(dead_letters.clone());
        Self { events, checkpoints, dead_letters, engine, journals: Mutex::default() }
    }

    fn journal_of(&self, name: &str) -> Journal {
        Arc::clone(self.journals.lock().unwrap().entry(name.to_owned()).or_default())
    }
}

fn options() -> ProjectionOptions {
    ProjectionOptions::default()
        .poison(PoisonPolicy::Park)
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .checkpoint_every(1)
}

struct EngineRunning(ProjectionHandle<Scenario>);

#[async_trait]
impl Running for EngineRunning {
    async fn wait_caught_up(&mut self) -> Result<ProjectionStatus, ProjectionError> {
        self.0.wait_caught_up(Duration::from_secs(10)).await
    }
    async fn retry(&mut self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        self.0.retry_dead_letter(id).await
    }
    async fn retry_all(&mut self) -> Result<RetryOutcome, ProjectionError> {
        self.0.retry_dead_letters().await
    }
    async fn drop_letter(&mut self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.0.drop_dead_letter(id).await
    }
    async fn stop(self: Box<Self>) -> Result<(), ProjectionError> {
        self.0.stop().await.map(drop)
    }
}

#[async_trait]
impl Harness for InProcess {
    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.events.clone())
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        Arc::new(self.dead_letters.clone())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_rebuild(true)
    }

    async fn start(&self, name: &str, faults: Faults) -> Box<dyn Running> {
        let projection = Scenario { name: name.to_owned(), faults, journal: self.journal_of(name) };
        Box::new(EngineRunning(self.engine.spawn(projection, options())))
    }

    async fn rebuild(&self, name: &str, faults: Faults) -> Result<u64, ProjectionError> {
        let mut projection = Scenario { name: name.to_owned(), faults, journal: self.journal_of(name) };
        Ok(self.engine.rebuild(&mut projection, options(), |_| {}).await?.position)
    }

    async fn journal(&self, name: &str) -> Vec<(StreamId, u64)> {
        self.journal_of(name).lock().unwrap().clone()
    }
}

#[tokio::test]
async fn the_engine_passes_the_delivery_scenarios() {
    delivery::run_all(&InProcess::new()).await;
}

/// A retry while the projection is stopped goes through the engine, with
/// the same semantics.
#[tokio::test]
async fn a_stopped_projection_is_retried_through_the_engine() {
    let harness = InProcess::new();
    let (faults, a) = (Faults::default(), StreamId::new("A", "1").unwrap());
    faults.fail(&a, 1);
    let events = (0..2).map(|_| {
        orchestrix::envelope::NewEvent::new(
            delivery::HANDLED,
            1,
            serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        )
    });
    harness.events.append(&a, orchestrix::store::ExpectedVersion::Any, events.collect()).await.unwrap();
    let mut running = harness.start("offline", faults.clone()).await;
    running.wait_caught_up().await.unwrap();
    running.stop().await.unwrap();
    let letters = harness.dead_letters.list(Some("offline")).await.unwrap();
    assert_eq!(letters.len(), 2);
    faults.heal(&a, 1);
    let mut projection = Scenario { name: "offline".into(), faults, journal: harness.journal_of("offline") };
    let outcome = harness.engine.retry_dead_letters(&mut projection).await.unwrap();
    assert_eq!(outcome.applied, letters.iter().map(|l| l.id).collect::<Vec<_>>());
    assert_eq!(harness.journal("offline").await, vec![(a.clone(), 1), (a, 2)]);
}

/// Events delivered again after a crash (here: the checkpoint lost) are
/// not parked twice, and an event older than its stream's first letter is
/// handled again as any redelivery, not parked behind it.
#[tokio::test]
async fn redelivered_events_are_not_parked_twice() {
    let harness = InProcess::new();
    let (faults, a) = (Faults::default(), StreamId::new("A", "redelivered").unwrap());
    faults.fail(&a, 2);
    let events = (0..3).map(|_| {
        orchestrix::envelope::NewEvent::new(
            delivery::HANDLED,
            1,
            serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        )
    });
    harness.events.append(&a, orchestrix::store::ExpectedVersion::Any, events.collect()).await.unwrap();
    let mut running = harness.start("again", faults.clone()).await;
    running.wait_caught_up().await.unwrap();
    running.stop().await.unwrap();
    let before = harness.dead_letters.list(Some("again")).await.unwrap();
    assert_eq!(before.len(), 2);

    orchestrix::store::CheckpointStore::delete(&harness.checkpoints, "again").await.unwrap();
    let mut running = harness.start("again", faults).await;
    running.wait_caught_up().await.unwrap();
    running.stop().await.unwrap();
    let after = harness.dead_letters.list(Some("again")).await.unwrap();
    assert_eq!(
        after.iter().map(|l| l.id).collect::<Vec<_>>(),
        before.iter().map(|l| l.id).collect::<Vec<_>>(),
        "the same letters, none added"
    );
    assert_eq!(harness.journal("again").await, vec![(a.clone(), 1), (a, 1)], "version 1 came again, at least once");
}
