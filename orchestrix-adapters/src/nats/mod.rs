//! NATS JetStream: events leave the process through a relay and come back
//! to projections and sagas in other processes (feature `nats`).
//!
//! - [`Relay`] tails the global log ([`orchestrix::store::EventStore::subscribe`])
//!   from a checkpoint ([`orchestrix::store::CheckpointStore`]) and publishes every
//!   event as a CloudEvent ([`cloudevent`]) to
//!   `<prefix>.<aggregate type>.<event type>.<partition>` ([`Subjects`]),
//!   with `Nats-Msg-Id` = the event id, so the broker drops what a
//!   restarted relay publishes twice within the stream's duplicate window.
//!   The checkpoint moves only past events whose publish JetStream
//!   acknowledged. Commands never publish: a process that dies between its
//!   append and the publish loses nothing, the relay gets there.
//! - [`ProjectionWorker`] runs a [`orchestrix::projection::Projection`]
//!   (a read model, or a [`orchestrix::saga::SagaManager`]) on durable
//!   pull consumers with explicit acks, one per partition, in any number
//!   of processes: each partition is held by one worker at a time through
//!   a [`Leases`] implementation (the PostgreSQL advisory-lock lease, with
//!   the `postgres` feature), and a worker that dies hands its partitions
//!   to the survivors (ADR 0017).
//! - [`JetStreamBus`] implements the core's [`orchestrix::store::MessageBus`] on
//!   the same JetStream stream.
//!
//! # Guarantees
//!
//! - **Nothing lost**: the relay's checkpoint trails the broker's acks; a
//!   relay killed at any point restarts from its checkpoint.
//! - **Duplicates**: the broker drops a republished event if its first
//!   publish is still within the duplicate window (default 2 minutes);
//!   consumers get every event **at least once** and must apply it
//!   idempotently by event id (or stream version).
//! - **Order**: events of one stream are published in stream order, land
//!   in one partition, and each partition is consumed by one worker, one
//!   message at a time, acknowledged in order. A worker taking a partition
//!   over restarts its consumer from the acknowledged floor, so what the
//!   previous holder left unacknowledged comes again, in order, before
//!   anything newer; a worker that sees a gap in its consumer's delivery
//!   numbering (a message lost on its way, with a dying server) does the
//!   same to its own partition. Across streams there is no order.
//! - **Traces**: the relay's `orchestrix.publish` span is a child of the
//!   context recorded in the event's metadata, and its own context travels
//!   in the message's `traceparent` header; the consumer's
//!   `orchestrix.projection.handle` span takes that as its parent.
//!
//! ```no_run
//! # #[allow(dead_code)]
//! # async fn demo(store: orchestrix::memory::InMemoryEventStore) -> Result<(), Box<dyn std::error::Error>> {
//! use orchestrix::memory::InMemoryCheckpointStore;
//! use orchestrix_adapters::nats::{connect, EventStreamConfig, Relay, RelayOptions, Subjects};
//!
//! let client = connect("nats://127.0.0.1:4222").await?;
//! let subjects = Subjects::new("orders.events", 8)?;
//! let stream = EventStreamConfig::new("ORDERS_EVENTS")?;
//! let relay = Relay::new(client, store, InMemoryCheckpointStore::new(), subjects, stream, RelayOptions::default());
//! let handle = relay.spawn();
//! # handle.stop().await?;
//! # Ok(()) }
//! ```

pub mod bus;
pub mod cloudevent;
mod lease;
mod relay;
mod subject;
mod worker;

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use orchestrix::error::BoxError;
use orchestrix::{retry::RetryPolicy, StoreError};

pub use async_nats;
pub use bus::JetStreamBus;
pub use cloudevent::{CloudEventError, ContentMode};
pub use lease::{Lease, Leases, SoleWorker};
pub use relay::{Relay, RelayHandle, RelayOptions, RelayStatus};
pub use subject::{Subjects, MAX_PARTITIONS};
pub use worker::{ProjectionWorker, WorkerHandle, WorkerOptions, WorkerStatus};

