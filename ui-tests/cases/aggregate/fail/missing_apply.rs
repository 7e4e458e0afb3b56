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

#[aggregate(event = AccountEvent, error = BankError)]
#[derive(Debug, Default)]
pub struct Account {
    balance: u64,
}

fn main() {}
