//! A handler the macro rejects still gives its command an impl: the user
//! sees the one error at the handler, none at `execute`.
use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("bank error")]
pub struct BankError;

#[aggregate(event = AccountEvent, error = BankError)]
#[derive(Debug, Default)]
pub struct Account;

impl Account {
    fn apply(&mut self, _event: &AccountEvent) {}
}

#[derive(Clone)]
pub struct Deposit {
    pub amount: u64,
}

#[command_handler]
impl Account {
    fn deposit(&mut self, cmd: Deposit) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }
}

pub async fn run(app: Orchestrix) {
    let outcome = app.execute(Uuid::now_v7(), Deposit { amount: 5 }).await;
    let _ = outcome.map(|outcome| outcome.events.len());
}

use orchestrix::Uuid;

fn main() {}
