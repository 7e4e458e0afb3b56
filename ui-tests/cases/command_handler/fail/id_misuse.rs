use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    Opened { owner: String },
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

pub struct Open;
pub struct Rename;
pub struct Close;

#[command_handler]
impl Account {
    fn open(_cmd: Open, id: Self::Id) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: id.to_string() })
    }

    fn rename(&self, _cmd: Rename, _id: &mut Self::Id) -> Result<Vec<AccountEvent>, BankError> {
        Ok(vec![])
    }

    fn close(&self, _cmd: Close, _id: &Self::Id, _again: &Self::Id) -> Result<Vec<AccountEvent>, BankError> {
        Ok(vec![])
    }
}

fn main() {}
