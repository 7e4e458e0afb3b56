//! A multi-tenant ledger: every tenant's application runs on its own
//! [`TenantStore`] view of one shared store, and a transfer debits one
//! account and credits another in one atomic [`Orchestrix::append_many`],
//! so money is never created or lost, even when transfers race.

use std::sync::Arc;

use futures_util::StreamExt;
use orchestrix::app::MultiAppend;
use orchestrix::prelude::*;
use orchestrix::{CommandOptions, EventFilter, EventStore, SnapshotStore, TenantStore, Uuid};
use serde::{Deserialize, Serialize};

/// What happens to an account.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// The account was opened with a first deposit.
    Opened {
        /// Who owns it.
        owner: String,
        /// The first deposit, in cents.
        deposit: u64,
    },
    /// Money left for another account of the same tenant.
    TransferredOut {
        /// How much, in cents.
        amount: u64,
        /// The receiving account.
        to: Uuid,
    },
    /// Money arrived from another account of the same tenant.
    TransferredIn {
        /// How much, in cents.
        amount: u64,
        /// The paying account.
        from: Uuid,
    },
}

/// Why the ledger refuses something.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A transfer larger than the payer's balance.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The payer's balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// A transfer to or from an account that does not exist.
    #[error("account {0} does not exist")]
    NoAccount(Uuid),
    /// A transfer from an account to itself.
    #[error("an account cannot pay itself")]
    SameAccount,
    /// Other transfers kept changing the accounts.
    #[error("the accounts kept changing; gave up after {0} attempts")]
    Contended(u32),
    /// Storage failed.
    #[error(transparent)]
    Framework(#[from] orchestrix::Error),
}

/// An account.
#[aggregate(event = AccountEvent, error = LedgerError)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The owner.
    pub owner: String,
    /// The balance, in cents.
    pub balance: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner, deposit } => {
                self.owner.clone_from(owner);
                self.balance = *deposit;
            }
            AccountEvent::TransferredOut { amount, .. } => self.balance -= amount,
            AccountEvent::TransferredIn { amount, .. } => self.balance += amount,
        }
    }
}

/// Opens an account.
#[derive(Debug, Clone)]
pub struct Open {
    /// Who owns it.
    pub owner: String,
    /// The first deposit, in cents.
    pub deposit: u64,
}

#[command_handler]
impl Account {
    fn open(cmd: Open) -> Result<AccountEvent, LedgerError> {
        Ok(AccountEvent::Opened { owner: cmd.owner, deposit: cmd.deposit })
    }
}

/// One tenant's application: the command bus over the tenant's views.
pub fn tenant_app<S>(store: &S, tenant: &str) -> Result<Orchestrix, Box<dyn std::error::Error + Send + Sync>>
where
    S: EventStore + SnapshotStore + Clone,
{
    Ok(Orchestrix::builder()
        .event_store(TenantStore::new(store.clone(), tenant)?)
        .snapshot_store(TenantStore::new(store.clone(), tenant)?)
        .aggregate::<Account>()
        .build()?)
}

/// Moves `amount` from one account to another: both events or neither.
///
/// Loads both accounts, decides, and appends one event to each with the
/// versions it loaded; if another transfer got there first, the append
/// writes nothing and the transfer decides again on fresh state.
pub async fn transfer(app: &Orchestrix, from: Uuid, to: Uuid, amount: u64) -> Result<u32, LedgerError> {
    const ATTEMPTS: u32 = 20;
    if from == to {
        return Err(LedgerError::SameAccount);
    }
    for attempt in 1..=ATTEMPTS {
        let (payer, receiver) = (app.load::<Account>(&from).await?, app.load::<Account>(&to).await?);
        for (id, account) in [(from, &payer), (to, &receiver)] {
            if !account.exists() {
                return Err(LedgerError::NoAccount(id));
            }
        }
        if payer.state.balance < amount {
            return Err(LedgerError::InsufficientFunds { balance: payer.state.balance, requested: amount });
        }
        let both = MultiAppend::new()
            .append::<Account>(&from, payer.expected_version(), &[AccountEvent::TransferredOut { amount, to }])?
            .append::<Account>(&to, receiver.expected_version(), &[AccountEvent::TransferredIn { amount, from }])?;
        match app.append_many(both, CommandOptions::default()).await {
            Ok(_) => return Ok(attempt),
            Err(orchestrix::Error::Store(error)) if error.is_conflict() => tokio::task::yield_now().await,
            Err(error) => return Err(error.into()),
        }
    }
    Err(LedgerError::Contended(ATTEMPTS))
}

/// The balance of an account (0 if it does not exist).
pub async fn balance(app: &Orchestrix, id: Uuid) -> Result<u64, orchestrix::Error> {
    Ok(app.load::<Account>(&id).await?.state.balance)
}

/// How many events the tenant's view of the log holds.
pub async fn events_seen(app: &Orchestrix) -> usize {
    let filter = EventFilter::all();
    app.event_store().read_all(0, &filter).count().await
}

/// The demo: two tenants on one store, the same account ids in both, and
/// racing transfers within one tenant. Returns the lines it prints.
pub async fn demo<S>(store: S) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>
where
    S: EventStore + SnapshotStore + Clone,
{
    let mut out = Vec::new();
    let (acme, globex) = (tenant_app(&store, "acme")?, tenant_app(&store, "globex")?);
    // The same ids in both tenants: two different pairs of accounts.
    let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for (app, deposit) in [(&acme, 100), (&globex, 7)] {
        app.execute(alice, Open { owner: "Alice".into(), deposit }).await?;
        app.execute(bob, Open { owner: "Bob".into(), deposit: 0 }).await?;
    }
    transfer(&acme, alice, bob, 30).await?;
    out.push(format!(
        "acme:   alice {} bob {} ({} events)",
        balance(&acme, alice).await?,
        balance(&acme, bob).await?,
        events_seen(&acme).await
    ));
    out.push(format!(
        "globex: alice {} bob {} ({} events)",
        balance(&globex, alice).await?,
        balance(&globex, bob).await?,
        events_seen(&globex).await
    ));

    // Ten transfers of 10 race from alice (70 left) to bob: seven fit.
    let acme = Arc::new(acme);
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let acme = Arc::clone(&acme);
            tokio::spawn(async move { transfer(&acme, alice, bob, 10).await })
        })
        .collect();
    let (mut done, mut refused) = (0, 0);
    for racer in racers {
        match racer.await? {
            Ok(_) => done += 1,
            Err(LedgerError::InsufficientFunds { .. }) => refused += 1,
            Err(error) => return Err(error.into()),
        }
    }
    let (a, b) = (balance(&acme, alice).await?, balance(&acme, bob).await?);
    out.push(format!("racing transfers: {done} done, {refused} refused; acme alice {a} bob {b}, total {}", a + b));
    Ok(out)
}
