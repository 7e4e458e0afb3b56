//! The subcommands, each over the ports of an opened [`Store`].

mod admin;
mod console;
mod control;
mod digest;
mod forget;
mod inspect;
mod scaffold;
mod tail;
mod transfer;
mod verify;

use chrono::{DateTime, NaiveDate, Utc};
use orchestrix::envelope::RecordedEvent;
use orchestrix::StreamId;

use crate::args::{Args, Command, DeadLetterCommand, ProjectionCommand, StoreKind};
use crate::connect::{Mode, Store};
use crate::error::Failure;
use crate::Cli;

/// The options every command sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// JSON instead of tables.
    pub(crate) json: bool,
    /// Confirmed in advance.
    pub(crate) yes: bool,
}

/// Runs one parsed command line; Ctrl-C ends it with
/// [`Failure::Interrupted`] (`tail` and `console` end normally).
pub(crate) async fn run(cli: &Cli, args: Args) -> Result<(), Failure> {
    let options = Options { json: args.json, yes: args.yes };
    let tails = matches!(args.command, Command::Tail { .. } | Command::Console { .. });
    let work = dispatch(cli, args, options);
    tokio::select! {
        outcome = work => outcome,
        _ = tokio::signal::ctrl_c() => if tails { Ok(()) } else { Err(Failure::Interrupted) },
    }
}

async fn open(args: &Args, mode: Mode) -> Result<Store, Failure> {
    let url = args
        .store
        .as_deref()
        .ok_or_else(|| Failure::Usage("no store: pass --store URL or set ORCHESTRIX_STORE".to_owned()))?;
    Store::open(url, args.token.as_deref(), mode).await
}

async fn dispatch(cli: &Cli, args: Args, options: Options) -> Result<(), Failure> {
    match &args.command {
        Command::New { name, dir, orchestrix_path } => {
            // `--store` names the kind of store here: `sqlite` (the
            // default) or `postgres`, or a URL of either.
            let store = match args.store.as_deref() {
                None => StoreKind::Sqlite,
                Some(kind) if kind == "sqlite" || kind.starts_with("sqlite:") => StoreKind::Sqlite,
                Some(kind) if kind == "postgres" || kind.starts_with("postgres") => StoreKind::Postgres,
                Some(other) => {
                    return Err(Failure::Usage(format!(
                        "`new` makes a service on `--store sqlite` or `--store postgres`, not `{}`",
                        crate::connect::shown(other)
                    )))
                }
            };
            scaffold::new_service(name, dir, store, orchestrix_path.as_deref(), options)
        }
        Command::Copy { from, to, to_token, batch } => {
            let source = Store::open(from, args.token.as_deref(), Mode::Existing).await?;
            let token = to_token.as_deref().or(args.token.as_deref());
            let target = Store::open(to, token, Mode::Create).await?;
            transfer::copy(&source, &target, *batch, options).await
        }
        Command::Migrate => admin::migrate(&open(&args, Mode::Create).await?, options).await,
        Command::Import { file, batch } => {
            let store = open(&args, Mode::Create).await?;
            transfer::import(&store, file, *batch, options).await
        }
        command => {
            let store = open(&args, Mode::Existing).await?;
            match command {
                Command::Streams { aggregate_type, prefix, tenant, limit } => {
                    let id_prefix = match (tenant, prefix) {
                        (Some(tenant), prefix) => Some(format!("{tenant}/{}", prefix.as_deref().unwrap_or(""))),
                        (None, prefix) => prefix.clone(),
                    };
                    inspect::streams(&store, aggregate_type.clone(), id_prefix, *limit, options).await
                }
                Command::Show { stream, at } => {
                    inspect::show(&store, &parse_stream(stream)?, at.as_deref(), options).await
                }
                Command::Stats => inspect::stats(&store, options).await,
                Command::Tail { types, stream, tenant, from, count } => {
                    let selection = Selection::new(types.clone(), stream.as_deref(), tenant.clone())?;
                    tail::tail(&store, &selection, *from, *count, options).await
                }
                Command::Projections { action: Some(ProjectionCommand::Rebuild { name, runner }), .. } => {
                    admin::rebuild(cli, &store, name, runner, options).await
                }
                Command::Projections { action: Some(ProjectionCommand::Pause { name, wait, timeout }), .. } => {
                    let wait = wait.then(|| std::time::Duration::from_secs(*timeout));
                    control::pause(&store, name, wait, options).await
                }
                Command::Projections { action: Some(ProjectionCommand::Resume { name }), .. } => {
                    control::resume(&store, name, options).await
                }
                Command::DeadLetters(DeadLetterCommand::Retry { id, projection, runner, .. }) => {
                    control::retry(cli, &store, *id, projection.as_deref(), runner, options).await
                }
                Command::Projections { names, action: None } => {
                    let mut names = names.clone();
                    names.extend(cli.projections.iter().filter(|n| !names.contains(n)).cloned().collect::<Vec<_>>());
                    admin::projections(&store, &names, options).await
                }
                Command::DeadLetters(command) => admin::dead_letters(&store, command, options).await,
                Command::Export { out, types, stream, cloudevents } => {
                    let selection = Selection::new(types.clone(), stream.as_deref(), None)?;
                    transfer::export(&store, out.as_deref(), &selection, *cloudevents).await
                }
                Command::Verify => verify::verify(cli, &store, options).await,
                Command::Forget { subject } => forget::forget(cli, &store, subject, options).await,
                Command::Console { listen, write_token, tenants } => {
                    console::serve(cli, &store, *listen, write_token.as_deref(), tenants).await
                }
                Command::Copy { .. } | Command::Migrate | Command::Import { .. } | Command::New { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// Parses `Type/id` (the id may hold `/`).
pub(crate) fn parse_stream(text: &str) -> Result<StreamId, Failure> {
    let (category, id) = text.split_once('/').ok_or_else(|| {
        Failure::Usage(format!("`{text}` is not a stream: write it as Type/id, for example Account/42"))
    })?;
    StreamId::new(category, id).map_err(|e| Failure::Usage(format!("`{text}` is not a stream: {e}")))
}

/// Parses an RFC 3339 time or a date (its midnight, UTC).
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "`{text}` is not a time: write RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)"
            ))
        })
}

