//! The delivery scenarios (`orchestrix::testing::delivery`, ADR 0025)
//! against the in-process engine and the in-memory stores.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{PoisonPolicy, ProjectionEngine, ProjectionError, ProjectionOptions};
use orchestrix::testing::delivery::{self, Capabilities, Faults, Harness, JournalProjection, Journals, Running};
use orchestrix::{
    retry::RetryPolicy,
    store::{DeadLetterStore, EventStore},
    StreamId,
};

struct InProcess {
    events: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    dead_letters: InMemoryDeadLetterStore,
    engine: ProjectionEngine,
    journals: Journals,
}

impl InProcess {
    fn new() -> Self {
        let (events, dead_letters) = (InMemoryEventStore::new(), InMemoryDeadLetterStore::new());
        let checkpoints = InMemoryCheckpointStore::new();
        let engine = ProjectionEngine::new(events.clone(), checkpoints.clone()).with_dead_letters(dead_letters.clone());
        Self { events, checkpoints, dead_letters, engine, journals: Journals::default() }
    }

    /// Appends `count` events the scenario projection handles to `stream`.
    async fn handled(&self, stream: &StreamId, count: usize) {
        let events = (0..count).map(|_| {
            orchestrix::envelope::NewEvent::new(
                delivery::HANDLED,
                1,
                serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            )
        });
        self.events.append(stream, orchestrix::store::ExpectedVersion::Any, events.collect()).await.unwrap();
    }

    fn projection(&self, name: &str, faults: Faults) -> JournalProjection {
        JournalProjection::new(name, faults, self.journals.of(name))
    }
}

fn options() -> ProjectionOptions {
    ProjectionOptions::default()
        .poison(PoisonPolicy::Park)
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .checkpoint_every(1)
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
        Box::new(self.engine.spawn(self.projection(name, faults), options()))
    }

    async fn rebuild(&self, name: &str, faults: Faults) -> Result<u64, ProjectionError> {
        Ok(self.engine.rebuild(&mut self.projection(name, faults), options(), |_| {}).await?.position)
    }

    async fn journal(&self, name: &str) -> Vec<(StreamId, u64)> {
        self.journals.entries(name)
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
    harness.handled(&a, 2).await;
    let mut running = harness.start("offline", faults.clone()).await;
    running.wait_caught_up().await.unwrap();
    running.stop().await.unwrap();
    let letters = harness.dead_letters.list(Some("offline")).await.unwrap();
    assert_eq!(letters.len(), 2);
    faults.heal(&a, 1);
    let mut projection = harness.projection("offline", faults);
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
    harness.handled(&a, 3).await;
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
