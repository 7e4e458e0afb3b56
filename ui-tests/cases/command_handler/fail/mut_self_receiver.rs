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

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited { amount } = event {
            self.balance += amount;
        }
    }
}

pub struct Open {
    pub owner: String,
}
pub struct Deposit {
    pub amount: u64,
}

#[command_handler]
impl Account {
    fn deposit(&mut self, cmd: Deposit) -> Result<AccountEvent, BankError> {
        self.balance += cmd.amount;
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }
}

fn main() {}