/// Which events of the global log a command reads: by type (in the
/// store's query), by stream or aggregate type and by tenant (here).
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    pub(crate) types: Vec<String>,
    category: Option<String>,
    stream: Option<StreamId>,
    tenant: Option<String>,
}

impl Selection {
    pub(crate) fn new(types: Vec<String>, stream: Option<&str>, tenant: Option<String>) -> Result<Self, Failure> {
        let (category, stream) = match stream {
            Some(text) if text.contains('/') => (None, Some(parse_stream(text)?)),
            Some(text) => (Some(text.to_owned()), None),
            None => (None, None),
        };
        Ok(Self { types, category, stream, tenant })
    }

    /// The filter the store evaluates.
    pub(crate) fn filter(&self) -> orchestrix::store::EventFilter {
        if self.types.is_empty() {
            orchestrix::store::EventFilter::all()
        } else {
            orchestrix::store::EventFilter::types(self.types.clone())
        }
    }

    /// Whether `event` is selected by what the store does not evaluate.
    pub(crate) fn admits(&self, event: &RecordedEvent) -> bool {
        self.category.as_deref().is_none_or(|c| event.stream.category() == c)
            && self.stream.as_ref().is_none_or(|s| &event.stream == s)
            && self.tenant.as_deref().is_none_or(|t| event.tenant() == Some(t))
    }
}

/// The events selected up to `head` (the head when the command started,
/// so that a command over a live store ends).
pub(crate) fn up_to_head<'a>(
    store: &'a Store,
    filter: &'a orchestrix::store::EventFilter,
    head: u64,
) -> impl futures_util::Stream<Item = Result<std::sync::Arc<RecordedEvent>, Failure>> + 'a {
    use futures_util::StreamExt as _;
    store
        .events
        .read_all(0, filter)
        .take_while(move |item| std::future::ready(item.as_ref().map_or(true, |e| e.global_position <= head)))
        .map(|item| item.map_err(Failure::from))
}