/// Why a NATS operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The JetStream stream could not be found, created or updated.
    #[error("JetStream stream `{stream}`: {source}")]
    Stream {
        /// The stream.
        stream: String,
        /// The server's or client's error.
        #[source]
        source: BoxError,
    },
    /// A publish failed or was not acknowledged.
    #[error("publishing to `{subject}` failed: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A consumer could not be created or read.
    #[error("JetStream consumer `{consumer}`: {source}")]
    Consumer {
        /// The consumer.
        consumer: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A message is not an Orchestrix CloudEvent.
    #[error("message on `{subject}` (stream sequence {sequence}) is not an Orchestrix CloudEvent: {source}")]
    Decode {
        /// The subject.
        subject: String,
        /// The message's stream sequence.
        sequence: u64,
        /// What is wrong with it.
        #[source]
        source: CloudEventError,
    },
    /// A port (event store, checkpoints, leases, dead letters) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A projection kept failing on an event and its policy is to stop.
    #[error(transparent)]
    Projection(#[from] orchestrix::projection::ProjectionError),
    /// An event is too large for the server's maximum payload; it cannot
    /// be published until the server's `max_payload` is raised.
    #[error("event `{event}` ({bytes} bytes with headers) exceeds the NATS server's maximum payload")]
    TooLarge {
        /// The event id.
        event: uuid::Uuid,
        /// Its encoded size.
        bytes: usize,
    },
    /// The task ended abnormally (panicked or was aborted).
    #[error("the {0} task ended abnormally: {1}")]
    Ended(&'static str, String),
}

impl NatsError {
    /// Whether retrying later may succeed (the server or a store was
    /// unreachable, a request timed out).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Stream { .. } | Self::Publish { .. } | Self::Consumer { .. } => true,
            Self::Store(error) => matches!(error, StoreError::Unavailable(_) | StoreError::Backend(_)),
            _ => false,
        }
    }
}

/// Connects to a NATS server, or to a cluster given as a comma-separated
/// list of its servers' URLs (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`),
/// retrying the initial connection and reconnecting forever afterwards,
/// to any of the servers given and the ones the cluster announces.
///
/// Give every server of a cluster: the client reaches a live one whichever
/// is down when it starts ([`server_addrs`] parses the list).
pub async fn connect(url: &str) -> Result<async_nats::Client, NatsError> {
    let servers = server_addrs(url)?;
    async_nats::ConnectOptions::new()
        .name("orchestrix")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 50 ms more per attempt, at most 1 s, for ever.
            let policy = RetryPolicy::linear(u32::MAX, Duration::from_millis(50), Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(1));
            policy.delay_after(u32::try_from(attempts).unwrap_or(u32::MAX)).unwrap_or(Duration::from_secs(1))
        })
        .connect(servers)
        .await
        .map_err(|e| NatsError::Connect { url: url.to_owned(), source: Box::new(e) })
}

/// The servers of a comma-separated list of NATS URLs (spaces around the
/// commas are fine; `nats://` and port 4222 are assumed where missing).
///
/// The client's own parser takes one URL: given the list whole, it read
/// `4222,nats:` as a port and [`connect`] failed on every cluster URL.
///
/// ```
/// use orchestrix_adapters::nats::server_addrs;
///
/// let servers = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,127.0.0.1:4224").unwrap();
/// assert_eq!(servers.len(), 3);
/// assert_eq!(servers[2].port(), 4224);
/// assert!(server_addrs("nats://127.0.0.1:4222,,").is_err());
/// assert!(server_addrs("http://127.0.0.1:4222").is_err());
/// ```
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            if url.is_empty() {
                return Err(NatsError::Connect {
                    url: urls.to_owned(),
                    source: "an empty server URL in the list (two commas in a row, or one at an end)".into(),
                });
            }
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| NatsError::Connect { url: url.to_owned(), source: Box::new(e) })
        })
        .collect()
}

/// The JetStream stream that holds the published events.
///
/// ```
/// use std::time::Duration;
/// use orchestrix_adapters::nats::EventStreamConfig;
///
/// let config = EventStreamConfig::new("ORDERS_EVENTS").unwrap().with_duplicate_window(Duration::from_secs(600));
/// assert_eq!(config.name(), "ORDERS_EVENTS");
/// assert!(EventStreamConfig::new("no.dots").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStreamConfig {
    name: String,
    duplicate_window: Duration,
    memory: bool,
    /// `None`: 1 for a new stream, an existing one's left as it is.
    replicas: Option<usize>,
}

