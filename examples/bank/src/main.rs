//! The Orchestrix quick-start: run it with `cargo run -p bank`.
//!
//! Opens two accounts, moves money, shows a rejected overdraft, travels in
//! time, loads from a snapshot, reads a legacy event through its upcaster,
//! and prints the event log.

use std::error::Error;

use bank::{money, Account, AccountEvent, BankError, CloseAccount, Deposit, OpenAccount, Withdraw};
use futures_util::TryStreamExt;
use orchestrix::{CommandError, EventFilter, ExpectedVersion, Metadata, NewEvent, Orchestrix, Repository, Uuid};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().build()?;
    println!("Orchestrix bank example (in-memory store)\n");

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
    app.execute(bob, Withdraw { amount: 200, reason: "groceries".into() }).await?;
    app.execute(bob, CloseAccount).await?;
    println!("Bob empties and closes his account");

    println!("\nthe event log:");
    let filter = EventFilter::all();
    let log: Vec<_> = app.event_store().read_all(1, &filter).try_collect().await?;
    for record in &log {
        let event: AccountEvent = record.decode()?;
        let owner = if record.stream.id() == ada.to_string() { "Ada" } else { "Bob" };
        println!(
            "  #{:<2} {owner} v{:<2} {:<18} {}",
            record.global_position,
            record.stream_version,
            record.event_type,
            describe(&event)
        );
    }
    println!("\n{} events in {} streams; done.", log.len(), 2);
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
