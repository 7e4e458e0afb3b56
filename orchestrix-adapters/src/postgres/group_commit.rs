//! Group commit (ADR 0024): concurrent appends share one statement, so one
//! transaction and one WAL flush.
//!
//! - At most `in_flight` append statements of a store run at once. An
//!   append that finds the store idle (no statement in flight, nobody
//!   waiting) runs alone, exactly as without group commit (one statement,
//!   the plain INSERT for the common case), so a lone writer pays nothing.
//! - Any other append queues. The queue (up to [`MAX_GROUP_EVENTS`]
//!   events) becomes one statement when a slot is free and either no
//!   statement is in flight, or [`PARALLEL_GROUP_MIN`] appends wait, or
//!   the oldest has waited [`PARALLEL_AFTER`]. So while one statement
//!   runs, the next group grows instead of going out small beside it
//!   (larger groups, fewer commits), and a statement that waits on a
//!   lock or a slow connection does not hold the others back for long.
//!   Each group is one statement, run by a task of its own so that no
//!   caller's cancellation can strand the others: every event of the group
//!   is bound as arrays, each with its stream, its expectation and its
//!   index in its append, and the statement checks each append's
//!   expectation as the single-append statements do.
//! - **Atomicity per append.** An append whose expected version does not
//!   exist in the statement's snapshot is left out whole (its rows share
//!   one check). Any error the server raises (a unique violation: two
//!   appends raced for a version; a value the server refuses) aborts the
//!   statement, so nothing of the group is written, and every append of it
//!   runs again alone, which gives each its own precise outcome. An append
//!   left out runs again alone too: the single-append path decides between
//!   a conflict and a retry. Only an error outside the server (a broken
//!   connection), after which nobody knows whether the group committed, is
//!   reported to every append of the group, as it would be to a lone one.
//! - **Order**: the group's events get positions `xid8 << 20 | 1..=n`
//!   (ADR 0008 unchanged: one transaction), each append's events
//!   consecutive, the appends in the order of their stream names so that
//!   two groups never wait for each other in a cycle.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use orchestrix::envelope::NewEvent;
use orchestrix::store::ExpectedVersion;
use orchestrix::{StoreError, StreamId};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::Inner;
use crate::common::{is_unavailable, to_i64};

/// The most events one group's statement carries; the queue beyond waits
/// for the next slot.
pub(super) const MAX_GROUP_EVENTS: usize = 4096;

/// How many appends must wait before a second statement starts beside
/// one in flight (ADR 0024: on the 2-core machine of the suite, with 16
/// writers, 8 gave the best rate of the thresholds tried; without the
/// rule, groups went out half as large and the rate fell by about a
/// quarter).
pub(super) const PARALLEL_GROUP_MIN: usize = 8;

/// How long an append waits for its group before it starts one beside
/// the statements in flight, however few wait with it: the bound on how
/// long a statement stuck on a lock holds back the others.
pub(super) const PARALLEL_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// An append larger than this always runs alone: it gains nothing from
/// sharing a commit, and would make the group's statement large.
pub(super) const MAX_GROUPED_APPEND: usize = 256;

/// One append, owned, as it waits for and travels through a group.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) stream: StreamId,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<NewEvent>,
    pub(super) ids: Vec<Uuid>,
    pub(super) metadata: Vec<String>,
    pub(super) recorded_at: DateTime<Utc>,
}

/// What became of an append that joined a group.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Written: the `(global_position, stream_version)` rows of its events.
    Written(Vec<(i64, i64)>),
    /// Not written: run it alone. Its expectation failed in the group's
    /// snapshot, or the server refused the group's statement (and so
    /// wrote none of it).
    Alone,
    /// The group's statement failed outside the server; whether it
    /// committed is unknown, as for a lone append whose connection breaks.
    Failed(StoreError),
}

struct Pending {
    part: Part,
    reply: oneshot::Sender<(Part, Outcome)>,
}

/// The queue and the statement slots of one store.
pub(super) struct GroupCommit {
    queue: Mutex<VecDeque<Pending>>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit").field("free_slots", &self.slots.available_permits()).finish_non_exhaustive()
    }
}

/// A slot held by an append running alone; releasing it hands the queue
/// that formed meanwhile to a group task.
pub(super) struct AloneSlot {
    inner: Arc<Inner>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for AloneSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            start_groups(&self.inner, &runtime, false);
        }
    }
}

