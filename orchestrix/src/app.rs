//! The application: registered aggregates and handlers behind one command
//! bus.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::command::{AggregateCommand, CommandDescriptor, CommandSet, Existence, StandaloneCommand};
use crate::envelope::{Envelope, Metadata};
use crate::error::{CommandError, Error, StoreError};
use crate::event::Event;
use crate::memory::{InMemoryEventStore, InMemorySnapshotStore};
use crate::repository::{Loaded, Repository};
use crate::retry::RetryPolicy;
use crate::store::{EventStore, ExpectedVersion, SnapshotStore};
use crate::telemetry;
use crate::trace;

/// How many aggregates per type the command bus keeps in memory by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Per-command context: correlation, causation, tenant, trace, headers.
///
/// Whatever is left unset is inherited from the command being handled when
/// a standalone handler sends further commands, and otherwise derived: the
/// correlation id defaults to the command's own id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// The id of this command (default: a new UUID v7). Give the same id to
    /// every delivery of one command (a client's retry, a redelivered
    /// message) and it is applied once: a second execution appends nothing
    /// and returns the first one's outcome (ADR 0027). The command's events
    /// get ids derived from it ([`crate::idempotency::command_event_id`]),
    /// which is how it is remembered: for as long as the events are
    /// stored. A command that records no event (a rejection, a decision
    /// that nothing needs to change) is not remembered and runs again.
    pub command_id: Option<Uuid>,
    /// Correlates everything that stems from one original request.
    pub correlation_id: Option<Uuid>,
    /// What caused this command (an event's or a request's id); recorded
    /// as the causation id of the events it produces.
    pub causation_id: Option<Uuid>,
    /// Tenant recorded with the events.
    pub tenant: Option<String>,
    /// W3C `traceparent` recorded with the events.
    pub traceparent: Option<String>,
    /// W3C `tracestate` recorded with the events.
    pub tracestate: Option<String>,
    /// Free-form headers recorded with the events.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl CommandOptions {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Fills what is unset from the enclosing command, if any, and returns
    /// the command id and the events' metadata.
    pub(crate) fn resolve(mut self) -> (Uuid, Metadata) {
        if let Ok(parent) = CURRENT_COMMAND.try_with(Clone::clone) {
            self.correlation_id = self.correlation_id.or(Some(parent.correlation_id));
            self.causation_id = self.causation_id.or(Some(parent.command_id));
            self.tenant = self.tenant.or(parent.tenant);
        }
        let command_id = self.command_id.unwrap_or_else(Uuid::now_v7);
        let metadata = Metadata {
            correlation_id: Some(self.correlation_id.unwrap_or(command_id)),
            causation_id: Some(self.causation_id.unwrap_or(command_id)),
            traceparent: self.traceparent,
            tracestate: self.tracestate,
            tenant: self.tenant,
            headers: self.headers,
            tags: Vec::new(),
        };
        (command_id, metadata)
    }
}

#[derive(Debug, Clone)]
struct CommandContext {
    command_id: Uuid,
    correlation_id: Uuid,
    tenant: Option<String>,
}

tokio::task_local! {
    static CURRENT_COMMAND: CommandContext;
}

/// What a successful command produced.
///
/// A repeated command id (ADR 0027) returns the outcome of the execution
/// that applied it: its version, events and correlation id; only
/// `attempts` is this execution's.
#[derive(Debug, Clone)]
pub struct CommandOutcome<E> {
    /// The id of this command.
    pub command_id: Uuid,
    /// The correlation id recorded with the events.
    pub correlation_id: Uuid,
    /// The aggregate's version after the command.
    pub version: u64,
    /// The events the command recorded, in order (empty if it decided
    /// nothing needed to change).
    pub events: Vec<Envelope<E>>,
    /// How many attempts it took (more than 1 after version conflicts).
    pub attempts: u32,
}

/// Why [`OrchestrixBuilder::build`] refused the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No event store was configured.
    #[error("no event store is configured; call `.event_store(...)` or `.in_memory()` on the builder")]
    MissingEventStore,
    /// A handler needs a service that was not registered.
    #[error("command `{command}` needs the service `{service}`; register it with `.service(...)`")]
    MissingService {
        /// The command.
        command: &'static str,
        /// The service type.
        service: &'static str,
    },
    /// Two registrations handle the same command type.
    #[error("command `{command}` is handled by both {first} and {second}")]
    DuplicateCommand {
        /// The command.
        command: &'static str,
        /// The first registration.
        first: &'static str,
        /// The second registration.
        second: &'static str,
    },
}

