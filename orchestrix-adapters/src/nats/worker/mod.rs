//! Projections and sagas in other processes: durable pull consumers per
//! partition, shared among workers through leases.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use orchestrix::projection::delivery::{Delivered, Delivery, DeliveryError, Failure, Target};
use orchestrix::projection::{PoisonPolicy, Projection, ProjectionError, RetryOutcome};
use orchestrix::store::DeadLetterQuery;
use orchestrix::trace::{self, TraceHeaders};
use orchestrix::{
    envelope::RecordedEvent,
    store::{DeadLetterStore, EventFilter},
    StoreError, StreamId,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::cloudevent::decode;
use super::lease::{Lease, Leases};
use super::{render, EventStreamConfig, NatsError, Subjects};

mod handle;
mod options;
mod pulling;

use handle::Request;
pub use handle::WorkerHandle;
pub use options::{WorkerOptions, WorkerStatus};
use pulling::{fetch, position_at, reset_consumer};

/// Runs projections (read models, saga managers) on JetStream, sharing
/// the partitions of the event stream with the other workers of the same
/// projection (see the [module](super) docs and ADR 0017).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo<P: orchestrix::projection::Projection>(projection: P) -> Result<(), Box<dyn std::error::Error>> {
/// use orchestrix_adapters::nats::{connect, EventStreamConfig, ProjectionWorker, SoleWorker, Subjects, WorkerOptions};
///
/// let client = connect("nats://127.0.0.1:4222").await?;
/// // Several worker processes: pass a `PgStore` (feature `postgres`) as the leases.
/// let worker = ProjectionWorker::new(client, Subjects::new("orders.events", 8)?, EventStreamConfig::new("ORDERS_EVENTS")?, SoleWorker);
/// let handle = worker.spawn(projection, WorkerOptions::default());
/// let _projection = handle.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProjectionWorker {
    client: async_nats::Client,
    subjects: Subjects,
    stream: EventStreamConfig,
    leases: Arc<dyn Leases>,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
}

struct Pulled {
    partition: u32,
    generation: u64,
    message: jetstream::Message,
}

struct Held {
    lease: Box<dyn Lease>,
    generation: u64,
    task: AbortOnDrop,
    /// The consumer sequence of the last message that reached this worker
    /// (the consumer counts every delivery, redeliveries included, from
    /// 1; it is created anew whenever the partition is taken).
    delivered: u64,
}

/// A fetch task, aborted when its partition is left or the worker ends
/// (however it ends).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ProjectionWorker {
    /// A worker reading the JetStream stream `stream` laid out by
    /// `subjects`, taking partitions through `leases`.
    pub fn new(client: async_nats::Client, subjects: Subjects, stream: EventStreamConfig, leases: impl Leases) -> Self {
        Self { client, subjects, stream, leases: Arc::new(leases), dead_letters: None }
    }

    /// Adds the dead-letter store that [`PoisonPolicy::Park`] needs.
    pub fn with_dead_letters(mut self, store: impl DeadLetterStore) -> Self {
        self.dead_letters = Some(Arc::new(store));
        self
    }

    /// Runs `projection` in its own task until stopped or failed.
    pub fn spawn<P: Projection>(&self, projection: P, options: WorkerOptions) -> WorkerHandle<P> {
        let (status_tx, status) = watch::channel(WorkerStatus::default());
        let (stop, stop_rx) = watch::channel(false);
        let (requests, requests_rx) = mpsc::channel(16);
        let worker = self.clone();
        let name = options.name.clone().unwrap_or_else(|| projection.name().into_owned());
        let span = tracing::info_span!("orchestrix.worker", projection = %name, stream = %self.stream.name());
        let task = tokio::spawn(
            async move {
                let delivery = Delivery::new(name.clone(), options.retry, options.poison, worker.dead_letters.clone());
                let mut run = Run {
                    worker,
                    filter: projection.filter(),
                    projection,
                    options,
                    name,
                    status: status_tx,
                    held: BTreeMap::new(),
                    generation: 0,
                    member: None,
                    delivery,
                };
                let result = run.run(stop_rx, requests_rx).await;
                run.release_all().await;
                match result {
                    Ok(()) => Ok(run.projection),
                    Err(error) => {
                        run.status.send_modify(|s| s.failed = Some(render(&error)));
                        Err(error)
                    }
                }
            }
            .instrument(span),
        );
        WorkerHandle { status, stop, requests, task, _projection: PhantomData }
    }
}

struct Run<P> {
    worker: ProjectionWorker,
    projection: P,
    filter: EventFilter,
    options: WorkerOptions,
    name: String,
    status: watch::Sender<WorkerStatus>,
    held: BTreeMap<u32, Held>,
    generation: u64,
    /// This worker's membership slot and its lease (with `balance`).
    member: Option<(usize, Box<dyn Lease>)>,
    /// Retries, poison, parking in stream order: the core's delivery.
    delivery: Delivery,
}

