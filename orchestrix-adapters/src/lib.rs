//! Adapters for Orchestrix: SQLite, PostgreSQL and EventSourcingDB
//! implementations of the storage ports of the core, and NATS JetStream to
//! carry events between processes. Each adapter is a feature; none is on by
//! default.
//!
//! | feature | what it brings |
//! |---|---|
//! | `sqlite` | [`sqlite::SqliteStore`]: the embedded, durable default; every storage port |
//! | `postgres` | [`postgres::PgStore`]: the production store (group commit, a gap-safe global order, transactional projections; ADR 0008, 0024) |
//! | `postgres-tls` | `postgres` over TLS: `sslmode=require`, `verify-ca`, `verify-full` and `sslrootcert` in the URL, through sqlx's rustls with the *ring* provider; [`postgres::PgTlsError`] says why a connection could not be secured (ADR 0040) |
//! | `eventsourcingdb` | [`eventsourcingdb::EsdbStore`]: EventSourcingDB over its HTTP API v1 and v2 (ADR 0012, 0028) |
//! | `eventsourcingdb-tls` | HTTPS to EventSourcingDB through rustls with the *ring* provider |
//! | `nats` | [`nats`]: a relay to JetStream, a message bus, and projection workers in other processes (ADR 0016, 0017) |
//! | `nats-relay` | the `orchestrix-nats-relay` binary: a PostgreSQL store's log to JetStream |
//!
//! Every store passes the core's conformance suite
//! (`orchestrix::testing::conformance`).
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
