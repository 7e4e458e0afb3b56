//! Delivery scenarios every projection runner must pass: the same
//! dead-letter semantics (ADR 0025) in the in-process engine, the
//! PostgreSQL transactional runner and the NATS worker.
//!
//! A runner takes part through a [`Harness`]: it starts the scenario's
//! projection its own way (a plain [`crate::projection::Projection`], a
//! transactional one writing through its transaction, ...) and keeps the
//! projection's journal (what it applied, in order) where its effects
//! live. [`run_all`] runs every scenario; each uses its own streams and
//! projection name, so one database serves them all.
//!
//! The projection handles events of type [`HANDLED`] (and not
//! [`IGNORED`]), parks poison after one attempt, and fails an event while
//! its (stream, version) is in the [`Faults`].
//!
//! What a runner cannot do it declares in its [`Capabilities`]: a scenario
//! needing it then checks that the runner refuses the operation with
//! [`ProjectionError::Unsupported`] and says so on stderr, instead of
//! being left out unseen. The only one so far is the rebuild, which a
//! NATS worker does not offer (ADR 0025).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::conformance::support::{event_with, unique_stream};
use crate::envelope::{Metadata, RecordedEvent};
use crate::error::BoxError;
use crate::projection::{DropOutcome, Projection, ProjectionError, ProjectionHandle, ProjectionStatus, RetryOutcome};
use crate::store::{DeadLetter, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore, ExpectedVersion};
use crate::stream::StreamId;

/// The type of the events the scenario projection handles.
pub const HANDLED: &str = "ScenarioNoted";
/// The type of the events it leaves out.
pub const IGNORED: &str = "ScenarioIgnored";

/// The scenario projection's filter.
pub fn filter() -> EventFilter {
    EventFilter::types([HANDLED])
}

/// Which events fail, by stream and version; shared with the projection.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    failing: Arc<Mutex<HashSet<(StreamId, u64)>>>,
}

impl Faults {
    /// Makes version `version` of `stream` fail from now on.
    pub fn fail(&self, stream: &StreamId, version: u64) {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner).insert((stream.clone(), version));
    }

    /// Makes it succeed again.
    pub fn heal(&self, stream: &StreamId, version: u64) {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner).remove(&(stream.clone(), version));
    }

    /// What the projection calls before applying `event`: an error while
    /// the event is failing.
    pub fn check(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        let failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.contains(&(event.stream.clone(), event.stream_version)) {
            Err(format!("scenario fault at `{}` version {}", event.stream, event.stream_version).into())
        } else {
            Ok(())
        }
    }
}

/// What a runner offers beyond the semantics every runner shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether [`Harness::rebuild`] rebuilds (the engine and the
    /// PostgreSQL runner) or refuses with [`ProjectionError::Unsupported`]
    /// (the NATS worker: its durable consumers read a JetStream stream
    /// whose retention need not reach back to the first event; ADR 0025).
    pub rebuild: bool,
}

impl Capabilities {
    /// Nothing beyond the shared semantics; add what the runner offers with
    /// the `with_*` methods.
    pub fn none() -> Self {
        Self { rebuild: false }
    }

    /// Sets whether [`Harness::rebuild`] rebuilds.
    #[must_use]
    pub fn with_rebuild(mut self, rebuild: bool) -> Self {
        self.rebuild = rebuild;
        self
    }
}

/// A runner under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// What the runner offers; see [`Capabilities`].
    fn capabilities(&self) -> Capabilities;

    /// The log the runner reads.
    fn events(&self) -> Arc<dyn EventStore>;

    /// The dead-letter store the runner parks in.
    fn dead_letters(&self) -> Arc<dyn DeadLetterStore>;

    /// Starts the projection `name`: filter [`filter`], poison parked
    /// after one attempt, [`Faults::check`] before each event, and each
    /// applied event's (stream, version) added to the journal of `name`
    /// where the runner keeps its effects.
    async fn start(&self, name: &str, faults: Faults) -> Box<dyn Running>;

    /// The journal of `name`: the (stream, version) of every event
    /// applied, in the order applied.
    async fn journal(&self, name: &str) -> Vec<(StreamId, u64)>;

    /// Rebuilds the stopped projection `name` (as [`Harness::start`]
    /// would start it) in one call: its journal emptied, its checkpoint
    /// and dead letters forgotten, everything up to the head replayed.
    /// Returns the position reached. A runner without
    /// [`Capabilities::rebuild`] answers [`ProjectionError::Unsupported`].
    async fn rebuild(&self, name: &str, faults: Faults) -> Result<u64, ProjectionError>;
}