/// The worker's [`Target`]: a plain call of the projection's handler (the
/// ack follows the delivery).
struct Apply<'a, P>(&'a mut P);

impl<P: Projection> Target for Apply<'_, P> {
    type Interrupt = std::convert::Infallible;

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), Failure<Self::Interrupt>> {
        self.0.handle(event).await.map_err(Failure::Handler)
    }
}

fn never(error: DeliveryError<std::convert::Infallible>) -> ProjectionError {
    match error {
        DeliveryError::Projection(error) => error,
        DeliveryError::Interrupted(never) => match never {},
    }
}

impl<P: Projection> Run<P> {
    async fn run(
        &mut self,
        mut stop: watch::Receiver<bool>,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<(), NatsError> {
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(NatsError::Store(StoreError::InvalidInput(format!(
                "worker name `{}` must be ASCII letters, digits, `-` and `_`; set `WorkerOptions::name`",
                self.name
            ))));
        }
        let js = jetstream::new(self.worker.client.clone());
        let stream = loop {
            match self.worker.stream.ensure(&js, &self.worker.subjects).await {
                Ok(stream) => break stream,
                Err(error) => {
                    tracing::warn!(error = %render(&error), "the JetStream stream is not available yet; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                }
            }
        };
        let partitions: Vec<u32> = match &self.options.partitions {
            Some(list) => list.iter().copied().filter(|p| *p < self.worker.subjects.partitions()).collect(),
            None => (0..self.worker.subjects.partitions()).collect(),
        };
        let (tx, mut rx) = mpsc::channel::<Pulled>(self.options.batch.max(1) * 2);
        let mut tick = tokio::time::interval(self.options.lease_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                _ = tick.tick() => self.tend(&stream, &partitions, &tx).await,
                Some(request) = requests.recv() => self.serve(request).await,
                Some(delivery) = rx.recv() => {
                    let current = self.held.get(&delivery.partition).map(|h| h.generation);
                    if current == Some(delivery.generation) {
                        self.deliver(delivery).await?;
                    }
                    // Otherwise the partition was lost meanwhile: its new
                    // holder gets the message again.
                }
            }
        }
    }

    /// Counts the live workers of this projection, itself included: each
    /// holds one of `slots` membership leases; a slot whose lease cannot
    /// be taken is held by a live worker (a taken one is given back).
    async fn live_workers(&mut self, slots: usize) -> usize {
        let prefix = format!("nats:{}:{}:worker", self.worker.stream.name(), self.name);
        if let Some((_, lease)) = &mut self.member {
            if let Err(error) = lease.check().await {
                tracing::warn!(error = %render(&error), "lost the worker's membership lease; taking one again");
                self.member = None;
            }
        }
        if self.member.is_none() {
            for slot in 0..slots {
                if let Ok(Some(lease)) = self.worker.leases.try_acquire(&format!("{prefix}:{slot}")).await {
                    self.member = Some((slot, lease));
                    break;
                }
            }
        }
        let mine = self.member.as_ref().map(|(slot, _)| *slot);
        let mut others = 0;
        for slot in (0..slots).filter(|&slot| Some(slot) != mine) {
            match self.worker.leases.try_acquire(&format!("{prefix}:{slot}")).await {
                Ok(None) => others += 1,
                Ok(Some(lease)) => {
                    let _ = lease.release().await;
                }
                // Unknown: the claims below fail the same way meanwhile.
                Err(_) => {}
            }
        }
        1 + others
    }

    /// Checks the held leases, gives up partitions above a fair share and
    /// claims free ones up to it.
    async fn tend(&mut self, stream: &jetstream::stream::Stream, partitions: &[u32], tx: &mpsc::Sender<Pulled>) {
        let workers = if self.options.balance { self.live_workers(partitions.len().max(1)).await } else { 1 };
        let share = partitions.len().div_ceil(workers);
        // Above the share: the highest partitions go back. Their messages
        // not yet acknowledged come again to the next holder, which
        // recreates the consumer from the acknowledged floor.
        while self.held.len() > share {
            let Some((partition, held)) = self.held.pop_last() else { break };
            drop(held.task);
            let _ = held.lease.release().await;
            tracing::info!(partition, workers, share, "gave the partition up to share the work");
        }
        for &partition in partitions {
            if let Some(held) = self.held.get_mut(&partition) {
                if let Err(error) = held.lease.check().await {
                    tracing::warn!(partition, error = %render(&error), "lost the partition's lease; leaving it");
                    self.held.remove(&partition);
                }
                continue;
            }
            if self.held.len() >= share {
                continue;
            }
            let lease_name = format!("nats:{}:{}:{partition}", self.worker.stream.name(), self.name);
            let lease = match self.worker.leases.try_acquire(&lease_name).await {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(partition, error = %render(&error), "cannot take the partition's lease");
                    continue;
                }
            };
            let consumer_name = format!("{}-p{partition}", self.name);
            let filter = self.worker.subjects.partition_filter(partition);
            match reset_consumer(stream, &consumer_name, filter, &self.options).await {
                Ok((consumer, floor)) => {
                    // Streams parked by the partition's previous holder
                    // stay parked: the state is read from the store.
                    if let Err(error) = self.delivery.load_parked().await {
                        tracing::warn!(partition, %error, "cannot read the parked streams; not taking the partition");
                        let _ = lease.release().await;
                        continue;
                    }
                    self.generation += 1;
                    let generation = self.generation;
                    tracing::info!(partition, consumer = %consumer_name, "took the partition");
                    let task = AbortOnDrop(tokio::spawn(fetch(
                        consumer,
                        tx.clone(),
                        partition,
                        generation,
                        self.options.batch,
                    )));
                    self.held.insert(partition, Held { lease, generation, task, delivered: 0 });
                    let at = position_at(stream, floor).await;
                    self.status.send_modify(|s| {
                        s.positions.remove(&partition);
                        if let Some(at) = at {
                            s.positions.insert(partition, at);
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(partition, error = %render(&error), "cannot set up the partition's consumer");
                    let _ = lease.release().await;
                }
            }
        }
        let held: BTreeSet<u32> = self.held.keys().copied().collect();
        self.status.send_if_modified(|s| {
            let before = s.positions.len();
            s.positions.retain(|partition, _| held.contains(partition));
            let changed = s.partitions != held || s.workers != workers || s.positions.len() != before;
            s.partitions.clone_from(&held);
            s.workers = workers;
            changed
        });
    }

    async fn release_all(&mut self) {
        for (_, held) in std::mem::take(&mut self.held) {
            drop(held.task);
            let _ = held.lease.release().await;
        }
        if let Some((_, lease)) = self.member.take() {
            let _ = lease.release().await;
        }
        self.status.send_modify(|s| {
            s.partitions.clear();
            s.positions.clear();
        });
    }

    /// Whether a delivery of `partition`'s consumer never reached this
    /// worker before the one numbered `consumer_sequence`; if so, the
    /// partition is given up (ADR 48). A message on its way when a server
    /// died, or answering a pull the client gave up, counts as delivered:
    /// the consumer would send it again only after `ack_wait`, behind its
    /// successors. Taken again (next tick, by this worker or another), the
    /// partition's consumer restarts from the acknowledged floor, so the
    /// missing message comes first.
    async fn missed_a_delivery(&mut self, partition: u32, consumer_sequence: u64) -> bool {
        let Some(held) = self.held.get_mut(&partition) else { return false };
        if consumer_sequence == 0 || consumer_sequence == held.delivered + 1 {
            held.delivered = held.delivered.max(consumer_sequence);
            return false;
        }
        let expected = held.delivered + 1;
        if let Some(held) = self.held.remove(&partition) {
            drop(held.task);
            let _ = held.lease.release().await;
        }
        tracing::warn!(
            partition,
            expected,
            consumer_sequence,
            "a delivery never reached this worker; restarting the partition from its acknowledged floor"
        );
        self.status.send_modify(|s| {
            s.missed += 1;
            s.partitions.remove(&partition);
            s.positions.remove(&partition);
        });
        true
    }

    async fn deliver(&mut self, delivery: Pulled) -> Result<(), NatsError> {
        let Pulled { partition, message, .. } = delivery;
        let consumer_sequence = message.info().map_or(0, |info| info.consumer_sequence);
        if self.missed_a_delivery(partition, consumer_sequence).await {
            return Ok(());
        }
        let (sequence, delivered) = message.info().map_or((0, 0), |info| (info.stream_sequence, info.delivered));
        let headers: BTreeMap<String, String> = message
            .headers
            .iter()
            .flat_map(|map| map.iter())
            .filter_map(|(name, values)| values.last().map(|v| (name.to_string(), v.as_str().to_owned())))
            .collect();
        let event = match decode(&headers, &message.payload) {
            Ok(event) => event,
            Err(source) => {
                let error = NatsError::Decode { subject: message.subject.to_string(), sequence, source };
                if self.options.poison == PoisonPolicy::Stop {
                    return Err(error);
                }
                // Not an event, so nothing to park: terminate it.
                tracing::error!(error = %render(&error), "dropping a message that is not an event");
                ack(&message, AckKind::Term).await;
                self.status.send_modify(|s| s.parked += 1);
                return Ok(());
            }
        };
        if !self.filter.matches_event(&event) {
            ack(&message, AckKind::Ack).await;
            self.status.send_modify(|s| {
                s.skipped += 1;
                finished(s, partition, event.global_position);
            });
            return Ok(());
        }
        let span = tracing::info_span!(
            "orchestrix.projection.handle",
            projection = %self.name,
            event_type = %event.event_type,
            global_position = event.global_position,
            stream = %event.stream,
            stream_version = event.stream_version,
            event_id = %event.id,
            subject = %message.subject,
            partition,
            delivered,
            attempts = tracing::field::Empty,
            error = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        set_parent(&span, &headers, &event);
        // Poison under `Stop` leaves the message unacknowledged: the next
        // holder of the partition starts again at this event.
        let delivered = self.delivery.deliver(&mut Apply(&mut self.projection), &event, &span).await.map_err(never)?;
        ack(&message, AckKind::Ack).await;
        self.status.send_modify(|s| {
            match delivered {
                Delivered::Handled => s.handled += 1,
                _ => s.parked += 1,
            }
            finished(s, partition, event.global_position);
        });
        Ok(())
    }

    /// Whether this worker holds the partition of `stream`.
    fn holds(&self, stream: &StreamId) -> bool {
        self.held.contains_key(&self.worker.subjects.partition(stream))
    }

    fn not_held(&self) -> ProjectionError {
        ProjectionError::Unsupported {
            projection: self.name.clone(),
            operation: "retrying a stream whose partition this worker does not hold (ask the worker that holds it)",
        }
    }

    /// Serves a dead-letter request between two deliveries. A stream is
    /// retried only by the worker that holds its partition, so that its
    /// events are never applied by two workers at once.
    async fn serve(&mut self, request: Request) {
        match request {
            Request::Retry(id, reply) => {
                let _ = reply.send(self.retry(id).await);
            }
            Request::RetryAll(reply) => {
                let _ = reply.send(self.retry_all().await);
            }
            Request::Drop(id, reply) => {
                let _ = reply.send(self.delivery.drop_letter(id).await);
            }
        }
    }

    async fn retry(&mut self, id: Uuid) -> Result<RetryOutcome, ProjectionError> {
        let store = self
            .delivery
            .dead_letters()
            .cloned()
            .ok_or_else(|| ProjectionError::NoDeadLetterStore(self.name.clone()))?;
        let letter =
            store.get(id).await.map_err(|source| ProjectionError::Store { projection: self.name.clone(), source })?;
        if let Some(letter) = letter.filter(|letter| letter.consumer == self.name) {
            if !self.holds(&letter.event.stream) {
                return Err(self.not_held());
            }
        }
        self.delivery.retry(&mut Apply(&mut self.projection), id).await.map_err(never)
    }

    /// Retries every parked stream of the partitions this worker holds.
    async fn retry_all(&mut self) -> Result<RetryOutcome, ProjectionError> {
        let store = self
            .delivery
            .dead_letters()
            .cloned()
            .ok_or_else(|| ProjectionError::NoDeadLetterStore(self.name.clone()))?;
        let letters = store
            .query(&DeadLetterQuery::consumer(self.name.clone()))
            .await
            .map_err(|source| ProjectionError::Store { projection: self.name.clone(), source })?;
        let mut heads: Vec<(StreamId, Uuid)> = Vec::new();
        for letter in letters {
            if self.holds(&letter.event.stream) && !heads.iter().any(|(stream, _)| *stream == letter.event.stream) {
                heads.push((letter.event.stream.clone(), letter.id));
            }
        }
        let mut outcome = RetryOutcome::default();
        for (_, id) in heads {
            let one = self.delivery.retry(&mut Apply(&mut self.projection), id).await.map_err(never)?;
            outcome.applied.extend(one.applied);
            outcome.failed.extend(one.failed);
            outcome.still_parked += one.still_parked;
        }
        Ok(outcome)
    }
}

/// The handling span's parent: the publishing span (the message's
/// `traceparent` header), else the context recorded with the event.
fn set_parent(span: &tracing::Span, headers: &BTreeMap<String, String>, event: &RecordedEvent) {
    if span.is_disabled() {
        return;
    }
    match (trace::propagator(), headers.get("traceparent")) {
        (Some(propagator), Some(traceparent)) => {
            let context =
                TraceHeaders { traceparent: traceparent.clone(), tracestate: headers.get("tracestate").cloned() };
            propagator.set_parent(span, &context);
        }
        _ => trace::set_parent_from(span, &event.metadata),
    }
}

/// Records that the event at `position` of `partition` is finished.
fn finished(status: &mut WorkerStatus, partition: u32, position: u64) {
    let at = status.positions.entry(partition).or_insert(position);
    *at = (*at).max(position);
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    // A lost ack means a redelivery, which handlers absorb.
    if let Err(error) = message.ack_with(kind).await {
        tracing::debug!(%error, "ack failed; the message will come again");
    }
}
