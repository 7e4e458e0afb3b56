//! The core's [`MessageBus`] on a JetStream stream.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures_util::StreamExt;
use orchestrix::store::{subject_matches, Message, MessageBus, MessageStream};
use orchestrix::StoreError;

use super::{render, EventStreamConfig, Subjects};

/// A [`MessageBus`] on a JetStream stream: a publish returns once the
/// broker stored the message; a subscription is an ordered, ephemeral
/// consumer that starts with the messages published after it.
///
/// Subjects must fall under the stream's subjects (`<prefix>.>` of the
/// [`Subjects`] it was created with); others are refused with
/// [`StoreError::InvalidInput`]. A `Nats-Msg-Id` header in a message makes
/// the broker drop its duplicates.
///
/// For work that must survive restarts and be shared between processes,
/// use [`super::ProjectionWorker`]: durable consumers with acks.
#[derive(Debug, Clone)]
pub struct JetStreamBus {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    scope: String,
}

impl JetStreamBus {
    /// A bus on the JetStream stream `stream`, created if needed for the
    /// subjects under `subjects.prefix()`.
    pub async fn new(
        client: async_nats::Client,
        subjects: &Subjects,
        stream: &EventStreamConfig,
    ) -> Result<Self, super::NatsError> {
        let js = jetstream::new(client);
        let handle = stream.ensure(&js, subjects).await?;
        Ok(Self { js, stream: handle, scope: subjects.all() })
    }

    fn check(&self, subject: &str) -> Result<(), StoreError> {
        if subject_matches(&self.scope, subject) {
            Ok(())
        } else {
            Err(StoreError::InvalidInput(format!(
                "subject `{subject}` is outside this bus's stream (`{}`)",
                self.scope
            )))
        }
    }
}

#[async_trait]
impl MessageBus for JetStreamBus {
    async fn publish(&self, message: Message) -> Result<(), StoreError> {
        if message.subject.split('.').any(|t| t.is_empty() || t == "*" || t == ">" || t.contains(char::is_whitespace)) {
            return Err(StoreError::InvalidInput(format!("`{}` is not a subject one can publish to", message.subject)));
        }
        self.check(&message.subject)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            if name.is_empty() || name.contains([':', ' ', '\r', '\n']) || value.contains(['\r', '\n']) {
                return Err(StoreError::InvalidInput(format!("header `{name}` cannot travel in a NATS message")));
            }
            headers.insert(name.as_str(), value.as_str());
        }
        let publish = PublishMessage::build().payload(message.payload).headers(headers);
        let ack = self.js.send_publish(message.subject.clone(), publish).await.map_err(publish_error)?;
        ack.await.map_err(publish_error)?;
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<MessageStream, StoreError> {
        self.check(pattern).or_else(|_| {
            // A pattern may be broader in its tail than the scope's prefix
            // only if it stays inside it; `<prefix>.>` itself is fine.
            if pattern == self.scope {
                Ok(())
            } else {
                Err(StoreError::InvalidInput(format!(
                    "pattern `{pattern}` is outside this bus's stream (`{}`)",
                    self.scope
                )))
            }
        })?;
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: pattern.to_owned(),
                deliver_policy: DeliverPolicy::New,
                ..pull::OrderedConfig::default()
            })
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let messages = consumer.messages().await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Box::pin(messages.map(|next| {
            next.map(|m| {
                let headers: BTreeMap<String, String> = m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .filter_map(|(k, v)| v.last().map(|v| (k.to_string(), v.as_str().to_owned())))
                    .collect();
                Message::new(m.subject.to_string(), m.payload.clone()).with_headers(headers)
            })
            .map_err(|e| StoreError::Unavailable(render(&e).into()))
        })))
    }
}

fn publish_error(error: jetstream::context::PublishError) -> StoreError {
    match error.kind() {
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxPayloadExceeded => {
            StoreError::InvalidInput(render(&error))
        }
        _ => StoreError::Unavailable(Box::new(error)),
    }
}
