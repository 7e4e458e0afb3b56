//! The benchmark suite's domain, once for Orchestrix ([`Account`]) and
//! once for the peer framework, cqrs-es ([`PeerAccount`]): an account is
//! opened, takes deposits, or is opened with a batch of imported deposits.
//! Every command emits one event, except [`Import`], which emits `count`.
//!
//! Both store the same event type names; the data differs only as each
//! framework encodes it (Orchestrix: the variant's fields; cqrs-es: its
//! documented serde encoding of the enum, tagged with the variant).
#![allow(missing_docs)]

use orchestrix::prelude::*;
use serde::{Deserialize, Serialize};

/// The aggregate's name, the stream category in both frameworks.
pub const CATEGORY: &str = "Account";

/// How many events apart snapshots are taken, where a snapshot store is
/// configured (both frameworks).
pub const SNAPSHOT_EVERY: u64 = 100;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("a deposit must be positive")]
    Zero,
}

#[aggregate(event = AccountEvent, error = Refused, name = "Account", snapshot_every = 100)]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    pub owner: String,
    pub balance: u64,
    pub deposits: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

/// Opens an account: one event on a new stream.
#[derive(Debug, Clone)]
pub struct Open {
    pub owner: String,
}

/// One deposit into an open account.
#[derive(Debug, Clone)]
pub struct Deposit {
    pub amount: u64,
}

/// Opens an account with `count - 1` imported deposits: `count` events in
/// one append.
#[derive(Debug, Clone)]
pub struct Import {
    pub owner: String,
    pub count: u64,
}

#[command_handler]
impl Account {
    fn open(cmd: Open) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Opened { owner: cmd.owner })
    }

    fn deposit(&self, cmd: Deposit) -> Result<AccountEvent, Refused> {
        if cmd.amount == 0 {
            return Err(Refused::Zero);
        }
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }

    fn import(cmd: Import) -> Result<Vec<AccountEvent>, Refused> {
        Ok(import_events(&cmd.owner, cmd.count))
    }
}

fn import_events(owner: &str, count: u64) -> Vec<AccountEvent> {
    let opened = AccountEvent::Opened { owner: owner.to_owned() };
    std::iter::once(opened).chain((1..count).map(|amount| AccountEvent::Deposited { amount })).collect()
}

/// The event type name and data Orchestrix stores for an event, for the
/// raw baselines to write the very same rows.
pub fn stored(event: &AccountEvent) -> (&'static str, String) {
    let data = orchestrix::Event::encode(event).expect("the event encodes").get().to_owned();
    (orchestrix::Event::event_type(event), data)
}

/// The metadata Orchestrix records for a command's events: a fresh command
/// id as correlation and causation, for the raw baselines to store alike.
pub fn command_metadata() -> Metadata {
    let command = orchestrix::Uuid::now_v7();
    Metadata::default().with_correlation_id(command).with_causation_id(command)
}

/// The same account for cqrs-es 0.5.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PeerAccount {
    pub opened: bool,
    pub owner: String,
    pub balance: u64,
    pub deposits: u64,
}

/// The same events for cqrs-es 0.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

impl cqrs_es::DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Opened { .. } => "AccountOpened".to_owned(),
            Self::Deposited { .. } => "AccountDeposited".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The same commands for cqrs-es 0.5.
#[derive(Debug, Clone)]
pub enum PeerCommand {
    Open { owner: String },
    Deposit { amount: u64 },
    Import { owner: String, count: u64 },
}

impl cqrs_es::Aggregate for PeerAccount {
    const TYPE: &'static str = CATEGORY;
    type Command = PeerCommand;
    type Event = PeerEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        command: PeerCommand,
        (): &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Refused> {
        match command {
            PeerCommand::Open { .. } | PeerCommand::Import { .. } if self.opened => Err(Refused::AlreadyOpen),
            PeerCommand::Deposit { .. } if !self.opened => Err(Refused::NotOpen),
            PeerCommand::Deposit { amount: 0 } => Err(Refused::Zero),
            PeerCommand::Open { owner } => {
                sink.write(PeerEvent::Opened { owner }, self).await;
                Ok(())
            }
            PeerCommand::Deposit { amount } => {
                sink.write(PeerEvent::Deposited { amount }, self).await;
                Ok(())
            }
            PeerCommand::Import { owner, count } => {
                sink.write(PeerEvent::Opened { owner }, self).await;
                for amount in 1..count {
                    sink.write(PeerEvent::Deposited { amount }, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Opened { owner } => {
                self.opened = true;
                self.owner = owner;
            }
            PeerEvent::Deposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_frameworks_decide_alike() {
        let app = Orchestrix::builder().in_memory().aggregate::<Account>().build().expect("builds");
        let id = orchestrix::Uuid::now_v7();
        app.execute(id, Import { owner: "Ada".into(), count: 4 }).await.expect("imports");
        app.execute(id, Deposit { amount: 10 }).await.expect("deposits");
        assert!(app.execute(id, Deposit { amount: 0 }).await.is_err());
        let ours = app.load::<Account>(&id).await.expect("loads").state;

        let store = cqrs_es::mem_store::MemStore::<PeerAccount>::default();
        let cqrs = cqrs_es::CqrsFramework::new(store, vec![], ());
        cqrs.execute("a", PeerCommand::Import { owner: "Ada".into(), count: 4 }).await.expect("imports");
        cqrs.execute("a", PeerCommand::Deposit { amount: 10 }).await.expect("deposits");
        assert!(cqrs.execute("a", PeerCommand::Deposit { amount: 0 }).await.is_err());
        assert!(cqrs.execute("a", PeerCommand::Open { owner: "Bob".into() }).await.is_err());

        assert_eq!((ours.owner.as_str(), ours.balance, ours.deposits), ("Ada", 16, 4));
        let (_, data) = stored(&AccountEvent::Deposited { amount: 3 });
        assert_eq!(data, r#"{"amount":3}"#);
    }
}
