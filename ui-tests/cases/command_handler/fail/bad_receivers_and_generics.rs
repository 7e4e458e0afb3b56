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

pub struct Close;

#[command_handler]
impl Account {
    fn open(self, cmd: Open) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: cmd.owner })
    }

    fn deposit(self: Box<Self>, cmd: Deposit) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }

    fn close<T>(&self, _cmd: Close) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Deposited { amount: 0 })
    }

    fn missing_return(&self, _cmd: Close) {}

    #[command(requires = maybe)]
    fn also(&self, _cmd: Close) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Deposited { amount: 0 })
    }
}

fn main() {}
