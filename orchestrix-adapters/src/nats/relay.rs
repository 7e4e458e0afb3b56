//! The relay: the global log, published to JetStream, checkpointed behind
//! the broker's acknowledgements.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self};
use async_nats::HeaderMap;
use futures_util::{FutureExt, StreamExt};
use orchestrix::{
    envelope::RecordedEvent,
    retry::RetryPolicy,
    store::{shared, CheckpointStore, EventFilter, EventStore},
    trace,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::cloudevent::{encode, ContentMode};
use super::{EventStreamConfig, NatsError, Subjects};

/// How a [`Relay`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayOptions {
    /// The checkpoint's name (default `nats-relay`). Two relays with one
    /// name share a checkpoint: run one (or several, wastefully, since the
    /// broker drops their duplicates).
    pub name: String,
    /// The CloudEvents `source` attribute (default `orchestrix`).
    pub source: String,
    /// Binary (default) or structured CloudEvents.
    pub mode: ContentMode,
    /// How many publishes may await their acknowledgement at once
    /// (default 256). 1 waits for each ack before the next publish.
    pub window: usize,
    /// Save the checkpoint at least every this many acknowledged events
    /// (default 1,000); it is also saved whenever the relay catches up.
    pub checkpoint_every: u64,
    /// The longest pause between two attempts after a failure (default
    /// 2 s; the pause starts at 50 ms and doubles).
    pub max_backoff: Duration,
    /// Whether each publish names its predecessor (default on; ADR 16).
    ///
    /// Publishes are pipelined, so when the broker restarts, one written
    /// to the dead connection can be lost while the later ones of the
    /// window reach the new server. With `ordered`, every publish after
    /// the first of a pass carries `Nats-Expected-Last-Msg-Id` = the
    /// previous event's id: the broker refuses the ones after a lost
    /// publish, and the relay starts over from its checkpoint, so no event
    /// is ever stored after one that follows it in the log. (Duplicates
    /// are recognized before the expectation is checked.)
    ///
    /// It requires the relay to be the only publisher to its stream: a
    /// message of another publisher in between makes the next publish fail
    /// and the relay start over. Turn it off when a [`super::JetStreamBus`]
    /// or another relay shares the stream; a broker restart can then store
    /// an event after later ones.
    pub ordered: bool,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            name: "nats-relay".to_owned(),
            source: "orchestrix".to_owned(),
            mode: ContentMode::Binary,
            window: 256,
            checkpoint_every: 1_000,
            max_backoff: Duration::from_secs(2),
            ordered: true,
        }
    }
}

impl RelayOptions {
    /// Sets the checkpoint's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the CloudEvents `source` attribute.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the CloudEvents content mode.
    pub fn mode(mut self, mode: ContentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets how many publishes may await their acknowledgement at once (at
    /// least 1).
    pub fn window(mut self, publishes: usize) -> Self {
        self.window = publishes.max(1);
        self
    }

    /// Sets how many acknowledged events may pass between two saves of the
    /// checkpoint (at least 1).
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets the longest pause between two attempts after a failure.
    pub fn max_backoff(mut self, pause: Duration) -> Self {
        self.max_backoff = pause;
        self
    }

    /// Sets whether each publish names its predecessor.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }
}

/// Where a relay is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// The position of the last event the broker acknowledged.
    pub position: u64,
    /// Events acknowledged since the relay started.
    pub published: u64,
    /// Of those, how many the broker reported as duplicates (published
    /// before, within the duplicate window).
    pub duplicates: u64,
    /// How many times the relay started over after a failure.
    pub restarts: u64,
    /// The last failure, rendered.
    pub last_error: Option<String>,
}

/// Publishes the global log to JetStream (see the [module](super) docs).
pub struct Relay {
    client: async_nats::Client,
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    subjects: Subjects,
    stream: EventStreamConfig,
    options: RelayOptions,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("subjects", &self.subjects)
            .field("stream", &self.stream)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

struct Pending {
    position: u64,
    subject: String,
    ack: PublishAckFuture,
    span: tracing::Span,
}

impl Relay {
    /// A relay from `store` to the JetStream stream `stream`, keeping its
    /// checkpoint in `checkpoints`. Given an `Arc<dyn EventStore>` (or
    /// `Arc<dyn CheckpointStore>`), the relay keeps that `Arc` as it is.
    pub fn new(
        client: async_nats::Client,
        store: impl EventStore,
        checkpoints: impl CheckpointStore,
        subjects: Subjects,
        stream: EventStreamConfig,
        options: RelayOptions,
    ) -> Self {
        let store = shared::<_, dyn EventStore>(store, |store| Arc::new(store));
        let checkpoints = shared::<_, dyn CheckpointStore>(checkpoints, |checkpoints| Arc::new(checkpoints));
        Self { client, store, checkpoints, subjects, stream, options }
    }

