//! The attribute macros of [Orchestrix](https://docs.rs/orchestrix):
//! [`macro@event`], [`macro@aggregate`], [`macro@command_handler`] and
//! [`macro@projection`].
//!
//! Use them through the runtime crate (`use orchestrix::prelude::*;`): the
//! code they generate names `::orchestrix::...`. If you renamed the
//! dependency, tell each macro with `crate = "::my_name"`.
//!
//! Each entry point below hands its tokens to a module that parses the
//! arguments (`attr`), validates the item into a model (`model`) and
//! generates code (`expand`). Every error is collected and reported at
//! once; when there are errors, the item is still emitted with stub impls,
//! so one mistake yields one error. The `ui-tests` crate holds one
//! compile-fail case per diagnostic.
#![doc(test(attr(deny(warnings))))]

mod aggregate;
mod command;
mod common;
mod ctxt;
mod event;
mod projection;

use proc_macro::TokenStream;

/// Turns an enum (one stored event type per variant) or a struct with
/// named fields into an `orchestrix::Event`.
///
/// Every event is stored as a type name, a schema version and JSON data
/// *without* an enum tag: `AccountEvent::Deposited { amount: 5 }` is stored
/// as `AccountDeposited`, version 1, `{"amount":5}`.
///
/// # Stored type names
///
/// The stored name of a variant is the enum's name without a trailing
/// `Event` (or `Events`), followed by the variant's name:
/// `AccountEvent::Deposited` is `AccountDeposited`, and
/// `LoanRequestEvent::Requested` is `LoanRequestRequested`. A struct is
/// stored under its own name. Write `#[event(name = "LoanRequested")]` on
/// a variant (or on the struct) to choose the name yourself; do so before
/// the first event is stored, since the name is how stored events are read
/// back. Two variants of one enum cannot share a name, and a name must be
/// something every store accepts (not empty, at most
/// `orchestrix::event::MAX_EVENT_TYPE_LEN` bytes, no whitespace or control
/// characters): both are compile errors.
///
/// ```
/// use orchestrix::prelude::*;
/// use serde_json::{json, Value};
///
/// fn v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
///     data["reason"] = json!("unknown");
///     Ok(data)
/// }
///
/// #[event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum AccountEvent {
///     Opened { owner: String },
///     #[event(version = 2, upcast = [v1_to_v2])]
///     Withdrawn { amount: u64, reason: String },
///     #[event(name = "AccountClosedForGood")]
///     Closed,
/// }
///
/// let closed = AccountEvent::Closed;
/// assert_eq!(closed.event_type(), "AccountClosedForGood");
/// assert_eq!(closed.encode().unwrap().get(), "{}");
/// let v1 = serde_json::value::RawValue::from_string(r#"{"amount":3}"#.into()).unwrap();
/// let withdrawn = AccountEvent::decode("AccountWithdrawn", 1, &v1).unwrap();
/// assert_eq!(withdrawn, AccountEvent::Withdrawn { amount: 3, reason: "unknown".into() });
/// ```
///
/// # What it expands to
///
/// The item (without the helper attributes), and in a `const _: () = { .. }`
/// block:
/// - per named-field variant, a borrowed shadow struct deriving `Serialize`
///   and an owned one deriving `Deserialize`, carrying the fields' and the
///   variant's `#[serde(...)]` attributes; a unit variant is stored as `{}`
///   and reads any object; a newtype variant `Deposited(MoneyDeposited)` is
///   stored as the inner value;
/// - for a struct with named fields, `#[derive(Serialize, Deserialize)]`
///   on the struct itself: deriving them yourself as well is an error that
///   says so;
/// - `impl orchestrix::Event`, whose `decode` runs the upcasters from the
///   stored version up to the current one.
///
/// The `#[serde(...)]` attributes of an enum's variants and fields are
/// *moved* to the shadow structs (the enum itself derives nothing). The
/// macro adds no other derive: the `Event` trait needs `Debug`.
///
/// # Keys
///
/// On an enum's `#[event(...)]`: `crate = "path"`. On a variant's helper
/// attribute `#[event(...)]`, or on a struct's `#[event(...)]`:
/// - `name = "..."`: the stored type name (see "Stored type names" above).
/// - `version = N`: the current schema version, 1 by default.
/// - `upcast = [v1_to_v2, v2_to_v3]`: exactly `version - 1` functions of
///   type `fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`;
///   `upcast[i]` converts version `i + 1` into `i + 2`.
///
/// On a named field: `#[event(personal(subject = customer_id))]` marks the
/// field as personal data of the subject named by the field `customer_id`
/// of the same variant or struct. The field must be an `Option<_>`: a
/// `CryptoStore` (`orchestrix::crypto`) stores it encrypted under the
/// subject's key and, once that key is deleted, it reads back as `None`.
/// Personal and subject fields cannot be renamed with `#[serde]`, and a
/// subject cannot itself be personal. The declarations are returned by
/// `Event::personal_data()`.
///
/// # Errors
///
/// Generic events, tuple variants with several fields, two variants with
/// one name, an invalid name, `version = 0`, a version above 1 without its
/// upcasters, `#[derive(Serialize)]` on a struct event:
///
/// ```compile_fail
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug)]
/// pub enum AccountEvent {
///     // error: version 2 needs 1 upcaster (from v1)
///     #[event(version = 2)]
///     Withdrawn { amount: u64, reason: String },
/// }
/// ```
#[proc_macro_attribute]
pub fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    event::event(args.into(), input.into()).into()
}