type Service = Arc<dyn Any + Send + Sync>;

/// Builds an [`Orchestrix`] application.
pub struct OrchestrixBuilder {
    events: Option<Arc<dyn EventStore>>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    services: HashMap<TypeId, Service>,
    registrations: Vec<Registration>,
    retry: RetryPolicy,
    cache_capacity: usize,
}

struct Registration {
    owner: &'static str,
    commands: Vec<CommandDescriptor>,
    slot: Option<(TypeId, SlotFactory)>,
}

type SlotFactory = Box<dyn FnOnce(&Arc<dyn EventStore>, Option<&Arc<dyn SnapshotStore>>, usize) -> Slot>;
type Slot = Box<dyn Any + Send + Sync>;

impl fmt::Debug for OrchestrixBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestrixBuilder")
            .field("events", &self.events)
            .field("snapshots", &self.snapshots)
            .field("registrations", &self.registrations.iter().map(|r| r.owner).collect::<Vec<_>>())
            .field("retry", &self.retry)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl OrchestrixBuilder {
    /// The event store.
    pub fn event_store(self, store: impl EventStore) -> Self {
        self.event_store_arc(Arc::new(store))
    }

    /// The event store, shared.
    pub fn event_store_arc(mut self, store: Arc<dyn EventStore>) -> Self {
        self.events = Some(store);
        self
    }

    /// The snapshot store (without one, no snapshots are taken).
    pub fn snapshot_store(self, store: impl SnapshotStore) -> Self {
        self.snapshot_store_arc(Arc::new(store))
    }

    /// The snapshot store, shared.
    pub fn snapshot_store_arc(mut self, store: Arc<dyn SnapshotStore>) -> Self {
        self.snapshots = Some(store);
        self
    }

    /// In-memory event and snapshot stores: for tests and examples.
    pub fn in_memory(self) -> Self {
        self.event_store(InMemoryEventStore::new()).snapshot_store(InMemorySnapshotStore::new())
    }

    /// Registers an aggregate and every command of its `#[command_handler]`
    /// block.
    pub fn aggregate<A: CommandSet>(mut self) -> Self {
        let factory: SlotFactory = Box::new(|events, snapshots, capacity| {
            Box::new(AggregateSlot::<A> {
                repository: Repository::new(Arc::clone(events), snapshots.cloned()),
                cache: AggregateCache::new(capacity),
            })
        });
        self.registrations.push(Registration {
            owner: A::NAME,
            commands: A::commands(),
            slot: Some((TypeId::of::<A>(), factory)),
        });
        self
    }

    /// Registers the standalone handler of command `C`.
    pub fn command<C: StandaloneCommand>(mut self) -> Self {
        self.registrations.push(Registration {
            owner: "a standalone handler",
            commands: vec![CommandDescriptor::standalone::<C>()],
            slot: None,
        });
        self
    }

    /// Registers a service that handlers receive as their second parameter
    /// (`&S`). One service per type.
    pub fn service<S: Send + Sync + 'static>(mut self, service: S) -> Self {
        self.services.insert(TypeId::of::<S>(), Arc::new(service));
        self
    }

    /// The retry policy for version conflicts (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How many aggregates per type to keep in memory between commands
    /// (default [`DEFAULT_CACHE_CAPACITY`]; 0 turns the cache off).
    ///
    /// A cached aggregate is not re-read before a command: the append
    /// expects the cached version, and a conflict (another process wrote)
    /// reloads and retries. Commands to one aggregate within this process
    /// take turns, so they do not conflict with each other.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Checks the configuration and builds the application.
    pub fn build(self) -> Result<Orchestrix, BuildError> {
        let events = self.events.ok_or(BuildError::MissingEventStore)?;
        let mut commands: HashMap<TypeId, &'static str> = HashMap::new();
        let mut aggregates = HashMap::new();
        for registration in self.registrations {
            for command in &registration.commands {
                if let Some(first) = commands.insert(command.type_id, registration.owner) {
                    return Err(BuildError::DuplicateCommand {
                        command: command.name,
                        first,
                        second: registration.owner,
                    });
                }
                if let Some(service) = command.service {
                    let provided =
                        service.type_id == TypeId::of::<Orchestrix>() || self.services.contains_key(&service.type_id);
                    if !provided {
                        return Err(BuildError::MissingService { command: command.name, service: service.name });
                    }
                }
            }
            if let Some((type_id, factory)) = registration.slot {
                aggregates.insert(type_id, factory(&events, self.snapshots.as_ref(), self.cache_capacity));
            }
        }
        Ok(Orchestrix {
            inner: Arc::new(Inner {
                events,
                snapshots: self.snapshots,
                services: self.services,
                aggregates,
                commands,
                retry: self.retry,
            }),
        })
    }
}

