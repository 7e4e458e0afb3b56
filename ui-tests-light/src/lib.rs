//! Compile tests of Orchestrix with its default features only (ADR 0039).
//!
//! A declaration that needs an optional feature (`#[event(personal(..))]`
//! needs `crypto`, `#[event(schema)]` needs `schemars`) must fail with an
//! error that names the feature and the line to add, never compile into
//! something that silently does less. The cases live in
//! `cases/{fail,pass}/*.rs`; the crate `orchestrix-ui-tests` tests the
//! macros with every feature on. Regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p orchestrix-ui-tests-light`.
