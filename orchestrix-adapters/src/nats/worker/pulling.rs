//! Pulling a partition's messages: its durable consumer and the fetch task.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Pulled, WorkerOptions};
use crate::nats::NatsError;

/// (Re)creates the durable consumer of a partition, starting after its
/// acknowledged floor: whatever a previous holder had in flight comes
/// again, in order, before anything newer.
pub(super) async fn reset_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
    filter: String,
    options: &WorkerOptions,
) -> Result<jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let error = |source: async_nats::Error| NatsError::Consumer { consumer: name.to_owned(), source };
    let floor = match stream.consumer_info(name).await {
        Ok(info) => Some(info.ack_floor.stream_sequence),
        Err(e) => match e.kind() {
            ConsumerInfoErrorKind::NotFound => None,
            ConsumerInfoErrorKind::JetStream(j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND => None,
            _ => return Err(error(Box::new(e))),
        },
    };
    if floor.is_some() {
        stream.delete_consumer(name).await.map_err(|e| error(Box::new(e)))?;
    }
    let deliver_policy = match floor {
        Some(floor) if floor > 0 => DeliverPolicy::ByStartSequence { start_sequence: floor + 1 },
        _ => DeliverPolicy::All,
    };
    let batch = i64::try_from(options.batch.max(1)).unwrap_or(i64::MAX);
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: filter,
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_ack_pending: batch.saturating_mul(4),
            deliver_policy,
            ..pull::Config::default()
        })
        .await
        .map_err(|e| error(Box::new(e)))
}

/// Pulls a partition's messages into the worker's queue, in order,
/// reconnecting after errors, until aborted.
pub(super) async fn fetch(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    tx: mpsc::Sender<Pulled>,
    partition: u32,
    generation: u64,
    batch: usize,
) {
    loop {
        match consumer
            .stream()
            .max_messages_per_batch(batch.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(mut messages) => {
                while let Some(next) = messages.next().await {
                    match next {
                        Ok(message) => {
                            if tx.send(Pulled { partition, generation, message }).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::debug!(partition, %error, "pull interrupted; pulling again");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(partition, %error, "cannot pull; trying again"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