/// A running scenario projection.
#[async_trait]
pub trait Running: Send {
    /// Waits until it has passed everything appended so far.
    async fn wait_caught_up(&mut self) -> Result<ProjectionStatus, ProjectionError>;
    /// Retries the stream of letter `id`.
    async fn retry(&mut self, id: Uuid) -> Result<RetryOutcome, ProjectionError>;
    /// Retries every parked stream.
    async fn retry_all(&mut self) -> Result<RetryOutcome, ProjectionError>;
    /// Drops letter `id`.
    async fn drop_letter(&mut self, id: Uuid) -> Result<DropOutcome, ProjectionError>;
    /// Stops it.
    async fn stop(self: Box<Self>) -> Result<(), ProjectionError>;
}

/// How long a [`ProjectionHandle`] running a scenario may take to catch up.
pub const CATCH_UP: Duration = Duration::from_secs(20);

/// The runners that return a [`ProjectionHandle`] (the engine, the
/// PostgreSQL transactional runner) run a scenario through it directly.
#[async_trait]
impl<P: Send + 'static> Running for ProjectionHandle<P> {
    async fn wait_caught_up(&mut self) -> Result<ProjectionStatus, ProjectionError> {
        ProjectionHandle::wait_caught_up(self, CATCH_UP).await
    }
    async fn retry(&mut self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        self.retry_dead_letter(id).await
    }
    async fn retry_all(&mut self) -> Result<RetryOutcome, ProjectionError> {
        self.retry_dead_letters().await
    }
    async fn drop_letter(&mut self, id: Uuid) -> Result<DropOutcome, ProjectionError> {
        self.drop_dead_letter(id).await
    }
    async fn stop(self: Box<Self>) -> Result<(), ProjectionError> {
        ProjectionHandle::stop(*self).await.map(drop)
    }
}

/// A journal kept in memory, shared by a harness and its projection.
pub type Journal = Arc<Mutex<Vec<(StreamId, u64)>>>;

/// The journals of a harness whose projections keep them in memory, by
/// projection name.
#[derive(Debug, Default)]
pub struct Journals(Mutex<HashMap<String, Journal>>);

impl Journals {
    /// The journal of the projection `name` (created empty).
    pub fn of(&self, name: &str) -> Journal {
        Arc::clone(self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(name.to_owned()).or_default())
    }

