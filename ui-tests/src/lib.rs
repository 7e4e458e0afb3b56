//! Compile-fail and compile-pass tests of the Orchestrix macros.
//!
//! The cases live in `cases/<macro>/{fail,pass}/*.rs`, each failing case
//! with the compiler's expected output beside it (`.stderr`). Run them with
//! `cargo test -p orchestrix-ui-tests`; after changing a diagnostic,
//! regenerate the snapshots with `TRYBUILD=overwrite` and read the diff.
//! The snapshots were made with the toolchain pinned in
//! `rust-toolchain.toml`: compiler messages change between releases.
