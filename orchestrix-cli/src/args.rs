//! The arguments, as clap parses them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Inspect, follow, verify, export, import and copy Orchestrix event stores.
///
/// Exit codes: 0 done, 1 store or input error, 2 usage, 3 cannot connect,
/// 4 not found, 5 refused (not confirmed, or the target holds other data),
/// 6 verification failed, 7 no runner acknowledged a pause in time, 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "orchestrix", version)]
pub struct Args {
    /// The store: `sqlite://PATH`, `postgres://USER:PASSWORD@HOST/DB?schema=NAME` (password and schema optional), `esdb+http(s)://HOST:PORT`.
    #[arg(long, short = 's', global = true, env = "ORCHESTRIX_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The EventSourcingDB API token (never printed).
    #[arg(long, global = true, env = "ORCHESTRIX_ESDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON for scripts instead of tables (JSON Lines for `tail`).
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to confirmations (required without a terminal).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// List streams with their event count and version.
    Streams {
        /// Only streams of this aggregate type.
        #[arg(long = "type", short = 't')]
        aggregate_type: Option<String>,
        /// Only streams whose aggregate id starts with this (after the tenant, with --tenant).
        #[arg(long)]
        prefix: Option<String>,
        /// Only the streams of this tenant (ids `<tenant>/…`).
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many streams.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show a stream's events with their metadata.
    Show {
        /// The stream, `Type/id`.
        stream: String,
        /// Only the events up to this version, or recorded at or before this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        at: Option<String>,
    },
    /// Follow the global log live until interrupted.
    Tail {
        /// Only events of these types (repeat the flag).
        #[arg(long = "type", short = 't')]
        types: Vec<String>,
        /// Only events of this stream, `Type/id`, or of every stream of a type, `Type`.
        #[arg(long)]
        stream: Option<String>,
        /// Only events of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Start at this global position (default: after the current head).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Events, streams, counts per type, size and the recent rate.
    Stats,
    /// Checkpoint and lag of projections (named here or registered by the embedding binary).
    #[command(args_conflicts_with_subcommands = true)]
    Projections {
        /// The projections' (checkpoint consumers') names.
        names: Vec<String>,
        /// Rebuild one.
        #[command(subcommand)]
        action: Option<ProjectionCommand>,
    },
    /// Dead letters of projections: count, list, drop, purge.
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Apply the SQL stores' schema migrations.
    Migrate,
    /// Write the log (or a selection) as JSON Lines.
    Export {
        /// The file to write (default: stdout); written to FILE.partial, renamed when complete.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// Only events of these types.
        #[arg(long = "type", short = 't')]
        types: Vec<String>,
        /// Only events of this stream, `Type/id`, or of every stream of a type, `Type`.
        #[arg(long)]
        stream: Option<String>,
        /// Write CloudEvents 1.0 (structured JSON, one event per line) instead; `import` reads those too.
        #[arg(long)]
        cloudevents: bool,
    },
    /// Append the events of a JSON Lines export (or a CloudEvents one) to the store.
    Import {
        /// The file written by `orchestrix export` (with or without --cloudevents).
        file: PathBuf,
        /// Events per atomic batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Copy every event from one store to another, verified.
    Copy {
        /// The source store URL.
        #[arg(long)]
        from: String,
        /// The target store URL.
        #[arg(long)]
        to: String,
        /// The target's EventSourcingDB token, when it differs from --token.
        #[arg(long, env = "ORCHESTRIX_TO_ESDB_TOKEN", hide_env_values = true)]
        to_token: Option<String>,
        /// Events per atomic batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Check the store's invariants and print a report.
    Verify,
    /// Forget a data subject (crypto-shredding): delete its key, its streams' snapshots and its personal data in
    /// dead letters, after confirmation.
    Forget {
        /// The data subject's id (the value of the field its personal fields name as `subject`).
        subject: String,
    },
    /// Serve the web console on the store until interrupted.
    Console {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Enables the console's actions (retry and drop of dead letters) for requests with this token; read-only
        /// without it. Prefer the environment variable: command lines show in `ps`.
        #[arg(long, env = "ORCHESTRIX_CONSOLE_TOKEN", hide_env_values = true)]
        write_token: Option<String>,
        /// Only these tenants (repeat the flag), each in a view of its own.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Create a service: an aggregate, a projection, given/when/then tests, a justfile and a README
    /// (`--store sqlite`, the default, or `--store postgres`).
    New {
        /// The package name (lowercase letters, digits, `-`, `_`); also its folder.
        name: String,
        /// The folder to create it in (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Depend on the Orchestrix crates of this source checkout instead of the registry's.
        #[arg(long)]
        orchestrix_path: Option<PathBuf>,
    },
}

/// The store a generated service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// An SQLite file.
    Sqlite,
    /// PostgreSQL, from `DATABASE_URL`.
    Postgres,
}

/// What `projections` does besides listing.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum ProjectionCommand {
    /// Rebuild a projection the embedding binary registered (`Cli::rebuildable`), with a progress bar;
    /// a runner elsewhere is paused meanwhile.
    Rebuild {
        /// The projection's name.
        name: String,
        /// How to make sure no runner handles it meanwhile.
        #[command(flatten)]
        runner: RunnerWait,
    },
    /// Pause a projection in every process that runs it (durable: a runner that starts later starts paused).
    Pause {
        /// The projection's name.
        name: String,
        /// Wait until a runner acknowledges (checkpoint saved, no event handled from then on).
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this many seconds (exit 7).
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Resume a paused projection: its runners reload their checkpoints and parked streams and go on.
    Resume {
        /// The projection's name.
        name: String,
    },
}

/// How a command that must not race a projection's runner makes sure
/// none handles its events (ADR 0050).
#[derive(Debug, Clone, clap::Args)]
pub struct RunnerWait {
    /// Seconds to wait for a runner to acknowledge the pause (exit 7 if none does).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Go on without an acknowledgement: no process runs the projection (the pause is requested all the same).
    #[arg(long)]
    pub no_runner: bool,
}

/// What `dead-letters` does.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum DeadLetterCommand {
    /// How many dead letters match.
    Count(LetterFilter),
    /// The dead letters that match, oldest first.
    List(LetterFilter),
    /// Remove one dead letter (its event is not replayed).
    Drop {
        /// The dead letter's id.
        id: uuid::Uuid,
    },
    /// Remove every dead letter that matches.
    Purge(LetterFilter),
    /// Retry a dead letter's stream (or every parked stream of a projection) with the projection the embedding
    /// binary registered (`Cli::rebuildable`); a runner elsewhere is paused meanwhile.
    Retry {
        /// The dead letter's id.
        #[arg(required_unless_present = "all")]
        id: Option<uuid::Uuid>,
        /// Every dead letter of --projection.
        #[arg(long, conflicts_with = "id", requires = "projection")]
        all: bool,
        /// The projection whose letters --all retries.
        #[arg(long)]
        projection: Option<String>,
        /// How to make sure no runner handles it meanwhile.
        #[command(flatten)]
        runner: RunnerWait,
    },
}

/// Which dead letters.
#[derive(Debug, Clone, clap::Args)]
pub struct LetterFilter {
    /// Of this projection (consumer).
    #[arg(long)]
    pub projection: Option<String>,
    /// Of this stream, `Type/id`.
    #[arg(long)]
    pub stream: Option<String>,
    /// Whose error contains this text.
    #[arg(long)]
    pub reason: Option<String>,
    /// Parked before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub older_than: Option<String>,
}