    /// What the projection `name` applied so far, in order
    /// ([`Harness::journal`]).
    pub fn entries(&self, name: &str) -> Vec<(StreamId, u64)> {
        self.of(name).lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The scenario projection for runners of plain [`Projection`]s (the
/// engine, the NATS worker): it checks the [`Faults`], then records each
/// applied event in its in-memory [`Journal`]; a reset empties it.
#[derive(Debug)]
pub struct JournalProjection {
    name: String,
    faults: Faults,
    journal: Journal,
}

impl JournalProjection {
    /// The projection `name`, failing by `faults`, recording in `journal`.
    pub fn new(name: &str, faults: Faults, journal: Journal) -> Self {
        Self { name: name.to_owned(), faults, journal }
    }
}

#[async_trait]
impl Projection for JournalProjection {
    fn name(&self) -> Cow<'static, str> {
        self.name.clone().into()
    }

    fn filter(&self) -> EventFilter {
        filter()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.faults.check(event)?;
        self.journal.lock().unwrap_or_else(PoisonError::into_inner).push((event.stream.clone(), event.stream_version));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }
}

/// Runs every scenario on `harness`.
pub async fn run_all<H: Harness>(harness: &H) {
    later_events_of_a_parked_stream_wait_behind_it(harness).await;
    a_retry_replays_the_stream_in_order_after_a_restart(harness).await;
    a_retry_that_fails_again_keeps_the_order(harness).await;
    a_drop_keeps_the_rest_parked_for_retry(harness).await;
    retry_all_retries_every_stream(harness).await;
    waiting_moves_over_events_the_projection_leaves_out(harness).await;
    a_rebuild_resets_and_replays_or_is_refused(harness).await;
}

async fn append<H: Harness>(harness: &H, stream: &StreamId, types: &[&str]) -> Vec<RecordedEvent> {
    let events = types.iter().map(|t| event_with(t, r#"{"scenario":true}"#, Metadata::default())).collect();
    let recorded = harness.events().append(stream, ExpectedVersion::Any, events).await.expect("the append succeeds");
    recorded.iter().map(|event| RecordedEvent::clone(event)).collect()
}

fn name(scenario: &str) -> String {
    format!("{scenario}_{}", Uuid::now_v7().simple())
}

/// The versions of `stream` in `journal`, in the order applied.
fn versions(journal: &[(StreamId, u64)], stream: &StreamId) -> Vec<u64> {
    journal.iter().filter(|(s, _)| s == stream).map(|(_, v)| *v).collect()
}

/// The letters of `name` for `stream`, oldest event first.
async fn letters<H: Harness>(harness: &H, name: &str, stream: &StreamId) -> Vec<DeadLetter> {
    let query = DeadLetterQuery::consumer(name).stream(stream.clone());
    let mut letters = harness.dead_letters().query(&query).await.expect("the dead letters can be queried");
    letters.sort_by_key(|letter| letter.event.global_position);
    letters
}

fn letter_versions(letters: &[DeadLetter]) -> Vec<u64> {
    letters.iter().map(|letter| letter.event.stream_version).collect()
}

async fn caught_up(scenario: &str, running: &mut Box<dyn Running>) {
    if let Err(error) = running.wait_caught_up().await {
        panic!("{scenario}: the projection does not catch up: {error}");
    }
}

/// Once an event of a stream is parked, the later events of that stream
/// are parked behind it, untried, while other streams go on.
pub async fn later_events_of_a_parked_stream_wait_behind_it<H: Harness>(harness: &H) {
    const S: &str = "later_events_of_a_parked_stream_wait_behind_it";
    let (name, faults, a, b) = (name("behind"), Faults::default(), unique_stream("A"), unique_stream("B"));
    faults.fail(&a, 2);
    append(harness, &a, &[HANDLED, HANDLED, HANDLED]).await;
    append(harness, &b, &[HANDLED, HANDLED]).await;
    let mut running = harness.start(&name, faults).await;
    caught_up(S, &mut running).await;
    let journal = harness.journal(&name).await;
    assert_eq!(versions(&journal, &a), vec![1], "{S}: the parked stream stops at its poison event");
    assert_eq!(versions(&journal, &b), vec![1, 2], "{S}: other streams go on");
    let parked = letters(harness, &name, &a).await;
    assert_eq!(letter_versions(&parked), vec![2, 3], "{S}: the poison event and the one behind it are parked");
    assert!(parked[0].attempts >= 1 && parked[0].error.contains("scenario fault"), "{S}: {:?}", parked[0]);
    assert_eq!(parked[1].attempts, 0, "{S}: the letter behind is never tried");
    assert!(parked[1].error.contains(&parked[0].id.to_string()), "{S}: it names the letter it waits behind");
    let store = harness.dead_letters();
    let mine = DeadLetterQuery::consumer(name.clone());
    assert_eq!(store.count(&mine).await.ok(), Some(2), "{S}: count by projection");
    assert_eq!(store.count(&mine.clone().reason("parked behind")).await.ok(), Some(1), "{S}: count by reason");
    assert_eq!(store.count(&mine.stream(b)).await.ok(), Some(0), "{S}: count by stream");
    running.stop().await.expect("the projection stops");
}

/// Parked streams survive a restart (the state comes from the store), a
/// retry is not skipped although the checkpoint passed the parked events,
/// and retrying any letter of a stream replays the stream from its first
/// letter, in order, then releases it.
pub async fn a_retry_replays_the_stream_in_order_after_a_restart<H: Harness>(harness: &H) {
    const S: &str = "a_retry_replays_the_stream_in_order_after_a_restart";
    let (name, faults, a, b) = (name("replay"), Faults::default(), unique_stream("A"), unique_stream("B"));
    faults.fail(&a, 2);
    append(harness, &a, &[HANDLED, HANDLED, HANDLED]).await;
    append(harness, &b, &[HANDLED]).await;
    let mut running = harness.start(&name, faults.clone()).await;
    caught_up(S, &mut running).await;
    running.stop().await.expect("the projection stops");

    let mut running = harness.start(&name, faults.clone()).await;
    append(harness, &a, &[HANDLED]).await;
    caught_up(S, &mut running).await;
    assert_eq!(
        versions(&harness.journal(&name).await, &a),
        vec![1],
        "{S}: after a restart, the stream is still parked"
    );
    let parked = letters(harness, &name, &a).await;
    assert_eq!(letter_versions(&parked), vec![2, 3, 4], "{S}: the new event is parked behind the others");

    faults.heal(&a, 2);
    let outcome = running.retry(parked[1].id).await.expect("the retry runs");
    let ids: Vec<Uuid> = parked.iter().map(|letter| letter.id).collect();
    assert_eq!(outcome.applied, ids, "{S}: the whole stream is replayed from its first letter, in order");
    assert!(outcome.is_complete(), "{S}: {outcome:?}");
    assert!(letters(harness, &name, &a).await.is_empty(), "{S}: the applied letters are removed");
    append(harness, &a, &[HANDLED]).await;
    caught_up(S, &mut running).await;
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 2, 3, 4, 5], "{S}: the stream is released");
    running.stop().await.expect("the projection stops");
}

/// A retry whose event fails again leaves it parked, with one more
/// attempt, and everything behind it; a retry stops at the first failure.
pub async fn a_retry_that_fails_again_keeps_the_order<H: Harness>(harness: &H) {
    const S: &str = "a_retry_that_fails_again_keeps_the_order";
    let (name, faults, a) = (name("again"), Faults::default(), unique_stream("A"));
    faults.fail(&a, 2);
    append(harness, &a, &[HANDLED, HANDLED, HANDLED]).await;
    let mut running = harness.start(&name, faults.clone()).await;
    caught_up(S, &mut running).await;
    let parked = letters(harness, &name, &a).await;
    let outcome = running.retry(parked[0].id).await.expect("the retry runs");
    assert!(outcome.applied.is_empty(), "{S}: nothing applied: {outcome:?}");
    assert_eq!(outcome.failed.len(), 1, "{S}: {outcome:?}");
    assert_eq!((outcome.failed[0].id, outcome.failed[0].attempts), (parked[0].id, parked[0].attempts + 1), "{S}");
    assert_eq!(outcome.still_parked, 2, "{S}: {outcome:?}");
    let after = letters(harness, &name, &a).await;
    assert_eq!(letter_versions(&after), vec![2, 3], "{S}: the order is kept");
    assert_eq!(after[0].attempts, parked[0].attempts + 1, "{S}: the attempt is counted");

    faults.heal(&a, 2);
    faults.fail(&a, 3);
    let outcome = running.retry(parked[0].id).await.expect("the retry runs");
    assert_eq!(outcome.applied, vec![parked[0].id], "{S}: the first applies");
    assert_eq!(outcome.failed.iter().map(|f| f.id).collect::<Vec<_>>(), vec![parked[1].id], "{S}: the second fails");
    assert_eq!(outcome.still_parked, 1, "{S}: {outcome:?}");
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 2], "{S}");
    append(harness, &a, &[HANDLED]).await;
    caught_up(S, &mut running).await;
    assert_eq!(letter_versions(&letters(harness, &name, &a).await), vec![3, 4], "{S}: still parked behind");
    running.stop().await.expect("the projection stops");
}

