use orchestrix::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("bank error")]
pub struct BankError;

pub struct Transfer;

#[command_handler]
async fn transfer(_cmd: Transfer, _id: &u64, _also: &Self::Id) -> Result<(), BankError> {
    Ok(())
}

fn main() {}
