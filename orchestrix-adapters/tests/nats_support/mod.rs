//! Shared helpers of the NATS tests: the server URL, unique names, and
//! the skip-or-fail policy.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use orchestrix::StoreError;
use orchestrix_adapters::nats::async_nats::{self, jetstream};
use orchestrix_adapters::nats::{connect, EventStreamConfig, Lease, Leases, Subjects};

/// The server URL from `ORCHESTRIX_NATS_URL`, or `None` (with the reason
/// printed) when it is unset outside CI. Under CI a missing variable fails.
pub fn nats_url() -> Option<String> {
    match std::env::var("ORCHESTRIX_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ORCHESTRIX_NATS_URL is not set, but CI is: the NATS tests must run in CI \
                 (set it to e.g. nats://127.0.0.1:4222)"
            );
            eprintln!("skipped: ORCHESTRIX_NATS_URL is not set (e.g. nats://127.0.0.1:4222)");
            None
        }
    }
}

/// A connected client, or `None` when the tests skip. An unreachable
/// server fails under CI.
pub async fn client() -> Option<async_nats::Client> {
    let url = nats_url()?;
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect(&url)).await {
        Ok(Ok(client)) => Some(client),
        other => {
            assert!(std::env::var_os("CI").is_none(), "NATS at {url} is unreachable under CI: {other:?}");
            eprintln!("skipped: NATS at {url} is unreachable");
            None
        }
    }
}

/// A unique token for this test's stream and subject names.
pub fn unique() -> String {
    format!("t{}x{:012x}", std::process::id(), fastrand::u64(..) & 0xffff_ffff_ffff)
}

/// A test's JetStream stream and subjects, deleted on drop.
pub struct Place {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub stream: EventStreamConfig,
}

impl Place {
    pub fn new(client: async_nats::Client, partitions: u32) -> Self {
        let token = unique();
        let subjects = Subjects::new(format!("orxtest.{token}"), partitions).unwrap();
        let stream = EventStreamConfig::new(format!("ORXTEST_{token}")).unwrap();
        Self { client, subjects, stream }
    }

    pub fn js(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }

    /// How many messages the stream holds.
    pub async fn message_count(&self) -> u64 {
        let mut stream = self.js().get_stream(self.stream.name()).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    pub async fn delete(&self) {
        let _ = self.stream.delete(&self.js()).await;
    }
}

/// In-process leases: exclusive per name, released when dropped (as a
/// killed process's connection would release them).
#[derive(Debug, Clone, Default)]
pub struct MemoryLeases {
    taken: Arc<Mutex<HashSet<String>>>,
}

#[derive(Debug)]
struct MemoryLease {
    name: String,
    taken: Arc<Mutex<HashSet<String>>>,
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.taken.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.name);
    }
}

#[orchestrix::async_trait]
impl Leases for MemoryLeases {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if !taken.insert(name.to_owned()) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemoryLease { name: name.to_owned(), taken: Arc::clone(&self.taken) })))
    }
}

#[orchestrix::async_trait]
impl Lease for MemoryLease {
    async fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A projection that applies each event once by id, checks per-stream
/// order, and shares its state between clones.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub inner: Arc<Mutex<LedgerState>>,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct LedgerState {
    /// Event ids applied.
    pub applied: HashSet<orchestrix::Uuid>,
    /// Deliveries, counting redeliveries.
    pub deliveries: u64,
    /// The last version applied per stream.
    pub versions: BTreeMap<String, u64>,
    /// First-time applications whose version was not the stream's next.
    pub out_of_order: Vec<String>,
    /// The sum of every applied event's `n`.
    pub total: u64,
}

impl Ledger {
    pub fn named(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[orchestrix::async_trait]
impl orchestrix::projection::Projection for Ledger {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        self.name.clone().into()
    }

    fn filter(&self) -> orchestrix::store::EventFilter {
        orchestrix::store::EventFilter::types(["Counted"])
    }

    async fn handle(&mut self, event: &orchestrix::envelope::RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
        let mut state = self.state();
        state.deliveries += 1;
        if !state.applied.insert(event.id) {
            return Ok(()); // at least once: seen before
        }
        let stream = event.stream.to_string();
        let last = state.versions.get(&stream).copied().unwrap_or(0);
        if event.stream_version != last + 1 {
            state.out_of_order.push(format!("{stream}: {} after {last}", event.stream_version));
        }
        state.versions.insert(stream, event.stream_version);
        let data: serde_json::Value = serde_json::from_str(event.data.get())?;
        state.total += data["n"].as_u64().unwrap_or(0);
        Ok(())
    }
}

/// A `Counted { n }` event.
pub fn counted(n: u64) -> orchestrix::envelope::NewEvent {
    orchestrix::envelope::NewEvent::new(
        "Counted",
        1,
        serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
    )
}

/// An event the ledger does not want.
pub fn ignored() -> orchestrix::envelope::NewEvent {
    orchestrix::envelope::NewEvent::new("Ignored", 1, serde_json::value::RawValue::from_string("{}".into()).unwrap())
}
