//! The [`Aggregate`] trait: a consistency boundary rebuilt from its events.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde_json::value::RawValue;

use crate::event::Event;

/// What can identify an aggregate: anything printable and parseable, such
/// as [`uuid::Uuid`] (the default of `#[aggregate]`), `String` or `u64`.
pub trait AggregateId: Clone + Debug + Display + FromStr + Eq + Hash + Send + Sync + 'static {}

impl<T> AggregateId for T where T: Clone + Debug + Display + FromStr + Eq + Hash + Send + Sync + 'static {}

/// An aggregate: state that only changes by applying its own events, and
/// that decides which events a command produces.
///
/// Implemented by `#[aggregate]`, which reads the settings from its
/// arguments and forwards [`Aggregate::apply`] to the type's inherent
/// `apply` method:
///
/// ```
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub enum CounterEvent { Incremented { by: u32 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("counter overflow")]
/// pub struct Overflow;
///
/// #[aggregate(event = CounterEvent, error = Overflow, id = u64)]
/// #[derive(Debug, Default)]
/// pub struct Counter { value: u32 }
///
/// impl Counter {
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Incremented { by } => self.value += by }
///     }
/// }
///
/// assert_eq!(<Counter as Aggregate>::NAME, "Counter");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "annotate the type with `#[orchestrix::aggregate(event = ..., error = ...)]`"
)]
pub trait Aggregate: Default + Send + Sync + Sized + 'static {
    /// The aggregate type's stable name: the category of its streams.
    const NAME: &'static str;

    /// Take a snapshot every this many events (`None`: never).
    const SNAPSHOT_EVERY: Option<NonZeroU64> = None;

    /// The schema version of the snapshot state. Bump it whenever the
    /// state's shape changes: older snapshots are then ignored and rebuilt
    /// from events rather than trusted.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The id type.
    type Id: AggregateId;

    /// The event type.
    type Event: Event;

    /// The domain error its command handlers return.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Evolves the state by one event. Must not fail: the event already
    /// happened.
    fn apply(&mut self, event: &Self::Event);

    /// Serializes the state for a snapshot (`None` when snapshots are off).
    fn snapshot_state(&self) -> Option<Result<Box<RawValue>, serde_json::Error>> {
        None
    }

    /// Restores the state from a snapshot (`None` when snapshots are off).
    fn restore_state(state: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        let _ = state;
        None
    }
}

/// What `#[aggregate]` requires of a type besides its attribute: an
/// inherent `fn apply(&mut self, event: &E)`, which the generated
/// [`Aggregate::apply`] calls.
///
/// No type implements this trait, and none should: it only names the
/// missing method in the compiler's error when a type under
/// `#[aggregate]` has no inherent `apply` (instead of the generated
/// `Aggregate::apply` calling itself forever).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `apply` method: write `fn apply(&mut self, event: &{E}) {{ .. }}` in an `impl` block of `{Self}`",
    label = "`#[aggregate]` calls `{Self}::apply` for every event",
    note = "`apply` changes the state by one event, with a `match` over the event type"
)]
pub trait ApplyMethod<E> {}