/// Dropping a stream's first letter makes the next one the first: it stays
/// parked, for a retry, and so do new events of the stream.
pub async fn a_drop_keeps_the_rest_parked_for_retry<H: Harness>(harness: &H) {
    const S: &str = "a_drop_keeps_the_rest_parked_for_retry";
    let (name, faults, a) = (name("drop"), Faults::default(), unique_stream("A"));
    faults.fail(&a, 2);
    append(harness, &a, &[HANDLED, HANDLED, HANDLED]).await;
    let mut running = harness.start(&name, faults.clone()).await;
    caught_up(S, &mut running).await;
    let parked = letters(harness, &name, &a).await;
    let dropped = running.drop_letter(parked[0].id).await.expect("the drop runs");
    assert!(dropped.removed && dropped.still_parked == 1, "{S}: {dropped:?}");
    append(harness, &a, &[HANDLED]).await;
    caught_up(S, &mut running).await;
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1], "{S}: nothing applied by the drop");
    let rest = letters(harness, &name, &a).await;
    assert_eq!(letter_versions(&rest), vec![3, 4], "{S}");
    let outcome = running.retry(rest[0].id).await.expect("the retry runs");
    assert_eq!(outcome.applied, vec![rest[0].id, rest[1].id], "{S}: {outcome:?}");
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 3, 4], "{S}");
    let again = running.drop_letter(parked[0].id).await.expect("the drop runs");
    assert!(!again.removed, "{S}: a second drop removes nothing");
    running.stop().await.expect("the projection stops");
}

