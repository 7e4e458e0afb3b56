//! The EventSourcingDB adapter: [`EsdbStore`], an event store and snapshot
//! store on EventSourcingDB's HTTP API (ADR 0012), through API v2 where the
//! server offers it and API v1 otherwise ([`ApiVersion`]).
//!
//! ```no_run
//! use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};
//!
//! # async fn run() -> Result<(), orchestrix::StoreError> {
//! // ORCHESTRIX_ESDB_URL and ORCHESTRIX_ESDB_TOKEN
//! let store = EsdbStore::connect(EsdbConfig::from_env()?.with_type_prefix("com.example.bank")).await?;
//! let app = orchestrix::Orchestrix::builder().event_store(store.clone()).snapshot_store(store).build();
//! # drop(app);
//! # Ok(())
//! # }
//! # fn main() { let _ = run; }
//! ```
//!
//! The stand-in server the adapter's tests run against, written from the
//! documented API, is the workspace crate `orchestrix-esdb-test-server`
//! (not published; also the `esdb-test-server` binary), out of this library.

mod api;
mod append;
mod append_many;
mod condition;
mod config;
mod error;
mod http;
mod idempotent;
mod lines;
mod snapshots;
mod store;
mod subscribe;
mod wire;

pub use api::ApiVersion;
pub use config::{ApiToken, EsdbConfig, DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_LINE_BYTES, TOKEN_ENV, URL_ENV};
pub use error::EsdbError;
pub use store::EsdbStore;

/// The `reqwest` the adapter is built with, for
/// [`EsdbConfig::with_http_client`]: build your client with this one, so
/// that its version matches.
pub use reqwest;
