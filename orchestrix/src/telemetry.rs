//! The metrics Orchestrix records, through the `metrics` facade (feature
//! `metrics`), and the spans it opens.
//!
//! Metrics are recorded with the `metrics` feature only (ADR 0039); without
//! it every recording call below is empty and [`describe`] does not exist,
//! so a program that installs a recorder and calls it learns at compile
//! time that it must enable the feature. With the feature, nothing is
//! recorded until the application installs a recorder (for example
//! `metrics-exporter-prometheus`). The metrics of the command path
//! (commands, their duration, events appended, cache lookups) have keys
//! built at compile time, per command and aggregate type, so that a
//! command pays no allocation and no hashing for them, recorder or not;
//! the others build their key per call. The names and labels below are
//! stable.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `orchestrix_commands_total` | counter | `command`, `aggregate`, `outcome` |
//! | `orchestrix_command_duration_seconds` | histogram | `command`, `aggregate` |
//! | `orchestrix_command_conflicts_total` | counter | `aggregate` |
//! | `orchestrix_command_retries_total` | counter | `aggregate` |
//! | `orchestrix_events_appended_total` | counter | `aggregate` |
//! | `orchestrix_snapshot_loads_total` | counter | `aggregate`, `outcome` (`hit`, `miss`, `stale`: other schema or undecodable, `foreign`: another stream's, `past_head`: past the stream's last event) |
//! | `orchestrix_aggregate_cache_lookups_total` | counter | `aggregate`, `outcome` (`hit`, `miss`) |
//! | `orchestrix_projection_position` | gauge | `projection` |
//! | `orchestrix_projection_lag_events` | gauge | `projection` |
//! | `orchestrix_projection_lag_seconds` | gauge | `projection` |
//! | `orchestrix_dead_letters_total` | counter | `projection` |
//! | `orchestrix_lease_waits_total` | counter | `lease` |
//!
//! The `outcome` of a command is one of `ok`, `rejected`, `not_found`,
//! `already_exists`, `conflict`, `unregistered` and `error`.
//!
//! Call [`describe`] once after installing the recorder to give every
//! metric its help text and unit (a Prometheus exposition then passes
//! `promtool check metrics`); [`DURATION_BUCKETS`] are histogram buckets
//! suited to command latencies.
//!
//! # Spans
//!
//! The `tracing` spans below are stable too (name, then fields). Fields
//! in brackets are recorded when known. A failure records `error` (the
//! message) and, for the failures that are not a domain decision
//! (`conflict`, `error`, `unregistered`), `otel.status_code = "ERROR"`.
//!
//! | span | fields |
//! |---|---|
//! | `orchestrix.command` | `command`, `aggregate`, `aggregate_id`, `command_id`, `correlation_id`, \[`trace_id`, `outcome`, `version`, `attempts`, `error`\] |
//! | `orchestrix.dispatch` | `command`, `command_id`, `correlation_id`, \[`error`\] |
//! | `orchestrix.load` | `aggregate`, `aggregate_id`, \[`snapshot_version`, `version`, `error`\] |
//! | `orchestrix.append` | `aggregate`, `aggregate_id`, `expected_version`, `event_count`, `event_type`, \[`version`, `global_position`, `error`\] |
//! | `orchestrix.snapshot` | `aggregate`, `aggregate_id`, `version`, \[`error`\] |
//! | `orchestrix.append_many` | `command_id`, `parts`, `event_count`, `conditional`, \[`trace_id`, `error`\] |
//! | `orchestrix.projection` | `projection` (the projection's task) |
//! | `orchestrix.projection.handle` | `projection`, `event_type`, `global_position`, `stream`, `stream_version`, \[`attempts`, `error`\] |
//! | `orchestrix.saga` | `saga`, `saga_id` |
//! | `orchestrix.saga.step` | `saga`, `saga_id`, `step`, `kind` (`action`, `compensation`), `step_id`, \[`outcome`, `error`\] |
//!
//! The handling spans of projections and sagas take the trace context
//! recorded in the event's metadata as their parent; see [`crate::trace`].

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
/// Command attempts by whether the aggregate's state was cached
/// ([`crate::app::Orchestrix::cache_stats`] reads the same counts).
pub const AGGREGATE_CACHE_LOOKUPS_TOTAL: &str = "orchestrix_aggregate_cache_lookups_total";
/// The global position a projection has reached.
pub const PROJECTION_POSITION: &str = "orchestrix_projection_position";
/// How many positions a projection is behind the head of the log.
pub const PROJECTION_LAG_EVENTS: &str = "orchestrix_projection_lag_events";
/// How old the last event a projection handled was when it handled it.
pub const PROJECTION_LAG_SECONDS: &str = "orchestrix_projection_lag_seconds";
/// Events parked in the dead-letter store.
pub const DEAD_LETTERS_TOTAL: &str = "orchestrix_dead_letters_total";
/// Times a runner found its lease held by another runner and began to
/// wait for it ([`crate::lease::wait_for`]): a second runner made visible.
pub const LEASE_WAITS_TOTAL: &str = "orchestrix_lease_waits_total";

