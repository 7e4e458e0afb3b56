use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("bank error")]
pub struct BankError;

#[aggregate(event = AccountEvent, error = BankError, snapshot_every = 100)]
#[derive(Debug, Default, serde::Serialize)]
pub struct Account {
    balance: u64,
}

impl Account {
    fn apply(&mut self, _: &AccountEvent) {}
}

fn main() {}
