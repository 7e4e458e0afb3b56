//! A saga manager: its settings, starting instances, resuming them, and
//! running as a projection. Driving an instance is in `drive.rs` (and
//! `flow.rs`: waits and groups).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use uuid::Uuid;

use super::clock::{Clock, SystemClock};
use super::events::{SagaEvent, SagaStarted, COMPLETED, FAILED, STARTED};
use super::plan::Plan;
use super::state::{SagaInstance, SagaStatus};
use super::step::Step;
use super::{Saga, SagaError};
use crate::app::Orchestrix;
use crate::envelope::{Envelope, Metadata, RecordedEvent};
use crate::error::{BoxError, Error, StoreError};
use crate::lease::{Lease, Leases};
use crate::projection::{Projection, ProjectionEngine, ProjectionHandle, ProjectionOptions};
use crate::store::{EventFilter, ExpectedVersion};
use crate::stream::StreamId;

/// How often a spawned manager drives its waiting instances, unless
/// [`SagaManager::with_tick`] says otherwise.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);

/// Runs the instances of one saga definition against an application.
///
/// As a [`Projection`] (named `saga-<NAME>`, filtered on the definition's
/// start event types), it starts an instance for every start event and
/// drives it to its end before taking the next event: steps in order, and
/// on a failure the compensations of the completed steps in reverse. The
/// projection's checkpoint passes a start event only once its instance has
/// ended, so a manager that dies halfway gets the event again after a
/// restart and resumes the instance from its stored state;
/// [`SagaManager::resume_incomplete`] catches the instances whose event was
/// checkpointed anyway (parked as poison, for example), and
/// [`SagaManager::spawn`] calls it before following the log.
///
/// The [`ProjectionEngine`] that runs a manager must read the same event
/// store as the application. Cloning is cheap; clones share everything, so
/// one clone can run while another answers [`SagaManager::status`].
pub struct SagaManager<S: Saga> {
    inner: Arc<Inner<S>>,
}

pub(super) struct Inner<S: Saga> {
    pub(super) app: Orchestrix,
    saga: S,
    steps: Vec<Step<S::Data>>,
    /// The definition flattened, or why it cannot run.
    pub(super) plan: Result<Plan<S::Data>, String>,
    category: String,
    /// Where the lease comes from, if the manager runs under one.
    leases: Mutex<Option<Arc<dyn Leases>>>,
    /// The lease, while this manager's runner holds it.
    lease: tokio::sync::Mutex<Option<Box<dyn Lease>>>,
    /// The clock deadlines are compared with.
    clock: Mutex<Arc<dyn Clock>>,
    /// How often the ticker drives the waiting instances.
    tick: Mutex<Duration>,
    /// The instances this manager left waiting.
    parked: Mutex<HashSet<Uuid>>,
    /// Held while an instance is driven: the handler and the ticker take turns.
    driving: tokio::sync::Mutex<()>,
}

impl<S: Saga> Clone for SagaManager<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<S: Saga> fmt::Debug for SagaManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaManager").field("saga", &S::NAME).field("steps", &self.inner.steps).finish_non_exhaustive()
    }
}

