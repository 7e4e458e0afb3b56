//! The in-memory [`MessageBus`].

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::store::{subject_matches, Message, MessageBus, MessageStream};

/// A message bus within one process: the reference behaviour of
/// [`MessageBus`].
///
/// Every subscription has its own **unbounded** channel, so a slow
/// subscriber never loses a message and never slows the publisher or the
/// other subscribers; the price is that its backlog grows in memory until
/// it catches up. Each subscriber receives messages in the order they were
/// published. Dropping the returned stream unsubscribes (the channel is
/// pruned at the next publish). Subject patterns follow NATS:
/// see [`subject_matches`].
///
/// Cloning is cheap and every clone is the same bus.
#[derive(Debug, Clone, Default)]
pub struct InMemoryMessageBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

#[derive(Debug)]
struct Subscriber {
    pattern: String,
    sender: mpsc::UnboundedSender<Message>,
}

impl InMemoryMessageBus {
    /// A bus without subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl MessageBus for InMemoryMessageBus {
    async fn publish(&self, message: Message) -> Result<(), StoreError> {
        // Sending under the lock keeps concurrent publishers in one order
        // for every subscriber; an unbounded send never blocks.
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|subscriber| {
            if !subject_matches(&subscriber.pattern, &message.subject) {
                return !subscriber.sender.is_closed();
            }
            subscriber.sender.send(message.clone()).is_ok()
        });
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<MessageStream, StoreError> {
        if pattern.is_empty() || pattern.split('.').any(str::is_empty) {
            return Err(StoreError::InvalidInput(format!("subject pattern `{pattern}` has an empty token")));
        }
        let (sender, mut receiver) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Subscriber { pattern: pattern.to_owned(), sender });
        Ok(stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|message| message.map(Ok))).boxed())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_loses_nothing_and_dropped_ones_are_pruned() {
        let bus = InMemoryMessageBus::new();
        let mut slow = bus.subscribe("a.>").await.unwrap();
        let dropped = bus.subscribe("a.>").await.unwrap();
        drop(dropped);
        for i in 0..10_000u32 {
            bus.publish(Message::new("a.b", i.to_be_bytes().to_vec())).await.unwrap();
        }
        assert_eq!(bus.subscribers.lock().unwrap().len(), 1);
        for i in 0..10_000u32 {
            let message = slow.next().await.unwrap().unwrap();
            assert_eq!(message.payload.as_ref(), i.to_be_bytes());
        }
    }

    #[tokio::test]
    async fn empty_pattern_tokens_are_refused() {
        let bus = InMemoryMessageBus::new();
        for pattern in ["", "a..b", ".a", "a."] {
            assert!(matches!(bus.subscribe(pattern).await, Err(StoreError::InvalidInput(_))), "{pattern:?}");
        }
    }
}
