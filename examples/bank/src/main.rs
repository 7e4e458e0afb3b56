//! The Orchestrix quick-start: run it with `cargo run -p bank`.
//!
//! The events live in an SQLite file (`bank.db` in the current directory,
//! `--db PATH` to choose another, `--in-memory` for none): run it twice and
//! the second run continues the first one's log.
//!
//! Opens accounts, moves money, shows a rejected overdraft, travels in
//! time, loads from a snapshot, reads a legacy event through its upcaster,
//! runs transfers as sagas (one of them refunded), queries a balance
//! projection, and prints the event log.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bank::{
    money, Account, AccountEvent, Balances, BankError, CloseAccount, Deposit, OpenAccount, RequestTransfer, Transfer,
    TransferSaga, Withdraw,
};
use clap::Parser;
use futures_util::TryStreamExt;
use orchestrix::lease::Leases;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore, InMemoryLeases, InMemorySnapshotStore};
use orchestrix::projection::{Projection, ProjectionEngine, ProjectionOptions};
use orchestrix::saga::SagaManager;
use orchestrix::store::{CheckpointStore, EventStore, SnapshotStore};
use orchestrix::{
    envelope::NewEvent,
    repository::Repository,
    store::{EventFilter, ExpectedVersion},
    CommandError, Orchestrix, Uuid,
};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use serde_json::value::RawValue;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

/// The accounts of the tour, by name.
struct People {
    ada: Uuid,
    bob: Uuid,
    carol: Uuid,
}

impl People {
    fn name_of(&self, stream_id: &str) -> Option<&'static str> {
        [(self.ada, "Ada"), (self.bob, "Bob"), (self.carol, "Carol")]
            .into_iter()
            .find(|(id, _)| id.to_string() == stream_id)
            .map(|(_, name)| name)
    }
}

/// The Orchestrix bank example.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The SQLite file that keeps the events, snapshots and checkpoints.
    #[arg(long, default_value = "bank.db")]
    db: PathBuf,
    /// Keep everything in memory instead (nothing survives the run).
    #[arg(long, conflicts_with = "db")]
    in_memory: bool,
}

/// The ports, and the leases that keep one saga runner per saga kind.
type Stores = (Arc<dyn EventStore>, Arc<dyn SnapshotStore>, Arc<dyn CheckpointStore>, Arc<dyn Leases>);

async fn open_stores(args: &Args) -> Result<Stores> {
    if args.in_memory {
        println!("store: in memory\n");
        return Ok((
            Arc::new(InMemoryEventStore::new()),
            Arc::new(InMemorySnapshotStore::new()),
            Arc::new(InMemoryCheckpointStore::new()),
            Arc::new(InMemoryLeases::new()),
        ));
    }
    let store = Arc::new(SqliteStore::open(&args.db, SqliteConfig::default()).await?);
    let earlier = store.head_position().await?.unwrap_or(0);
    println!("store: SQLite file {} ({earlier} events from earlier runs)\n", args.db.display());
    Ok((store.clone(), store.clone(), store.clone(), store))
}