/// Histogram buckets for command latencies, in seconds: 100 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Gives every metric its help text and unit, through the installed
/// recorder. Call it once, after installing the recorder.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(COMMANDS_TOTAL, Unit::Count, "Commands executed, by command, aggregate and outcome.");
    describe_histogram!(
        COMMAND_DURATION_SECONDS,
        Unit::Seconds,
        "Command latency from load to append, retries included."
    );
    describe_counter!(COMMAND_CONFLICTS_TOTAL, Unit::Count, "Optimistic-concurrency conflicts met by commands.");
    describe_counter!(COMMAND_RETRIES_TOTAL, Unit::Count, "Command attempts made again after a conflict.");
    describe_counter!(EVENTS_APPENDED_TOTAL, Unit::Count, "Events appended by commands.");
    describe_counter!(SNAPSHOT_LOADS_TOTAL, Unit::Count, "Aggregate loads by whether a snapshot was used.");
    describe_counter!(
        AGGREGATE_CACHE_LOOKUPS_TOTAL,
        Unit::Count,
        "Command attempts by whether the aggregate's state was cached."
    );
    describe_gauge!(PROJECTION_POSITION, "The global position a projection has reached.");
    describe_gauge!(PROJECTION_LAG_EVENTS, "How many positions a projection is behind the head of the log.");
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the last event a projection handled, when it handled it."
    );
    describe_counter!(DEAD_LETTERS_TOTAL, Unit::Count, "Events parked in the dead-letter store.");
    describe_counter!(LEASE_WAITS_TOTAL, Unit::Count, "Times a runner found its lease held by another and waited.");
}

/// Whether a command outcome is a failure of the system rather than a
/// decision of the domain: such spans get `otel.status_code = "ERROR"`.
pub fn is_system_failure(outcome: &str) -> bool {
    matches!(outcome, "conflict" | "error" | "unregistered")
}

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

/// The label values of the command path's metrics, known at compile time:
/// the command bus implements it for each command and aggregate type, so
/// that their keys are constants ([`command_finished`],
/// [`events_appended_by`], [`aggregate_cache_lookup`]).
pub(crate) trait Labels {
    /// The `command` label (unused by per-aggregate metrics).
    const COMMAND: &'static str;
    /// The `aggregate` label.
    const AGGREGATE: &'static str;
}

/// What the command path's metrics are registered with (what the
/// `metrics` macros would pass from this module).
#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A constant key of `name` with labels `$key => $value`: built and hashed
/// at compile time, within a function generic over `L: Labels`.
#[cfg(feature = "metrics")]
macro_rules! static_key {
    ($name:expr $(, $key:literal => $value:expr)*) => {
        const {
            let labels: &'static [metrics::Label] = const { &[$(metrics::Label::from_static_parts($key, $value)),*] };
            &metrics::Key::from_static_parts($name, labels)
        }
    };
}

