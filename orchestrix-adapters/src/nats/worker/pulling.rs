//! Pulling a partition's messages: its durable consumer and the fetch task.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Pulled, WorkerOptions};
use crate::nats::cloudevent::decode;
use crate::nats::NatsError;

/// (Re)creates the durable consumer of a partition, starting after its
/// acknowledged floor: whatever a previous holder had in flight comes
/// again, in order, before anything newer. Returns the consumer and the
/// floor (the stream sequence of the last message acknowledged in order;
/// 0 for a new consumer).
pub(super) async fn reset_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
    filter: String,
    options: &WorkerOptions,
) -> Result<(jetstream::consumer::Consumer<pull::Config>, u64), NatsError> {
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
    let consumer = stream
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
        .map_err(|e| error(Box::new(e)))?;
    Ok((consumer, floor.unwrap_or(0)))
}

/// The global position of the event at stream sequence `sequence` (a
/// partition's acknowledged floor), or `None` when there is none: no
/// floor (0), the message is gone (retention) or is not an event.
pub(super) async fn position_at(stream: &jetstream::stream::Stream, sequence: u64) -> Option<u64> {
    if sequence == 0 {
        return None;
    }
    let message = match stream.get_raw_message(sequence).await {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!(sequence, %error, "cannot read the acknowledged floor's message");
            return None;
        }
    };
    let headers: BTreeMap<String, String> =
        message.headers.iter().filter_map(|(k, v)| v.last().map(|v| (k.to_string(), v.as_str().to_owned()))).collect();
    decode(&headers, &message.payload).ok().map(|event| event.global_position)
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
