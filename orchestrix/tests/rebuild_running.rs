//! Rebuilding a running projection through its handle (ADR 0050,
//! "Rebuilding a running projection"), against the in-memory stores: the
//! awkward cases of the ADR, each as a test.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::error::BoxError;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{
    PoisonPolicy, Projection, ProjectionEngine, ProjectionError, ProjectionOptions, ProjectionState,
};
use orchestrix::store::{CheckpointStore, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore, ExpectedVersion};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    retry::RetryPolicy,
    StreamId,
};
use serde_json::value::RawValue;
use uuid::Uuid;

/// How long a test waits for a projection before it fails.
const WAIT: Duration = Duration::from_secs(30);

fn event(n: u64) -> NewEvent {
    NewEvent::new("Noted", 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap())
}

fn stream(name: &str) -> StreamId {
    StreamId::new("Ledger", name).unwrap()
}

/// Records every event it applies, as (stream, version, n); refuses the
/// events whose `n` is in `refused` while `broken` is set. Its reset
/// empties the record and counts itself.
#[derive(Clone, Default)]
struct Ledger {
    applied: Arc<Mutex<Vec<(String, u64, u64)>>>,
    resets: Arc<Mutex<u32>>,
    broken: Arc<AtomicBool>,
    refused: Vec<u64>,
}

impl Ledger {
    fn applied(&self) -> Vec<(String, u64, u64)> {
        self.applied.lock().unwrap().clone()
    }
}

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> Cow<'static, str> {
        "ledger".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let value: serde_json::Value = serde_json::from_str(event.data.get())?;
        let n = value["n"].as_u64().ok_or("no n")?;
        if self.broken.load(Ordering::SeqCst) && self.refused.contains(&n) {
            return Err(format!("event {n} refused").into());
        }
        self.applied.lock().unwrap().push((event.stream.id().to_owned(), event.stream_version, n));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.applied.lock().unwrap().clear();
        *self.resets.lock().unwrap() += 1;
        Ok(())
    }
}

struct World {
    events: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    letters: InMemoryDeadLetterStore,
}

impl World {
    fn new() -> Self {
        Self {
            events: InMemoryEventStore::new(),
            checkpoints: InMemoryCheckpointStore::new(),
            letters: InMemoryDeadLetterStore::new(),
        }
    }

    fn engine(&self) -> ProjectionEngine {
        ProjectionEngine::new(self.events.clone(), self.checkpoints.clone()).with_dead_letters(self.letters.clone())
    }

    async fn append(&self, name: &str, from: u64, to: u64) {
        let events = (from..=to).map(event).collect();
        self.events.append(&stream(name), ExpectedVersion::Any, events).await.unwrap();
    }

    async fn letters(&self) -> Vec<Uuid> {
        let letters = self.letters.query(&DeadLetterQuery::consumer("ledger")).await.unwrap();
        letters.into_iter().map(|letter| letter.id).collect()
    }
}

fn parking() -> ProjectionOptions {
    ProjectionOptions::default().poison(PoisonPolicy::Park).retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
}