/// A command finished with `outcome` ([`command_outcome`]) after `took`.
#[cfg(feature = "metrics")]
pub(crate) fn command_finished<L: Labels>(outcome: &'static str, took: Duration) {
    macro_rules! by_outcome {
        ($($outcome:literal),*) => {
            match outcome {
                $($outcome => static_key!(COMMANDS_TOTAL, "command" => L::COMMAND, "aggregate" => L::AGGREGATE, "outcome" => $outcome),)*
                other => {
                    metrics::counter!(COMMANDS_TOTAL, "command" => L::COMMAND, "aggregate" => L::AGGREGATE, "outcome" => other)
                        .increment(1);
                    return record_duration::<L>(took);
                }
            }
        };
    }
    let key = by_outcome!("ok", "rejected", "not_found", "already_exists", "conflict", "unregistered", "error");
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    record_duration::<L>(took);
}

/// A command finished (without the `metrics` feature: nothing recorded).
#[cfg(not(feature = "metrics"))]
pub(crate) fn command_finished<L: Labels>(outcome: &'static str, took: Duration) {
    let _ = (outcome, took);
}

#[cfg(feature = "metrics")]
fn record_duration<L: Labels>(took: Duration) {
    let key = static_key!(COMMAND_DURATION_SECONDS, "command" => L::COMMAND, "aggregate" => L::AGGREGATE);
    metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA)).record(took.as_secs_f64());
}

pub(crate) fn conflict(aggregate: &'static str, retried: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(COMMAND_CONFLICTS_TOTAL, "aggregate" => aggregate).increment(1);
        if retried {
            metrics::counter!(COMMAND_RETRIES_TOTAL, "aggregate" => aggregate).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, retried);
}

pub(crate) fn events_appended(aggregate: impl Into<std::borrow::Cow<'static, str>>, count: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(EVENTS_APPENDED_TOTAL, "aggregate" => aggregate.into()).increment(count as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, count);
}

/// [`events_appended`] for an aggregate type known at compile time.
pub(crate) fn events_appended_by<L: Labels>(count: usize) {
    #[cfg(feature = "metrics")]
    {
        let key = static_key!(EVENTS_APPENDED_TOTAL, "aggregate" => L::AGGREGATE);
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(count as u64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = count;
}

pub(crate) fn snapshot_load(aggregate: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(SNAPSHOT_LOADS_TOTAL, "aggregate" => aggregate, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (aggregate, outcome);
}

pub(crate) fn aggregate_cache_lookup<L: Labels>(hit: bool) {
    #[cfg(feature = "metrics")]
    {
        let key = if hit {
            static_key!(AGGREGATE_CACHE_LOOKUPS_TOTAL, "aggregate" => L::AGGREGATE, "outcome" => "hit")
        } else {
            static_key!(AGGREGATE_CACHE_LOOKUPS_TOTAL, "aggregate" => L::AGGREGATE, "outcome" => "miss")
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}

/// A projection parked an event in its dead-letter store.
pub(crate) fn dead_letter(projection: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DEAD_LETTERS_TOTAL, "projection" => projection.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = projection;
}

/// A projection's position, how far behind the head it is (if known) and
/// the age of the last event it handled, in seconds.
pub(crate) fn projection_position(projection: &str, position: u64, behind: Option<u64>, age_seconds: f64) {
    #[cfg(feature = "metrics")]
    {
        let name = projection.to_owned();
        #[allow(clippy::cast_precision_loss)] // positions far below 2^52; a gauge
        metrics::gauge!(PROJECTION_POSITION, "projection" => name.clone()).set(position as f64);
        if let Some(behind) = behind {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => name.clone()).set(behind as f64);
        }
        metrics::gauge!(PROJECTION_LAG_SECONDS, "projection" => name).set(age_seconds);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (projection, position, behind, age_seconds);
}

/// A runner found its lease held by another and began to wait.
pub(crate) fn lease_wait(lease: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(LEASE_WAITS_TOTAL, "lease" => lease.to_owned()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = lease;
}
