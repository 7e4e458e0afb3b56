//! `projections`, `dead-letters` and `migrate`.

use futures_util::StreamExt as _;
use orchestrix::projection::ProjectionEngine;
use orchestrix::store::{DeadLetter, DeadLetterQuery, EventFilter};
use serde_json::json;

use super::{parse_stream, parse_time, Options};
use crate::args::{DeadLetterCommand, LetterFilter, RunnerWait};
use crate::connect::{Backend, Store};
use crate::error::Failure;
use crate::output::{confirm, print_json, progress, table};
use crate::Cli;

pub(super) async fn projections(store: &Store, names: &[String], options: Options) -> Result<(), Failure> {
    if names.is_empty() {
        return Err(Failure::Usage(
            "name the projections: `orchestrix projections NAME...` (a checkpoint store cannot list its consumers; \
             a binary that embeds the CLI registers them with `Cli::projection`)"
                .to_owned(),
        ));
    }
    let checkpoints = store.checkpoints()?;
    let head = store.events.head_position().await?;
    let all = EventFilter::all();
    let mut rows = Vec::new();
    for name in names {
        let checkpoint = checkpoints.load(name).await?;
        // Lag in events: positions may have gaps (PostgreSQL), so count.
        let mut lag = 0u64;
        if let Some(head) = head {
            let from = checkpoint.map_or(0, |c| c + 1);
            let mut behind = store.events.read_all(from, &all);
            while let Some(event) = behind.next().await {
                if event?.global_position > head {
                    break;
                }
                lag += 1;
            }
        }
        let dead = match &store.dead_letters {
            Some(letters) => Some(letters.count(&DeadLetterQuery::consumer(name.clone())).await?),
            None => None,
        };
        rows.push((name.clone(), checkpoint, lag, dead));
    }
    if options.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(name, checkpoint, lag, dead)| {
                json!({"name": name, "checkpoint": checkpoint, "lag": lag, "dead_letters": dead, "head_position": head})
            })
            .collect();
        return print_json(&json!({ "projections": rows }));
    }
    let text: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(name, checkpoint, lag, dead)| {
            vec![
                name,
                checkpoint.map_or_else(|| "none".to_owned(), |c| c.to_string()),
                lag.to_string(),
                dead.map_or_else(|| "-".to_owned(), |d| d.to_string()),
            ]
        })
        .collect();
    print!("{}", table(&["PROJECTION", "CHECKPOINT", "LAG (EVENTS)", "DEAD LETTERS"], &text));
    Ok(())
}

/// Rebuilds a registered projection; a runner of it elsewhere is paused
/// meanwhile and resumed after (ADR 0050).
pub(super) async fn rebuild(
    cli: &Cli,
    store: &Store,
    name: &str,
    runner: &RunnerWait,
    options: Options,
) -> Result<(), Failure> {
    let Some((_, rebuild)) = cli.rebuilders.iter().find(|(registered, _)| registered == name) else {
        return Err(Failure::NotFound(format!(
            "no rebuildable projection `{name}`: a binary that embeds the CLI registers it with `Cli::rebuildable` \
             (the stock `orchestrix` binary knows no projection's code)"
        )));
    };
    confirm(
        options.yes,
        &format!("Rebuild `{name}`: reset its read model, drop its checkpoint and dead letters, replay the log?"),
    )?;
    let mut engine = ProjectionEngine::new(store.events.clone(), store.checkpoints()?.clone());
    if let Some(letters) = &store.dead_letters {
        engine = engine.with_dead_letters(letters.clone());
    }
    let quiet = super::control::Quiet::take(store, name, runner).await?;
    let bar = progress(Some(0), &format!("rebuilding {name}"));
    let done = rebuild(engine, bar.clone()).await;
    bar.finish_and_clear();
    quiet.release(store).await?;
    let done = done.map_err(Failure::Store)?;
    report(
        options,
        &json!({"rebuilt": name, "events": done.events_done, "position": done.position, "seconds": done.elapsed.as_secs_f64()}),
        &format!(
            "rebuilt `{name}`: {} events up to position {} in {:.1?}",
            done.events_done, done.position, done.elapsed
        ),
    )
}

