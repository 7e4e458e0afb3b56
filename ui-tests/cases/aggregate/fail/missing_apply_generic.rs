//! A generic aggregate without `apply` gets the same one error as a
//! plain one, not "function cannot return without recursing".
use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum LedgerEvent {
    Posted { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("ledger error")]
pub struct LedgerError;

#[aggregate(event = LedgerEvent, error = LedgerError)]
#[derive(Debug, Default)]
pub struct Ledger<T: Default + Send + Sync + 'static> {
    entries: Vec<T>,
}

fn main() {}