/// Retrying everything retries every parked stream.
pub async fn retry_all_retries_every_stream<H: Harness>(harness: &H) {
    const S: &str = "retry_all_retries_every_stream";
    let (name, faults, a, c) = (name("all"), Faults::default(), unique_stream("A"), unique_stream("C"));
    faults.fail(&a, 1);
    faults.fail(&c, 2);
    append(harness, &a, &[HANDLED, HANDLED]).await;
    append(harness, &c, &[HANDLED, HANDLED]).await;
    let mut running = harness.start(&name, faults.clone()).await;
    caught_up(S, &mut running).await;
    faults.heal(&a, 1);
    faults.heal(&c, 2);
    let outcome = running.retry_all().await.expect("the retry runs");
    assert_eq!(outcome.applied.len(), 3, "{S}: {outcome:?}");
    assert!(outcome.is_complete(), "{S}: {outcome:?}");
    let journal = harness.journal(&name).await;
    assert_eq!((versions(&journal, &a), versions(&journal, &c)), (vec![1, 2], vec![1, 2]), "{S}");
    running.stop().await.expect("the projection stops");
}

/// A wait for everything appended ends although the last events are of a
/// type the projection leaves out.
pub async fn waiting_moves_over_events_the_projection_leaves_out<H: Harness>(harness: &H) {
    const S: &str = "waiting_moves_over_events_the_projection_leaves_out";
    let (name, a) = (name("skip"), unique_stream("A"));
    let mut running = harness.start(&name, Faults::default()).await;
    append(harness, &a, &[HANDLED, IGNORED, IGNORED]).await;
    let head = harness.events().head_position().await.ok().flatten().unwrap_or(0);
    let status = running.wait_caught_up().await.unwrap_or_else(|error| panic!("{S}: {error}"));
    assert!(status.position >= head, "{S}: at {} for a head at {head}", status.position);
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1], "{S}");
    running.stop().await.expect("the projection stops");
}

/// A rebuild empties the read model, forgets the dead letters and replays
/// everything up to the head (here an event the projection leaves out),
/// once; a runner without [`Capabilities::rebuild`] refuses it with
/// [`ProjectionError::Unsupported`], touching nothing.
pub async fn a_rebuild_resets_and_replays_or_is_refused<H: Harness>(harness: &H) {
    const S: &str = "a_rebuild_resets_and_replays_or_is_refused";
    let (name, faults, a) = (name("rebuild"), Faults::default(), unique_stream("A"));
    faults.fail(&a, 3);
    append(harness, &a, &[HANDLED, HANDLED, HANDLED, IGNORED]).await;
    let mut running = harness.start(&name, faults.clone()).await;
    caught_up(S, &mut running).await;
    running.stop().await.expect("the projection stops");
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 2], "{S}");
    assert_eq!(letter_versions(&letters(harness, &name, &a).await), vec![3], "{S}");

    faults.heal(&a, 3);
    let rebuilt = harness.rebuild(&name, faults).await;
    if !harness.capabilities().rebuild {
        assert!(matches!(rebuilt, Err(ProjectionError::Unsupported { .. })), "{S}: refused: {rebuilt:?}");
        assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 2], "{S}: the read model is untouched");
        assert_eq!(letter_versions(&letters(harness, &name, &a).await), vec![3], "{S}: the letters are kept");
        eprintln!(
            "{S}: not applicable: the runner has no rebuild (Capabilities::rebuild is false); the refusal is checked"
        );
        return;
    }
    let position = rebuilt.unwrap_or_else(|error| panic!("{S}: the rebuild fails: {error}"));
    let head = harness.events().head_position().await.ok().flatten().unwrap_or(0);
    assert!(position >= head, "{S}: at {position} for a head at {head}");
    assert_eq!(versions(&harness.journal(&name).await, &a), vec![1, 2, 3], "{S}: reset, then replayed once");
    assert!(letters(harness, &name, &a).await.is_empty(), "{S}: the old dead letters are gone");
}
