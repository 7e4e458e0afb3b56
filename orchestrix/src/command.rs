//! Commands and their handlers, as `#[command_handler]` generates them.

use std::any::{type_name, TypeId};
use std::future::Future;

use crate::aggregate::Aggregate;

/// Whether a command needs its aggregate to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existence {
    /// The command creates the aggregate: the stream must not exist.
    New,
    /// The command changes an existing aggregate.
    Existing,
    /// The command runs against the current state, whatever it is.
    Any,
}

/// A command handled by one aggregate type.
///
/// `#[command_handler]` implements it for the command type of each method
/// in an aggregate's impl block. A method without a receiver creates the
/// aggregate ([`Existence::New`]); one taking `&self` needs it to exist
/// ([`Existence::Existing`]); `#[command(requires = any)]` on the method
/// runs it either way. A method that takes `id: &Self::Id` receives the id
/// the command was sent to.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command of any aggregate",
    label = "no aggregate handles this command",
    note = "add a method taking `{Self}` to an aggregate's `#[command_handler] impl` block"
)]
pub trait AggregateCommand: Send + Sized + 'static {
    /// The aggregate that handles the command.
    type Aggregate: Aggregate;

    /// The service injected into the handler (`()` for none).
    type Service: Send + Sync + 'static;

    /// The command's name, for errors, logs and metrics.
    const NAME: &'static str;

    /// Whether the aggregate must exist.
    const REQUIRES: Existence;

    /// Decides which events the command produces.
    ///
    /// `id` is the aggregate the command was sent to. The application
    /// always gives it; only a test that runs a handler without one
    /// (`AggregateFixture` without `with_id`) passes `None`, and a handler
    /// that takes the id then panics, saying so.
    fn handle<'a>(
        self,
        id: Option<&'a <Self::Aggregate as Aggregate>::Id>,
        aggregate: &'a Self::Aggregate,
        service: &'a Self::Service,
    ) -> impl Future<Output = HandlerResult<Self::Aggregate>> + Send + 'a;
}

/// What an aggregate's command handler returns once normalized.
pub type HandlerResult<A> = Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>;

/// A command that belongs to no aggregate, handled by a free async function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no standalone handler",
    label = "no `#[command_handler] async fn` takes this command",
    note = "write `#[command_handler] async fn handle(cmd: {Self}) -> Result<_, _>`"
)]
pub trait StandaloneCommand: Send + Sized + 'static {
    /// What the handler returns on success.
    type Output: Send + 'static;

    /// What the handler returns on failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The service injected into the handler (`()` for none). The
    /// application itself, [`crate::app::Orchestrix`], is always available.
    type Service: Send + Sync + 'static;

    /// The command's name, for errors, logs and metrics.
    const NAME: &'static str;

    /// Handles the command.
    fn handle(self, service: &Self::Service) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + '_;
}

/// The commands an aggregate handles, read by
/// `Orchestrix::builder().aggregate::<A>()`.
///
/// `#[aggregate]` implements it: the commands of the aggregate's
/// `#[command_handler]` block, or none for an aggregate without one (one
/// written only through multi-stream appends), which can still be
/// registered.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate that `#[aggregate]` generated",
    label = "not registrable with `.aggregate::<{Self}>()`",
    note = "annotate the type with `#[orchestrix::aggregate(event = .., error = ..)]`"
)]
pub trait CommandSet: Aggregate {
    /// One descriptor per handled command (none by default: an aggregate
    /// without commands). Generated; not a stable API.
    #[doc(hidden)]
    fn commands() -> Vec<CommandDescriptor> {
        Vec::new()
    }
}

/// A registered command: its name, type and required service.
///
/// Used by the code the macros generate (reached through
/// `orchestrix::__private`, ADR 0035); not a stable API.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct CommandDescriptor {
    /// The command's name.
    pub name: &'static str,
    /// The command's type.
    pub type_id: TypeId,
    /// The injected service, if any.
    pub service: Option<ServiceDescriptor>,
}

/// A service a handler needs injected (part of [`CommandDescriptor`]; not
/// a stable API).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDescriptor {
    /// The service's type name.
    pub name: &'static str,
    /// The service's type.
    pub type_id: TypeId,
}

impl ServiceDescriptor {
    /// Describes `S`, or `None` for `()` (no service).
    pub fn of<S: 'static>() -> Option<Self> {
        (TypeId::of::<S>() != TypeId::of::<()>()).then(|| Self { name: type_name::<S>(), type_id: TypeId::of::<S>() })
    }
}

impl CommandDescriptor {
    /// Describes an aggregate command.
    pub fn of<C: AggregateCommand>() -> Self {
        Self { name: C::NAME, type_id: TypeId::of::<C>(), service: ServiceDescriptor::of::<C::Service>() }
    }

    /// Describes a standalone command.
    pub fn standalone<C: StandaloneCommand>() -> Self {
        Self { name: C::NAME, type_id: TypeId::of::<C>(), service: ServiceDescriptor::of::<C::Service>() }
    }
}

/// An aggregate command that some part of the application sends through
/// it (a saga's step, a handler that declared it): recorded by the builder
/// so that [`crate::app::OrchestrixBuilder::build`] refuses an
/// application that does not handle it (ADR 0043).
#[derive(Debug, Clone)]
pub(crate) struct CommandUse {
    /// The command's name.
    pub(crate) command: &'static str,
    /// The command's type.
    pub(crate) type_id: TypeId,
    /// The type of the aggregate that handles it.
    pub(crate) aggregate: TypeId,
    /// The builder call that registers its aggregate.
    pub(crate) registration: String,
}

impl CommandUse {
    /// The use of command `C`.
    pub(crate) fn of<C: AggregateCommand>() -> Self {
        Self {
            command: C::NAME,
            type_id: TypeId::of::<C>(),
            aggregate: TypeId::of::<C::Aggregate>(),
            registration: format!("aggregate::<{}>()", type_name::<C::Aggregate>()),
        }
    }
}

/// The commands of an aggregate's `#[command_handler]` block, which the
/// [`CommandSet`] impl of `#[aggregate]` lists.
///
/// `#[command_handler]` implements it: an aggregate has one block, so a
/// second block is a conflicting implementation of this trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[command_handler]` block",
    label = "a generic aggregate needs its handler block to be registered",
    note = "write the handlers in one `#[command_handler] impl {Self} {{ .. }}` block"
)]
pub trait CommandHandlerBlock: Aggregate {
    /// One descriptor per handled command.
    fn commands() -> Vec<CommandDescriptor>;
}
