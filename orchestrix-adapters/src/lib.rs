//! SQL adapters for Orchestrix: PostgreSQL and SQLite implementations of
//! every storage port of the core (event store, snapshots, checkpoints,
//! key-value, dead letters).
//!
//! Enable the adapters with the `postgres` and `sqlite` features.
//!
//! | feature    | what it brings                                              |
//! |------------|-------------------------------------------------------------|
//! | `postgres` | [`postgres::PgStore`]: production store, see ADR 0008       |
//! | `sqlite`   | [`sqlite::SqliteStore`]: embedded, durable, single node     |
//! | `nats`     | [`nats`]: a relay to JetStream, a message bus, and projection workers in other processes (ADR 0016, 0017) |
//!
//! Both implement every port except the message bus and pass the core's
//! conformance suite (`orchestrix::testing::conformance`).
//!
//! # Delivery guarantees of projections
//!
//! A projection whose read model lives in the same PostgreSQL database gets
//! an exactly-once effect by writing its read model and its checkpoint in
//! one transaction ([`postgres::PgStore::begin`] and
//! [`postgres::PgStore::save_checkpoint_in`]). Every other combination is
//! at-least-once: after a crash, the events since the last checkpoint are
//! delivered again, so such read models must be idempotent.

#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "_sql")]
mod common;
#[cfg(feature = "eventsourcingdb")]
pub mod eventsourcingdb;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(any(feature = "eventsourcingdb", feature = "nats"))]
mod percent;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
