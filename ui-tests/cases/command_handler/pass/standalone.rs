//! Standalone handlers, with and without a service; checked at runtime.
#![deny(warnings)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use orchestrix::prelude::*;

pub struct Transfer {
    pub amount: u64,
}

pub struct Ping;

#[derive(Debug, PartialEq)]
pub struct Receipt {
    pub amount: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("transfer failed")]
pub struct TransferError;

pub struct Bank {
    pub limit: u64,
}

/// Moves money between accounts.
#[command_handler]
pub async fn transfer(cmd: Transfer, bank: &Bank) -> Result<Receipt, TransferError> {
    if cmd.amount > bank.limit {
        return Err(TransferError);
    }
    Ok(Receipt { amount: cmd.amount })
}

#[command_handler]
async fn ping(_: Ping) -> Result<(), std::io::Error> {
    Ok(())
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the handler's future is pending"),
    }
}

fn main() {
    assert_eq!(<Transfer as StandaloneCommand>::NAME, "Transfer");
    assert_eq!(<Ping as StandaloneCommand>::NAME, "Ping");
    let descriptor = orchestrix::__private::CommandDescriptor::standalone::<Transfer>();
    assert!(descriptor.service.unwrap().name.ends_with("Bank"));
    assert!(orchestrix::__private::CommandDescriptor::standalone::<Ping>().service.is_none());

    let bank = Bank { limit: 10 };
    assert_eq!(block_on(Transfer { amount: 3 }.handle(&bank)), Ok(Receipt { amount: 3 }));
    assert_eq!(block_on(Transfer { amount: 30 }.handle(&bank)), Err(TransferError));
    block_on(Ping.handle(&())).unwrap();
    // The function itself is still there.
    assert_eq!(block_on(transfer(Transfer { amount: 1 }, &bank)), Ok(Receipt { amount: 1 }));
}
