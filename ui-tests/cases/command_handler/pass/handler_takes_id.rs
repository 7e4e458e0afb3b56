//! Handlers that take the id of the aggregate they were called for, in
//! either order with a service, for a creating and an existing aggregate;
//! checked at runtime through the application and the fixture.
#![deny(warnings)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use orchestrix::prelude::*;
use orchestrix::testing::AggregateFixture;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened { number: u64 },
    Noted { text: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bank error")]
pub struct BankError;

#[aggregate(event = AccountEvent, error = BankError, id = u64)]
#[derive(Debug, Default)]
pub struct Account {
    number: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Opened { number } = event {
            self.number = *number;
        }
    }
}

#[derive(Clone)]
pub struct Open;
#[derive(Clone)]
pub struct Note;

pub struct Prefix(&'static str);

#[command_handler]
impl Account {
    fn open(_cmd: Open, id: &Self::Id) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { number: *id })
    }

    async fn note(&self, _cmd: Note, prefix: &Prefix, id: &<Self as Aggregate>::Id) -> Result<AccountEvent, BankError> {
        assert_eq!(self.number, *id);
        Ok(AccountEvent::Noted { text: format!("{}{id}", prefix.0) })
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn main() {
    let app = Orchestrix::builder().in_memory().aggregate::<Account>().service(Prefix("no. ")).build().unwrap();
    block_on(async {
        app.execute(42, Open).await.unwrap();
        let outcome = app.execute(42, Note).await.unwrap();
        assert_eq!(outcome.events[0].event, AccountEvent::Noted { text: "no. 42".into() });
    });
    block_on(AggregateFixture::<Account>::given_no_previous_events().with_id(7).when(Open))
        .then_expect_events([AccountEvent::Opened { number: 7 }]);
    // A fixture without an id cannot run a handler that reads it, and says how to fix that.
    std::panic::set_hook(Box::new(|_| {}));
    let panic = std::panic::catch_unwind(|| block_on(AggregateFixture::<Account>::given_no_previous_events().when(Open)))
        .err()
        .unwrap();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("`open` takes the aggregate's id") && message.contains("with_id"), "{message}");
}
