//! The same domain as [`crate::macros`], with every trait implemented by
//! hand and the same storage contract (tag-free JSON data).
#![allow(missing_docs)]

use std::future::{ready, Future};
use std::num::NonZeroU64;

use orchestrix::__private::{CommandDescriptor, HandlerResult};
use orchestrix::event::{decode_versioned, encode_raw, EventType};
use orchestrix::{
    command::{CommandSet, Existence},
    error::DecodeErrorKind,
    Aggregate, AggregateCommand, Event,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Serialize)]
struct OpenedRef<'a> {
    owner: &'a String,
}

#[derive(Deserialize)]
struct OpenedOwned {
    owner: String,
}

#[derive(Serialize)]
struct DepositedRef<'a> {
    amount: &'a u64,
}

#[derive(Deserialize)]
struct DepositedOwned {
    amount: u64,
}

static TYPES: [EventType; 2] = [EventType::new("AccountOpened", 1), EventType::new("AccountDeposited", 1)];

impl Event for AccountEvent {
    fn event_types() -> &'static [EventType] {
        &TYPES
    }

    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "AccountOpened",
            Self::Deposited { .. } => "AccountDeposited",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        match self {
            Self::Opened { owner } => encode_raw(&OpenedRef { owner }),
            Self::Deposited { amount } => encode_raw(&DepositedRef { amount }),
        }
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        match event_type {
            "AccountOpened" => {
                decode_versioned::<OpenedOwned>(data, schema_version, 1, &[]).map(|e| Self::Opened { owner: e.owner })
            }
            "AccountDeposited" => decode_versioned::<DepositedOwned>(data, schema_version, 1, &[])
                .map(|e| Self::Deposited { amount: e.amount }),
            _ => Err(DecodeErrorKind::UnknownType),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    pub owner: String,
    pub balance: u64,
    pub deposits: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "Account";
    const SNAPSHOT_EVERY: Option<NonZeroU64> = NonZeroU64::new(10_000);
    type Id = orchestrix::Uuid;
    type Event = AccountEvent;
    type Error = Refused;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }

    fn snapshot_state(&self) -> Option<Result<Box<RawValue>, serde_json::Error>> {
        Some(encode_raw(self))
    }

    fn restore_state(state: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        Some(serde_json::from_str(state.get()))
    }
}

#[derive(Debug, Clone)]
pub struct Open {
    pub owner: String,
}

#[derive(Debug, Clone)]
pub struct Deposit {
    pub amount: u64,
}

impl AggregateCommand for Open {
    type Aggregate = Account;
    type Service = ();
    const NAME: &'static str = "Open";
    const REQUIRES: Existence = Existence::New;

    fn handle<'a>(
        self,
        _: Option<&'a orchestrix::Uuid>,
        _: &'a Account,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Account>> + Send + 'a {
        ready(Ok(vec![AccountEvent::Opened { owner: self.owner }]))
    }
}

impl AggregateCommand for Deposit {
    type Aggregate = Account;
    type Service = ();
    const NAME: &'static str = "Deposit";
    const REQUIRES: Existence = Existence::Existing;

    fn handle<'a>(
        self,
        _: Option<&'a orchestrix::Uuid>,
        _: &'a Account,
        (): &'a (),
    ) -> impl Future<Output = HandlerResult<Account>> + Send + 'a {
        ready(if self.amount == 0 { Err(Refused) } else { Ok(vec![AccountEvent::Deposited { amount: self.amount }]) })
    }
}

impl CommandSet for Account {
    fn commands() -> Vec<CommandDescriptor> {
        vec![CommandDescriptor::of::<Open>(), CommandDescriptor::of::<Deposit>()]
    }
}