/// How long the demo waits for a projection before giving up.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result {
    let args = Args::parse();
    // Warnings on stderr, and whether this run waits for another one's
    // saga lease.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("orchestrix::lease", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    println!("Orchestrix bank example");
    let (events, snapshots, checkpoints, leases) = open_stores(&args).await?;
    let first_position = events.head_position().await?.unwrap_or(0) + 1;
    let app = Orchestrix::builder()
        .event_store(Arc::clone(&events))
        .snapshot_store(snapshots)
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        // Its steps' commands must be handled: checked here, not on the first transfer.
        .saga(&TransferSaga)
        .build()?;
    let people = People { ada: Uuid::now_v7(), bob: Uuid::now_v7(), carol: Uuid::now_v7() };

    // The read side and the long-running processes follow the log. The
    // balance projection keeps its model in memory, so it is rebuilt from
    // the whole log at start; the saga manager resumes from its checkpoint.
    let engine = ProjectionEngine::new(events, checkpoints);
    let mut balances = Balances::default();
    let rebuilt = engine.rebuild(&mut balances, ProjectionOptions::default(), |_| {}).await?;
    println!("rebuilt the `{}` projection: {rebuilt}", balances.name());
    let mut balances_runner = engine.spawn(balances.clone(), ProjectionOptions::default());
    // One saga runner per saga kind, even if this program runs twice on
    // one file: the manager runs only while it holds the lease in the
    // store; a second process stands by until the first one ends (and
    // logs that it waits). Without it, both would run the same steps.
    let transfers = SagaManager::new(app.clone(), TransferSaga).with_leases(leases);
    let mut transfers_runner = transfers.clone().spawn(&engine, ProjectionOptions::default()).await?;

    commands(&app, &people).await?;
    time_travel_and_snapshots(&app, &people).await?;
    legacy_events(&app, &people).await?;

    // Transfers run as sagas: debit, then credit; a refused credit refunds.
    app.execute(people.carol, OpenAccount { owner: "Carol".into() }).await?;
    app.execute(people.carol, CloseAccount).await?;
    for (to, name) in [(people.bob, "Bob"), (people.carol, "Carol (closed)")] {
        let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: people.ada, to, amount: 1_000 }).await?;
        let trigger = &requested.events[0];
        transfers_runner.wait_for_position(trigger.global_position, WAIT).await?;
        let saga = transfers.status(trigger.id).await?.ok_or("the saga should have started")?;
        println!(
            "transfer of {} from Ada to {name}: {:?} (completed: [{}], compensated: [{}])",
            money(1_000_u64),
            saga.status,
            saga.completed_steps().join(", "),
            saga.compensated_steps().join(", ")
        );
    }
    app.execute(people.bob, Withdraw { amount: 1_200, reason: "groceries".into() }).await?;
    app.execute(people.bob, CloseAccount).await?;
    println!("Bob empties and closes his account");

    // The projection answers queries without touching the aggregates.
    // Everything appended so far, whatever its type (the last events may be
    // of types the projection does not handle).
    let head = balances_runner.wait_caught_up(WAIT).await?.position;
    println!("\nthe balance projection, at position {head}:");
    let rows = balances.all();
    for (id, row) in rows.iter().filter(|(id, _)| people.name_of(id).is_some()) {
        let state = if row.closed { "closed" } else { "open" };
        println!("  {:<6} {:>9}  {state:<6} ({id})", row.owner, money(row.balance));
    }
    // Summed in u128: many accounts may together hold more than u64 cents.
    let total: u128 = rows.values().map(|row| u128::from(row.balance)).sum();
    println!("  ({} accounts in all, this run's and earlier runs', holding {})", rows.len(), money(total));
    let projected = balances.get(&people.ada).ok_or("Ada is in the projection")?.balance;
    assert_eq!(projected, app.load::<Account>(&people.ada).await?.state.balance, "the projection agrees");

    print_log(&app, &people, first_position).await?;
    balances_runner.stop().await?;
    transfers_runner.stop().await?;
    Ok(())
}

/// Opening, depositing, withdrawing, and two refusals.
async fn commands(app: &Orchestrix, people: &People) -> Result {
    app.execute(people.ada, OpenAccount { owner: "Ada".into() }).await?;
    app.execute(people.bob, OpenAccount { owner: "Bob".into() }).await?;
    println!("opened accounts for Ada ({}) and Bob ({})", people.ada, people.bob);
    for amount in [10_000, 2_500] {
        let outcome = app.execute(people.ada, Deposit { amount }).await?;
        println!("Ada deposits {:>7}  -> version {}", money(amount), outcome.version);
    }
    let outcome = app.execute(people.ada, Withdraw { amount: 4_000, reason: "rent".into() }).await?;
    println!("Ada withdraws {:>6}  -> version {}", money(4_000_u64), outcome.version);

    match app.execute(people.ada, Withdraw { amount: 1_000_000, reason: "a yacht".into() }).await {
        Err(CommandError::Rejected(BankError::InsufficientFunds { balance, requested })) => {
            println!("Ada asks for {}: refused, the balance is {}", money(requested), money(balance));
        }
        other => return Err(format!("the overdraft should have been refused, got {other:?}").into()),
    }
    match app.execute(Uuid::now_v7(), Deposit { amount: 100 }).await {
        Err(error @ CommandError::AggregateNotFound { .. }) => println!("a deposit to an unknown account: {error}"),
        other => return Err(format!("expected AggregateNotFound, got {other:?}").into()),
    }
    Ok(())
}

