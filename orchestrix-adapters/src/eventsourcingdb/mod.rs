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
//! With the feature `eventsourcingdb-test-server`, [`test_server`] holds a
//! stand-in server written from the documented API, also runnable as the
//! `esdb-test-server` binary.

mod api;
mod append_many;
mod condition;
mod config;
mod http;
mod store;
#[cfg(feature = "eventsourcingdb-test-server")]
pub mod test_server;
mod wire;

pub use api::ApiVersion;
pub use config::{ApiToken, EsdbConfig, TOKEN_ENV, URL_ENV};
pub use http::EsdbError;
pub use store::EsdbStore;
