//! The fault suite of Orchestrix (issue 23).
//!
//! Each scenario starts its own servers on loopback ports (never the shared
//! PostgreSQL cluster or NATS server), injects faults (SIGKILL, immediate
//! shutdowns, failover), bounds its loops in count and time, and records
//! its figures with [`report::record`]. `ORCHESTRIX_FAULTS=full` (what
//! `just faults` sets) runs the long version; without it the short version
//! runs, as CI does. `just faults` then regenerates the figures in
//! `docs/guide/operations.md` with the `faults-report` binary.

pub mod audit;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod report;
pub mod sqlite;
pub mod tally;
