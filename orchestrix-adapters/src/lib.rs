//! SQL adapters for Orchestrix: PostgreSQL and SQLite implementations of
//! every storage port of the core (event store, snapshots, checkpoints,
//! key-value, dead letters).
//!
//! Enable the adapters with the `postgres` and `sqlite` features.