/// Implements `orchestrix::Aggregate` for a struct or an enum holding an
/// aggregate's state.
///
/// ```
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug)]
/// pub enum CounterEvent { Incremented { by: u32 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("counter overflow")]
/// pub struct Overflow;
///
/// #[aggregate(event = CounterEvent, error = Overflow, id = u64, name = "counter")]
/// #[derive(Debug, Default)]
/// pub struct Counter { value: u32 }
///
/// impl Counter {
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Incremented { by } => self.value += by }
///     }
/// }
///
/// assert_eq!(<Counter as Aggregate>::NAME, "counter");
/// ```
///
/// # What it expands to
///
/// The item, then `impl orchestrix::Aggregate` whose `apply` calls the
/// type's inherent `fn apply(&mut self, event: &YourEvent)`, which you
/// write. With `snapshot_every`, `snapshot_state` and `restore_state`
/// serialize the state with serde_json: derive `Serialize` and
/// `Deserialize` on it.
///
/// Also `impl orchestrix::command::CommandSet`, which `.aggregate::<A>()` needs to
/// register the type: the commands of its `#[command_handler]` block, or
/// none when it has no such block (an aggregate written only through
/// multi-stream appends registers all the same). A generic aggregate is
/// registrable only with a handler block.
///
/// # Keys
///
/// - `event = Type` (required): the event type it applies.
/// - `error = Type` (required): the error its command handlers return.
/// - `id = Type`: the id type, `uuid::Uuid` by default.
/// - `name = "..."`: the stable name (stream category), by default the
///   type's name.
/// - `snapshot_every = N` (N ≥ 1): take a snapshot every N events.
/// - `snapshot_version = N` (N ≥ 1, default 1): bump it when the state's
///   shape changes.
/// - `crate = "path"`: the runtime crate's path, if renamed.
///
/// # Errors
///
/// The classic mistake is a missing inherent `apply`: an error at the
/// type's name says to write it, for a generic aggregate too. (An inherent
/// `apply` in an `impl` block with more bounds than the type's own is not
/// found, and gets the same error.)
///
/// ```compile_fail
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug)]
/// pub enum CounterEvent { Incremented { by: u32 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("counter overflow")]
/// pub struct Overflow;
///
/// // error: `Counter` has no `apply` method: write `impl Counter { fn apply(..) }`
/// #[aggregate(event = CounterEvent, error = Overflow)]
/// #[derive(Debug, Default)]
/// pub struct Counter { value: u32 }
/// ```
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    aggregate::aggregate(args.into(), input.into()).into()
}