    /// Runs the relay in its own task until stopped. Failures (NATS down,
    /// the store unreachable) are retried with backoff from the last
    /// acknowledged event; only an event too large to publish ends it.
    pub fn spawn(self) -> RelayHandle {
        let (status_tx, status) = watch::channel(RelayStatus::default());
        let (stop, mut stop_rx) = watch::channel(false);
        let span = tracing::info_span!("orchestrix.relay", relay = %self.options.name, stream = %self.stream.name());
        let task = tokio::spawn(
            async move {
                // For ever, from 50 ms doubling up to `max_backoff`.
                let policy = RetryPolicy::exponential(u32::MAX, Duration::from_millis(50))
                    .with_max_delay(self.options.max_backoff)
                    .with_jitter(0.0);
                let mut failures = 0_u32;
                loop {
                    match self.run_once(&status_tx, &mut stop_rx).await {
                        Ok(()) => return Ok(()),
                        Err(error) if error.is_transient() => {
                            failures = failures.saturating_add(1);
                            let backoff = policy.delay_after(failures).unwrap_or(self.options.max_backoff);
                            let rendered = super::render(&error);
                            tracing::warn!(error = %rendered, ?backoff, "relay failed; starting over from its checkpoint");
                            status_tx.send_modify(|s| {
                                s.restarts += 1;
                                s.last_error = Some(rendered);
                            });
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                _ = stop_rx.changed() => return Ok(()),
                            }
                        }
                        Err(error) => {
                            status_tx.send_modify(|s| s.last_error = Some(error.to_string()));
                            return Err(error);
                        }
                    }
                }
            }
            .instrument(span),
        );
        RelayHandle { status, stop, task }
    }

    /// One pass: from the checkpoint, publish until stopped or failed.
    async fn run_once(
        &self,
        status: &watch::Sender<RelayStatus>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), NatsError> {
        let js = jetstream::new(self.client.clone());
        self.stream.ensure(&js, &self.subjects).await?;
        let name = &self.options.name;
        let start = self.checkpoints.load(name).await?.unwrap_or(0);
        let mut acked = start;
        let mut saved = start;
        let mut since_save = 0_u64;
        status.send_modify(|s| s.position = start);
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(self.options.window.max(1));
        let mut events = self.store.subscribe(start + 1, EventFilter::all());
        // The id of the event published last in this pass (`ordered`).
        let mut previous: Option<String> = None;
        loop {
            let next = if let Some(next) = events.next().now_or_never() {
                next
            } else {
                // Nothing ready: settle every publish and save.
                while let Some(front) = pending.pop_front() {
                    acked = self.settle(front, status).await?;
                }
                if acked != saved {
                    self.checkpoints.save(name, acked).await?;
                    saved = acked;
                    since_save = 0;
                }
                if *stop.borrow() {
                    return Ok(());
                }
                tokio::select! {
                    next = events.next() => next,
                    _ = stop.changed() => return Ok(()),
                }
            };
            let Some(event) = next else { break };
            let event = event?;
            if pending.len() >= self.options.window.max(1) {
                if let Some(front) = pending.pop_front() {
                    acked = self.settle(front, status).await?;
                    since_save += 1;
                }
            }
            let expected_last = if self.options.ordered { previous.take() } else { None };
            pending.push_back(self.publish(&js, &event, expected_last.as_deref()).await?);
            previous = Some(event.id.to_string());
            if since_save >= self.options.checkpoint_every {
                self.checkpoints.save(name, acked).await?;
                saved = acked;
                since_save = 0;
                if *stop.borrow() {
                    break;
                }
            }
        }
        while let Some(front) = pending.pop_front() {
            acked = self.settle(front, status).await?;
        }
        if acked != saved {
            self.checkpoints.save(name, acked).await?;
        }
        Ok(())
    }

