//! The projection engine against the in-memory stores: catch-up and live,
//! filters, checkpoints, poison policies, dead letters, rebuilds,
//! independence, and crashes at random points.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use orchestrix::error::BoxError;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{PoisonPolicy, Projection, ProjectionEngine, ProjectionError, ProjectionOptions};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    retry::RetryPolicy,
    store::{CheckpointStore, DeadLetterStore, EventFilter, EventStore, ExpectedVersion},
    StreamId,
};
use serde_json::value::RawValue;

/// How long a test waits for a projection before it fails.
const WAIT: Duration = Duration::from_secs(30);

fn event(event_type: &str, amount: u64) -> NewEvent {
    NewEvent::new(event_type, 1, RawValue::from_string(format!(r#"{{"amount":{amount}}}"#)).unwrap())
}

fn stream(n: u64) -> StreamId {
    StreamId::new("Account", n.to_string()).unwrap()
}

async fn append(store: &InMemoryEventStore, stream_no: u64, events: Vec<NewEvent>) {
    store.append(&stream(stream_no), ExpectedVersion::Any, events).await.unwrap();
}

fn amount(event: &RecordedEvent) -> Result<u64, BoxError> {
    let value: serde_json::Value = serde_json::from_str(event.data.get())?;
    value["amount"].as_u64().ok_or_else(|| "no amount".into())
}

/// Balances per stream: idempotent, because it remembers the last stream
/// version it applied per stream and skips anything at or below it.
#[derive(Clone, Default)]
struct Balances {
    model: Arc<Mutex<HashMap<StreamId, (u64, u64)>>>,
    deliveries: Arc<AtomicU64>,
    fail_on_amount: Option<u64>,
    failures_left: Arc<AtomicU64>,
    delay: Option<Duration>,
    name: &'static str,
}

impl Balances {
    fn named(name: &'static str) -> Self {
        Self { name, ..Self::default() }
    }

    fn snapshot(&self) -> HashMap<StreamId, (u64, u64)> {
        self.model.lock().unwrap().clone()
    }

    fn total(&self) -> u64 {
        self.model.lock().unwrap().values().map(|(balance, _)| balance).sum()
    }
}

#[async_trait]
impl Projection for Balances {
    fn name(&self) -> Cow<'static, str> {
        self.name.into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::types(["Deposited"])
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let amount = amount(event)?;
        if self.fail_on_amount == Some(amount) && self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(format!("cannot handle amount {amount}").into());
        }
        let mut model = self.model.lock().unwrap();
        let entry = model.entry(event.stream.clone()).or_default();
        if event.stream_version > entry.1 {
            *entry = (entry.0 + amount, event.stream_version);
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.model.lock().unwrap().clear();
        Ok(())
    }
}

struct Setup {
    store: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    dead_letters: InMemoryDeadLetterStore,
    engine: ProjectionEngine,
}

fn setup() -> Setup {
    let store = InMemoryEventStore::new();
    let checkpoints = InMemoryCheckpointStore::new();
    let dead_letters = InMemoryDeadLetterStore::new();
    let engine = ProjectionEngine::new(store.clone(), checkpoints.clone()).with_dead_letters(dead_letters.clone());
    Setup { store, checkpoints, dead_letters, engine }
}

fn quick_retries() -> ProjectionOptions {
    ProjectionOptions::default().retry(RetryPolicy::fixed(3, Duration::from_millis(1)))
}

fn always_failing_on(amount: u64, name: &'static str) -> Balances {
    Balances {
        fail_on_amount: Some(amount),
        failures_left: Arc::new(AtomicU64::new(u64::MAX)),
        ..Balances::named(name)
    }
}

#[tokio::test]
async fn catches_up_then_follows_live_and_keeps_its_checkpoint() {
    let s = setup();
    for n in 0..10 {
        append(&s.store, n, (1..=10).map(|a| event("Deposited", a)).collect()).await;
    }
    append(&s.store, 99, vec![event("Ignored", 1_000)]).await;
    let projection = Balances::named("balances");
    let mut handle = s.engine.spawn(projection.clone(), ProjectionOptions::default());
    assert_eq!(handle.wait_for_position(100, WAIT).await.unwrap().position, 100);
    assert_eq!(projection.total(), 10 * 55);
    append(&s.store, 3, vec![event("Deposited", 7)]).await;
    let status = handle.wait_for_position(102, WAIT).await.unwrap();
    assert_eq!((status.position, status.handled), (102, 101));
    assert_eq!(projection.total(), 10 * 55 + 7, "the filtered-out event was not delivered");
    handle.stop().await.unwrap();
    assert_eq!(s.checkpoints.load("balances").await.unwrap(), Some(102));

    // A restart resumes after the checkpoint: only new events arrive.
    append(&s.store, 4, vec![event("Deposited", 1)]).await;
    let restarted = Balances::named("balances");
    let mut handle = s.engine.spawn(restarted.clone(), ProjectionOptions::default());
    handle.wait_for_position(103, WAIT).await.unwrap();
    assert_eq!(restarted.deliveries.load(Ordering::Relaxed), 1);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn a_poison_event_stops_the_projection_before_it_with_a_typed_error() {
    let s = setup();
    append(&s.store, 1, vec![event("Deposited", 1), event("Deposited", 13), event("Deposited", 2)]).await;
    let projection = always_failing_on(13, "strict");
    let handle = s.engine.spawn(projection.clone(), quick_retries());
    let error = handle.join().await.err().expect("the projection stops");
    let ProjectionError::Poison(poison) = &error else { panic!("expected poison, got {error:?}") };
    assert_eq!((poison.position, poison.stream_version, poison.attempts), (2, 2, 3));
    assert_eq!(poison.stream, stream(1));
    assert!(error.to_string().contains("cannot handle amount 13"), "{error}");
    assert_eq!(s.checkpoints.load("strict").await.unwrap(), Some(1), "the checkpoint stays before the poison");
    assert_eq!(projection.total(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let s = setup();
    append(&s.store, 1, vec![event("Deposited", 13)]).await;
    let projection =
        Balances { fail_on_amount: Some(13), failures_left: Arc::new(AtomicU64::new(2)), ..Balances::named("patient") };
    let mut handle = s.engine.spawn(projection.clone(), quick_retries());
    assert_eq!(handle.wait_for_position(1, WAIT).await.unwrap().parked, 0);
    assert_eq!(projection.total(), 13);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn parked_events_can_be_listed_retried_and_dropped() {
    let s = setup();
    append(&s.store, 1, vec![event("Deposited", 13)]).await;
    append(&s.store, 2, vec![event("Deposited", 2), event("Deposited", 14)]).await;
    let projection = always_failing_on(13, "lenient");
    let options = quick_retries().poison(PoisonPolicy::Park);
    let mut handle = s.engine.spawn(projection.clone(), options);
    let status = handle.wait_for_position(3, WAIT).await.unwrap();
    assert_eq!((status.handled, status.parked), (2, 1));
    assert_eq!(projection.total(), 16, "the projection went on past the poison event");

    let letters = s.dead_letters.list(Some("lenient")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.global_position, 1);
    assert!(letters[0].error.contains("cannot handle amount 13"));
    assert_eq!(letters[0].attempts, 3);

    // Still failing: the letter stays, with one more attempt.
    let outcome = handle.retry_dead_letter(letters[0].id).await.unwrap();
    assert!(outcome.applied.is_empty() && !outcome.is_complete(), "{outcome:?}");
    assert_eq!((outcome.failed.len(), outcome.failed[0].attempts, outcome.still_parked), (1, 4, 1));
    assert_eq!(s.dead_letters.get(letters[0].id).await.unwrap().unwrap().attempts, 4);
    // Fixed: the retry succeeds and removes the letter.
    projection.failures_left.store(0, Ordering::SeqCst);
    let outcome = handle.retry_dead_letter(letters[0].id).await.unwrap();
    assert_eq!(outcome.applied, vec![letters[0].id]);
    assert!(outcome.is_complete());
    assert_eq!(projection.total(), 29);
    assert!(s.dead_letters.list(Some("lenient")).await.unwrap().is_empty());
    assert!(
        matches!(handle.retry_dead_letter(letters[0].id).await, Err(ProjectionError::UnknownDeadLetter { .. })),
        "an unknown id is a typed error"
    );

    // Dropping a dead letter is removing it from the store.
    projection.failures_left.store(u64::MAX, Ordering::SeqCst);
    append(&s.store, 3, vec![event("Deposited", 13)]).await;
    handle.wait_for_position(4, WAIT).await.unwrap();
    let letters = s.dead_letters.list(Some("lenient")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(s.dead_letters.remove(letters[0].id).await.unwrap());
    assert!(s.dead_letters.list(None).await.unwrap().is_empty());
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn parking_without_a_dead_letter_store_is_a_typed_error() {
    let store = InMemoryEventStore::new();
    append(&store, 1, vec![event("Deposited", 13)]).await;
    let engine = ProjectionEngine::new(store, InMemoryCheckpointStore::new());
    let handle = engine.spawn(always_failing_on(13, "nowhere"), quick_retries().poison(PoisonPolicy::Park));
    assert!(matches!(handle.join().await, Err(ProjectionError::NoDeadLetterStore(_))));
}

#[tokio::test]
async fn a_rebuild_starts_from_zero_and_reports_progress() {
    let s = setup();
    for n in 0..20 {
        append(&s.store, n, (1..=50).map(|a| event("Deposited", a)).collect()).await;
    }
    s.checkpoints.save("rebuilt", 1_000).await.unwrap();
    let mut projection = Balances::named("rebuilt");
    projection.model.lock().unwrap().insert(stream(77), (1, 1)); // stale content, to be reset
    let mut reports = Vec::new();
    let done = s.engine.rebuild(&mut projection, ProjectionOptions::default(), |p| reports.push(*p)).await.unwrap();
    assert_eq!((done.events_done, done.position, done.head), (1_000, 1_000, 1_000));
    assert!((done.fraction() - 1.0).abs() < f64::EPSILON);
    assert_eq!(done.eta(), Some(Duration::ZERO));
    assert!(done.to_string().contains("1000 events"), "{done}");
    assert_eq!(reports.last(), Some(&done));
    assert_eq!(projection.total(), 20 * 1_275);
    assert!(!projection.snapshot().contains_key(&stream(77)));
    assert_eq!(s.checkpoints.load("rebuilt").await.unwrap(), Some(1_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_projection_does_not_hold_back_a_fast_one() {
    let s = setup();
    for n in 0..10 {
        append(&s.store, n, (1..=20).map(|a| event("Deposited", a)).collect()).await;
    }
    let slow = Balances { delay: Some(Duration::from_millis(20)), ..Balances::named("slow") };
    let fast = Balances::named("fast");
    let slow_handle = s.engine.spawn(slow.clone(), ProjectionOptions::default());
    let mut fast_handle = s.engine.spawn(fast.clone(), ProjectionOptions::default());
    fast_handle.wait_for_position(200, WAIT).await.unwrap();
    assert_eq!(fast.deliveries.load(Ordering::Relaxed), 200);
    assert!(slow.deliveries.load(Ordering::Relaxed) < 100, "the slow one is still far behind");
    fast_handle.stop().await.unwrap();
    slow_handle.abort();
}

/// Ten crashes at random points while 10,000 events are written: the read
/// model ends equal to a replay from zero, although some events were
/// delivered more than once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_points_leave_the_read_model_equal_to_a_replay() {
    let s = setup();
    let writer = {
        let store = s.store.clone();
        tokio::spawn(async move {
            for batch in 0..1_000u64 {
                append(&store, batch % 37, (0..10).map(|i| event("Deposited", batch * 10 + i)).collect()).await;
                if batch % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let projection = Balances::named("crashy");
    let options = ProjectionOptions::default().checkpoint_every(250);
    for _ in 0..10 {
        let handle = s.engine.spawn(projection.clone(), options);
        tokio::time::sleep(Duration::from_micros(fastrand::u64(200..3_000))).await;
        handle.abort();
    }
    writer.await.unwrap();
    let mut handle = s.engine.spawn(projection.clone(), options);
    handle.wait_for_position(10_000, WAIT).await.unwrap();
    handle.stop().await.unwrap();

    let mut replay = Balances::named("replay");
    let filter = replay.filter();
    let log: Vec<_> = s.store.read_all(1, &filter).try_collect().await.unwrap();
    assert_eq!(log.len(), 10_000);
    for event in &log {
        replay.handle(event).await.unwrap();
    }
    assert_eq!(projection.snapshot(), replay.snapshot());
    assert_eq!(projection.total(), (0..10_000).sum::<u64>());
    let deliveries = projection.deliveries.load(Ordering::Relaxed);
    assert!(deliveries >= 10_000, "at least once: {deliveries}");
    println!("10,000 events, 10 crashes: {deliveries} deliveries ({} redelivered)", deliveries - 10_000);
}

/// Stores that go away on request, as a database does while it restarts:
/// every call fails with [`StoreError::Unavailable`], and an open
/// subscription fails on its next event (which it drops, as a broken
/// connection does) and ends.
#[derive(Debug, Clone, Default)]
struct Outage {
    events: InMemoryEventStore,
    checkpoints: InMemoryCheckpointStore,
    down: Arc<std::sync::atomic::AtomicBool>,
    failures: Arc<AtomicU64>,
}

impl Outage {
    fn check(&self) -> Result<(), orchestrix::StoreError> {
        if self.down.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            Err(orchestrix::StoreError::Unavailable("the store is restarting".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventStore for Outage {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, orchestrix::StoreError> {
        self.check()?;
        self.events.append(stream, expected, events).await
    }

    async fn append_many(
        &self,
        parts: Vec<orchestrix::store::StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, orchestrix::StoreError> {
        self.check()?;
        self.events.append_many(parts).await
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> orchestrix::store::EventStream<'a> {
        self.events.read_stream(stream, from_version)
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> orchestrix::store::EventStream<'a> {
        self.events.read_all(from_position, filter)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> orchestrix::store::EventStream<'static> {
        let outage = self.clone();
        let mut ended = false;
        let inner = self.events.subscribe(from_position, filter);
        Box::pin(inner.map(move |item| outage.check().and(item)).take_while(move |item| {
            let go = !ended;
            ended = item.is_err();
            std::future::ready(go)
        }))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, orchestrix::StoreError> {
        self.check()?;
        self.events.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, orchestrix::StoreError> {
        self.check()?;
        self.events.head_position().await
    }
}

#[async_trait]
impl CheckpointStore for Outage {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, orchestrix::StoreError> {
        self.check()?;
        self.checkpoints.load(consumer).await
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), orchestrix::StoreError> {
        self.check()?;
        self.checkpoints.save(consumer, position).await
    }

    async fn delete(&self, consumer: &str) -> Result<(), orchestrix::StoreError> {
        self.check()?;
        self.checkpoints.delete(consumer).await
    }
}

/// Records every position it is handed, to tell redeliveries from gaps.
#[derive(Clone, Default)]
struct Positions(Arc<Mutex<Vec<u64>>>);

#[async_trait]
impl Projection for Positions {
    fn name(&self) -> Cow<'static, str> {
        "positions".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(event.global_position);
        Ok(())
    }
}

/// The stores go away twice while events keep arriving (as during a
/// database restart): the projection waits the outages out instead of
/// failing, resubscribes after the last event it handled, and so handles
/// every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_is_waited_out_without_gaps_or_repeats() {
    let outage = Outage::default();
    let engine = ProjectionEngine::new(outage.clone(), outage.clone());
    let projection = Positions::default();
    // Checkpoint every event, so that saves fail during the outage too.
    let mut handle = engine.spawn(projection.clone(), ProjectionOptions::default().checkpoint_every(1));
    let mut written = 0;
    for round in 0..3u64 {
        for n in 0..50 {
            append(&outage.events, round * 100 + n, vec![event("Deposited", n)]).await;
            written += 1;
        }
        if round < 2 {
            outage.down.store(true, Ordering::SeqCst);
            // Events keep arriving while the projection cannot reach the store.
            for n in 50..60 {
                append(&outage.events, round * 100 + n, vec![event("Deposited", n)]).await;
                written += 1;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            outage.down.store(false, Ordering::SeqCst);
        }
    }
    let status = handle.wait_for_position(written, WAIT).await.unwrap();
    assert_eq!(status.position, written, "the projection ended early: {:?}", status.state);
    handle.stop().await.expect("the projection survived the outages");
    assert!(outage.failures.load(Ordering::SeqCst) > 0, "the outage was never noticed");
    let seen = projection.0.lock().unwrap().clone();
    assert_eq!(seen, (1..=written).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(outage.checkpoints.load("positions").await.unwrap(), Some(written));
}

/// An event store whose global positions are 1,000 apart, as PostgreSQL's
/// are between transactions (ADR 0008): the in-memory store, spread out.
#[derive(Debug, Clone, Default)]
struct Sparse(InMemoryEventStore);

const GAP: u64 = 1_000;

fn spread(
    event: Result<Arc<RecordedEvent>, orchestrix::StoreError>,
) -> Result<Arc<RecordedEvent>, orchestrix::StoreError> {
    event.map(|event| {
        let mut event = (*event).clone();
        event.global_position *= GAP;
        Arc::new(event)
    })
}

#[async_trait]
impl EventStore for Sparse {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, orchestrix::StoreError> {
        self.0.append(stream, expected, events).await?.into_iter().map(|e| spread(Ok(e))).collect()
    }

    async fn append_many(
        &self,
        parts: Vec<orchestrix::store::StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, orchestrix::StoreError> {
        let written = self.0.append_many(parts).await?;
        written.into_iter().map(|part| part.into_iter().map(|e| spread(Ok(e))).collect()).collect()
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> orchestrix::store::EventStream<'a> {
        Box::pin(self.0.read_stream(stream, from_version).map(spread))
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> orchestrix::store::EventStream<'a> {
        Box::pin(self.0.read_all(from_position.div_ceil(GAP), filter).map(spread))
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> orchestrix::store::EventStream<'static> {
        Box::pin(self.0.subscribe(from_position.div_ceil(GAP), filter).map(spread))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, orchestrix::StoreError> {
        self.0.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, orchestrix::StoreError> {
        Ok(self.0.head_position().await?.map(|p| p * GAP))
    }
}

/// Counts checkpoint saves.
#[derive(Debug, Clone, Default)]
struct CountingCheckpoints {
    inner: InMemoryCheckpointStore,
    saves: Arc<AtomicU64>,
}

#[async_trait]
impl CheckpointStore for CountingCheckpoints {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, orchestrix::StoreError> {
        self.inner.load(consumer).await
    }

    async fn save(&self, consumer: &str, position: u64) -> Result<(), orchestrix::StoreError> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        self.inner.save(consumer, position).await
    }

    async fn delete(&self, consumer: &str) -> Result<(), orchestrix::StoreError> {
        self.inner.delete(consumer).await
    }
}

#[tokio::test]
async fn checkpoints_are_saved_every_so_many_events_even_where_positions_jump() {
    let store = Sparse::default();
    for n in 0..1_000 {
        store.append(&stream(n), ExpectedVersion::NoStream, vec![event("Deposited", 1)]).await.unwrap();
    }
    let head = store.head_position().await.unwrap().unwrap();
    let checkpoints = CountingCheckpoints::default();
    let engine = ProjectionEngine::new(store.clone(), checkpoints.clone());
    let options = ProjectionOptions::default().checkpoint_every(100);

    let mut handle = engine.spawn(Balances::named("sparse"), options);
    handle.wait_for_position(head, WAIT).await.unwrap();
    let projection = handle.stop().await.unwrap();
    assert_eq!(projection.total(), 1_000);
    assert_eq!(checkpoints.load("sparse").await.unwrap(), Some(head));
    // About one save per 100 events (and a few more whenever the reader
    // found nothing ready), not one per event.
    let saves = checkpoints.saves.swap(0, Ordering::Relaxed);
    assert!(saves <= 20, "{saves} checkpoint saves for 1,000 events");

    let mut rebuilt = Balances::named("sparse");
    engine.rebuild(&mut rebuilt, options, |_| {}).await.unwrap();
    assert_eq!(rebuilt.total(), 1_000);
    let saves = checkpoints.saves.load(Ordering::Relaxed);
    assert!(saves <= 11, "{saves} checkpoint saves for a rebuild of 1,000 events");
}

/// A projection that takes its time over every event.
#[derive(Debug, Default)]
struct Slow {
    seen: u64,
}

#[async_trait]
impl Projection for Slow {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("slow")
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.seen += 1;
        Ok(())
    }
}

/// Far from `checkpoint_every` events, a busy projection still saves its
/// checkpoint every `checkpoint_interval`: a crash redelivers at most that
/// much work.
#[tokio::test]
async fn a_slow_projection_saves_its_checkpoint_every_interval() {
    let store = InMemoryEventStore::new();
    for n in 0..60 {
        store.append(&stream(n), ExpectedVersion::NoStream, vec![event("Deposited", 1)]).await.unwrap();
    }
    let checkpoints = CountingCheckpoints::default();
    let engine = ProjectionEngine::new(store.clone(), checkpoints.clone());
    let options =
        ProjectionOptions::default().checkpoint_every(1_000_000).checkpoint_interval(Duration::from_millis(40));

    let mut handle = engine.spawn(Slow::default(), options);
    handle.wait_for_position(30, WAIT).await.unwrap();
    // 30 events of 5 ms or more: at least 3 saves of 40 ms each by now.
    let saves = checkpoints.saves.load(Ordering::Relaxed);
    assert!(saves >= 3, "{saves} checkpoint saves in 150 ms of handling");
    let checkpoint = checkpoints.load("slow").await.unwrap().unwrap();
    assert!((1..60).contains(&checkpoint), "checkpoint at {checkpoint}, before the end");
    handle.wait_for_position(60, WAIT).await.unwrap();
    assert_eq!(handle.stop().await.unwrap().seen, 60);
    assert_eq!(checkpoints.load("slow").await.unwrap(), Some(60));
}
