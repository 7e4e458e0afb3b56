//! The delivery scenarios (`orchestrix::testing::delivery`, ADR 0025)
//! against the NATS runner: the relay publishes an in-memory store to the
//! real JetStream at `ORCHESTRIX_NATS_URL`, a `ProjectionWorker` runs the
//! scenario projection, parking in an in-memory dead-letter store.
//!
//! The worker has no single position: the harness waits until the relay
//! has published up to the store's head, then until the worker's
//! per-partition positions (`WorkerStatus::positions`) reach the last
//! event up to the head of each partition.

mod nats_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use nats_support::{client, Place};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{
    DropOutcome, PoisonPolicy, ProjectionError, ProjectionState, ProjectionStatus, RetryOutcome,
};
use orchestrix::retry::RetryPolicy;
use orchestrix::store::{DeadLetterStore, EventFilter, EventStore};
use orchestrix::testing::delivery::{self, Capabilities, Faults, Harness, JournalProjection, Journals, Running};
use orchestrix::{StreamId, Uuid};
use orchestrix_adapters::nats::{
    ProjectionWorker, Relay, RelayHandle, RelayOptions, SoleWorker, Subjects, WorkerHandle, WorkerOptions,
};

/// How long one wait for the relay or the worker lasts.
const WAIT: Duration = Duration::from_secs(30);

/// One JetStream stream for the whole suite, fed by one relay; each
/// scenario's worker has its own name, hence its own durable consumers.
struct Nats {
    place: Place,
    events: InMemoryEventStore,
    dead_letters: InMemoryDeadLetterStore,
    relay: Arc<tokio::sync::Mutex<Option<RelayHandle>>>,
    journals: Journals,
}

impl Nats {
    async fn new(partitions: u32) -> Option<Self> {
        let place = Place::new(client().await?, partitions);
        let events = InMemoryEventStore::new();
        let options = RelayOptions::default().window(16).checkpoint_every(1);
        let relay = Relay::new(
            place.client.clone(),
            events.clone(),
            InMemoryCheckpointStore::new(),
            place.subjects.clone(),
            place.stream.clone(),
            options,
        )
        .spawn();
        let relay = Arc::new(tokio::sync::Mutex::new(Some(relay)));
        Some(Self { place, events, dead_letters: InMemoryDeadLetterStore::new(), relay, journals: Journals::default() })
    }

    async fn finish(self) {
        if let Some(relay) = self.relay.lock().await.take() {
            relay.stop().await.unwrap();
        }
        self.place.delete().await;
    }
}

struct WorkerRunning {
    name: String,
    handle: WorkerHandle<JournalProjection>,
    events: InMemoryEventStore,
    subjects: Subjects,
    relay: Arc<tokio::sync::Mutex<Option<RelayHandle>>>,
}

impl WorkerRunning {
    fn timeout(&self, position: u64, reached: u64) -> ProjectionError {
        ProjectionError::Timeout { projection: self.name.clone(), position, reached, waited: WAIT }
    }
}

#[async_trait]
impl Running for WorkerRunning {
    /// Waits until the relay has published the store's head and the
    /// worker has finished, in each partition, the last event up to it.
    async fn wait_caught_up(&mut self) -> Result<ProjectionStatus, ProjectionError> {
        let store = |source| ProjectionError::Store { projection: self.name.clone(), source };
        let head = self.events.head_position().await.map_err(store)?.unwrap_or(0);
        {
            let mut relay = self.relay.lock().await;
            let relay = relay.as_mut().expect("the relay runs while the scenarios do");
            let published = tokio::time::timeout(WAIT, relay.wait_for_position(head)).await;
            let reached = relay.status().position;
            if published.is_err() || reached < head {
                return Err(self.timeout(head, reached));
            }
        }
        // The last event up to the head of each partition.
        let mut targets: BTreeMap<u32, u64> = BTreeMap::new();
        let all = EventFilter::all();
        let mut read = self.events.read_all(0, &all);
        while let Some(event) = read.next().await {
            let event = event.map_err(store)?;
            if event.global_position > head {
                break;
            }
            targets.insert(self.subjects.partition(&event.stream), event.global_position);
        }
        drop(read);
        let reached = |status: &orchestrix_adapters::nats::WorkerStatus| {
            targets.iter().all(|(partition, target)| status.positions.get(partition).is_some_and(|at| at >= target))
        };
        let Ok(status) = tokio::time::timeout(WAIT, self.handle.wait_for(reached)).await else {
            // The least position among the partitions still behind.
            let positions = self.handle.status().positions;
            let behind = targets.iter().filter(|(p, target)| positions.get(p).is_none_or(|at| at < target));
            let at = behind.map(|(p, _)| positions.get(p).copied().unwrap_or(0)).min().unwrap_or(head);
            return Err(self.timeout(head, at));
        };
        if let Some(failed) = status.failed {
            return Err(ProjectionError::Ended(self.name.clone(), failed));
        }
        Ok(ProjectionStatus::new(ProjectionState::Live, head, status.handled, status.parked))
    }
    async fn retry(&mut self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        self.handle.retry_dead_letter(id).await
    }
    async fn retry_all(&mut self) -> Result<RetryOutcome, ProjectionError> {
        self.handle.retry_dead_letters().await
    }
    async fn drop_letter(&mut self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.handle.drop_dead_letter(id).await
    }
    async fn stop(self: Box<Self>) -> Result<(), ProjectionError> {
        let name = self.name.clone();
        self.handle.stop().await.map(drop).map_err(|error| ProjectionError::Ended(name, error.to_string()))
    }
}

#[async_trait]
impl Harness for Nats {
    fn events(&self) -> Arc<dyn EventStore> {
        Arc::new(self.events.clone())
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        Arc::new(self.dead_letters.clone())
    }

    /// No rebuild: ADR 0025 (rebuild the read model from the store with
    /// the engine, then let the worker go on).
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    async fn rebuild(&self, name: &str, _: Faults) -> Result<u64, ProjectionError> {
        Err(ProjectionError::Unsupported {
            projection: name.to_owned(),
            operation: "rebuilding (a NATS worker has no rebuild, ADR 0025)",
        })
    }

    async fn start(&self, name: &str, faults: Faults) -> Box<dyn Running> {
        let projection = JournalProjection::new(name, faults, self.journals.of(name));
        let worker = ProjectionWorker::new(
            self.place.client.clone(),
            self.place.subjects.clone(),
            self.place.stream.clone(),
            SoleWorker,
        )
        .with_dead_letters(self.dead_letters.clone());
        let options = WorkerOptions::default()
            .poison(PoisonPolicy::Park)
            .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
            .lease_interval(Duration::from_millis(100));
        let mut handle = worker.spawn(projection, options);
        // A sole worker takes every partition on its first round; the
        // suite's retries need the partitions held.
        let partitions = self.place.subjects.partitions() as usize;
        tokio::time::timeout(WAIT, handle.wait_for(|s| s.partitions.len() == partitions))
            .await
            .expect("the worker takes every partition");
        Box::new(WorkerRunning {
            name: name.to_owned(),
            handle,
            events: self.events.clone(),
            subjects: self.place.subjects.clone(),
            relay: Arc::clone(&self.relay),
        })
    }

    async fn journal(&self, name: &str) -> Vec<(StreamId, u64)> {
        self.journals.entries(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_worker_passes_the_delivery_scenarios() {
    let Some(nats) = Nats::new(3).await else { return };
    delivery::run_all(&nats).await;
    nats.finish().await;
}
