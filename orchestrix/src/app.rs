//! Placeholder, replaced by the application in the next commit.
#![allow(missing_docs, missing_debug_implementations, unreachable_pub)]
pub struct Orchestrix;
pub struct OrchestrixBuilder;
pub struct CommandOptions;
pub struct CommandOutcome;
