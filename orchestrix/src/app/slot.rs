//! The command bus's work on one aggregate type: an attempt loads (or
//! finds in the cache) the aggregate, checks the command was not applied
//! before (ADR 0027), runs the handler and appends, and says whether the
//! bus should try again.

use std::sync::Arc;

use uuid::Uuid;

use super::cache::AggregateCache;
use crate::aggregate::Aggregate;
use crate::command::{AggregateCommand, Existence};
use crate::envelope::{Envelope, Metadata};
use crate::error::{CommandError, Error, StoreError};
use crate::repository::{Loaded, Repository};
use crate::store::{EventStore, ExpectedVersion};
use crate::telemetry;

/// The outcome of one attempt that did not succeed.
pub(super) enum Attempt<E> {
    /// Lost an optimistic-concurrency race: reload and try again.
    Conflict,
    /// Any other failure: give up.
    Failed(E),
}

/// What a command produced: the aggregate's version and the events.
pub(super) type Done<A> = (u64, Vec<Envelope<<A as Aggregate>::Event>>);

pub(super) type AttemptResult<A> = Result<Done<A>, Attempt<CommandError<<A as Aggregate>::Error>>>;

/// What an attempt knows of the command it runs (ADR 0027).
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    /// The command id, from which its events' ids derive.
    pub(super) command_id: Uuid,
    /// Whether the caller gave the id, so that it may have been applied
    /// before (a fresh id cannot have been).
    pub(super) repeatable: bool,
}

impl Run {
    /// The id of the command's `index`-th event: derived from a command id
    /// the caller gave, a new UUID v7 otherwise.
    fn event_id(self, index: u32) -> Uuid {
        if self.repeatable {
            crate::idempotency::command_event_id(self.command_id, index)
        } else {
            Uuid::now_v7()
        }
    }
}

/// Whether a command that requires `required` may run on an aggregate that
/// `exists` (or not): the refusal it gets if not.
fn existence_verdict<A: Aggregate>(
    required: Existence,
    exists: bool,
    id: &A::Id,
) -> Result<(), CommandError<A::Error>> {
    match (required, exists) {
        (Existence::New, true) => Err(CommandError::AggregateAlreadyExists { aggregate: A::NAME, id: id.to_string() }),
        (Existence::Existing, false) => Err(CommandError::AggregateNotFound { aggregate: A::NAME, id: id.to_string() }),
        _ => Ok(()),
    }
}

/// The metric labels of a command `C`, or of an aggregate `A` (with no
/// command), as constants ([`telemetry::Labels`]).
pub(super) struct Named<T>(std::marker::PhantomData<T>);

impl<A: Aggregate> telemetry::Labels for Named<A> {
    const COMMAND: &'static str = "";
    const AGGREGATE: &'static str = A::NAME;
}

/// [`Named`] for a command: its name and its aggregate's.
pub(super) struct CommandNamed<C>(std::marker::PhantomData<C>);

impl<C: AggregateCommand> telemetry::Labels for CommandNamed<C> {
    const COMMAND: &'static str = C::NAME;
    const AGGREGATE: &'static str = <C::Aggregate as Aggregate>::NAME;
}

/// A command's turn on its aggregate in this process: the aggregate's
/// cache entry, locked, and the store's erasure generation it was taken
/// under (ADR 0031).
pub(super) struct Turn<A: Aggregate> {
    entry: tokio::sync::OwnedMutexGuard<Option<Loaded<A>>>,
    erasures: u64,
}

/// Everything the bus keeps per registered aggregate type.
pub(super) struct AggregateSlot<A: Aggregate> {
    pub(super) repository: Repository<A>,
    pub(super) cache: AggregateCache<A>,
}

impl<A: Aggregate> AggregateSlot<A> {
    /// Waits for this process's turn on the aggregate `id`: commands to
    /// one aggregate take turns in arrival order, and a command keeps its
    /// turn through its retries (ADR 0053), so that a retry never queues
    /// behind commands that arrived after it.
    pub(super) async fn turn(&self, id: &A::Id) -> Turn<A> {
        // Erasure hook (ADR 0031): a `forget` since the cache was filled
        // empties it, and the state is read again with the data erased.
        let erasures = self.cache.sync_erasures(self.repository_events().erasure_generation());
        Turn { entry: self.cache.entry(id).lock_owned().await, erasures }
    }