impl GroupCommit {
    /// Group commit with at most `in_flight` (≥ 1) statements at once.
    pub(super) fn new(in_flight: usize) -> Self {
        let capacity = in_flight.max(1);
        Self { queue: Mutex::new(VecDeque::new()), slots: Arc::new(Semaphore::new(capacity)), capacity }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many statements are in flight (groups and appends alone).
    fn busy(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// A slot to run alone in, if the store is idle: no statement in
    /// flight, nobody waiting.
    pub(super) fn try_alone(&self, inner: &Arc<Inner>) -> Option<AloneSlot> {
        if self.busy() > 0 || !self.queue().is_empty() {
            return None;
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        Some(AloneSlot { inner: Arc::clone(inner), permit: Some(permit) })
    }

    /// Queues `part` for the next group and waits for its outcome.
    pub(super) async fn join(inner: &Arc<Inner>, group: &Self, part: Part) -> Result<(Part, Outcome), StoreError> {
        let (reply, mut outcome) = oneshot::channel();
        group.queue().push_back(Pending { part, reply });
        let runtime = tokio::runtime::Handle::current();
        start_groups(inner, &runtime, false);
        tokio::select! {
            biased;
            answer = &mut outcome => return answer.map_err(|_| ended()),
            () = tokio::time::sleep(PARALLEL_AFTER) => {}
        }
        // Waited long: start a group beside the statements in flight, if a
        // slot is free, however few wait.
        start_groups(inner, &runtime, true);
        outcome.await.map_err(|_| ended())
    }
}

/// The error of an append whose group task ended without an answer.
fn ended() -> StoreError {
    StoreError::Backend("the group commit task ended without an answer (the runtime is shutting down)".into())
}

impl GroupCommit {
    /// Takes the next group off the queue: whole appends, in order, up to
    /// [`MAX_GROUP_EVENTS`] events (at least one append). Appends whose
    /// callers gave up waiting are dropped unwritten.
    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue();
        let mut group = Vec::new();
        let mut events = 0;
        while let Some(next) = queue.front() {
            if !group.is_empty() && events + next.part.events.len() > MAX_GROUP_EVENTS {
                break;
            }
            let Some(pending) = queue.pop_front() else { break };
            if pending.reply.is_closed() {
                continue;
            }
            events += pending.part.events.len();
            group.push(pending);
        }
        group
    }
}

/// Starts group tasks while appends wait and a slot is free: when no
/// statement is in flight, when [`PARALLEL_GROUP_MIN`] appends wait, or
/// when `force`d (an append has waited [`PARALLEL_AFTER`]). Every release
/// of a slot calls it, so no waiting append is forgotten.
fn start_groups(inner: &Arc<Inner>, runtime: &tokio::runtime::Handle, force: bool) {
    let Some(group) = inner.group.as_ref() else { return };
    loop {
        let waiting = group.queue().len();
        if waiting == 0 || (group.busy() > 0 && waiting < PARALLEL_GROUP_MIN && !force) {
            return;
        }
        let Ok(permit) = Arc::clone(&group.slots).try_acquire_owned() else { return };
        let pendings = group.take();
        if pendings.is_empty() {
            return;
        }
        let inner = Arc::clone(inner);
        runtime.spawn(async move {
            run_group(&inner, pendings).await;
            drop(permit);
            start_groups(&inner, &tokio::runtime::Handle::current(), false);
        });
    }
}

/// Runs one group's statement and answers each of its appends.
///
/// The appends are written in the order of their stream names (a stable
/// sort: one stream's appends keep their queue order), the order in which
/// multi-stream appends take their streams too (ADR 0018): two groups in
/// flight that touch the same streams then wait for each other's index
/// entries in one order, never in a cycle the server must break.
async fn run_group(inner: &Inner, mut pendings: Vec<Pending>) {
    pendings.sort_by(|a, b| a.part.stream.cmp(&b.part.stream));
    let total: usize = pendings.iter().map(|p| p.part.events.len()).sum();
    let mut categories = Vec::with_capacity(total);
    let mut aggregate_ids = Vec::with_capacity(total);
    let mut expected = Vec::with_capacity(total);
    let mut ordinals = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    let mut types = Vec::with_capacity(total);
    let mut schemas = Vec::with_capacity(total);
    let mut data = Vec::with_capacity(total);
    let mut metadata = Vec::with_capacity(total);
    let mut recorded_at = Vec::with_capacity(total);
    // The append each event (by its 0-based index in the group) belongs to.
    let mut owner = Vec::with_capacity(total);
    for (index, pending) in pendings.iter().enumerate() {
        let part = &pending.part;
        let expectation = match part.expected {
            ExpectedVersion::Any => -1,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(version) => to_i64(version),
        };
        for (ordinal, event) in (1_i64..).zip(&part.events) {
            categories.push(part.stream.category());
            aggregate_ids.push(part.stream.id());
            expected.push(expectation);
            ordinals.push(ordinal);
            types.push(event.event_type.as_str());
            schemas.push(i64::from(event.schema_version));
            data.push(event.data.get());
            recorded_at.push(part.recorded_at);
            owner.push(index);
        }
        ids.extend_from_slice(&part.ids);
        metadata.extend(part.metadata.iter().map(String::as_str));
    }
    let result = sqlx::query_as::<_, (i64, i64)>(&inner.sql.append_group)
        .bind(&categories)
        .bind(&aggregate_ids)
        .bind(&expected)
        .bind(&ordinals)
        .bind(&ids)
        .bind(&types)
        .bind(&schemas)
        .bind(&data)
        .bind(&metadata)
        .bind(&recorded_at)
        .fetch_all(&inner.pool)
        .await;
    let mut outcomes: Vec<Outcome> = match result {
        Ok(rows) => written(rows, &owner, &pendings),
        Err(error) if error.as_database_error().is_some() => {
            tracing::debug!(%error, appends = pendings.len(), "orchestrix: a group commit failed; its appends run alone");
            pendings.iter().map(|_| Outcome::Alone).collect()
        }
        Err(error) => {
            let unavailable = is_unavailable(&error);
            let error = SharedError(Arc::new(error));
            pendings
                .iter()
                .map(|_| {
                    let boxed = Box::new(error.clone());
                    Outcome::Failed(if unavailable {
                        StoreError::Unavailable(boxed)
                    } else {
                        StoreError::Backend(boxed)
                    })
                })
                .collect()
        }
    };
    #[allow(clippy::cast_precision_loss)] // a count far below 2^52
    metrics::histogram!(super::GROUP_COMMIT_APPENDS).record(pendings.len() as f64);
    let alone = outcomes.iter().filter(|outcome| matches!(outcome, Outcome::Alone)).count();
    if alone > 0 {
        metrics::counter!(super::GROUP_COMMIT_ALONE_TOTAL).increment(u64::try_from(alone).unwrap_or(u64::MAX));
    }
    for pending in pendings.into_iter().rev() {
        let outcome = outcomes.pop().unwrap_or(Outcome::Alone);
        // A caller that stopped waiting gets nothing; its events are
        // written or not, as with a lone append cancelled in flight.
        let _ = pending.reply.send((pending.part, outcome));
    }
}

/// The outcome of each append of a group whose statement succeeded, from
/// the rows it returned (`owner`: the append of each event of the group).
fn written(rows: Vec<(i64, i64)>, owner: &[usize], pendings: &[Pending]) -> Vec<Outcome> {
    let mut written: Vec<Vec<(i64, i64)>> = vec![Vec::new(); pendings.len()];
    for (position, version) in rows {
        // The low 20 bits are the event's 1-based index in the group.
        let index = usize::try_from(position & ((1 << 20) - 1)).unwrap_or(0);
        if let Some(&append) = index.checked_sub(1).and_then(|i| owner.get(i)) {
            written[append].push((position, version));
        }
    }
    written
        .into_iter()
        .zip(pendings)
        .map(|(rows, pending)| {
            if rows.is_empty() {
                Outcome::Alone
            } else if rows.len() == pending.part.events.len() {
                Outcome::Written(rows)
            } else {
                // Cannot happen: one check decides all of an append's
                // rows. Say so rather than pretend.
                Outcome::Failed(StoreError::Backend(
                    format!(
                        "group commit wrote {} of the {} events of an append to `{}`; please report this",
                        rows.len(),
                        pending.part.events.len(),
                        pending.part.stream
                    )
                    .into(),
                ))
            }
        })
        .collect()
}

/// One error of a group's statement, shared by every append of the group.
#[derive(Debug, Clone)]
struct SharedError(Arc<sqlx::Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the group commit this append joined failed: {}", self.0)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
