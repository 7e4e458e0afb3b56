//! The metrics Orchestrix records, through the [`metrics`] facade.
//!
//! Nothing is recorded until the application installs a recorder (for
//! example `metrics-exporter-prometheus`); without one, each call is a
//! single atomic load. The names and labels below are stable.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `orchestrix_commands_total` | counter | `command`, `aggregate`, `outcome` |
//! | `orchestrix_command_duration_seconds` | histogram | `command`, `aggregate` |
//! | `orchestrix_command_conflicts_total` | counter | `aggregate` |
//! | `orchestrix_command_retries_total` | counter | `aggregate` |
//! | `orchestrix_events_appended_total` | counter | `aggregate` |
//! | `orchestrix_snapshot_loads_total` | counter | `aggregate`, `outcome` (`hit`, `miss`, `stale`) |
//! | `orchestrix_projection_position` | gauge | `projection` |
//! | `orchestrix_projection_lag_events` | gauge | `projection` |
//! | `orchestrix_projection_lag_seconds` | gauge | `projection` |
//! | `orchestrix_dead_letters_total` | counter | `projection` |
//!
//! The `outcome` of a command is one of `ok`, `rejected`, `not_found`,
//! `already_exists`, `conflict`, `unregistered` and `error`.

use std::time::Duration;

use crate::error::CommandError;

/// Commands executed, by command, aggregate and outcome.
pub const COMMANDS_TOTAL: &str = "orchestrix_commands_total";
/// Command latency, load to append, retries included.
pub const COMMAND_DURATION_SECONDS: &str = "orchestrix_command_duration_seconds";
/// Optimistic-concurrency conflicts met by commands.
pub const COMMAND_CONFLICTS_TOTAL: &str = "orchestrix_command_conflicts_total";
/// Attempts made again after a conflict.
pub const COMMAND_RETRIES_TOTAL: &str = "orchestrix_command_retries_total";
/// Events appended by commands.
pub const EVENTS_APPENDED_TOTAL: &str = "orchestrix_events_appended_total";
/// Aggregate loads by whether a snapshot was used.
pub const SNAPSHOT_LOADS_TOTAL: &str = "orchestrix_snapshot_loads_total";
/// The global position a projection has reached.
pub const PROJECTION_POSITION: &str = "orchestrix_projection_position";
/// How many positions a projection is behind the head of the log.
pub const PROJECTION_LAG_EVENTS: &str = "orchestrix_projection_lag_events";
/// How old the last event a projection handled was when it handled it.
pub const PROJECTION_LAG_SECONDS: &str = "orchestrix_projection_lag_seconds";
/// Events parked in the dead-letter store.
pub const DEAD_LETTERS_TOTAL: &str = "orchestrix_dead_letters_total";

/// The `outcome` label of a command result.
pub fn command_outcome<T, E>(result: &Result<T, CommandError<E>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(CommandError::Rejected(_)) => "rejected",
        Err(CommandError::AggregateNotFound { .. }) => "not_found",
        Err(CommandError::AggregateAlreadyExists { .. }) => "already_exists",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(CommandError::Unregistered { .. }) => "unregistered",
        Err(CommandError::Framework(_)) => "error",
    }
}

pub(crate) fn command_finished(command: &'static str, aggregate: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "aggregate" => aggregate, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(COMMAND_DURATION_SECONDS, "command" => command, "aggregate" => aggregate)
        .record(took.as_secs_f64());
}

pub(crate) fn conflict(aggregate: &'static str, retried: bool) {
    metrics::counter!(COMMAND_CONFLICTS_TOTAL, "aggregate" => aggregate).increment(1);
    if retried {
        metrics::counter!(COMMAND_RETRIES_TOTAL, "aggregate" => aggregate).increment(1);
    }
}

pub(crate) fn events_appended(aggregate: &'static str, count: usize) {
    metrics::counter!(EVENTS_APPENDED_TOTAL, "aggregate" => aggregate).increment(count as u64);
}

pub(crate) fn snapshot_load(aggregate: &'static str, outcome: &'static str) {
    metrics::counter!(SNAPSHOT_LOADS_TOTAL, "aggregate" => aggregate, "outcome" => outcome).increment(1);
}