/// Makes the methods of an aggregate's impl block, or a free async
/// function, the handlers of their command types.
///
/// # On an aggregate's impl block
///
/// Each method handles the type of its first parameter. It takes `&self`
/// (the aggregate must exist) or no receiver (the command creates it),
/// and returns `Result<Event, Error>`, `Result<Vec<Event>, Error>` or
/// `Result<Option<Event>, Error>` (decided from the `Ok` type's last path
/// segment). It may be `async`. After the command, in either order, it may
/// take:
/// - `id: &Self::Id`: the id the command was sent to, for a handler that
///   creates the aggregate as well as for one that changes it;
/// - a service by shared reference, `svc: &MyService`, registered with
///   `.service(MyService { .. })`.
///
/// ```
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug)]
/// pub enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("amount must be positive")]
/// pub struct ZeroAmount;
///
/// #[aggregate(event = AccountEvent, error = ZeroAmount)]
/// #[derive(Debug, Default)]
/// pub struct Account { balance: u64 }
///
/// impl Account {
///     fn apply(&mut self, event: &AccountEvent) {
///         if let AccountEvent::Deposited { amount } = event { self.balance += amount }
///     }
/// }
///
/// pub struct Open { pub owner: String }
/// pub struct Deposit { pub amount: u64 }
///
/// #[command_handler]
/// impl Account {
///     fn open(cmd: Open, id: &Self::Id) -> Result<AccountEvent, ZeroAmount> {
///         Ok(AccountEvent::Opened { owner: format!("{} ({id})", cmd.owner) })
///     }
///
///     #[command(requires = any)]
///     fn deposit(&self, cmd: Deposit) -> Result<Option<AccountEvent>, ZeroAmount> {
///         if cmd.amount == 0 { return Err(ZeroAmount) }
///         Ok(Some(AccountEvent::Deposited { amount: cmd.amount }))
///     }
/// }
///
/// assert_eq!(<Deposit as AggregateCommand>::NAME, "Deposit");
/// assert_eq!(<Open as AggregateCommand>::REQUIRES, orchestrix::command::Existence::New);
/// assert_eq!(<Deposit as AggregateCommand>::REQUIRES, orchestrix::command::Existence::Any);
/// ```
///
/// It expands to the impl block (without the helper attributes), one
/// `impl orchestrix::AggregateCommand for TheCommand` per method, and one
/// `impl orchestrix::command::CommandHandlerBlock for TheAggregate` listing
/// them all, which the aggregate's `CommandSet` reads: write **one**
/// `#[command_handler]` block per aggregate. The helper attribute
/// `#[command(requires = new | existing | any)]` overrides the existence
/// the receiver implies. Other items of the block pass through.
///
/// # On a free async function
///
/// `#[command_handler] async fn transfer(cmd: Transfer, app: &Orchestrix)
/// -> Result<Receipt, TransferError>` implements
/// `orchestrix::StandaloneCommand for Transfer` with `Output = Receipt`,
/// `Error = TransferError` and `Service = Orchestrix` (`()` without a second
/// parameter), and re-emits the function.
///
/// # Keys
///
/// `#[command_handler(crate = "path")]` for a renamed runtime crate.
///
/// # Errors
///
/// Receivers other than `&self`, a missing command parameter, a service or
/// id not taken by shared reference, two services or two ids, an id in a
/// free function, generic handlers, return types that are not a `Result`,
/// two handlers of one command, a non-async free function; an `Ok` or
/// `Err` type that is not the aggregate's is reported at the return type.
/// A handler with such an error still gives its command an impl, so that
/// sending the command reports nothing more. The classic mistake:
///
/// ```compile_fail
/// use orchestrix::prelude::*;
/// # #[event] #[derive(Debug)] pub enum AccountEvent { Deposited { amount: u64 } }
/// # #[derive(Debug, thiserror::Error)] #[error("no")] pub struct BankError;
/// # #[aggregate(event = AccountEvent, error = BankError)] #[derive(Debug, Default)] pub struct Account;
/// # impl Account { fn apply(&mut self, _: &AccountEvent) {} }
/// pub struct Deposit { pub amount: u64 }
///
/// #[command_handler]
/// impl Account {
///     // error: a command handler takes `&self` ...: return events instead of mutating
///     fn deposit(&mut self, cmd: Deposit) -> Result<AccountEvent, BankError> {
///         Ok(AccountEvent::Deposited { amount: cmd.amount })
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn command_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    command::command_handler(args.into(), input.into()).into()
}

/// Turns an impl block whose methods handle typed events into an
/// `orchestrix::projection::Projection`.
///
/// ```
/// use orchestrix::prelude::*;
/// use orchestrix::envelope::RecordedEvent;
///
/// #[event]
/// #[derive(Debug)]
/// pub enum AccountEvent { Deposited { amount: u64 } }
///
/// #[event]
/// #[derive(Debug)]
/// pub struct Audited { pub note: String }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the read model is unavailable")]
/// pub struct Unavailable;
///
/// #[derive(Default)]
/// pub struct Totals { sum: u64, audits: u64, last_position: u64 }
///
/// #[projection(name = "totals")]
/// impl Totals {
///     // sync or async; the event by value, optionally the stored record
///     fn on_account(&mut self, event: AccountEvent, record: &RecordedEvent) -> Result<(), Unavailable> {
///         if record.global_position <= self.last_position { return Ok(()) } // seen: at least once
///         let AccountEvent::Deposited { amount } = event;
///         self.sum += amount;
///         self.last_position = record.global_position;
///         Ok(())
///     }
///
///     async fn on_audit(&mut self, _event: Audited) -> Result<(), Unavailable> {
///         self.audits += 1;
///         Ok(())
///     }
///
///     #[reset] // optional: empties the read model before a rebuild
///     fn clear(&mut self) {
///         *self = Self::default();
///     }
/// }
///
/// use orchestrix::projection::Projection;
/// let totals = Totals::default();
/// assert_eq!(totals.name(), "totals");
/// assert!(totals.filter().matches("AccountDeposited") && totals.filter().matches("Audited"));
/// ```
///
/// Expands to the impl block unchanged (minus `#[reset]`) plus
/// `impl Projection for Balances`: `name()` is `name = "..."` (default: the
/// type's name), `filter()` is the union of the handled event types'
/// names, and `handle()` decodes each record into the handler's event type
/// and calls it. A parameter type that is not an `Event` is a compile
/// error at that type; so are a receiver other than `&mut self`, two
/// handlers for one event type, and a return type that is not a `Result`.
/// The ui-tests in `ui-tests/cases/projection` show every message.
#[proc_macro_attribute]
pub fn projection(args: TokenStream, input: TokenStream) -> TokenStream {
    projection::projection(args.into(), input.into()).into()
}
