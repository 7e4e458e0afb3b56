//! An aggregate without a `#[command_handler]` block (written only through
//! multi-stream appends) is registered like any other; one with a block
//! registers its commands.
#![deny(warnings)]

use orchestrix::prelude::*;
use orchestrix::command::CommandSet;

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
pub struct Ledger {
    total: u64,
}

impl Ledger {
    fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::Posted { amount } => self.total += amount,
        }
    }
}

#[aggregate(event = LedgerEvent, error = LedgerError, name = "journal")]
#[derive(Debug, Default)]
pub struct Journal;

impl Journal {
    fn apply(&mut self, _event: &LedgerEvent) {}
}

pub struct Post;

#[command_handler]
impl Journal {
    fn post(_cmd: Post) -> Result<LedgerEvent, LedgerError> {
        Ok(LedgerEvent::Posted { amount: 1 })
    }
}

fn main() {
    assert!(<Ledger as CommandSet>::commands().is_empty());
    let names: Vec<&str> = <Journal as CommandSet>::commands().iter().map(|c| c.name).collect();
    assert_eq!(names, ["Post"]);
    let app = Orchestrix::builder().in_memory().aggregate::<Ledger>().aggregate::<Journal>().build();
    assert!(app.is_ok());
    let mut ledger = Ledger::default();
    ledger.apply(&LedgerEvent::Posted { amount: 3 });
    assert_eq!(ledger.total, 3);
}
