//! A multi-tenant ledger: every tenant's application runs on its own
//! [`TenantStore`] view of one shared store, and a transfer debits one
//! account and credits another in one atomic [`Orchestrix::append_many`],
//! so money is never created or lost, even when transfers race. Owners'
//! names are personal data, encrypted per customer ([`CryptoStore`]), and a
//! tenant can forget a customer while the accounts keep their history.

use std::sync::Arc;

use futures_util::StreamExt;
use orchestrix::crypto::CryptoStore;
use orchestrix::prelude::*;
use orchestrix::{
    app::CommandOptions,
    decision::Decision,
    store::{EventFilter, EventStore, KeyStore, SnapshotStore},
    tenant::TenantStore,
    Uuid,
};
use serde::{Deserialize, Serialize};

/// What happens to an account.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// The account was opened with a first deposit.
    Opened {
        /// The customer who owns it: the data subject of `owner`.
        customer_id: String,
        /// The owner's name: personal data, gone once the customer is
        /// forgotten.
        #[event(personal(subject = customer_id))]
        owner: Option<String>,
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
    /// A transfer the receiver's balance cannot hold: it would exceed
    /// `u64::MAX` cents.
    #[error("a transfer of {requested} onto a balance of {balance} exceeds the largest balance an account can hold")]
    BalanceOverflow {
        /// The receiver's balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
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
    /// The owner's name (`None` once the customer was forgotten).
    pub owner: Option<String>,
    /// The balance, in cents.
    pub balance: u64,
}

impl Account {
    /// [`transfer`] checked every event before recording it, so the
    /// arithmetic cannot leave `u64`; it saturates rather than wraps or
    /// panics should other code record one that does.
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner, deposit, .. } => {
                self.owner.clone_from(owner);
                self.balance = *deposit;
            }
            AccountEvent::TransferredOut { amount, .. } => self.balance = self.balance.saturating_sub(*amount),
            AccountEvent::TransferredIn { amount, .. } => self.balance = self.balance.saturating_add(*amount),
        }
    }
}

/// Opens an account.
#[derive(Debug, Clone)]
pub struct Open {
    /// The customer who owns it.
    pub customer_id: String,
    /// The owner's name.
    pub owner: String,
    /// The first deposit, in cents.
    pub deposit: u64,
}

#[command_handler]
impl Account {
    fn open(cmd: Open) -> Result<AccountEvent, LedgerError> {
        Ok(AccountEvent::Opened { customer_id: cmd.customer_id, owner: Some(cmd.owner), deposit: cmd.deposit })
    }
}

/// One tenant: its application on its views of the shared store, and its
/// crypto-shredding event store (to forget customers).
#[derive(Debug)]
pub struct Tenant<S> {
    /// The command bus.
    pub app: Orchestrix,
    /// The tenant's event store: encrypts owners' names per customer.
    pub events: CryptoStore<TenantStore<S>>,
}

/// One tenant's application: the command bus over the tenant's views, with
/// owners' names encrypted under keys of the tenant's customers.
pub fn tenant<S>(store: &S, tenant: &str) -> Result<Tenant<S>, Box<dyn std::error::Error + Send + Sync>>
where
    S: EventStore + SnapshotStore + KeyStore + Clone,
{
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(TenantStore::new(store.clone(), tenant)?);
    // `forget` deletes the forgotten customer's snapshots in the tenant's
    // snapshot store too (ADR 31).
    let events = CryptoStore::new(TenantStore::new(store.clone(), tenant)?, TenantStore::new(store.clone(), tenant)?)
        .register::<AccountEvent>()
        .erase_snapshots_in(Arc::clone(&snapshots));
    let app =
        Orchestrix::builder().event_store(events.clone()).snapshot_store(snapshots).aggregate::<Account>().build()?;
    Ok(Tenant { app, events })
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
        let (payer, receiver) = (app.load::<Account>(from).await?, app.load::<Account>(to).await?);
        for (id, account) in [(from, &payer), (to, &receiver)] {
            if !account.exists() {
                return Err(LedgerError::NoAccount(id));
            }
        }
        if payer.state.balance < amount {
            return Err(LedgerError::InsufficientFunds { balance: payer.state.balance, requested: amount });
        }
        // Checked, never `+`: a wrapped balance would destroy money.
        if receiver.state.balance.checked_add(amount).is_none() {
            return Err(LedgerError::BalanceOverflow { balance: receiver.state.balance, requested: amount });
        }
        let both = Decision::new()
            .append::<Account>(from, payer.expected_version(), [AccountEvent::TransferredOut { amount, to }])
            .append::<Account>(to, receiver.expected_version(), [AccountEvent::TransferredIn { amount, from }]);
        match app.append_many(both, CommandOptions::default()).await {
            Ok(_) => return Ok(attempt),
            Err(error) if error.is_conflict() => tokio::task::yield_now().await,
            Err(error) => return Err(error.into()),
        }
    }
    Err(LedgerError::Contended(ATTEMPTS))
}

/// The balance of an account (0 if it does not exist).
pub async fn balance(app: &Orchestrix, id: Uuid) -> Result<u64, orchestrix::Error> {
    Ok(app.load::<Account>(id).await?.state.balance)
}

/// How many events the tenant's view of the log holds.
pub async fn events_seen(app: &Orchestrix) -> usize {
    let filter = EventFilter::all();
    app.event_store().read_all(0, &filter).count().await
}

/// The demo: two tenants on one store, the same account ids in both,
/// racing transfers within one tenant, and a forgotten customer. Returns
/// the lines it prints.
pub async fn demo<S>(store: S) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>
where
    S: EventStore + SnapshotStore + KeyStore + Clone,
{
    let mut out = Vec::new();
    let (acme, globex) = (tenant(&store, "acme")?, tenant(&store, "globex")?);
    // The same ids in both tenants: two different pairs of accounts.
    let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
    for (t, deposit) in [(&acme, 100), (&globex, 7)] {
        t.app.execute(alice, Open { customer_id: "c-alice".into(), owner: "Alice".into(), deposit }).await?;
        t.app.execute(bob, Open { customer_id: "c-bob".into(), owner: "Bob".into(), deposit: 0 }).await?;
    }
    transfer(&acme.app, alice, bob, 30).await?;
    for (name, t) in [("acme:  ", &acme), ("globex:", &globex)] {
        out.push(format!(
            "{name} alice {} bob {} ({} events)",
            balance(&t.app, alice).await?,
            balance(&t.app, bob).await?,
            events_seen(&t.app).await
        ));
    }

    // Ten transfers of 10 race from alice (70 left) to bob: seven fit.
    let app = Arc::new(acme.app.clone());
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { transfer(&app, alice, bob, 10).await })
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
    let (a, b) = (balance(&acme.app, alice).await?, balance(&acme.app, bob).await?);
    out.push(format!("racing transfers: {done} done, {refused} refused; acme alice {a} bob {b}, total {}", a + b));

    // acme forgets its customer Alice: her account keeps its history and
    // balance, her name is gone; globex's Alice is another data subject.
    acme.events.forget("c-alice").await?;
    let (forgotten, kept) = (acme.app.load::<Account>(&alice).await?, globex.app.load::<Account>(&alice).await?);
    out.push(format!(
        "acme forgot c-alice: owner {:?}, balance {}, version {}; globex's alice: owner {:?}",
        forgotten.state.owner, forgotten.state.balance, forgotten.version, kept.state.owner
    ));
    Ok(out)
}
