//! The application: registered aggregates and handlers behind one command
//! bus.

use std::any::{type_name, Any, TypeId};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tracing::Instrument;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::command::{AggregateCommand, StandaloneCommand};
use crate::envelope::{Envelope, Metadata};
use crate::error::{CommandError, Error};
use crate::repository::{Loaded, Repository};
use crate::retry::RetryPolicy;
use crate::store::{EventStore, SnapshotStore};
use crate::telemetry;
use crate::trace;

mod builder;
mod cache;
mod slot;
use builder::{check_uses, Service, Slot};
pub use builder::{BuildError, OrchestrixBuilder};
use cache::AggregateCache;
pub use cache::CacheStats;
use slot::{AggregateSlot, Attempt, Run};

/// How many aggregates per type the command bus keeps in memory by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Per-command context: correlation, causation, tenant, trace, headers.
///
/// Whatever is left unset is inherited from the command being handled when
/// a standalone handler sends further commands, and otherwise derived: the
/// correlation id defaults to the command's own id.
///
/// Every field has a setter of the same name (`header` adds one header):
///
/// ```
/// use orchestrix::{app::CommandOptions, Uuid};
///
/// let request = Uuid::now_v7();
/// let options = CommandOptions::default()
///     .command_id(request)
///     .correlation_id(request)
///     .causation_id(request)
///     .tenant("acme")
///     .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .tracestate("vendor=1")
///     .header("source", "import");
/// assert_eq!(options.command_id, Some(request));
/// assert_eq!(options.tracestate.as_deref(), Some("vendor=1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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

    /// Sets the id of this command execution (default: a new UUID v7), for
    /// example the id of the request that carries the command.
    pub fn command_id(mut self, id: Uuid) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Sets the W3C `traceparent` recorded with the events. Without it, the
    /// events carry the trace context of the command's own span.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets the W3C `tracestate` recorded beside the `traceparent`.
    pub fn tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
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
#[non_exhaustive]
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

/// An Orchestrix application: executes commands against aggregates.
///
/// Cloning is cheap; clones share everything.
#[derive(Clone)]
pub struct Orchestrix {
    inner: Arc<Inner>,
}

/// A map by type, looked up twice per command: a `TypeId` is a hash
/// already, so its bits are the key's hash ([`TypeIdHasher`]), not SipHash.
pub(crate) type TypeMap<V> = HashMap<TypeId, V, std::hash::BuildHasherDefault<TypeIdHasher>>;

/// Hashes a `TypeId` to the bits it writes (a `TypeId` is itself a hash
/// of the type), so that a lookup by type costs no hashing.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl std::hash::Hasher for TypeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by `TypeId` (it writes integers); mixes anything else.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    fn write_u128(&mut self, value: u128) {
        #[allow(clippy::cast_possible_truncation)] // both halves are mixed in
        let (high, low) = ((value >> 64) as u64, value as u64);
        self.0 ^= high ^ low;
    }
}

struct Inner {
    events: Arc<dyn EventStore>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    services: HashMap<TypeId, Service>,
    aggregates: TypeMap<Slot>,
    commands: TypeMap<&'static str>,
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
            uses: Vec::new(),
            retry: RetryPolicy::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// Refuses the first of `uses` that this application does not handle
    /// (see [`OrchestrixBuilder::sends`]).
    pub(crate) fn check_uses(&self, uses: Vec<(String, crate::command::CommandUse)>) -> Result<(), BuildError> {
        check_uses(&self.inner.commands, &self.inner.aggregates, uses)
    }

    /// The event store.
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.inner.events
    }

    /// The retry policy of commands (and of [`Orchestrix::decide`]).
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// How the aggregate cache of `A` has served commands so far (hits,
    /// misses, evictions; [`CacheStats::hit_rate`]), or `None` if `A` is
    /// not registered. The counts also go to the metrics recorder
    /// ([`telemetry::AGGREGATE_CACHE_LOOKUPS_TOTAL`]).
    pub fn cache_stats<A: Aggregate>(&self) -> Option<CacheStats> {
        let slot = self.inner.aggregates.get(&TypeId::of::<A>())?.downcast_ref::<AggregateSlot<A>>()?;
        Some(slot.cache.stats())
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
    pub async fn load<A: Aggregate>(&self, id: impl Borrow<A::Id>) -> Result<Loaded<A>, Error> {
        self.repository::<A>().load(id).await
    }

    /// Executes a command against the aggregate `id`: load, handle, append;
    /// on a version conflict, reload and retry as the retry policy says.
    ///
    /// Like every method that names an aggregate, it takes the id owned or
    /// borrowed (`impl Borrow<A::Id>`).
    ///
    /// Commands must be `Clone` to be retried; [`Orchestrix::execute_once`]
    /// takes any command and makes a single attempt.
    pub async fn execute<C>(
        &self,
        id: impl Borrow<<C::Aggregate as Aggregate>::Id>,
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
        id: impl Borrow<<C::Aggregate as Aggregate>::Id>,
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
        self.run_aggregate_command(id.borrow(), next, options).await
    }

    /// Executes a command with a single attempt: a version conflict is
    /// returned as [`CommandError::Conflict`] rather than retried.
    pub async fn execute_once<C: AggregateCommand>(
        &self,
        id: impl Borrow<<C::Aggregate as Aggregate>::Id>,
        command: C,
        options: CommandOptions,
    ) -> Result<CommandOutcome<<C::Aggregate as Aggregate>::Event>, CommandError<<C::Aggregate as Aggregate>::Error>>
    {
        let mut once = Some(command);
        self.run_aggregate_command(id.borrow(), move |_| once.take(), options).await
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
        id: &<C::Aggregate as Aggregate>::Id,
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
        // No span at all when no subscriber takes INFO spans: a disabled
        // span still builds its fields (tracing's `log` fallback), some
        // 200 instructions; the same holds for the repository's spans.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
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
            )
        } else {
            tracing::Span::none()
        };
        adopt_trace(&span, &metadata);
        // The events carry this command's trace context, unless the caller
        // set one: whoever handles them continues the trace.
        span.in_scope(|| trace::inject_into(&mut metadata));
        let started = std::time::Instant::now();
        let result = async {
            // The turn is held through retries and their backoff: a retry
            // keeps its place before commands that arrived after it (ADR 0053).
            let mut turn = slot.turn(id).await;
            let mut attempt = 1;
            loop {
                let Some(command) = next_command(attempt) else {
                    return Err(CommandError::Conflict {
                        aggregate: <C::Aggregate as Aggregate>::NAME,
                        id: id.to_string(),
                        attempts: attempt - 1,
                    });
                };
                match slot.attempt(&mut turn, id, command, service, &metadata, run).await {
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
        telemetry::command_finished::<slot::CommandNamed<C>>(outcome, started.elapsed());
        // A disabled span (no subscriber wants it) records nothing: skip
        // the calls, which still cost some 600 instructions a command.
        if !span.is_disabled() {
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
                }
            }
        }
        if let Err(error) = &result {
            span.in_scope(|| tracing::debug!(outcome, %error, "command failed"));
        }
        result
    }
}

/// Records the trace id on a command's span and, when the caller gave a
/// trace context but runs in no trace of its own (a message from another
/// process, say), makes the span a child of that context.
pub(crate) fn adopt_trace(span: &tracing::Span, metadata: &Metadata) {
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