/// `load_at`, `load_as_of`, and a load that starts from a snapshot.
async fn time_travel_and_snapshots(app: &Orchestrix, people: &People) -> Result {
    let now = app.load::<Account>(&people.ada).await?;
    println!("\nAda now: balance {} at version {}", money(now.state.balance), now.version);
    let repository: Repository<Account> = app.repository();
    let then = repository.load_at(&people.ada, 2).await?;
    println!("time travel to version 2: balance {}", money(then.state.balance));
    let history = repository.history(&people.ada).await?;
    let before_rent = history.iter().find(|e| e.stream_version == 3).map(|e| e.recorded_at).ok_or("version 3")?;
    let as_of = repository.load_as_of(&people.ada, before_rent).await?;
    println!("time travel to just before the rent: balance {} (version {})", money(as_of.state.balance), as_of.version);

    // Version 5 crosses `snapshot_every = 5`: the next load starts from it.
    app.execute(people.ada, Deposit { amount: 150 }).await?;
    let loaded = app.load::<Account>(&people.ada).await?;
    println!(
        "after a 5th event: loaded from the snapshot at version {:?}, balance {}",
        loaded.from_snapshot,
        money(loaded.state.balance)
    );
    Ok(())
}

/// Events written by an older release, at schema version 1, read through
/// their upcasters.
async fn legacy_events(app: &Orchestrix, people: &People) -> Result {
    let stream = Repository::<Account>::stream_id(people.bob)?;
    let legacy = |event_type: &str, data: &str| -> Result<NewEvent> {
        Ok(NewEvent::new(event_type, 1, RawValue::from_string(data.into())?))
    };
    let events =
        vec![legacy("AccountDeposited", r#"{"amount":300}"#)?, legacy("AccountWithdrawn", r#"{"amount":100}"#)?];
    app.event_store().append(&stream, ExpectedVersion::Exact(1), events).await?;
    let history = app.repository::<Account>().history(&people.bob).await?;
    if let Some(AccountEvent::Withdrawn { reason, .. }) = history.last().map(|e| &e.event) {
        println!("Bob's legacy v1 withdrawal reads as v2 with reason {reason:?}");
    }
    Ok(())
}

async fn print_log(app: &Orchestrix, people: &People, from: u64) -> Result {
    println!("\nthis run's part of the event log:");
    let filter = EventFilter::all();
    let log: Vec<_> = app.event_store().read_all(from, &filter).try_collect().await?;
    for record in &log {
        let who = people.name_of(record.stream.id()).unwrap_or_else(|| record.stream.category());
        let what = match record.stream.category() {
            "Account" => describe(&record.decode::<AccountEvent>()?),
            _ => String::new(),
        };
        println!(
            "  #{:<3} {who:<14} v{:<2} {:<24} {what}",
            record.global_position, record.stream_version, record.event_type
        );
    }
    let streams: BTreeSet<_> = log.iter().map(|r| &r.stream).collect();
    println!("\n{} events in {} streams; done.", log.len(), streams.len());
    Ok(())
}

fn describe(event: &AccountEvent) -> String {
    match event {
        AccountEvent::Opened { owner } => format!("owner {owner}"),
        AccountEvent::Deposited { amount } => format!("+{}", money(*amount)),
        AccountEvent::Withdrawn { amount, reason } => format!("-{} ({reason})", money(*amount)),
        AccountEvent::Closed => "closed".to_owned(),
    }
}