/// What a fresh projection makes of the whole log: the engine's rebuild of
/// a new ledger over the same events, with stores of its own.
async fn fresh_replay(world: &World) -> Vec<(String, u64, u64)> {
    let fresh = Ledger::default();
    let engine = ProjectionEngine::new(world.events.clone(), InMemoryCheckpointStore::new());
    engine.rebuild(&mut fresh.clone(), ProjectionOptions::default(), |_| {}).await.unwrap();
    fresh.applied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_live_ends_with_the_read_model_of_a_fresh_full_replay() {
    let world = World::new();
    world.append("a", 1, 400).await;
    world.append("b", 401, 600).await;
    let ledger = Ledger::default();
    let mut handle = world.engine().spawn(ledger.clone(), ProjectionOptions::default().checkpoint_every(50));
    let live = handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(live.position, 600);

    handle.rebuild().await.unwrap();
    assert_eq!(*ledger.resets.lock().unwrap(), 1, "the read model was reset once");
    // Events appended during the replay are handled once, after the
    // older ones of their stream.
    world.append("a", 601, 650).await;
    let status = handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(status.position, 650);
    assert!(matches!(status.state, ProjectionState::CatchingUp | ProjectionState::Live), "{status:?}");

    assert_eq!(ledger.applied(), fresh_replay(&world).await, "the same read model as a fresh full replay");
    let ledger = handle.stop().await.unwrap();
    assert_eq!(ledger.applied().len(), 650);
    assert_eq!(world.checkpoints.load("ledger").await.unwrap(), Some(650), "the checkpoint is saved again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_purges_the_dead_letters_and_parks_again_what_still_fails() {
    let world = World::new();
    world.append("a", 1, 4).await;
    world.append("b", 5, 6).await;
    let ledger = Ledger { refused: vec![3], ..Ledger::default() };
    ledger.broken.store(true, Ordering::SeqCst);
    let mut handle = world.engine().spawn(ledger.clone(), parking());
    handle.wait_caught_up(WAIT).await.unwrap();
    let before = world.letters().await;
    assert_eq!(before.len(), 2, "3 failed, 4 waits behind it");

    // Still failing: purged, then parked again as new letters.
    handle.rebuild().await.unwrap();
    handle.wait_caught_up(WAIT).await.unwrap();
    let again = world.letters().await;
    assert_eq!(again.len(), 2, "parked again");
    assert!(again.iter().all(|id| !before.contains(id)), "the old letters were purged: {before:?} {again:?}");
    let applied: Vec<u64> = ledger.applied().iter().map(|(_, _, n)| *n).collect();
    assert_eq!(applied, vec![1, 2, 5, 6]);

    // Healed: the rebuild applies everything and forgets the parked
    // stream (its set is reloaded: a new event of `a` is applied).
    ledger.broken.store(false, Ordering::SeqCst);
    handle.rebuild().await.unwrap();
    world.append("a", 7, 7).await;
    handle.wait_caught_up(WAIT).await.unwrap();
    assert!(world.letters().await.is_empty(), "nothing parked any more");
    assert_eq!(ledger.applied(), fresh_replay(&world).await);
    let applied: Vec<u64> = ledger.applied().iter().map(|(_, _, n)| *n).collect();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6, 7]);
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_projection_refuses_a_rebuild_and_rebuilds_once_resumed() {
    let world = World::new();
    world.append("a", 1, 20).await;
    let ledger = Ledger::default();
    let mut handle = world.engine().spawn(ledger.clone(), ProjectionOptions::default());
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(handle.pause(WAIT).await.unwrap().state, ProjectionState::Paused);

    let refused = handle.rebuild().await.unwrap_err();
    assert!(matches!(refused, ProjectionError::Paused(ref name) if name == "ledger"), "{refused}");
    assert_eq!(*ledger.resets.lock().unwrap(), 0, "nothing was reset");
    assert_eq!(world.checkpoints.load("ledger").await.unwrap(), Some(20), "the checkpoint stays");
    assert_eq!(handle.status().state, ProjectionState::Paused, "still paused");

    handle.resume().await.unwrap();
    handle.rebuild().await.unwrap();
    handle.wait_caught_up(WAIT).await.unwrap();
    assert_eq!(*ledger.resets.lock().unwrap(), 1);
    assert_eq!(ledger.applied(), fresh_replay(&world).await);
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_an_ended_projection_is_a_typed_error() {
    let world = World::new();
    world.append("a", 1, 5).await;
    let ledger = Ledger { refused: vec![3], ..Ledger::default() };
    ledger.broken.store(true, Ordering::SeqCst);
    let options = ProjectionOptions::default().retry(RetryPolicy::fixed(1, Duration::from_millis(1)));
    let mut handle = world.engine().spawn(ledger.clone(), options.poison(PoisonPolicy::Stop));
    let status = handle.wait_caught_up(WAIT).await.unwrap();
    assert!(matches!(status.state, ProjectionState::Failed(_)), "{status:?}");

    let refused = handle.rebuild().await.unwrap_err();
    assert!(matches!(refused, ProjectionError::Ended(ref name, _) if name == "ledger"), "{refused}");
    assert_eq!(*ledger.resets.lock().unwrap(), 0, "nothing was reset");
    assert_eq!(world.checkpoints.load("ledger").await.unwrap(), Some(2), "the checkpoint stays");
}
