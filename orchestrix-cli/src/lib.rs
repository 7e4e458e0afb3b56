//! The `orchestrix` command line: inspect, follow, verify, export, import
//! and copy Orchestrix event stores (ADR 0041).
//!
//! Installed as a binary (`cargo install orchestrix-cli`), it opens any
//! store by URL and reads it through the framework's ports:
//!
//! ```text
//! orchestrix --store sqlite://bank.db streams
//! orchestrix --store sqlite://bank.db show Account/42 --at 3
//! orchestrix --store postgres://app@db/bank tail --type Deposited
//! orchestrix copy --from sqlite://bank.db --to postgres://app@db/bank --yes
//! orchestrix --store sqlite://bank.db forget customer-7
//! orchestrix --store sqlite://bank.db console --listen 127.0.0.1:8080
//! ```
//!
//! # Embedding it
//!
//! Commands that need the application's own types (decoding payloads with
//! their upcasters in `verify`, listing the projections by name) come from
//! a small binary of your own that registers them and runs the same
//! subcommands (`forget` then also erases their personal fields from dead
//! letters parked in clear, and `console` hides them):
//!
//! ```no_run
//! # use orchestrix::prelude::*;
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! # #[event] pub enum AccountEvent { Opened { owner: String } }
//! fn main() -> std::process::ExitCode {
//!     orchestrix_cli::Cli::new()
//!         .events::<AccountEvent>()
//!         .projection("balances")
//!         // .rebuildable(MyDurableProjection::new(..)) for `projections rebuild NAME`
//!         .run()
//! }
//! ```
//!
//! # Exit codes
//!
//! 0 done; 1 the store or the input answered with an error; 2 usage (bad
//! arguments or URL); 3 cannot connect; 4 not found; 5 refused (not
//! confirmed, or the target holds other data); 6 a verification failed;
//! 130 interrupted. See [`Failure`].

mod args;
mod commands;
mod connect;
mod error;
pub mod output;

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use clap::Parser as _;
use orchestrix::envelope::RecordedEvent;
use orchestrix::error::DecodeErrorKind;
use orchestrix::event::Event;
use orchestrix::projection::{Progress, Projection, ProjectionEngine, ProjectionOptions, RetryOutcome};

pub use args::Args;
pub use error::Failure;

/// Checks that a stored event decodes into a registered type: `None` when
/// the type is not one of it, `Some(Err(reason))` when it is and fails.
type Decoder = Arc<dyn Fn(&RecordedEvent) -> Option<Result<(), String>> + Send + Sync>;

/// Rebuilds a registered projection with an engine, moving a progress bar.
type Rebuilder = Arc<
    dyn Fn(ProjectionEngine, indicatif::ProgressBar) -> Pin<Box<dyn Future<Output = Result<Progress, String>> + Send>>
        + Send
        + Sync,
>;

/// Retries a registered projection's dead letters with an engine: the
/// letter `Some(id)`'s stream, or (`None`) every parked stream.
type Retrier = Arc<
    dyn Fn(ProjectionEngine, Option<uuid::Uuid>) -> Pin<Box<dyn Future<Output = Result<RetryOutcome, String>> + Send>>
        + Send
        + Sync,
>;

/// The command line, with the types and projections the embedding binary
/// registered (none for the stock `orchestrix` binary).
#[derive(Clone, Default)]
pub struct Cli {
    decoders: Vec<Decoder>,
    /// The personal fields of the registered event types, for `forget`.
    personal: Vec<&'static [orchestrix::personal::PersonalData]>,
    projections: Vec<String>,
    rebuilders: Vec<(String, Rebuilder)>,
    /// `dead-letters retry` of the projections registered with `rebuildable`.
    retriers: Vec<(String, Retrier)>,
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli")
            .field("decoders", &self.decoders.len())
            .field("personal_event_types", &self.personal.iter().map(|data| data.len()).sum::<usize>())
            .field("projections", &self.projections)
            .field("rebuildable", &self.rebuilders.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("retriers", &self.retriers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .finish()
    }
}

impl Cli {
    /// The command line with nothing registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an event type: `verify` decodes the events of its type
    /// names with it (upcasting older schema versions) and reports those
    /// that do not decode; `forget` erases its personal fields from dead
    /// letters parked in clear.
    pub fn events<E: Event>(mut self) -> Self {
        self.personal.push(E::personal_data());
        self.decoders.push(Arc::new(|event: &RecordedEvent| match event.decode::<E>() {
            Ok(_) => Some(Ok(())),
            Err(error) if matches!(error.kind, DecodeErrorKind::UnknownType) => None,
            Err(error) => Some(Err(error.to_string())),
        }));
        self
    }

    /// Registers a projection (a checkpoint consumer) by name, so that
    /// `projections` lists it without being told.
    pub fn projection(mut self, name: impl Into<String>) -> Self {
        self.projections.push(name.into());
        self
    }

    /// Registers a projection that `projections rebuild NAME` can rebuild
    /// ([`ProjectionEngine::rebuild`]: its read model reset, its checkpoint
    /// and dead letters dropped, the log replayed up to the head) and
    /// whose dead letters `dead-letters retry` can retry
    /// ([`ProjectionEngine::retry_dead_letter`]). Only useful for a
    /// projection whose read model is durable (a table, a file): this
    /// process ends afterwards. A runner of it elsewhere is paused
    /// meanwhile and resumed after (ADR 0050).
    pub fn rebuildable<P: Projection + Clone + Sync>(mut self, projection: P) -> Self {
        let name = projection.name().into_owned();
        if !self.projections.contains(&name) {
            self.projections.push(name.clone());
        }
        let retry_with = projection.clone();
        let rebuild: Rebuilder = Arc::new(move |engine: ProjectionEngine, bar: indicatif::ProgressBar| {
            let mut projection = projection.clone();
            Box::pin(async move {
                let progress = |p: &Progress| {
                    bar.set_length(p.head);
                    bar.set_position(p.position);
                };
                engine.rebuild(&mut projection, ProjectionOptions::default(), progress).await.map_err(|e| e.to_string())
            })
        });
        let retry: Retrier = Arc::new(move |engine: ProjectionEngine, id: Option<uuid::Uuid>| {
            let mut projection = retry_with.clone();
            Box::pin(async move {
                let outcome = match id {
                    Some(id) => engine.retry_dead_letter(&mut projection, id).await,
                    None => engine.retry_dead_letters(&mut projection).await,
                };
                outcome.map_err(|e| e.to_string())
            })
        });
        self.retriers.push((name.clone(), retry));
        self.rebuilders.push((name, rebuild));
        self
    }

    /// Runs the command line on the process's arguments and returns its
    /// exit code.
    pub fn run(self) -> std::process::ExitCode {
        std::process::ExitCode::from(self.run_from(std::env::args_os()))
    }

    /// Runs the command line on `args` (the first is the program name),
    /// printing as the binary does, and returns the exit code.
    pub fn run_from<I, T>(self, args: I) -> u8
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = match Args::try_parse_from(args) {
            Ok(args) => args,
            Err(error) => {
                let _ = error.print();
                return u8::try_from(error.exit_code()).unwrap_or(2);
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: cannot start the runtime: {error}");
                return 1;
            }
        };
        let outcome = runtime.block_on(commands::run(&self, args));
        // Subscriptions and pools end with the runtime, without waiting.
        runtime.shutdown_background();
        match outcome {
            Ok(()) => 0,
            Err(failure) => {
                eprintln!("error: {failure}");
                failure.exit_code()
            }
        }
    }
}
