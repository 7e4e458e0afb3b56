//! `projections pause` and `resume`, and the pause that keeps a runner
//! elsewhere out of the way of `dead-letters retry` and
//! `projections rebuild` (ADR 0050).

use std::time::Duration;

use orchestrix::lease::Lease as _;
use orchestrix::store::{ConsumerControl, DeadLetterQuery};
use orchestrix_adapters::postgres::PgLease;
use serde_json::json;

use super::Options;
use crate::args::RunnerWait;
use crate::connect::{Backend, Store};
use crate::error::Failure;
use crate::output::print_json;

/// How often the command line reads the record while it waits.
const POLL: Duration = Duration::from_millis(100);

fn report(options: Options, value: &serde_json::Value, text: &str) -> Result<(), Failure> {
    if options.json {
        print_json(value)
    } else {
        println!("{text}");
        Ok(())
    }
}

async fn control(store: &Store, name: &str) -> Result<Option<ConsumerControl>, Failure> {
    Ok(store.checkpoints()?.load_control(name).await?)
}

/// Waits up to `timeout` for a runner's acknowledgement of the pause of
/// `name`; the record then, or `None`.
async fn acknowledged(store: &Store, name: &str, timeout: Duration) -> Result<Option<ConsumerControl>, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(record) = control(store, name).await?.filter(ConsumerControl::is_paused) {
            return Ok(Some(record));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn paused_text(name: &str, record: &ConsumerControl) -> String {
    record.paused.as_ref().map_or_else(
        || format!("pause of `{name}` requested; no runner has acknowledged it yet"),
        |ack| format!("paused `{name}` at position {} ({})", ack.position, ack.runner),
    )
}

fn record_json(name: &str, record: Option<&ConsumerControl>) -> serde_json::Value {
    let ack = record.and_then(|r| r.paused.as_ref());
    json!({"projection": name, "pause_requested": record.is_some_and(|r| r.pause_requested),
           "paused": ack.map(|a| json!({"runner": a.runner, "position": a.position, "at": a.at}))})
}

/// `projections pause NAME [--wait]`.
pub(super) async fn pause(store: &Store, name: &str, wait: Option<Duration>, options: Options) -> Result<(), Failure> {
    let checkpoints = store.checkpoints()?;
    if checkpoints.load(name).await?.is_none() {
        eprintln!("warning: `{name}` has no checkpoint (yet): a projection of that name starts paused");
    }
    checkpoints.request_pause(name, true).await?;
    let record = match wait {
        None => control(store, name).await?,
        Some(timeout) => Some(acknowledged(store, name, timeout).await?.ok_or_else(|| {
            Failure::Timeout(format!(
                "no runner acknowledged the pause of `{name}` within {timeout:?} (a runner busy with a long event, \
                 or none runs it); the pause stays requested: `orchestrix projections resume {name}` withdraws it"
            ))
        })?),
    };
    let text = record.as_ref().map_or_else(|| format!("pause of `{name}` requested"), |r| paused_text(name, r));
    report(options, &record_json(name, record.as_ref()), &text)
}

/// `projections resume NAME`: a projection that is not paused is left
/// as it is.
pub(super) async fn resume(store: &Store, name: &str, options: Options) -> Result<(), Failure> {
    let before = control(store, name).await?;
    if !before.as_ref().is_some_and(|r| r.pause_requested) {
        return report(
            options,
            &json!({"projection": name, "resumed": false}),
            &format!("`{name}` is not paused; nothing to do"),
        );
    }
    store.checkpoints()?.request_pause(name, false).await?;
    report(options, &json!({"projection": name, "resumed": true}), &format!("resumed `{name}`"))
}

/// No runner handles a projection's events while this lives: the pause
/// it requested (if the projection was not paused already) and the lease
/// it holds (PostgreSQL, when no runner acknowledged). [`Quiet::release`]
/// gives both back.
#[derive(Debug)]
pub(super) struct Quiet {
    name: String,
    /// Whether this command requested the pause (and withdraws it after).
    requested: bool,
    lease: Option<PgLease>,
}

impl Quiet {
    /// Requests the pause of `name` and waits until no runner handles its
    /// events: a runner acknowledged; or, on PostgreSQL, no runner holds
    /// the projection's lease once the wait is over (this takes it); or
    /// `--no-runner`. Without either, the pause this made is withdrawn
    /// and the command fails with exit 7.
    pub(super) async fn take(store: &Store, name: &str, runner: &RunnerWait) -> Result<Self, Failure> {
        let checkpoints = store.checkpoints()?;
        let requested = !control(store, name).await?.is_some_and(|r| r.pause_requested);
        if requested {
            checkpoints.request_pause(name, true).await?;
        }
        let mut quiet = Self { name: name.to_owned(), requested, lease: None };
        if runner.no_runner {
            return Ok(quiet);
        }
        let timeout = Duration::from_secs(runner.timeout);
        if let Some(record) = acknowledged(store, name, timeout).await? {
            eprintln!("{}", paused_text(name, &record));
            return Ok(quiet);
        }
        if let Backend::Postgres(pg) = &store.backend {
            if let Some(lease) = pg.try_lease(&format!("projection:{name}")).await? {
                eprintln!("no runner acknowledged the pause of `{name}`, and none holds its lease: going on");
                quiet.lease = Some(lease);
                return Ok(quiet);
            }
        }
        quiet.release(store).await?;
        Err(Failure::Timeout(format!(
            "no runner acknowledged the pause of `{name}` within {timeout:?}: a runner may be busy with a long event; \
             nothing was done{}. If no process runs `{name}`, run again with --no-runner",
            if requested { " and the pause was withdrawn" } else { " (it stays paused, as it was)" }
        )))
    }

    /// Withdraws the pause this requested (a projection paused before
    /// stays paused) and gives the lease back.
    pub(super) async fn release(self, store: &Store) -> Result<(), Failure> {
        if let Some(lease) = self.lease {
            Box::new(lease).release().await?;
        }
        if self.requested {
            store.checkpoints()?.request_pause(&self.name, false).await?;
        }
        Ok(())
    }
}

/// `dead-letters retry ID | --all --projection NAME`.
pub(super) async fn retry(
    cli: &crate::Cli,
    store: &Store,
    id: Option<uuid::Uuid>,
    projection: Option<&str>,
    runner: &RunnerWait,
    options: Options,
) -> Result<(), Failure> {
    let letters = store.dead_letters()?;
    let (name, question) = match (id, projection) {
        (Some(id), _) => {
            let letter = letters.get(id).await?.ok_or_else(|| Failure::NotFound(format!("no dead letter {id}")))?;
            let question = format!(
                "Retry dead letter {id} of `{}` ({}#{}) and the letters behind it in its stream?",
                letter.consumer, letter.event.stream, letter.event.stream_version
            );
            (letter.consumer, question)
        }
        (None, Some(name)) => {
            let count = letters.count(&DeadLetterQuery::consumer(name.to_owned())).await?;
            if count == 0 {
                return report(
                    options,
                    &json!({"projection": name, "applied": 0, "failed": 0, "still_parked": 0}),
                    &format!("`{name}` has no dead letters; nothing to retry"),
                );
            }
            (name.to_owned(), format!("Retry the {count} dead letters of `{name}`?"))
        }
        (None, None) => return Err(Failure::Usage("name a dead letter, or --all --projection NAME".to_owned())),
    };
    let Some((_, retry)) = cli.retriers.iter().find(|(registered, _)| *registered == name) else {
        return Err(Failure::NotFound(format!(
            "no registered projection `{name}` to retry its dead letters with: a binary that embeds the CLI \
             registers it with `Cli::rebuildable` (the stock `orchestrix` binary knows no projection's code)"
        )));
    };
    crate::output::confirm(options.yes, &question)?;
    let quiet = Quiet::take(store, &name, runner).await?;
    let engine = orchestrix::projection::ProjectionEngine::new(store.events.clone(), store.checkpoints()?.clone())
        .with_dead_letters(letters.clone());
    let outcome = retry(engine, id).await;
    quiet.release(store).await?;
    let outcome = outcome.map_err(Failure::Store)?;
    let value = json!({"projection": name, "applied": outcome.applied, "still_parked": outcome.still_parked,
        "failed": outcome.failed.iter().map(|f| json!({"id": f.id, "error": f.error, "attempts": f.attempts})).collect::<Vec<_>>()});
    if let Some(failed) = outcome.failed.first() {
        if options.json {
            print_json(&value)?;
        }
        return Err(Failure::Store(format!(
            "retried `{name}`: {} applied, {} still parked; dead letter {} failed again: {}",
            outcome.applied.len(),
            outcome.still_parked,
            failed.id,
            failed.error
        )));
    }
    report(
        options,
        &value,
        &format!("retried `{name}`: {} applied, {} still parked", outcome.applied.len(), outcome.still_parked),
    )
}
