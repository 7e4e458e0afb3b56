//! # Orchestrix
//!
//! Event sourcing and CQRS for Rust. You describe the domain with
//! attributes (`#[event]`, `#[aggregate]`, `#[command_handler]`, and
//! `#[projection]` for read models); Orchestrix stores every change as an
//! immutable event, rebuilds aggregates from their events (with snapshots
//! and time travel), routes commands with optimistic concurrency, applies a
//! command with an id once, and feeds projections and sagas from the
//! global log.
//!
//! The guide in the repository (`docs/guide/`) walks through every
//! concept; the optional features are:
//!
//! None is on by default (ADR 0039): the default build is the macros, the
//! in-memory adapters, the command bus, projections and sagas.
//!
//! | feature | what it brings |
//! |---|---|
//! | `crypto` | `crypto`: personal fields encrypted per data subject, forgotten by deleting the key. **Every event type that declares `#[event(personal(..))]` needs it**: without it the declaration is a compile error naming the feature, never personal data stored in clear |
//! | `metrics` | the metrics of [`telemetry`], recorded through the `metrics` facade, and `telemetry::describe` |
//! | `testing` | given/when/then fixtures, the conformance suite of the ports, the delivery scenarios |
//! | `opentelemetry` | a trace-context propagator on OpenTelemetry, so traces cross async hops and processes |
//! | `schemars` | `#[event(schema)]`: JSON schemas of the stored types |
//! | `axum` | `orchestrix::http`: command and store errors as HTTP responses |
//!
//! ## A tour
//!
//! - [`macro@event`] turns an enum (one stored type per variant) or a struct into an
//!   [`Event`]: a stable type name, a schema version, upcasters from older
//!   versions, JSON data without an enum tag.
//! - [`macro@aggregate`] implements [`Aggregate`]: its name, id type, event and error
//!   types, and snapshot policy.
//! - [`macro@command_handler`] on an aggregate's impl block makes each method the
//!   handler of its command type ([`AggregateCommand`]); on a free async
//!   function it handles a command that belongs to no aggregate
//!   ([`StandaloneCommand`]).
//! - [`Orchestrix`] is the application: `execute` loads the aggregate,
//!   runs the handler, appends the events with optimistic concurrency and
//!   retries on a conflict.
//! - [`repository::Repository`] loads aggregates from the latest snapshot plus the tail
//!   of their stream, and travels in time with `load_at` and `load_as_of`.
//! - The [`store`] module holds the ports ([`store::EventStore`],
//!   [`store::SnapshotStore`], [`store::CheckpointStore`], [`store::KeyValueStore`],
//!   [`store::MessageBus`], [`store::DeadLetterStore`]); [`memory`] holds the in-memory
//!   adapters that define their reference behaviour.
//! - [`tenant::TenantStore`] confines any store to one tenant's streams, snapshots,
//!   checkpoints and keys; [`Orchestrix::append_many`] appends to several
//!   aggregates atomically.
//! - [`query`] and [`decision`]: consistency by query. Fields marked
//!   `#[event(tag)]` tag their events; [`Orchestrix::decide`] reads the
//!   events a [`query::Query`] selects, decides, and appends only if none of them
//!   arrived meanwhile ([`store::EventStore::append_if`]).
//! - The crate root holds the macros, [`Orchestrix`], the domain
//!   vocabulary and the error types; everything else is reached through its
//!   module (`orchestrix::store::EventStore`, `orchestrix::envelope::NewEvent`),
//!   and [`prelude`] is what a domain module imports.
//! - With the `testing` feature, `testing` offers given/when/then fixtures
//!   and the conformance suite every adapter runs.
//! - With the `axum` feature, the errors are axum responses (`http`):
//!   409, 422, 404, 503 with a JSON body.
//!
//! ```
//! use orchestrix::prelude::*;
//!
//! #[event]
//! #[derive(Debug, Clone, PartialEq)]
//! pub enum AccountEvent {
//!     Opened { owner: String },
//!     Deposited { amount: u64 },
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum BankError {
//!     #[error("amount must be positive")]
//!     ZeroAmount,
//! }
//!
//! #[aggregate(event = AccountEvent, error = BankError)]
//! #[derive(Debug, Default)]
//! pub struct Account { balance: u64 }
//!
//! impl Account {
//!     fn apply(&mut self, event: &AccountEvent) {
//!         if let AccountEvent::Deposited { amount } = event {
//!             self.balance += amount;
//!         }
//!     }
//! }
//!
//! #[derive(Clone)] // commands are retried on a version conflict
//! pub struct Open { pub owner: String }
//! #[derive(Clone)]
//! pub struct Deposit { pub amount: u64 }
//!
//! #[command_handler]
//! impl Account {
//!     fn open(cmd: Open) -> Result<AccountEvent, BankError> {
//!         Ok(AccountEvent::Opened { owner: cmd.owner })
//!     }
//!
//!     fn deposit(&self, cmd: Deposit) -> Result<AccountEvent, BankError> {
//!         if cmd.amount == 0 {
//!             return Err(BankError::ZeroAmount);
//!         }
//!         Ok(AccountEvent::Deposited { amount: cmd.amount })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Orchestrix::builder().in_memory().aggregate::<Account>().build()?;
//! let id = orchestrix::Uuid::now_v7();
//! app.execute(id, Open { owner: "Ada".into() }).await?;
//! let outcome = app.execute(id, Deposit { amount: 30 }).await?;
//! assert_eq!(outcome.version, 2);
//! let account = app.load::<Account>(&id).await?;
//! assert_eq!(account.state.balance, 30);
//! # Ok(())
//! # }
//! ```
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod app;
pub mod command;
#[cfg(feature = "crypto")]
#[cfg_attr(docsrs, doc(cfg(feature = "crypto")))]
pub mod crypto;
pub mod decision;
pub mod envelope;
pub mod error;
pub mod event;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod http;
pub mod idempotency;
pub mod lease;
pub mod memory;
pub mod personal;
pub mod projection;
pub mod query;
pub mod repository;
pub mod retag;
pub mod retry;
pub mod saga;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

// The crate root (ADR 0035): the macros, the application, the domain
// vocabulary, the three error types and the re-exported crates. Everything
// else has one path, through its module.
pub use aggregate::Aggregate;
pub use app::Orchestrix;
/// The byte buffers of [`store::KeyValueStore`] values and [`store::Message`] payloads.
pub use bytes;
pub use command::{AggregateCommand, StandaloneCommand};
pub use envelope::Metadata;
pub use error::{CommandError, Error, StoreError};
pub use event::Event;
pub use stream::StreamId;
pub use uuid::{self, Uuid};

pub use orchestrix_macros::{aggregate, command_handler, event, projection};

/// Re-exported so that hand-written [`projection::Projection`]s and ports
/// need no dependency of their own: `#[orchestrix::async_trait]`.
pub use async_trait::async_trait;

/// Re-exported (feature `schemars`) for the inner types of newtype event
/// variants, which `#[event(schema)]` needs to implement `JsonSchema`:
/// `#[derive(orchestrix::schemars::JsonSchema)]` with
/// `#[schemars(crate = "orchestrix::schemars")]`.
#[cfg(feature = "schemars")]
pub use schemars;

/// Everything a domain module needs: `use orchestrix::prelude::*;`.
pub mod prelude {
    pub use crate::error::UpcastError;
    pub use crate::{
        aggregate, command_handler, event, projection, Aggregate, AggregateCommand, CommandError, Event, Metadata,
        Orchestrix, StandaloneCommand,
    };
}

/// Items used by the code the macros generate. Not a stable API: anything
/// here may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    #[cfg(feature = "schemars")]
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use std::any::TypeId;
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::vec::Vec;
    pub use uuid::Uuid;

    pub mod apply;

    pub use crate::command::{CommandDescriptor, HandlerResult};
    pub use crate::personal::{PersonalData, PersonalField};
    pub use crate::query::{tag, TagValue};

    use crate::error::BoxError;

    /// Boxes the error of a projection handler's `Result<(), E>`.
    pub fn handler_result<E: Into<BoxError>>(result: Result<(), E>) -> Result<(), BoxError> {
        result.map_err(Into::into)
    }

    /// What a projection's `#[reset]` method may return: `()` or
    /// `Result<(), E>`.
    pub trait ResetResult {
        /// Boxes the error, if any.
        fn into_reset_result(self) -> Result<(), BoxError>;
    }

    impl ResetResult for () {
        fn into_reset_result(self) -> Result<(), BoxError> {
            Ok(())
        }
    }

    impl<E: Into<BoxError>> ResetResult for Result<(), E> {
        fn into_reset_result(self) -> Result<(), BoxError> {
            self.map_err(Into::into)
        }
    }

    /// Boxes the outcome of a `#[reset]` method.
    pub fn reset_result<R: ResetResult>(result: R) -> Result<(), BoxError> {
        result.into_reset_result()
    }
    pub use crate::event::{decode_versioned, encode_raw, Upcaster};

    /// Keeps the tokens of `#[event(schema)]` when the `schemars` feature
    /// is on, and explains which feature is missing when it is off.
    pub use crate::__orchestrix_if_schemars as if_schemars;

    /// Keeps the `PersonalData` of `#[event(personal(..))]` when the
    /// `crypto` feature is on, and explains which feature is missing when
    /// it is off (ADR 0039).
    pub use crate::__orchestrix_if_crypto as if_crypto;

    /// The JSON schema of a stored type's data, titled with its name.
    #[cfg(feature = "schemars")]
    pub fn event_schema<T: schemars::JsonSchema>(name: &'static str, version: u32) -> crate::event::EventSchema {
        let mut schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>().to_value();
        if let Some(object) = schema.as_object_mut() {
            object.insert("title".to_owned(), serde_json::Value::String(name.to_owned()));
        }
        crate::event::EventSchema { name, version, schema }
    }
}

#[cfg(feature = "schemars")]
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_if_schemars {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "schemars"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_if_schemars {
    ($($tokens:tt)*) => {
        ::core::compile_error!(
            "`#[event(schema)]` needs the `schemars` feature of orchestrix: `orchestrix = { version = \"...\", features = [\"schemars\"] }`"
        );
    };
}

#[cfg(feature = "crypto")]
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_if_crypto {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "crypto"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_if_crypto {
    ($($tokens:tt)*) => {
        ::core::compile_error!(
            "`#[event(personal(..))]` declares personal data, which Orchestrix keeps encrypted per data subject and forgets by deleting the subject's key (`orchestrix::crypto`); that needs the `crypto` feature of orchestrix: `orchestrix = { version = \"0.1\", features = [\"crypto\"] }`. Without it the field would be stored in clear and could not be forgotten."
        )
    };
}

/// The README's quick start, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's consistency-by-query example, compiled and run as a doctest.
#[doc = include_str!("../../docs/guide/consistency-by-query.md")]
#[cfg(doctest)]
pub struct ConsistencyByQueryDoctests;
