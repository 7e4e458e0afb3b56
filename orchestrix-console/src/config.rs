//! The console's configuration ([`Console`]) and what the handlers share.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::personal::PersonalData;
use orchestrix::projection::{DropOutcome, ProjectionHandle, ProjectionStatus, RetryOutcome};
use orchestrix::store::{shared, DeadLetterStore, EventStore};
use orchestrix::tenant::TenantId;
use uuid::Uuid;

use crate::security::Sessions;

/// A running projection as the console sees it: its status, the
/// dead-letter actions of its handle, pause and resume. Implemented for
/// [`ProjectionHandle`]; implement it for a runner of your own.
#[async_trait]
pub trait ProjectionControl: Send + Sync + 'static {
    /// Its current status.
    fn status(&self) -> ProjectionStatus;

    /// Retries the dead letter `id` (and the letters parked behind it, in
    /// stream order); `Ok` with a short summary, `Err` with the reason.
    async fn retry_dead_letter(&self, id: Uuid) -> Result<String, String>;

    /// Drops the dead letter `id`; `Ok` with a short summary, `Err` with
    /// the reason.
    async fn drop_dead_letter(&self, id: Uuid) -> Result<String, String>;

    /// Pauses the projection in every process that runs it (ADR 0050);
    /// `Ok` with a short summary once this runner paused, `Err` with the
    /// reason. The default refuses: a control of your own opts in.
    async fn pause(&self) -> Result<String, String> {
        Err("this projection's control cannot pause it".to_owned())
    }

    /// Withdraws the pause (ADR 0050); a projection that is not paused is
    /// left as it is. The default refuses.
    async fn resume(&self) -> Result<String, String> {
        Err("this projection's control cannot resume it".to_owned())
    }

    /// Rebuilds the running projection in place (ADR 0050): its read
    /// model is reset, its checkpoint and dead letters are forgotten and
    /// it catches up again from the first event. `Ok` once reset (not
    /// once caught up), `Err` with the reason. The default refuses.
    async fn rebuild(&self) -> Result<String, String> {
        Err("this projection's control cannot rebuild it".to_owned())
    }
}

