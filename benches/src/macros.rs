//! The benchmark domain written with the macros.
#![allow(missing_docs)]

use orchestrix::prelude::*;
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

#[aggregate(event = AccountEvent, error = Refused, snapshot_every = 10000)]
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

#[derive(Debug, Clone)]
pub struct Open {
    pub owner: String,
}

#[derive(Debug, Clone)]
pub struct Deposit {
    pub amount: u64,
}

#[command_handler]
impl Account {
    fn open(cmd: Open) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Opened { owner: cmd.owner })
    }

    fn deposit(&self, cmd: Deposit) -> Result<AccountEvent, Refused> {
        if cmd.amount == 0 {
            return Err(Refused);
        }
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }
}
