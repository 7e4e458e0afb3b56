//! Given/when/then fixtures for aggregates.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::fmt::{self, Debug};

use crate::aggregate::Aggregate;
use crate::command::{AggregateCommand, Existence};
use crate::error::CommandError;
use crate::event::Event;

/// Tests an aggregate's command handlers without any store: given past
/// events, when a command arrives, then expect events or an error.
///
/// Every event the handler produces is also encoded and decoded again, so
/// a fixture catches events that do not survive storage.
///
/// ```
/// use orchestrix::prelude::*;
/// use orchestrix::testing::AggregateFixture;
///
/// #[event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum LampEvent { SwitchedOn }
///
/// #[derive(Debug, thiserror::Error, PartialEq)]
/// pub enum LampError { #[error("already on")] AlreadyOn }
///
/// #[aggregate(event = LampEvent, error = LampError)]
/// #[derive(Debug, Default)]
/// pub struct Lamp { on: bool }
///
/// impl Lamp {
///     fn apply(&mut self, event: &LampEvent) {
///         match event { LampEvent::SwitchedOn => self.on = true }
///     }
/// }
///
/// #[derive(Clone)]
/// pub struct SwitchOn;
///
/// #[command_handler]
/// impl Lamp {
///     #[command(requires = any)]
///     fn switch_on(&self, _: SwitchOn) -> Result<LampEvent, LampError> {
///         if self.on { Err(LampError::AlreadyOn) } else { Ok(LampEvent::SwitchedOn) }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// AggregateFixture::<Lamp>::given_no_previous_events()
///     .when(SwitchOn).await
///     .then_expect_events([LampEvent::SwitchedOn]);
/// AggregateFixture::<Lamp>::given([LampEvent::SwitchedOn])
///     .when(SwitchOn).await
///     .then_expect_rejection(LampError::AlreadyOn);
/// # }
/// ```
pub struct AggregateFixture<A: Aggregate> {
    state: A,
    version: u64,
    id: Option<A::Id>,
    services: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl<A: Aggregate> Debug for AggregateFixture<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateFixture")
            .field("aggregate", &A::NAME)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> AggregateFixture<A> {
    /// An aggregate that does not exist yet.
    pub fn given_no_previous_events() -> Self {
        Self { state: A::default(), version: 0, id: None, services: HashMap::new() }
    }

    /// An aggregate built from these past events.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut fixture = Self::given_no_previous_events();
        for event in events {
            fixture.state.apply(&event);
            fixture.version += 1;
        }
        fixture
    }

    /// The id of the aggregate, for handlers that take `id: &Self::Id`
    /// (one that does panics without it).
    pub fn with_id(mut self, id: A::Id) -> Self {
        self.id = Some(id);
        self
    }

    /// Provides a service that handlers receive as `&S`.
    pub fn with_service<S: Send + Sync + 'static>(mut self, service: S) -> Self {
        self.services.insert(TypeId::of::<S>(), Box::new(service));
        self
    }

    /// Runs the command's handler as the application would, existence
    /// checks included.
    pub async fn when<C: AggregateCommand<Aggregate = A>>(self, command: C) -> Outcome<A> {
        let exists = self.version > 0;
        let id = || self.id.as_ref().map_or_else(|| "(fixture)".to_owned(), ToString::to_string);
        let result = match (C::REQUIRES, exists) {
            (Existence::New, true) => Err(CommandError::AggregateAlreadyExists { aggregate: A::NAME, id: id() }),
            (Existence::Existing, false) => Err(CommandError::AggregateNotFound { aggregate: A::NAME, id: id() }),
            _ => {
                let unit = ();
                let service: &C::Service = if TypeId::of::<C::Service>() == TypeId::of::<()>() {
                    (&unit as &dyn Any).downcast_ref().expect("the unit service")
                } else {
                    self.services.get(&TypeId::of::<C::Service>()).and_then(|s| s.downcast_ref()).unwrap_or_else(|| {
                        panic!(
                            "command `{}` needs the service `{}`; give it to the fixture with `.with_service(...)`",
                            C::NAME,
                            type_name::<C::Service>()
                        )
                    })
                };
                command.handle(self.id.as_ref(), &self.state, service).await.map_err(CommandError::Rejected)
            }
        };
        let mut state = self.state;
        if let Ok(events) = &result {
            for event in events {
                assert_survives_storage(event);
                state.apply(event);
            }
        }
        Outcome { command: C::NAME, result, state }
    }
}

fn assert_survives_storage<E: Event>(event: &E) {
    let data = event.encode().unwrap_or_else(|e| panic!("event {event:?} does not serialize: {e}"));
    let decoded = E::decode(event.event_type(), event.schema_version(), &data)
        .unwrap_or_else(|e| panic!("event {event:?} does not decode from its own data {}: {e}", data.get()));
    let again = decoded.encode().expect("a decoded event serializes");
    assert_eq!(again.get(), data.get(), "event {event:?} changes when stored and read back");
}

/// What a command did in an [`AggregateFixture`].
pub struct Outcome<A: Aggregate> {
    command: &'static str,
    result: Result<Vec<A::Event>, CommandError<A::Error>>,
    state: A,
}

impl<A: Aggregate + Debug> Debug for Outcome<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome").field("command", &self.command).field("result", &self.result).finish_non_exhaustive()
    }
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts that the command produced exactly these events.
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> Self
    where
        A::Event: PartialEq,
    {
        let expected: Vec<_> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => {
                assert_eq!(events, &expected, "command `{}` produced other events than expected", self.command);
            }
            Err(error) => panic!("command `{}` failed with `{error}`; expected events {expected:?}", self.command),
        }
        self
    }

    /// Asserts that the handler rejected the command with this domain error.
    #[allow(clippy::needless_pass_by_value)] // by value reads best at the call site
    pub fn then_expect_rejection(self, expected: A::Error) -> Self
    where
        A::Error: PartialEq,
    {
        match &self.result {
            Err(CommandError::Rejected(error)) => {
                assert_eq!(error, &expected, "command `{}` was rejected with another error", self.command);
            }
            other => panic!("command `{}` returned {other:?}; expected the rejection {expected:?}", self.command),
        }
        self
    }

    /// Asserts that the command failed in a way `check` accepts.
    pub fn then_expect_error(self, check: impl FnOnce(&CommandError<A::Error>) -> bool) -> Self {
        match &self.result {
            Err(error) => {
                assert!(check(error), "command `{}` failed with an unexpected error: {error:?}", self.command);
            }
            Ok(events) => panic!("command `{}` succeeded with {events:?}; expected an error", self.command),
        }
        self
    }

    /// The events produced, or the error.
    pub fn result(&self) -> &Result<Vec<A::Event>, CommandError<A::Error>> {
        &self.result
    }

    /// The state after applying the produced events.
    pub fn state(&self) -> &A {
        &self.state
    }
}
