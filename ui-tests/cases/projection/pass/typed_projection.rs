//! A typed projection over two event types, sync and async handlers, the
//! stored record, and a reset; checked at runtime.
#![deny(warnings)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use orchestrix::prelude::*;
use orchestrix::projection::Projection;
use orchestrix::{envelope::{NewEvent, RecordedEvent}, store::EventFilter, StreamId};

#[event]
#[derive(Debug, Clone)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[event]
#[derive(Debug, Clone)]
pub struct Audited {
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
#[error("view error")]
pub struct ViewError;

#[derive(Default)]
pub struct Summary {
    owners: Vec<String>,
    total: u64,
    notes: Vec<String>,
    last_position: u64,
}

#[projection(name = "summary")]
impl Summary {
    fn on_account(&mut self, event: AccountEvent, record: &RecordedEvent) -> Result<(), ViewError> {
        self.last_position = record.global_position;
        match event {
            AccountEvent::Opened { owner } => self.owners.push(owner),
            AccountEvent::Deposited { amount } => self.total += amount,
        }
        Ok(())
    }

    async fn on_audit(&mut self, event: Audited) -> Result<(), ViewError> {
        self.notes.push(event.note);
        Ok(())
    }

    #[reset]
    fn clear(&mut self) {
        *self = Self::default();
    }
}

fn record<E: Event>(event: &E, position: u64) -> RecordedEvent {
    let new = NewEvent::new(event.event_type(), event.schema_version(), event.encode().unwrap());
    RecordedEvent::new(new, StreamId::new("Account", "1").unwrap(), position, position, chrono::Utc::now())
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
    let mut view = Summary::default();
    assert_eq!(view.name(), "summary");
    let filter = view.filter();
    assert_eq!(filter, EventFilter::types(["AccountOpened", "AccountDeposited", "Audited"]));
    block_on(async {
        view.handle(&record(&AccountEvent::Opened { owner: "Ada".into() }, 1)).await.unwrap();
        view.handle(&record(&AccountEvent::Deposited { amount: 5 }, 2)).await.unwrap();
        view.handle(&record(&Audited { note: "checked".into() }, 3)).await.unwrap();
    });
    assert_eq!((view.owners.clone(), view.total, view.notes.clone(), view.last_position), (vec!["Ada".to_owned()], 5, vec!["checked".to_owned()], 2));
    block_on(view.reset()).unwrap();
    assert_eq!(view.total, 0);
}
