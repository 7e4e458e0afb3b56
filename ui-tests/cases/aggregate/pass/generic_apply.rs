//! A generic aggregate with an inherent `apply` compiles, and its trait
//! method calls the inherent one.
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
    total: u64,
    marker: std::marker::PhantomData<T>,
}

impl<T: Default + Send + Sync + 'static> Ledger<T> {
    fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::Posted { amount } => self.total += amount,
        }
    }
}

fn main() {
    let mut ledger = Ledger::<u8>::default();
    Aggregate::apply(&mut ledger, &LedgerEvent::Posted { amount: 3 });
    assert_eq!(ledger.total, 3);
}