impl EventStreamConfig {
    /// A file-backed stream named `name` (ASCII letters, digits, `-` and
    /// `_`) with a two-minute duplicate window.
    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        if name.is_empty()
            || name.len() > 255
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::InvalidInput(format!(
                "JetStream stream name `{name}` must be 1 to 255 ASCII letters, digits, `-` and `_`"
            )));
        }
        Ok(Self { name, duplicate_window: Duration::from_mins(2), memory: false, replicas: None })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the broker remembers message ids to drop duplicates
    /// (default 2 minutes). A relay that restarts from a checkpoint older
    /// than this may publish duplicates the broker keeps; consumers absorb
    /// them by idempotence.
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// The duplicate window.
    pub fn duplicate_window(&self) -> Duration {
        self.duplicate_window
    }

    /// Keeps the stream in memory instead of files (tests, caches).
    pub fn with_memory_storage(mut self) -> Self {
        self.memory = true;
        self
    }

    /// Keeps `replicas` copies of the stream on as many servers of a
    /// JetStream cluster (default 1; 1 to 5, and at most the cluster's
    /// size). With 3, the stream and its consumers survive the loss of
    /// any one server: give every stream of a three-node cluster 3
    /// (ADR 0048). A single server accepts only 1.
    ///
    /// ```
    /// use orchestrix_adapters::nats::EventStreamConfig;
    ///
    /// let config = EventStreamConfig::new("ORDERS_EVENTS").unwrap().with_replicas(3).unwrap();
    /// assert_eq!(config.replicas(), 3);
    /// assert!(EventStreamConfig::new("ORDERS_EVENTS").unwrap().with_replicas(0).is_err());
    /// assert!(EventStreamConfig::new("ORDERS_EVENTS").unwrap().with_replicas(6).is_err());
    /// ```
    pub fn with_replicas(mut self, replicas: usize) -> Result<Self, StoreError> {
        if !(1..=5).contains(&replicas) {
            return Err(StoreError::InvalidInput(format!(
                "JetStream keeps 1 to 5 replicas of a stream, not {replicas}"
            )));
        }
        self.replicas = Some(replicas);
        Ok(self)
    }

    /// How many copies of the stream the cluster keeps: the number given
    /// to [`with_replicas`](Self::with_replicas), else 1 (then
    /// [`ensure`](Self::ensure) leaves an existing stream's replicas as
    /// they are).
    pub fn replicas(&self) -> usize {
        self.replicas.unwrap_or(1)
    }

    /// Creates the stream for `subjects` if it does not exist, or makes
    /// the existing one's duplicate window, subjects and replicas match.
    pub async fn ensure(&self, js: &jetstream::Context, subjects: &Subjects) -> Result<stream::Stream, NatsError> {
        let error = |source: BoxError| NatsError::Stream { stream: self.name.clone(), source };
        let config = stream::Config {
            name: self.name.clone(),
            subjects: vec![subjects.all()],
            duplicate_window: self.duplicate_window,
            storage: if self.memory { stream::StorageType::Memory } else { stream::StorageType::File },
            num_replicas: self.replicas(),
            ..stream::Config::default()
        };
        match js.get_stream(&self.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| error(Box::new(e)))?.config.clone();
                if info.duplicate_window != config.duplicate_window
                    || !info.subjects.contains(&subjects.all())
                    || self.replicas.is_some_and(|replicas| info.num_replicas.max(1) != replicas)
                {
                    let mut updated = info;
                    updated.duplicate_window = config.duplicate_window;
                    if let Some(replicas) = self.replicas {
                        updated.num_replicas = replicas;
                    }
                    if !updated.subjects.contains(&subjects.all()) {
                        updated.subjects.push(subjects.all());
                    }
                    js.update_stream(updated).await.map_err(|e| error(Box::new(e)))?;
                }
                Ok(existing)
            }
            Err(_) => js.get_or_create_stream(config).await.map_err(|e| error(Box::new(e))),
        }
    }

    /// Deletes the stream and every message and consumer in it.
    pub async fn delete(&self, js: &jetstream::Context) -> Result<(), NatsError> {
        js.delete_stream(&self.name)
            .await
            .map(|_| ())
            .map_err(|e| NatsError::Stream { stream: self.name.clone(), source: Box::new(e) })
    }
}

/// An error and its sources, joined by `: `.
pub(crate) fn render(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = next.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_servers_is_split_before_the_client_parses_it() {
        let list = "nats://127.0.0.1:4222,nats://127.0.0.1:4223";
        // What `connect` used to hand the client: one URL, which it refuses.
        assert!(list.parse::<async_nats::ServerAddr>().is_err());
        let servers = server_addrs(list).unwrap();
        assert_eq!(servers.iter().map(async_nats::ServerAddr::port).collect::<Vec<_>>(), [4222, 4223]);
        assert!(matches!(server_addrs(" , "), Err(NatsError::Connect { .. })));
    }
}
