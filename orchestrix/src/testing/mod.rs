//! The testing kit: given/when/then fixtures and the port conformance suite.
//!
//! Enable it with the `testing` feature, usually as a dev-dependency:
//! `orchestrix = { version = "...", features = ["testing"] }`.

pub mod conformance;
pub mod delivery;
mod fixture;
mod projection_fixture;

pub use fixture::{AggregateFixture, Outcome};
pub use projection_fixture::ProjectionFixture;
