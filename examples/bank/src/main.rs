//! The Orchestrix quick-start: run it with `cargo run -p bank`.
//!
//! Opens accounts, moves money, shows a rejected overdraft, travels in
//! time, loads from a snapshot, reads a legacy event through its upcaster,
//! runs transfers as sagas (one of them refunded), queries a balance
//! projection, and prints the event log.

use std::error::Error;
use std::sync::Arc;

use bank::{
    money, Account, AccountEvent, Balances, BankError, CloseAccount, Deposit, OpenAccount, RequestTransfer, Transfer,
    TransferSaga, Withdraw,
};
use futures_util::TryStreamExt;
use orchestrix::memory::InMemoryCheckpointStore;
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::saga::SagaManager;
use orchestrix::{CommandError, EventFilter, ExpectedVersion, Metadata, NewEvent, Orchestrix, Repository, Uuid};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().aggregate::<Transfer>().build()?;
    println!("Orchestrix bank example (in-memory store)\n");

    // The read side and the long-running processes follow the log.
    let engine = ProjectionEngine::from_arcs(Arc::clone(app.event_store()), Arc::new(InMemoryCheckpointStore::new()));
    let balances = Balances::default();
    let mut balances_runner = engine.spawn(balances.clone(), ProjectionOptions::default());
    let transfers = SagaManager::new(app.clone(), TransferSaga);
    let mut transfers_runner = transfers.clone().spawn(&engine, ProjectionOptions::default()).await?;

    let ada = Uuid::now_v7();
    let bob = Uuid::now_v7();
    app.execute(ada, OpenAccount { owner: "Ada".into() }).await?;
    app.execute(bob, OpenAccount { owner: "Bob".into() }).await?;
    println!("opened accounts for Ada ({ada}) and Bob ({bob})");

    for amount in [10_000, 2_500] {
        let outcome = app.execute(ada, Deposit { amount }).await?;
        println!("Ada deposits {:>7}  -> version {}", money(amount), outcome.version);
    }
    let after_deposits = chrono::Utc::now();
    let outcome = app.execute(ada, Withdraw { amount: 4_000, reason: "rent".into() }).await?;
    println!("Ada withdraws {:>6}  -> version {}", money(4_000), outcome.version);

    match app.execute(ada, Withdraw { amount: 1_000_000, reason: "a yacht".into() }).await {
        Err(CommandError::Rejected(BankError::InsufficientFunds { balance, requested })) => {
            println!("Ada asks for {}: refused, the balance is {}", money(requested), money(balance));
        }
        other => return Err(format!("the overdraft should have been refused, got {other:?}").into()),
    }
    match app.execute(Uuid::now_v7(), Deposit { amount: 100 }).await {
        Err(error @ CommandError::AggregateNotFound { .. }) => println!("a deposit to an unknown account: {error}"),
        other => return Err(format!("expected AggregateNotFound, got {other:?}").into()),
    }

    let now = app.load::<Account>(&ada).await?;
    println!("\nAda now: balance {} at version {}", money(now.state.balance), now.version);
    let repository: Repository<Account> = app.repository();
    let then = repository.load_at(&ada, 2).await?;
    println!("time travel to version 2: balance {}", money(then.state.balance));
    let as_of = repository.load_as_of(&ada, after_deposits).await?;
    println!("time travel to just before the rent: balance {} (version {})", money(as_of.state.balance), as_of.version);

    // Version 5 crosses `snapshot_every = 5`: the next load starts from it.
    app.execute(ada, Deposit { amount: 150 }).await?;
    let loaded = app.load::<Account>(&ada).await?;
    println!(
        "after a 5th event: loaded from the snapshot at version {:?}, balance {}",
        loaded.from_snapshot,
        money(loaded.state.balance)
    );

    // An event written by an older release, at schema version 1 (no reason).
    let stream = Repository::<Account>::stream_id(&bob)?;
    let legacy = NewEvent {
        event_type: "AccountDeposited".into(),
        schema_version: 1,
        data: serde_json::value::RawValue::from_string(r#"{"amount":300}"#.into())?,
        metadata: Metadata::default(),
    };
    let withdrawn_v1 = NewEvent {
        event_type: "AccountWithdrawn".into(),
        schema_version: 1,
        data: serde_json::value::RawValue::from_string(r#"{"amount":100}"#.into())?,
        metadata: Metadata::default(),
    };
    app.event_store().append(&stream, ExpectedVersion::Exact(1), vec![legacy, withdrawn_v1]).await?;
    let history = repository.history(&bob).await?;
    if let Some(AccountEvent::Withdrawn { reason, .. }) = history.last().map(|e| &e.event) {
        println!("Bob's legacy v1 withdrawal reads as v2 with reason {reason:?}");
    }

    // Transfers run as sagas: debit, then credit; a refused credit refunds.
    let carol = Uuid::now_v7();
    app.execute(carol, OpenAccount { owner: "Carol".into() }).await?;
    app.execute(carol, CloseAccount).await?;
    for (to, name) in [(bob, "Bob"), (carol, "Carol (closed)")] {
        let requested = app.execute(Uuid::now_v7(), RequestTransfer { from: ada, to, amount: 1_000 }).await?;
        let trigger = &requested.events[0];
        transfers_runner.wait_for_position(trigger.global_position).await;
        let saga = transfers.status(trigger.id).await?.ok_or("the saga should have started")?;
        let steps = saga.completed_steps().join(", ");
        let compensated = saga.compensated_steps().join(", ");
        println!(
            "transfer of {} from Ada to {name}: {:?} (completed: [{steps}], compensated: [{compensated}])",
            money(1_000),
            saga.status
        );
    }

    app.execute(bob, Withdraw { amount: 1_200, reason: "groceries".into() }).await?;
    app.execute(bob, CloseAccount).await?;
    println!("Bob empties and closes his account");

    // The projection answers queries without touching the aggregates.
    let head = app.event_store().head_position().await?.unwrap_or(0);
    balances_runner.wait_for_position(head).await;
    println!("\nthe balance projection, at position {head}:");
    for (id, row) in balances.all() {
        let state = if row.closed { "closed" } else { "open" };
        println!("  {:<6} {:>9}  {state:<6} ({id})", row.owner, money(row.balance));
    }
    let ada_row = balances.get(&ada).ok_or("Ada is in the projection")?;
    let ada_now = app.load::<Account>(&ada).await?.state;
    assert_eq!(ada_row.balance, ada_now.balance, "the projection agrees with the aggregate");

    println!("\nthe event log:");
    let filter = EventFilter::all();
    let log: Vec<_> = app.event_store().read_all(1, &filter).try_collect().await?;
    let names = [(ada, "Ada"), (bob, "Bob"), (carol, "Carol")];
    for record in &log {
        let who = names
            .iter()
            .find(|(id, _)| record.stream.id() == id.to_string())
            .map_or_else(|| format!("{}", record.stream.category()), |(_, name)| (*name).to_owned());
        let what = match record.stream.category() {
            "Account" => describe(&record.decode::<AccountEvent>()?),
            _ => String::new(),
        };
        println!(
            "  #{:<3} {who:<14} v{:<2} {:<24} {what}",
            record.global_position, record.stream_version, record.event_type
        );
    }
    let streams: std::collections::BTreeSet<_> = log.iter().map(|r| &r.stream).collect();
    println!("\n{} events in {} streams; done.", log.len(), streams.len());
    balances_runner.stop().await?;
    transfers_runner.stop().await?;
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
