//! A standalone handler the macro rejects still gives its command an impl,
//! with the handler's `Ok` and `Err` types: the user sees the one error at
//! the handler, none at `dispatch` or where the outcome is used.
use orchestrix::prelude::*;

pub struct Rates;

#[derive(Debug, thiserror::Error)]
#[error("transfer failed")]
pub struct TransferError;

pub struct Transfer {
    pub amount: u64,
}

#[command_handler]
async fn transfer(cmd: Transfer, rates: Rates) -> Result<u64, TransferError> {
    let _ = rates;
    Ok(cmd.amount)
}

pub async fn run(app: Orchestrix) {
    let fee = app.dispatch(Transfer { amount: 5 }).await.map(|amount| amount / 100);
    let _ = fee;
}

fn main() {}
