//! The application's builder: stores, registrations, services, retries,
//! the aggregate cache's capacity.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{AggregateCache, AggregateSlot, Inner, Orchestrix};
use crate::command::{CommandDescriptor, CommandSet, StandaloneCommand};
use crate::memory::{InMemoryEventStore, InMemorySnapshotStore};
use crate::repository::Repository;
use crate::retry::RetryPolicy;
use crate::store::{EventStore, SnapshotStore};

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
    /// A handler takes a parameter of its aggregate's id type written as
    /// that type (`id: &Uuid`), which reads as an injected service; the
    /// aggregate's id is taken as `id: &Self::Id`.
    #[error(
        "command `{command}`'s handler takes `&{id_type}`, the id type of `{aggregate}`, which is read as an injected service that is not registered; to receive the aggregate's id, write the parameter as `id: &Self::Id`"
    )]
    IdTakenAsService {
        /// The command.
        command: &'static str,
        /// The aggregate.
        aggregate: &'static str,
        /// The id type, as written.
        id_type: &'static str,
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

pub(super) type Service = Arc<dyn Any + Send + Sync>;

/// Builds an [`Orchestrix`] application.
pub struct OrchestrixBuilder {
    pub(super) events: Option<Arc<dyn EventStore>>,
    pub(super) snapshots: Option<Arc<dyn SnapshotStore>>,
    pub(super) services: HashMap<TypeId, Service>,
    pub(super) registrations: Vec<Registration>,
    pub(super) retry: RetryPolicy,
    pub(super) cache_capacity: usize,
}

pub(super) struct Registration {
    owner: &'static str,
    commands: Vec<CommandDescriptor>,
    slot: Option<(TypeId, SlotFactory)>,
    /// The aggregate's id type, to tell a handler that meant to take the
    /// id from one that needs a service.
    id_type: Option<TypeId>,
    /// The aggregate's event types with personal fields, declared to the
    /// event store at build.
    personal: &'static [crate::personal::PersonalData],
}

type SlotFactory = Box<dyn FnOnce(&Arc<dyn EventStore>, Option<&Arc<dyn SnapshotStore>>, usize) -> Slot>;
pub(super) type Slot = Box<dyn Any + Send + Sync>;

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
    /// The event store: any [`EventStore`], a shared `Arc<dyn EventStore>`
    /// included (kept as it is, not wrapped again).
    pub fn event_store<S: EventStore>(mut self, store: S) -> Self {
        self.events = Some(crate::store::shared::<_, dyn EventStore>(store, |store| Arc::new(store)));
        self
    }

    /// The snapshot store (without one, no snapshots are taken): any
    /// [`SnapshotStore`], a shared `Arc<dyn SnapshotStore>` included.
    pub fn snapshot_store<S: SnapshotStore>(mut self, store: S) -> Self {
        self.snapshots = Some(crate::store::shared::<_, dyn SnapshotStore>(store, |store| Arc::new(store)));
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
            id_type: Some(TypeId::of::<A::Id>()),
            personal: <A::Event as crate::event::Event>::personal_data(),
        });
        self
    }

    /// Registers the standalone handler of command `C`.
    pub fn command<C: StandaloneCommand>(mut self) -> Self {
        self.registrations.push(Registration {
            owner: "a standalone handler",
            commands: vec![CommandDescriptor::standalone::<C>()],
            slot: None,
            id_type: None,
            personal: &[],
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
    /// (default [`DEFAULT_CACHE_CAPACITY`](crate::app::DEFAULT_CACHE_CAPACITY); 0 turns the cache off).
    ///
    /// A cached aggregate is not re-read before a command: the append
    /// expects the cached version, and a conflict (another process wrote)
    /// reloads and retries. Commands to one aggregate within this process
    /// take turns, so they do not conflict with each other. When full, the
    /// least recently used aggregate that no command holds is dropped;
    /// [`Orchestrix::cache_stats`] tells how often commands found theirs.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Checks the configuration and builds the application.
    pub fn build(self) -> Result<Orchestrix, BuildError> {
        let events = self.events.ok_or(BuildError::MissingEventStore)?;
        let mut commands: super::TypeMap<&'static str> = super::TypeMap::default();
        let mut aggregates = super::TypeMap::default();
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
                    if !provided && registration.id_type == Some(service.type_id) {
                        return Err(BuildError::IdTakenAsService {
                            command: command.name,
                            aggregate: registration.owner,
                            id_type: service.name,
                        });
                    }
                    if !provided {
                        return Err(BuildError::MissingService { command: command.name, service: service.name });
                    }
                }
            }
            if !registration.personal.is_empty() && !events.declare_personal_data(registration.personal) {
                let types: Vec<&str> = registration.personal.iter().map(|data| data.event_type).collect();
                tracing::warn!(
                    aggregate = registration.owner,
                    event_types = ?types,
                    "orchestrix: these events have fields marked personal, and the event store does not encrypt them: \
                     they are stored in clear; wrap the store in `orchestrix::crypto::CryptoStore` to encrypt them"
                );
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