fn query_of(filter: &LetterFilter) -> Result<DeadLetterQuery, Failure> {
    let mut query = DeadLetterQuery::all();
    if let Some(projection) = &filter.projection {
        query = DeadLetterQuery::consumer(projection.clone());
    }
    if let Some(stream) = &filter.stream {
        query = query.stream(parse_stream(stream)?);
    }
    if let Some(reason) = &filter.reason {
        query = query.reason(reason.clone());
    }
    if let Some(older) = &filter.older_than {
        query = query.parked_before(parse_time(older)?);
    }
    Ok(query)
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    json!({"id": letter.id, "projection": letter.consumer, "stream": letter.event.stream.to_string(),
           "version": letter.event.stream_version, "position": letter.event.global_position,
           "type": letter.event.event_type, "error": letter.error, "attempts": letter.attempts,
           "parked_at": letter.parked_at})
}

pub(super) async fn dead_letters(store: &Store, command: &DeadLetterCommand, options: Options) -> Result<(), Failure> {
    let letters = store.dead_letters()?;
    match command {
        DeadLetterCommand::Count(filter) => {
            let count = letters.count(&query_of(filter)?).await?;
            if options.json {
                print_json(&json!({ "count": count }))
            } else {
                println!("{count}");
                Ok(())
            }
        }
        DeadLetterCommand::List(filter) => {
            let found = letters.query(&query_of(filter)?).await?;
            if options.json {
                return print_json(&json!({"dead_letters": found.iter().map(letter_json).collect::<Vec<_>>()}));
            }
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|l| {
                    vec![
                        l.id.to_string(),
                        l.consumer.clone(),
                        format!("{}#{}", l.event.stream, l.event.stream_version),
                        l.event.event_type.clone(),
                        l.attempts.to_string(),
                        l.parked_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        l.error.lines().next().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            print!("{}", table(&["ID", "PROJECTION", "EVENT", "TYPE", "ATTEMPTS", "PARKED", "ERROR"], &rows));
            Ok(())
        }
        DeadLetterCommand::Drop { id } => {
            let Some(letter) = letters.get(*id).await? else {
                return Err(Failure::NotFound(format!("no dead letter {id}")));
            };
            confirm(
                options.yes,
                &format!(
                    "Drop dead letter {id} of `{}` ({}#{})? Its event will not be handled again.",
                    letter.consumer, letter.event.stream, letter.event.stream_version
                ),
            )?;
            letters.remove(*id).await?;
            report(options, &json!({"dropped": 1}), "dropped 1 dead letter")
        }
        DeadLetterCommand::Retry { .. } => unreachable!("served by `control::retry`"),
        DeadLetterCommand::Purge(filter) => {
            let query = query_of(filter)?;
            let count = letters.count(&query).await?;
            if count == 0 {
                return report(options, &json!({"purged": 0}), "no dead letter matches; nothing purged");
            }
            confirm(options.yes, &format!("Purge {count} dead letters? Their events will not be handled again."))?;
            let purged = letters.purge(&query).await?;
            report(options, &json!({ "purged": purged }), &format!("purged {purged} dead letters"))
        }
    }
}

fn report(options: Options, value: &serde_json::Value, text: &str) -> Result<(), Failure> {
    if options.json {
        print_json(value)
    } else {
        println!("{text}");
        Ok(())
    }
}

pub(super) async fn migrate(store: &Store, options: Options) -> Result<(), Failure> {
    match &store.backend {
        // Opening an SQLite file applies its migrations.
        Backend::Sqlite => {}
        Backend::Postgres(pg) => pg.migrate().await?,
        Backend::Esdb => {
            return Err(Failure::Usage(format!("`{}` is EventSourcingDB, which has no schema to migrate", store.shown)))
        }
    }
    report(options, &json!({"migrated": store.shown}), &format!("migrated {}", store.shown))
}
