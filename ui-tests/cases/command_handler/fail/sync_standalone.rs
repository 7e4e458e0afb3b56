use orchestrix::prelude::*;

pub struct Transfer {
    pub amount: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("transfer failed")]
pub struct TransferError;

#[command_handler]
fn transfer(cmd: Transfer) -> Result<u64, TransferError> {
    Ok(cmd.amount)
}

fn main() {}