impl<S: Saga> SagaManager<S> {
    /// A manager of `saga`'s instances, sending their commands through `app`.
    pub fn new(app: Orchestrix, saga: S) -> Self {
        let steps = saga.steps();
        let plan = Plan::new(&steps);
        let inner = Inner {
            app,
            saga,
            steps,
            plan,
            category: Self::category(),
            leases: Mutex::new(None),
            lease: tokio::sync::Mutex::new(None),
            clock: Mutex::new(Arc::new(SystemClock)),
            tick: Mutex::new(DEFAULT_TICK),
            parked: Mutex::new(HashSet::new()),
            driving: tokio::sync::Mutex::new(()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The category of the instances' streams, and the projection's name:
    /// `saga-<NAME>`.
    pub fn category() -> String {
        format!("saga-{}", S::NAME)
    }

    /// The stream of the instance `saga_id`.
    pub fn stream_id(saga_id: Uuid) -> Result<StreamId, StoreError> {
        Ok(StreamId::new(Self::category(), saga_id.to_string())?)
    }

    /// The application the steps' commands go through.
    pub fn app(&self) -> &Orchestrix {
        &self.inner.app
    }

    /// The saga definition.
    pub fn saga(&self) -> &S {
        &self.inner.saga
    }

    /// The definition's steps.
    pub fn steps(&self) -> &[Step<S::Data>] {
        &self.inner.steps
    }

    /// The names of the steps an instance records: the definition's
    /// steps, each group replaced by its members (`<group>/<member>`).
    pub fn step_names(&self) -> Vec<String> {
        match &self.inner.plan {
            Ok(plan) => plan.steps.iter().map(|s| s.name().to_owned()).collect(),
            Err(_) => self.inner.steps.iter().map(|s| s.name().to_owned()).collect(),
        }
    }

    /// Compares deadlines and deferrals with `clock` instead of the
    /// system's (a [`ManualClock`](super::ManualClock) in tests). Clones
    /// share the setting.
    pub fn with_clock(self, clock: impl Clock) -> Self {
        *self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(clock);
        self
    }

    /// Drives the waiting instances every `tick` once spawned (default
    /// [`DEFAULT_TICK`]): an awaited event is noticed, and a deadline fires,
    /// within one tick. Clones share the setting.
    pub fn with_tick(self, tick: Duration) -> Self {
        *self.inner.tick.lock().unwrap_or_else(PoisonError::into_inner) = tick.max(Duration::from_millis(1));
        self
    }

    /// The clock's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.lock().unwrap_or_else(PoisonError::into_inner).now()
    }

    /// The ticker's interval.
    pub(super) fn tick_interval(&self) -> Duration {
        *self.inner.tick.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the definition has steps that wait or decide, and so needs
    /// a ticker when spawned.
    pub(super) fn needs_ticker(&self) -> bool {
        self.inner.plan.as_ref().is_ok_and(|plan| plan.steps.iter().any(|s| s.is_wait() || s.has_decision()))
    }

    /// The flattened definition, or why it cannot run.
    pub(super) fn plan(&self) -> Result<&Plan<S::Data>, SagaError> {
        self.inner
            .plan
            .as_ref()
            .map_err(|reason| SagaError::InvalidDefinition { saga: S::NAME, reason: reason.clone() })
    }

    /// The lock the drivers of instances take turns with.
    pub(super) fn driving(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.driving
    }

    /// Remembers whether `instance` waits, for [`SagaManager::tick`].
    pub(super) fn remember<D>(&self, instance: &SagaInstance<D>) {
        let mut parked = self.inner.parked.lock().unwrap_or_else(PoisonError::into_inner);
        if instance.status == SagaStatus::Waiting {
            parked.insert(instance.id);
        } else {
            parked.remove(&instance.id);
        }
    }

    /// The ids of the instances this manager left waiting (by driving
    /// them, including through [`SagaManager::resume_incomplete`]).
    pub fn waiting(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> =
            self.inner.parked.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Drives every instance this manager left waiting, so that those
    /// whose event arrived or whose time came move on, and returns those
    /// that are no longer waiting. A spawned manager's ticker calls it
    /// every [`SagaManager::with_tick`] interval; call it yourself when you
    /// drive instances by hand.
    ///
    /// An instance that cannot be driven now (its step is in doubt, the
    /// store did not answer) is logged and stays waiting, to be tried again
    /// at the next tick, so that it does not hold up the others. Only
    /// [`SagaError::LeaseNotHeld`] ends the tick early, as an error.
    pub async fn tick(&self) -> Result<Vec<SagaInstance<S::Data>>, SagaError> {
        let mut moved = Vec::new();
        for id in self.waiting() {
            match self.drive(id).await {
                Ok(instance) if instance.status == SagaStatus::Waiting => {}
                Ok(instance) => moved.push(instance),
                Err(error @ SagaError::LeaseNotHeld { .. }) => return Err(error),
                Err(error) => {
                    tracing::warn!(saga = S::NAME, saga_id = %id, error = %crate::error::render_chain(&error), "a waiting saga could not be driven; the next tick tries again");
                }
            }
        }
        Ok(moved)
    }

    /// Runs this manager only while it holds the lease
    /// [`SagaManager::lease_name`] from `leases`: the condition under
    /// which each step runs exactly once (ADR 0007) enforced, for every
    /// runner of this saga kind that shares `leases` (the same SQLite
    /// file, the same PostgreSQL database, the same
    /// [`crate::memory::InMemoryLeases`]). Clones share the setting. See
    /// [`SagaManager::spawn`].
    pub fn with_leases(self, leases: impl Leases) -> Self {
        *self.inner.leases.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(leases));
        self
    }

    /// The name of the lease the manager's runner holds:
    /// `saga:<NAME>`.
    pub fn lease_name() -> String {
        format!("saga:{}", S::NAME)
    }

    fn leases(&self) -> Option<Arc<dyn Leases>> {
        self.inner.leases.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Resumes every unfinished instance, then runs the manager in the
    /// engine's task: catch up from its checkpoint, then follow the log.
    ///
    /// With [`SagaManager::with_leases`], the returned handle's task first
    /// waits for the lease (a second runner logs that it waits, counts it
    /// in [`crate::telemetry::LEASE_WAITS_TOTAL`], and stands by), then
    /// resumes the unfinished instances and runs the manager in the
    /// engine; it checks the lease every second and before every step's
    /// execution, and if the lease is lost it stops the manager and
    /// stands by again. Such a handle does not offer
    /// [`ProjectionHandle::retry_dead_letter`].
    ///
    /// A definition with steps that wait or decide (ADR 0038) also gets a
    /// ticker: every [`SagaManager::with_tick`] interval the runner calls
    /// [`SagaManager::tick`] (under the lease, if any). Its handle does not
    /// offer [`ProjectionHandle::retry_dead_letter`] either.
    pub async fn spawn(
        self,
        engine: &ProjectionEngine,
        options: ProjectionOptions,
    ) -> Result<ProjectionHandle<Self>, SagaError> {
        if let Some(leases) = self.leases() {
            let engine = engine.clone();
            return Ok(ProjectionHandle::spawn_runner(Self::category(), move |control| {
                super::lease::run(self, leases, engine, options, control)
            }));
        }
        self.resume_incomplete().await?;
        if !self.needs_ticker() {
            return Ok(engine.spawn(self, options));
        }
        let engine = engine.clone();
        Ok(ProjectionHandle::spawn_runner(Self::category(), move |control| {
            super::lease::run_unleased(self, engine, options, control)
        }))
    }

    /// With leases: fails unless this manager holds its lease, checked
    /// now. Called right before every step's execution, so that a runner
    /// that lost its lease runs nothing more.
    pub(super) async fn fence(&self) -> Result<(), SagaError> {
        if self.leases().is_none() {
            return Ok(());
        }
        let mut held = self.inner.lease.lock().await;
        let checked = match held.as_mut() {
            Some(lease) => lease.check().await,
            None => Err(StoreError::Unavailable("the runner is not running or is waiting for the lease".into())),
        };
        checked.map_err(|source| {
            *held = None;
            SagaError::LeaseNotHeld { saga: S::NAME, lease: Self::lease_name(), source }
        })
    }

    /// The slot the leased runner keeps its lease in.
    pub(super) fn lease_slot(&self) -> &tokio::sync::Mutex<Option<Box<dyn Lease>>> {
        &self.inner.lease
    }

    /// The instance `saga_id` as stored, or `None` if there is none.
    pub async fn status(&self, saga_id: Uuid) -> Result<Option<SagaInstance<S::Data>>, SagaError> {
        match self.load(saga_id).await? {
            Some(instance) => Self::typed(instance).map(Some),
            None => Ok(None),
        }
    }

    /// Every event the instance `saga_id` recorded, in order.
    pub async fn history(&self, saga_id: Uuid) -> Result<Vec<Envelope<SagaEvent>>, SagaError> {
        let stream = Self::stream_id(saga_id)?;
        let mut records = self.inner.app.event_store().read_stream(&stream, 1);
        let mut history = Vec::new();
        while let Some(record) = records.next().await {
            history.push(record?.to_envelope().map_err(Error::from)?);
        }
        Ok(history)
    }

    /// Starts the instance `event` starts, unless it exists already, and
    /// drives it to its end. Returns `None` when the event starts nothing.
    pub async fn handle_event(&self, event: &RecordedEvent) -> Result<Option<SagaInstance<S::Data>>, SagaError> {
        match self.begin(event).await? {
            Some(saga_id) => self.drive(saga_id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Records the start of the instance `event` starts, if it does and the
    /// instance does not exist yet, and returns its id.
    pub async fn begin(&self, event: &RecordedEvent) -> Result<Option<Uuid>, SagaError> {
        let plan = self.plan()?;
        let saga = &self.inner.saga;
        let data = saga.start(event).map_err(|source| SagaError::Start { saga: S::NAME, event: event.id, source })?;
        let Some(data) = data else { return Ok(None) };
        let saga_id = saga.saga_id(event, &data);
        let stream = Self::stream_id(saga_id)?;
        let store = self.inner.app.event_store();
        if store.stream_version(&stream).await?.is_some() {
            return Ok(Some(saga_id));
        }
        let correlation_id = event.metadata.correlation_id.unwrap_or(event.id);
        let started = SagaEvent::Started(SagaStarted {
            saga: S::NAME.to_owned(),
            data: serde_json::to_value(&data)
                .map_err(|source| Error::Serialize { what: "the data of a saga", source })?,
            correlation_id,
            trigger: event.id,
            steps: plan.steps.iter().map(|s| s.name().to_owned()).collect(),
            tenant: event.metadata.tenant.clone(),
            traceparent: event.metadata.traceparent.clone(),
        });
        let metadata = Metadata {
            correlation_id: Some(correlation_id),
            causation_id: Some(event.id),
            tenant: event.metadata.tenant.clone(),
            traceparent: event.metadata.traceparent.clone(),
            ..Metadata::default()
        };
        match store.append(&stream, ExpectedVersion::NoStream, vec![super::drive::encode(&started, metadata)?]).await {
            Ok(_) => {
                tracing::debug!(saga = S::NAME, %saga_id, trigger = %event.id, "saga started");
                Ok(Some(saga_id))
            }
            // Another runner started it first: the same instance.
            Err(error) if error.is_conflict() => Ok(Some(saga_id)),
            Err(error) => Err(error.into()),
        }
    }

    /// The ids of the instances that started but did not end, in the order
    /// they started. Reads the global log's saga lifecycle events.
    pub async fn incomplete(&self) -> Result<Vec<Uuid>, SagaError> {
        let filter = EventFilter::types([STARTED, COMPLETED, FAILED]);
        let store = self.inner.app.event_store();
        let mut events = store.read_all(1, &filter);
        let (mut started, mut ended) = (Vec::new(), HashSet::new());
        while let Some(event) = events.next().await {
            let event = event?;
            if event.stream.category() != self.inner.category {
                continue;
            }
            let Ok(id) = event.stream.id().parse::<Uuid>() else { continue };
            if event.event_type == STARTED {
                started.push(id);
            } else {
                ended.insert(id);
            }
        }
        started.retain(|id| !ended.contains(id));
        Ok(started)
    }

    /// Drives every instance that started but did not end, and returns
    /// their final states.
    pub async fn resume_incomplete(&self) -> Result<Vec<SagaInstance<S::Data>>, SagaError> {
        let ids = self.incomplete().await?;
        if !ids.is_empty() {
            tracing::info!(saga = S::NAME, count = ids.len(), "resuming unfinished sagas");
        }
        let mut resumed = Vec::with_capacity(ids.len());
        for id in ids {
            resumed.push(self.drive(id).await?);
        }
        Ok(resumed)
    }
}

#[async_trait]
impl<S: Saga> Projection for SagaManager<S> {
    fn name(&self) -> Cow<'static, str> {
        Cow::Owned(self.inner.category.clone())
    }

    fn filter(&self) -> EventFilter {
        EventFilter::types(self.inner.saga.start_event_types())
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.handle_event(event).await?;
        Ok(())
    }
}