    /// One attempt of a command, in the turn `guard` holds.
    pub(super) async fn attempt<C: AggregateCommand<Aggregate = A>>(
        &self,
        turn: &mut Turn<A>,
        id: &A::Id,
        command: C,
        service: &C::Service,
        metadata: &Metadata,
        run: Run,
    ) -> AttemptResult<A> {
        // Erasure hook (ADR 0031): a `forget` since the turn began (while
        // it waited for the lock, or between attempts) empties the cache
        // and this entry, so the state is read again with the data erased.
        let erasures = self.cache.sync_erasures(self.repository_events().erasure_generation());
        if erasures != turn.erasures {
            *turn.entry = None;
            turn.erasures = erasures;
        }
        let guard: &mut Option<Loaded<A>> = &mut turn.entry;
        let was_cached = guard.is_some();
        self.cache.record(was_cached);
        let loaded = match &mut *guard {
            Some(loaded) => loaded,
            // A creating command needs no read: the append expects no
            // stream, so the store itself says whether one exists.
            empty if C::REQUIRES == Existence::New => {
                empty.insert(Loaded { state: A::default(), version: 0, from_snapshot: None })
            }
            empty => empty.insert(self.repository.load(id).await.map_err(fail)?),
        };
        // Applied before? Looked up after the load: an execution whose
        // events the load saw is found here; one that lands later makes
        // this attempt's append fail, and the next attempt finds it.
        if run.repeatable {
            if let Some(applied) = self.applied(id, run.command_id).await? {
                return Ok(applied);
            }
        }
        let decided = match existence_verdict::<A>(C::REQUIRES, loaded.exists(), id) {
            Ok(()) => command.handle(Some(id), &loaded.state, service).await.map_err(CommandError::Rejected),
            Err(error) => Err(error),
        };
        let events = match decided {
            Ok(events) => events,
            Err(error) => {
                // A refusal based on a cached state may be stale: another
                // process may have written since. Check before refusing.
                if was_cached && self.is_stale(id, loaded.version).await.map_err(fail)? {
                    *guard = None;
                    return Err(Attempt::Conflict);
                }
                return Err(Attempt::Failed(error));
            }
        };
        if events.is_empty() {
            return Ok((loaded.version, Vec::new()));
        }
        let before = loaded.version;
        let expected = if before == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(before) };
        let event_id = |index| run.event_id(index);
        let records = match self.repository.save_with_ids(id, expected, &events, metadata, event_id).await {
            // Written where this attempt expected: its own events, or a
            // racing duplicate's, which decided on the same state.
            Ok(records) if records.first().is_none_or(|first| first.stream_version == before + 1) => records,
            Ok(records) => {
                // The store answered with a duplicate's events stored
                // elsewhere in the stream: they are the outcome.
                *guard = None;
                return Self::outcome(&records).map_err(fail);
            }
            Err(Error::Store(
                error @ (StoreError::WrongExpectedVersion { .. } | StoreError::DuplicateEventId { .. }),
            )) if run.repeatable => {
                // Perhaps a duplicate won the race (and decided otherwise,
                // if its ids do not match these): its outcome is this one.
                *guard = None;
                if let Some(applied) = self.applied(id, run.command_id).await? {
                    return Ok(applied);
                }
                return Err(match error {
                    StoreError::WrongExpectedVersion { .. } if C::REQUIRES == Existence::New => {
                        Attempt::Failed(CommandError::AggregateAlreadyExists { aggregate: A::NAME, id: id.to_string() })
                    }
                    StoreError::WrongExpectedVersion { .. } => Attempt::Conflict,
                    error => fail(Error::Store(error)),
                });
            }
            Err(Error::Store(StoreError::WrongExpectedVersion { .. })) => {
                *guard = None;
                if C::REQUIRES == Existence::New {
                    // "No stream" was expected and there is one: final.
                    return Err(Attempt::Failed(CommandError::AggregateAlreadyExists {
                        aggregate: A::NAME,
                        id: id.to_string(),
                    }));
                }
                return Err(Attempt::Conflict);
            }
            Err(error) => {
                *guard = None;
                return Err(fail(error));
            }
        };
        telemetry::events_appended_by::<Named<A>>(records.len());
        for event in &events {
            loaded.state.apply(event);
        }
        loaded.version = records.last().map_or(before, |r| r.stream_version);
        let version = loaded.version;
        // Erasure hook (ADR 0031): state read before a `forget` is neither
        // snapshotted nor kept.
        let erased_since = self.repository_events().erasure_generation() != erasures;
        if Repository::<A>::snapshot_due(before, version) && !erased_since {
            if let Err(error) = self.repository.save_snapshot(id, &loaded.state, version).await {
                tracing::warn!(%error, version, "could not save a snapshot; the command succeeded regardless");
            }
        }
        if !loaded.exists() || !self.cache.enabled() || erased_since {
            *guard = None;
        }
        let envelopes = events.into_iter().zip(records).map(|(event, record)| Envelope { event, record }).collect();
        Ok((version, envelopes))
    }

    /// The outcome of the command `command_id` if it was applied before:
    /// its recorded events, which must be in this aggregate's stream.
    async fn applied(&self, id: &A::Id, command_id: Uuid) -> Result<Option<Done<A>>, Attempt<CommandError<A::Error>>> {
        let records = crate::idempotency::command_events(&**self.repository_events(), command_id)
            .await
            .map_err(|e| fail(e.into()))?;
        let Some(first) = records.first() else { return Ok(None) };
        let stream = Repository::<A>::stream_id(id).map_err(|error| fail(error.into()))?;
        if first.stream != stream {
            return Err(fail(Error::Store(StoreError::DuplicateEventId {
                id: first.id,
                stream: first.stream.clone(),
                version: first.stream_version,
            })));
        }
        Self::outcome(&records).map(Some).map_err(fail)
    }

    /// A command's outcome from its recorded events.
    fn outcome(records: &[Arc<crate::envelope::RecordedEvent>]) -> Result<Done<A>, Error> {
        let events = records.iter().map(crate::envelope::RecordedEvent::to_envelope).collect::<Result<Vec<_>, _>>()?;
        Ok((records.last().map_or(0, |record| record.stream_version), events))
    }

    async fn is_stale(&self, id: &A::Id, version: u64) -> Result<bool, Error> {
        let stream = Repository::<A>::stream_id(id)?;
        Ok((**self.repository_events()).stream_version(&stream).await?.unwrap_or(0) != version)
    }

    fn repository_events(&self) -> &Arc<dyn EventStore> {
        self.repository.event_store()
    }
}

fn fail<E>(error: Error) -> Attempt<CommandError<E>> {
    Attempt::Failed(CommandError::Framework(error))
}
