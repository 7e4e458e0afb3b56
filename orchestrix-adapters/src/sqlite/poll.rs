//! Subscriptions: they poll the log up to the head, and appends through the
//! same store wake them at once.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, EventStream};
use orchestrix::StoreError;
use tokio::sync::watch;

use super::read::types_json;
use super::{Inner, SqliteStore};
use crate::common::{next_cursor, outage_pause, CHUNK};
#[cfg(doc)]
use orchestrix::store::EventStore;

impl SqliteStore {
    /// [`EventStore::subscribe`]: a live subscription that polls, woken at
    /// once by appends through this store.
    pub(super) fn subscribe_from(&self, from_position: u64, filter: &EventFilter) -> EventStream<'static> {
        let state = Subscription {
            inner: Arc::clone(&self.inner),
            wake: self.inner.wake.subscribe(),
            types: types_json(filter),
            next: from_position.max(1),
            buffer: Vec::new().into_iter(),
            error: None,
            failed: false,
        };
        let events = stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed();
        filter.retain_tagged(events)
    }
}

/// The state of a live subscription.
struct Subscription {
    inner: Arc<Inner>,
    wake: watch::Receiver<u64>,
    types: Option<String>,
    next: u64,
    buffer: std::vec::IntoIter<Arc<RecordedEvent>>,
    /// An error to yield once the buffer is drained; then the stream ends.
    error: Option<StoreError>,
    failed: bool,
}

impl Subscription {
    /// A chunk of matching events up to the head. With a single writer,
    /// every position up to the head is committed, so once a chunk is not
    /// full the cursor can skip past the head (past filtered-out events).
    async fn read_to_head(&mut self) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let Some(head) = self.inner.head().await? else { return Ok(Vec::new()) };
        let (events, error) = self.inner.read_global_chunk(self.next, head, self.types.as_deref()).await?;
        if let Some(error) = error {
            self.buffer = events.into_iter();
            self.error = Some(error);
            return Ok(Vec::new());
        }
        match next_cursor(&events, CHUNK, |event| event.global_position) {
            Some(next) => self.next = next,
            None => self.next = self.next.max(head + 1),
        }
        Ok(events)
    }

    async fn next_item(&mut self) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        if self.failed {
            return None;
        }
        let mut outages = 0;
        loop {
            if let Some(event) = self.buffer.next() {
                return Some(Ok(event));
            }
            if let Some(error) = self.error.take() {
                self.failed = true;
                return Some(Err(error));
            }
            self.wake.borrow_and_update();
            match self.read_to_head().await {
                Ok(events) => {
                    outages = 0;
                    if !events.is_empty() {
                        self.buffer = events.into_iter();
                        continue;
                    }
                    if self.error.is_some() {
                        continue; // the buffer holds the events before it
                    }
                    let _ = tokio::time::timeout(self.inner.config.poll_interval, self.wake.changed()).await;
                }
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(%error, position = self.next, "orchestrix: subscription cannot read; retrying");
                    outages += 1;
                    tokio::time::sleep(outage_pause(outages)).await;
                }
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
