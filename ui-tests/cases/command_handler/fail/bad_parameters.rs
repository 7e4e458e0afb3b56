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

pub struct Gateway;
pub struct Close;

#[command_handler]
impl Account {
    fn open(cmd: &Open) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: cmd.owner.clone() })
    }

    fn deposit(&self, cmd: Deposit, gateway: Gateway) -> Result<AccountEvent, BankError> {
        let _ = gateway;
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }

    fn close(&self, _cmd: Close, _gateway: &Gateway, _extra: u8) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Deposited { amount: 0 })
    }
}

fn main() {}
