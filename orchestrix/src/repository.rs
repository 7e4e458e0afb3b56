//! Placeholder.
#![allow(missing_docs, missing_debug_implementations)]
pub struct Repository;
pub struct Loaded;