/// How long the console waits for a runner to pause before it answers.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl<P: Send + 'static> ProjectionControl for ProjectionHandle<P> {
    fn status(&self) -> ProjectionStatus {
        ProjectionHandle::status(self)
    }

    async fn retry_dead_letter(&self, id: Uuid) -> Result<String, String> {
        match ProjectionHandle::retry_dead_letter(self, id).await {
            Ok(outcome) => Ok(retry_summary(&outcome)),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn drop_dead_letter(&self, id: Uuid) -> Result<String, String> {
        match ProjectionHandle::drop_dead_letter(self, id).await {
            Ok(outcome) => Ok(drop_summary(&outcome)),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn pause(&self) -> Result<String, String> {
        match ProjectionHandle::pause(self, PAUSE_WAIT).await {
            Ok(status) => Ok(format!("paused at position {}", status.position)),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn resume(&self) -> Result<String, String> {
        ProjectionHandle::resume(self).await.map(|()| "resumed".to_owned()).map_err(|error| error.to_string())
    }

    async fn rebuild(&self) -> Result<String, String> {
        ProjectionHandle::rebuild(self)
            .await
            .map(|()| "reset; catching up from the first event".to_owned())
            .map_err(|error| error.to_string())
    }
}

fn retry_summary(outcome: &RetryOutcome) -> String {
    format!("{outcome:?}")
}

fn drop_summary(outcome: &DropOutcome) -> String {
    format!("{outcome:?}")
}

/// A projection shown by the console: its name, the tenant whose view it
/// belongs to (`None`: the whole store's view) and its control.
pub(crate) struct ProjectionEntry {
    pub(crate) tenant: Option<String>,
    pub(crate) name: String,
    pub(crate) control: Arc<dyn ProjectionControl>,
    /// Its throughput, sampled when the projections page is shown.
    pub(crate) throughput: crate::throughput::Throughput,
}

/// What the console shows and what it lets an operator do.
///
/// ```
/// use orchestrix::memory::{InMemoryDeadLetterStore, InMemoryEventStore};
/// use orchestrix_console::Console;
///
/// let shared = InMemoryEventStore::new();
/// let console = Console::new(shared)
///     .dead_letters(InMemoryDeadLetterStore::new())
///     .tenants(["acme", "globex"])
///     .expect("valid tenant ids")
///     .write_token("a long random secret");
/// # let _ = console;
/// ```
pub struct Console {
    pub(crate) events: Arc<dyn EventStore>,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterStore>>,
    pub(crate) projections: Vec<ProjectionEntry>,
    pub(crate) tenants: Vec<TenantId>,
    pub(crate) write_token: Option<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) personal: Vec<&'static [PersonalData]>,
    pub(crate) reveal_personal: bool,
    pub(crate) scan_window: u64,
    pub(crate) aggregates: Vec<Arc<dyn crate::time_travel::StateOf>>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The write token never shows, not even in a log line.
        f.debug_struct("Console")
            .field("tenants", &self.tenants)
            .field("projections", &self.projections.iter().map(|entry| &entry.name).collect::<Vec<_>>())
            .field("writable", &self.write_token.is_some())
            .field("reveal_personal_data", &self.reveal_personal)
            .field("aggregates", &self.aggregates.iter().map(|kind| kind.category()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How many of the log's last events the causality scan reads by default.
pub const DEFAULT_SCAN_WINDOW: u64 = 10_000;

impl Console {
    /// A read-only console over `events` (any event store: a SQLite or
    /// PostgreSQL store, an `Arc<dyn EventStore>`).
    ///
    /// Give it the store *under* a [`CryptoStore`](orchestrix::crypto::CryptoStore),
    /// not the `CryptoStore` itself: then personal data stays encrypted on
    /// every page.
    pub fn new(events: impl EventStore) -> Self {
        Self {
            events: shared::<_, dyn EventStore>(events, |store| Arc::new(store)),
            dead_letters: None,
            projections: Vec::new(),
            tenants: Vec::new(),
            write_token: None,
            allowed_origins: Vec::new(),
            personal: Vec::new(),
            reveal_personal: false,
            scan_window: DEFAULT_SCAN_WINDOW,
            aggregates: Vec::new(),
        }
    }

    /// The dead-letter store to list (the one the projections park in).
    pub fn dead_letters(mut self, store: impl DeadLetterStore) -> Self {
        self.dead_letters = Some(shared::<_, dyn DeadLetterStore>(store, |store| Arc::new(store)));
        self
    }

    /// Shows the projection `name` (the name its dead letters are parked
    /// under) in the whole store's view; its handle retries and drops its
    /// dead letters.
    pub fn projection(mut self, name: impl Into<String>, control: Arc<dyn ProjectionControl>) -> Self {
        self.projections.push(ProjectionEntry {
            tenant: None,
            name: name.into(),
            control,
            throughput: crate::throughput::Throughput::default(),
        });
        self
    }

    /// Shows the projection `name` in `tenant`'s view (a projection that
    /// runs on the tenant's [`TenantStore`](orchestrix::tenant::TenantStore)).
    pub fn tenant_projection(
        mut self,
        tenant: impl Into<String>,
        name: impl Into<String>,
        control: Arc<dyn ProjectionControl>,
    ) -> Self {
        self.projections.push(ProjectionEntry {
            tenant: Some(tenant.into()),
            name: name.into(),
            control,
            throughput: crate::throughput::Throughput::default(),
        });
        self
    }

    /// Makes every page a tenant's view: the console lists the tenants,
    /// and shows each one only its own streams, events and dead letters
    /// (through [`TenantStore`](orchestrix::tenant::TenantStore)). There
    /// is then no view of the whole store. Refuses an invalid tenant id.
    pub fn tenants<I, T>(mut self, tenants: I) -> Result<Self, orchestrix::StoreError>
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        for tenant in tenants {
            self.tenants.push(TenantId::new(tenant)?);
        }
        Ok(self)
    }

    /// Allows the actions that change something (retry, drop) for whoever
    /// presents `token`. Without it, the console is read-only and those
    /// routes do not exist. The token is compared in constant time and
    /// never rendered.
    pub fn write_token(mut self, token: impl Into<String>) -> Self {
        self.write_token = Some(token.into()).filter(|token| !token.is_empty());
        self
    }

    /// An origin (`https://ops.example.com`) besides the request's own
    /// `Host` that may post forms to the console, for a console behind a
    /// proxy that rewrites `Host`.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Declares personal fields (an event type's
    /// [`Event::personal_data`](orchestrix::event::Event::personal_data)):
    /// the console hides their values unless
    /// [`Console::reveal_personal_data`] is called.
    pub fn personal_data(mut self, data: &'static [PersonalData]) -> Self {
        self.personal.push(data);
        self
    }

    /// Shows declared personal fields in clear. Encrypted values stay
    /// encrypted: to read them, give [`Console::new`] a decrypting store.
    pub fn reveal_personal_data(mut self) -> Self {
        self.reveal_personal = true;
        self
    }

    /// Shows the state of `A`'s aggregates on their streams' pages, at any
    /// version (time travel, `?at=VERSION`), rebuilt with
    /// [`Repository::load_at`](orchestrix::repository::Repository::load_at)
    /// from the console's store. Personal data shows as erased (`null`):
    /// encrypted values always (give [`Console::new`] a decrypting store
    /// to see them), declared personal fields unless
    /// [`Console::reveal_personal_data`].
    pub fn aggregate<A: orchestrix::Aggregate + serde::Serialize>(mut self) -> Self {
        self.aggregates.retain(|kind| kind.category() != A::NAME);
        self.aggregates.push(Arc::new(crate::time_travel::Registered::<A>::new()));
        self
    }

    /// How many of the log's last events the causality scan reads
    /// ([`DEFAULT_SCAN_WINDOW`] by default; at least 1). The stream search
    /// reads the store's stream listing and the log itself, in pages.
    pub fn scan_window(mut self, events: u64) -> Self {
        self.scan_window = events.max(1);
        self
    }
}

/// What every handler shares: the configuration and the sessions.
pub(crate) struct Shared {
    pub(crate) console: Console,
    pub(crate) sessions: Sessions,
}

impl Shared {
    pub(crate) fn new(console: Console) -> Self {
        Self { console, sessions: Sessions::default() }
    }

    pub(crate) fn writable(&self) -> bool {
        self.console.write_token.is_some()
    }

    pub(crate) fn has_tenants(&self) -> bool {
        !self.console.tenants.is_empty()
    }
}
