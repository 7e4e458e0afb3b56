//! Test support: the port conformance suite (and, later, given/when/then fixtures).

pub mod conformance;