/// An Orchestrix application: executes commands against aggregates.
///
/// Cloning is cheap; clones share everything.
#[derive(Clone)]
pub struct Orchestrix {
    inner: Arc<Inner>,
}

struct Inner {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    services: HashMap<TypeId, Service>,
    aggregates: HashMap<TypeId, Slot>,
    commands: HashMap<TypeId, &'static str>,
    retry: RetryPolicy,
}

impl fmt::Debug for Orchestrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrix")
            .field("events", &self.inner.events)
            .field("snapshots", &self.inner.snapshots)
            .field("commands", &self.inner.commands.len())
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl Orchestrix {
    /// Starts configuring an application.
    pub fn builder() -> OrchestrixBuilder {
        OrchestrixBuilder {
            events: None,
            snapshots: None,
            services: HashMap::new(),
            registrations: Vec::new(),
            retry: RetryPolicy::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// The event store.
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.inner.events
    }

    /// The retry policy of commands (and of [`Orchestrix::decide`]).
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The snapshot store, if one is configured.
    pub fn snapshot_store(&self) -> Option<&Arc<dyn SnapshotStore>> {
        self.inner.snapshots.as_ref()
    }

    /// A repository for aggregates of type `A`, sharing the stores.
    pub fn repository<A: Aggregate>(&self) -> Repository<A> {
        Repository::new(Arc::clone(&self.inner.events), self.inner.snapshots.clone())
    }

    /// The current state of an aggregate (version 0 if it does not exist).
    pub async fn load<A: Aggregate>(&self, id: &A::Id) -> Result<Loaded<A>, Error> {
        self.repository::<A>().load(id).await
    }

    /// Executes a command against the aggregate `id`: load, handle, append;
    /// on a version conflict, reload and retry as the retry policy says.
    ///
    /// Commands must be `Clone` to be retried; [`Orchestrix::execute_once`]
    /// takes any command and makes a single attempt.
    pub async fn execute<C>(
        &self,
        id: <C::Aggregate as Aggregate>::Id,
        command: C,
    ) -> Result<CommandOutcome<<C::Aggregate as Aggregate>::Event>, CommandError<<C::Aggregate as Aggregate>::Error>>
    where
        C: AggregateCommand + Clone,
    {
        self.execute_with(id, command, CommandOptions::default()).await
    }

    /// [`Orchestrix::execute`] with correlation, causation, tenant, trace
    /// context and headers.
    pub async fn execute_with<C>(
        &self,
        id: <C::Aggregate as Aggregate>::Id,
        command: C,
        options: CommandOptions,
    ) -> Result<CommandOutcome<<C::Aggregate as Aggregate>::Event>, CommandError<<C::Aggregate as Aggregate>::Error>>
    where
        C: AggregateCommand + Clone,
    {
        let max_attempts = self.inner.retry.max_attempts();
        let mut spare = Some(command);
        let next = move |attempt: u32| {
            if attempt >= max_attempts {
                spare.take()
            } else {
                spare.clone()
            }
        };
        self.run_aggregate_command(id, next, options).await
    }

    /// Executes a command with a single attempt: a version conflict is
    /// returned as [`CommandError::Conflict`] rather than retried.
    pub async fn execute_once<C: AggregateCommand>(
        &self,
        id: <C::Aggregate as Aggregate>::Id,
        command: C,
        options: CommandOptions,
    ) -> Result<CommandOutcome<<C::Aggregate as Aggregate>::Event>, CommandError<<C::Aggregate as Aggregate>::Error>>
    {
        let mut once = Some(command);
        self.run_aggregate_command(id, move |_| once.take(), options).await
    }

    /// Runs a command that belongs to no aggregate through its standalone
    /// handler. Commands the handler sends through this application inherit
    /// its correlation id and record it as their cause.
    pub async fn dispatch<C: StandaloneCommand>(&self, command: C) -> Result<C::Output, CommandError<C::Error>> {
        self.dispatch_with(command, CommandOptions::default()).await
    }

    /// [`Orchestrix::dispatch`] with explicit options.
    pub async fn dispatch_with<C: StandaloneCommand>(
        &self,
        command: C,
        options: CommandOptions,
    ) -> Result<C::Output, CommandError<C::Error>> {
        if !self.inner.commands.contains_key(&TypeId::of::<C>()) {
            return Err(CommandError::Unregistered {
                command: C::NAME,
                registration: format!("command::<{}>()", type_name::<C>()),
            });
        }
        let service = self.service::<C::Service>()?;
        let (command_id, metadata) = options.resolve();
        let correlation_id = metadata.correlation_id.unwrap_or(command_id);
        let context = CommandContext { command_id, correlation_id, tenant: metadata.tenant.clone() };
        let span = tracing::info_span!(
            "orchestrix.dispatch",
            command = C::NAME,
            %command_id,
            %correlation_id,
            trace_id = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        adopt_trace(&span, &metadata);
        let result = CURRENT_COMMAND.scope(context, command.handle(service)).instrument(span.clone()).await;
        if let Err(error) = &result {
            span.record("error", tracing::field::display(error));
        }
        result.map_err(CommandError::Rejected)
    }

    fn service<S: Send + Sync + 'static>(&self) -> Result<&S, Error> {
        let any: Option<&dyn Any> = if TypeId::of::<S>() == TypeId::of::<()>() {
            Some(&())
        } else if TypeId::of::<S>() == TypeId::of::<Orchestrix>() {
            Some(self)
        } else {
            self.inner.services.get(&TypeId::of::<S>()).map(|s| &**s as &dyn Any)
        };
        any.and_then(<dyn Any>::downcast_ref).ok_or(Error::MissingService { service: type_name::<S>() })
    }

    async fn run_aggregate_command<C: AggregateCommand>(
        &self,
        id: <C::Aggregate as Aggregate>::Id,
        mut next_command: impl FnMut(u32) -> Option<C>,
        options: CommandOptions,
    ) -> Result<CommandOutcome<<C::Aggregate as Aggregate>::Event>, CommandError<<C::Aggregate as Aggregate>::Error>>
    {
        let slot = self
            .inner
            .aggregates
            .get(&TypeId::of::<C::Aggregate>())
            .and_then(|slot| slot.downcast_ref::<AggregateSlot<C::Aggregate>>())
            .filter(|_| self.inner.commands.contains_key(&TypeId::of::<C>()))
            .ok_or_else(|| CommandError::Unregistered {
                command: C::NAME,
                registration: format!("aggregate::<{}>()", type_name::<C::Aggregate>()),
            })?;
        let service = self.service::<C::Service>()?;
        // Only a command id the caller gave can have been used before.
        let repeatable = options.command_id.is_some();
        let (command_id, mut metadata) = options.resolve();
        let correlation_id = metadata.correlation_id.unwrap_or(command_id);
        let run = Run { command_id, repeatable };
        let span = tracing::info_span!(
            "orchestrix.command",
            command = C::NAME,
            aggregate = <C::Aggregate as Aggregate>::NAME,
            aggregate_id = %id,
            %command_id,
            %correlation_id,
            trace_id = tracing::field::Empty,
            outcome = tracing::field::Empty,
            version = tracing::field::Empty,
            attempts = tracing::field::Empty,
            error = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        adopt_trace(&span, &metadata);
        // The events carry this command's trace context, unless the caller
        // set one: whoever handles them continues the trace.
        span.in_scope(|| trace::inject_into(&mut metadata));
        let started = std::time::Instant::now();
        let result = async {
            let mut attempt = 1;
            loop {
                let Some(command) = next_command(attempt) else {
                    return Err(CommandError::Conflict {
                        aggregate: <C::Aggregate as Aggregate>::NAME,
                        id: id.to_string(),
                        attempts: attempt - 1,
                    });
                };
                match slot.attempt(&id, command, service, &metadata, run).await {
                    Ok((version, events)) => {
                        // A repeated command answers with the first
                        // execution's events, and so its correlation id.
                        let correlation_id =
                            events.first().and_then(|event| event.metadata.correlation_id).unwrap_or(correlation_id);
                        return Ok(CommandOutcome { command_id, correlation_id, version, events, attempts: attempt });
                    }
                    Err(Attempt::Failed(error)) => return Err(error),
                    Err(Attempt::Conflict) => {
                        tracing::debug!(attempt, "version conflict");
                        let delay = self.inner.retry.delay_after(attempt);
                        telemetry::conflict(<C::Aggregate as Aggregate>::NAME, delay.is_some());
                        match delay {
                            Some(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
                            Some(_) => {}
                            None => {
                                return Err(CommandError::Conflict {
                                    aggregate: <C::Aggregate as Aggregate>::NAME,
                                    id: id.to_string(),
                                    attempts: attempt,
                                })
                            }
                        }
                        attempt += 1;
                    }
                }
            }
        }
        .instrument(span.clone())
        .await;
        let outcome = telemetry::command_outcome(&result);
        telemetry::command_finished(C::NAME, <C::Aggregate as Aggregate>::NAME, outcome, started.elapsed());
        span.record("outcome", outcome);
        match &result {
            Ok(done) => {
                span.record("version", done.version);
                span.record("attempts", done.attempts);
            }
            Err(error) => {
                span.record("error", tracing::field::display(error));
                if telemetry::is_system_failure(outcome) {
                    span.record("otel.status_code", "ERROR");
                }
                span.in_scope(|| tracing::debug!(outcome, %error, "command failed"));
            }
        }
        result
    }
}

/// Events for several aggregates, to be appended all together or not at
/// all by [`Orchestrix::append_many`]: the way to keep an invariant that
/// spans aggregates (a transfer that debits one account and credits
/// another) without a saga.
///
/// Each part names an aggregate, what its version must be (usually
/// [`Loaded::expected_version`] of the state the decision was based on) and
/// its events; [`MultiAppend::guard`] adds a part without events, which
/// only requires an aggregate to be unchanged.
///
/// ```
/// use orchestrix::app::MultiAppend;
/// use orchestrix::prelude::*;
/// use orchestrix::{CommandOptions, ExpectedVersion};
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub enum AccountEvent { Opened { owner: String }, Debited { amount: u64 }, Credited { amount: u64 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("refused")]
/// pub struct Refused;
///
/// #[aggregate(event = AccountEvent, error = Refused)]
/// #[derive(Debug, Default)]
/// pub struct Account { balance: u64 }
///
/// impl Account {
///     fn apply(&mut self, event: &AccountEvent) {
///         match event {
///             AccountEvent::Opened { .. } => {}
///             AccountEvent::Debited { amount } => self.balance -= amount,
///             AccountEvent::Credited { amount } => self.balance += amount,
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Orchestrix::builder().in_memory().build()?;
/// let (alice, bob) = (orchestrix::Uuid::now_v7(), orchestrix::Uuid::now_v7());
/// let opened = MultiAppend::new()
///     .append::<Account>(&alice, ExpectedVersion::NoStream, &[AccountEvent::Opened { owner: "Alice".into() }, AccountEvent::Credited { amount: 50 }])?
///     .append::<Account>(&bob, ExpectedVersion::NoStream, &[AccountEvent::Opened { owner: "Bob".into() }])?;
/// app.append_many(opened, CommandOptions::default()).await?;
///
/// // A transfer: both accounts change, or neither does.
/// let (from, to) = (app.load::<Account>(&alice).await?, app.load::<Account>(&bob).await?);
/// assert!(from.state.balance >= 20);
/// let transfer = MultiAppend::new()
///     .append::<Account>(&alice, from.expected_version(), &[AccountEvent::Debited { amount: 20 }])?
///     .append::<Account>(&bob, to.expected_version(), &[AccountEvent::Credited { amount: 20 }])?;
/// let recorded = app.append_many(transfer, CommandOptions::default()).await?;
/// assert_eq!(recorded[1][0].stream_version, 2);
///
/// // Built on a stale state: nothing is written.
/// let stale = MultiAppend::new()
///     .append::<Account>(&alice, from.expected_version(), &[AccountEvent::Debited { amount: 20 }])?
///     .append::<Account>(&bob, to.expected_version(), &[AccountEvent::Credited { amount: 20 }])?;
/// let error = app.append_many(stale, CommandOptions::default()).await.unwrap_err();
/// assert!(matches!(error, orchestrix::Error::Store(ref e) if e.is_conflict()));
/// assert_eq!(app.load::<Account>(&bob).await?.state.balance, 20);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MultiAppend {
    parts: Vec<MultiPart>,
}

#[derive(Debug)]
struct MultiPart {
    aggregate: &'static str,
    stream: crate::stream::StreamId,
    expected: ExpectedVersion,
    events: Vec<(&'static str, u32, Box<serde_json::value::RawValue>, Vec<String>)>,
}

impl MultiAppend {
    /// An empty set of parts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `events` for the aggregate `id` of type `A`, whose version must
    /// be `expected`. Fails if the id is not a valid stream id or an event
    /// does not serialize.
    pub fn append<A: Aggregate>(
        mut self,
        id: &A::Id,
        expected: ExpectedVersion,
        events: &[A::Event],
    ) -> Result<Self, Error> {
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            let data = event.encode().map_err(|source| Error::Serialize { what: "an event", source })?;
            encoded.push((event.event_type(), event.schema_version(), data, event.tags()));
        }
        let stream = Repository::<A>::stream_id(id)?;
        self.parts.push(MultiPart { aggregate: A::NAME, stream, expected, events: encoded });
        Ok(self)
    }

    /// Adds a guard: the aggregate `id` of type `A` must be at `expected`
    /// for the whole append to succeed; nothing is written to it.
    pub fn guard<A: Aggregate>(self, id: &A::Id, expected: ExpectedVersion) -> Result<Self, Error> {
        self.append::<A>(id, expected, &[])
    }

    /// How many parts there are.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether there is no part.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl Orchestrix {
    /// Appends the parts of `batch` atomically through
    /// [`EventStore::append_many`]: all or nothing, each part checked
    /// against its own expected version, the events consecutive in the
    /// global log. Every event carries the metadata of `options`
    /// (correlation, causation, tenant, trace context, headers), like the
    /// events of a command.
    ///
    /// Returns the recorded events per part, in the order they were added.
    /// A failed expectation is [`StoreError::WrongExpectedVersion`] (inside
    /// [`Error::Store`]) naming the first failing part's stream; nothing is
    /// retried, since the caller decided on the states it loaded: load
    /// again, decide again, and append again.
    pub async fn append_many(
        &self,
        batch: MultiAppend,
        options: CommandOptions,
    ) -> Result<Vec<Vec<Arc<crate::envelope::RecordedEvent>>>, Error> {
        let run = Run { command_id: options.command_id.unwrap_or_default(), repeatable: options.command_id.is_some() };
        let (command_id, mut metadata) = options.resolve();
        let span = tracing::info_span!(
            "orchestrix.append_many",
            %command_id,
            parts = batch.parts.len(),
            event_count = batch.parts.iter().map(|part| part.events.len()).sum::<usize>(),
            trace_id = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        adopt_trace(&span, &metadata);
        span.in_scope(|| trace::inject_into(&mut metadata));
        let mut counts = Vec::with_capacity(batch.parts.len());
        // The events' ids derive from a command id the caller gave, so that
        // a retry with the same options is answered as the original (ADR 0027).
        let mut event_ids = (0..).map(|index| run.event_id(index));
        let appends = batch
            .parts
            .into_iter()
            .map(|part| {
                counts.push((part.aggregate, part.events.len()));
                let events = part
                    .events
                    .into_iter()
                    .map(|(event_type, schema_version, data, tags)| crate::envelope::NewEvent {
                        id: event_ids.next().unwrap_or_else(Uuid::now_v7),
                        event_type: event_type.to_owned(),
                        schema_version,
                        data,
                        metadata: metadata.clone().with_tags(tags),
                    })
                    .collect();
                crate::store::StreamAppend::new(part.stream, part.expected, events)
            })
            .collect();
        let result = self.inner.events.append_many(appends).instrument(span.clone()).await;
        match &result {
            Ok(_) => {
                for (aggregate, count) in counts.into_iter().filter(|&(_, count)| count > 0) {
                    telemetry::events_appended(aggregate, count);
                }
            }
            Err(error) => {
                span.record("error", tracing::field::display(error));
            }
        }
        Ok(result?)
    }
}

/// Records the trace id on a command's span and, when the caller gave a
/// trace context but runs in no trace of its own (a message from another
/// process, say), makes the span a child of that context.
fn adopt_trace(span: &tracing::Span, metadata: &Metadata) {
    if span.is_disabled() {
        return;
    }
    if metadata.traceparent.is_some() && trace::current().is_none() {
        trace::set_parent_from(span, metadata);
    }
    let headers = metadata.traceparent.clone().or_else(|| span.in_scope(trace::current).map(|h| h.traceparent));
    if let Some(trace_id) = headers.as_deref().and_then(trace::trace_id) {
        span.record("trace_id", trace_id);
    }
}

/// The outcome of one attempt that did not succeed.
enum Attempt<E> {
    /// Lost an optimistic-concurrency race: reload and try again.
    Conflict,
    /// Any other failure: give up.
    Failed(E),
}

/// What a command produced: the aggregate's version and the events.
type Done<A> = (u64, Vec<Envelope<<A as Aggregate>::Event>>);

type AttemptResult<A> = Result<Done<A>, Attempt<CommandError<<A as Aggregate>::Error>>>;

/// What an attempt knows of the command it runs (ADR 0027).
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The command id, from which its events' ids derive.
    command_id: Uuid,
    /// Whether the caller gave the id, so that it may have been applied
    /// before (a fresh id cannot have been).
    repeatable: bool,
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

/// Everything the bus keeps per registered aggregate type.
struct AggregateSlot<A: Aggregate> {
    repository: Repository<A>,
    cache: AggregateCache<A>,
}

impl<A: Aggregate> AggregateSlot<A> {
    async fn attempt<C: AggregateCommand<Aggregate = A>>(
        &self,
        id: &A::Id,
        command: C,
        service: &C::Service,
        metadata: &Metadata,
        run: Run,
    ) -> AttemptResult<A> {
        // Erasure hook (ADR 0031): a `forget` since the cache was filled
        // empties it, and the state is read again with the data erased.
        let erasures = self.cache.sync_erasures(self.repository_events().erasure_generation());
        let entry = self.cache.entry(id);
        let mut guard = entry.lock().await;
        let was_cached = guard.is_some();
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
        let verdict = match (C::REQUIRES, loaded.exists()) {
            (Existence::New, true) => {
                Err(CommandError::AggregateAlreadyExists { aggregate: A::NAME, id: id.to_string() })
            }
            (Existence::Existing, false) => {
                Err(CommandError::AggregateNotFound { aggregate: A::NAME, id: id.to_string() })
            }
            _ => Ok(()),
        };
        let decided = match verdict {
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
        telemetry::events_appended(A::NAME, records.len());
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
        drop(guard);
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
        Ok(self.repository_events().stream_version(&stream).await?.unwrap_or(0) != version)
    }

    fn repository_events(&self) -> &Arc<dyn EventStore> {
        self.repository.event_store()
    }
}

fn fail<E>(error: Error) -> Attempt<CommandError<E>> {
    Attempt::Failed(CommandError::Framework(error))
}

type CacheEntry<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// Aggregates kept between commands, each behind an async lock so that
/// commands to one aggregate in this process take turns.
struct AggregateCache<A: Aggregate> {
    entries: Mutex<HashMap<A::Id, CacheEntry<A>>>,
    capacity: usize,
    /// The store's erasure generation the entries were read under.
    erasures: std::sync::atomic::AtomicU64,
}

impl<A: Aggregate> AggregateCache<A> {
    fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity, erasures: std::sync::atomic::AtomicU64::new(0) }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Erasure hook (ADR 0031): empties the cache if the store's erasure
    /// generation is not the one its entries were read under, and returns
    /// it. Commands that hold an entry finish on it; their appends of a
    /// forgotten subject's personal data are refused by the store.
    fn sync_erasures(&self, generation: u64) -> u64 {
        if self.erasures.swap(generation, std::sync::atomic::Ordering::AcqRel) != generation {
            self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        generation
    }

    /// The entry of `id`, created empty if needed. When the cache is over
    /// capacity, entries that no command holds are evicted first.
    fn entry(&self, id: &A::Id) -> CacheEntry<A> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(id) {
            return Arc::clone(entry);
        }
        if entries.len() >= self.capacity.max(1) {
            let target = self.capacity - self.capacity / 4;
            let mut excess = entries.len().saturating_sub(target);
            entries.retain(|_, entry| {
                if excess > 0 && Arc::strong_count(entry) == 1 {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        Arc::clone(entries.entry(id.clone()).or_default())
    }
}