    /// Sends one event, naming the id of the message that must be the
    /// stream's last (`ordered`); the returned future resolves to its ack.
    async fn publish(
        &self,
        js: &jetstream::Context,
        event: &RecordedEvent,
        expected_last: Option<&str>,
    ) -> Result<Pending, NatsError> {
        let subject = self.subjects.subject_of(event);
        // No span at all while no subscriber takes INFO spans: a disabled
        // span still builds its fields, per event (ADR 0055).
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "orchestrix.publish",
                event_type = %event.event_type,
                stream = %event.stream,
                stream_version = event.stream_version,
                global_position = event.global_position,
                event_id = %event.id,
                subject = %subject,
                stream_sequence = tracing::field::Empty,
                duplicate = tracing::field::Empty,
                error = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        trace::set_parent_from(&span, &event.metadata);
        let encoded = encode(event, &self.options.source, self.options.mode);
        let size = encoded.payload.len() + encoded.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
        let mut headers = HeaderMap::new();
        // The encoded strings move into the message: no copy per header.
        for (name, value) in encoded.headers {
            headers.insert(name, value);
        }
        if let Some(context) = span.in_scope(trace::current) {
            headers.insert("traceparent", context.traceparent.as_str());
            if let Some(state) = &context.tracestate {
                headers.insert("tracestate", state.as_str());
            }
        }
        if let Some(last) = expected_last {
            headers.insert("Nats-Expected-Last-Msg-Id", last);
        }
        let message =
            PublishMessage::build().payload(encoded.payload).headers(headers).message_id(event.id.to_string());
        let sent = if span.is_disabled() {
            js.send_publish(subject.clone(), message).await
        } else {
            js.send_publish(subject.clone(), message).instrument(span.clone()).await
        };
        match sent {
            Ok(ack) => Ok(Pending { position: event.global_position, subject, ack, span }),
            Err(error) => {
                record_error(&span, &error);
                if error.kind() == PublishErrorKind::MaxPayloadExceeded {
                    return Err(NatsError::TooLarge { event: event.id, bytes: size });
                }
                Err(NatsError::Publish { subject, source: Box::new(error) })
            }
        }
    }

    /// Waits for one publish's ack; returns its position.
    async fn settle(&self, pending: Pending, status: &watch::Sender<RelayStatus>) -> Result<u64, NatsError> {
        let Pending { position, subject, ack, span } = pending;
        match ack.await {
            Ok(ack) => {
                span.record("stream_sequence", ack.sequence);
                span.record("duplicate", ack.duplicate);
                status.send_modify(|s| {
                    s.position = position;
                    s.published += 1;
                    s.duplicates += u64::from(ack.duplicate);
                });
                Ok(position)
            }
            Err(error) => {
                record_error(&span, &error);
                Err(NatsError::Publish { subject, source: Box::new(error) })
            }
        }
    }
}

fn record_error(span: &tracing::Span, error: &dyn std::error::Error) {
    span.record("error", tracing::field::display(super::render(error)));
    span.record("otel.status_code", "ERROR");
}

/// Controls a running [`Relay`].
#[derive(Debug)]
pub struct RelayHandle {
    status: watch::Receiver<RelayStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), NatsError>>,
}

impl RelayHandle {
    /// The relay's progress.
    pub fn status(&self) -> RelayStatus {
        self.status.borrow().clone()
    }

    /// Waits until the broker acknowledged the event at `position` (or a
    /// later one), or the relay ended.
    pub async fn wait_for_position(&mut self, position: u64) -> RelayStatus {
        let _ = self.status.wait_for(|s| s.position >= position).await;
        self.status()
    }

    /// Stops after settling the publishes in flight, saves the
    /// checkpoint, and returns how the relay ended.
    pub async fn stop(self) -> Result<(), NatsError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(NatsError::Ended("relay", error.to_string())),
        }
    }

    /// Kills the task at once, as a crash would: nothing is settled or saved.
    pub fn abort(self) {
        self.task.abort();
    }
}
