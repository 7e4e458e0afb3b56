//! Subscriptions: `observe-events` on the whole log, reconnecting after
//! faults from the last id seen (ADR 0012), with the store's
//! [`RetryPolicy`](orchestrix::RetryPolicy) between attempts.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::{stream, StreamExt};
use orchestrix::store::EventFilter;
use orchestrix::{envelope::RecordedEvent, StoreError};

use super::api::{Item, Op};
use super::error::EsdbError;
use super::http::Lines;
use super::store::Inner;
use super::wire::{Bound, ReadEvents, ReadOptions, WireEvent};

/// Follows the log from the server id `next_id` on, reconnecting after
/// faults from the last id seen.
pub(super) fn subscribe(
    inner: Arc<Inner>,
    next_id: u64,
    filter: EventFilter,
) -> impl Stream<Item = Result<Arc<RecordedEvent>, StoreError>> {
    struct State {
        inner: Arc<Inner>,
        filter: EventFilter,
        next_id: u64,
        lines: Option<Lines>,
        failures: u32,
    }
    let state = State { inner, filter, next_id, lines: None, failures: 0 };
    stream::unfold(state, |mut state| async move {
        loop {
            let Some(lines) = state.lines.as_mut() else {
                if let Some(delay) = state.inner.config.reconnect_policy().delay_after(state.failures) {
                    if state.failures > 0 {
                        tokio::time::sleep(delay).await;
                    }
                }
                let lower_bound = (state.next_id > 0).then(|| Bound::inclusive(state.next_id));
                let body = ReadEvents {
                    subject: "/".to_owned(),
                    options: ReadOptions { recursive: true, lower_bound, ..ReadOptions::default() },
                };
                match state.inner.http.stream(Op::ObserveEvents, &body, state.inner.config.heartbeat_timeout).await {
                    Ok(lines) => state.lines = Some(lines),
                    Err(error) if error.is_transient() => {
                        tracing::warn!(%error, next_id = state.next_id, "observing EventSourcingDB failed; reconnecting");
                        state.failures += 1;
                    }
                    Err(error) => return Some((Err(error.into()), state)),
                }
                continue;
            };
            let line = match lines.next().await {
                Some(Ok(line)) => line,
                Some(Err(error)) => {
                    tracing::warn!(%error, next_id = state.next_id, "the observation broke off; reconnecting");
                    state.lines = None;
                    state.failures += 1;
                    continue;
                }
                None => {
                    tracing::warn!(next_id = state.next_id, "the server ended the observation; reconnecting");
                    state.lines = None;
                    state.failures += 1;
                    continue;
                }
            };
            let event = match state.inner.http.version().parse_item(&line) {
                Ok(Item::Heartbeat) => {
                    state.failures = 0;
                    continue;
                }
                Ok(Item::End) => {
                    tracing::warn!(next_id = state.next_id, "the server ended the observation; reconnecting");
                    state.lines = None;
                    state.failures += 1;
                    continue;
                }
                Ok(Item::Event(payload)) => serde_json::from_str::<WireEvent>(payload.get())
                    .map_err(|e| StoreError::from(EsdbError::malformed("event", e))),
                Ok(Item::Row(_)) => Err(EsdbError::malformed("observe-events answer", "a row").into()),
                Ok(Item::Error(error)) | Err(error) => Err(error.into()),
            };
            let record = event.and_then(|event| {
                let id: u64 =
                    event.id.parse().map_err(|_| EsdbError::malformed("event id", format!("{:?}", event.id)))?;
                if id < state.next_id {
                    return Ok(None); // already delivered before a reconnection
                }
                let record = state.inner.record(event)?;
                state.next_id = id + 1;
                Ok(record)
            });
            match record {
                Ok(Some(record)) => {
                    state.failures = 0;
                    if state.filter.matches_event(&record) {
                        return Some((Ok(Arc::new(record)), state));
                    }
                }
                Ok(None) => state.failures = 0,
                Err(error) => {
                    // Report the broken line, then resume from the last
                    // event delivered: nothing is skipped.
                    state.lines = None;
                    state.failures += 1;
                    return Some((Err(error), state));
                }
            }
        }
    })
}
