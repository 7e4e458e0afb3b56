//! Running saga instances: start, drive, compensate, resume.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::events::{
    SagaCompensationStarted, SagaCompleted, SagaEvent, SagaFailed, SagaStarted, SagaStepCompensated, SagaStepCompleted,
    SagaStepFailed, SagaStepStarted, COMPLETED, FAILED, STARTED,
};
use super::state::{Next, SagaInstance};
use super::step::{step_id, Step, StepAction, StepError, StepKind};
use super::Saga;
use crate::app::{BuildError, CommandOptions, Orchestrix};
use crate::envelope::{Envelope, Metadata, NewEvent, RecordedEvent};
use crate::error::{render_chain as render, BoxError, Error, StoreError};
use crate::lease::{Lease, Leases};
use crate::projection::{Projection, ProjectionEngine, ProjectionHandle, ProjectionOptions};
use crate::store::{EventFilter, ExpectedVersion};
use crate::stream::StreamId;

/// Why a saga operation failed. Every variant but
/// [`SagaError::DefinitionChanged`], [`SagaError::Data`] and
/// [`SagaError::Unregistered`] may pass: the instance stays where it was,
/// and driving it again picks it up there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// A port failed, or a stored event could not be decoded.
    #[error(transparent)]
    Framework(#[from] Error),
    /// A step sends a command that the manager's application does not
    /// handle ([`BuildError::UnregisteredCommand`]): found by
    /// [`SagaManager::spawn`] before the manager starts (ADR 0043).
    #[error(transparent)]
    Unregistered(BuildError),
    /// The saga's [`Saga::start`] failed on an event.
    #[error("saga `{saga}` could not decide whether event `{event}` starts an instance: {source}")]
    Start {
        /// The saga kind.
        saga: &'static str,
        /// The event's id.
        event: Uuid,
        /// The saga's error.
        #[source]
        source: BoxError,
    },
    /// No instance has this id.
    #[error("saga `{saga}` has no instance `{id}`")]
    NotFound {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
    },
    /// The instance was started by a definition with other steps.
    #[error(
        "saga `{saga}` instance `{id}` was started with the steps {stored:?}, but the definition now has {defined:?}; \
         finish it with the code that started it, or give changed steps to a new saga kind"
    )]
    DefinitionChanged {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The step names the instance recorded.
        stored: Vec<String>,
        /// The step names of the definition.
        defined: Vec<String>,
    },
    /// The instance's data does not deserialize into [`Saga::Data`].
    #[error("saga `{saga}` instance `{id}`: the stored data does not match the saga's data type: {source}")]
    Data {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The instance's stream does not begin with `SagaStarted`.
    #[error("saga `{saga}` instance `{id}`: its stream does not begin with `SagaStarted`")]
    Corrupt {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
    },
    /// A step's outcome is unknown for now (its store did not answer, its
    /// command kept conflicting); the step is checked and tried again when
    /// the instance is driven again.
    #[error("saga `{saga}` instance `{id}`, step `{step}`: {source}")]
    Step {
        /// The saga kind.
        saga: &'static str,
        /// The instance id.
        id: Uuid,
        /// The step's name.
        step: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The manager runs under a lease ([`SagaManager::with_leases`]) and
    /// does not hold it, or no longer: another runner may, so this one
    /// did not run the step. The instance stays where it was.
    #[error("saga `{saga}`: this runner does not hold the lease `{lease}`, so it runs no step: {source}")]
    LeaseNotHeld {
        /// The saga kind.
        saga: &'static str,
        /// The lease's name.
        lease: String,
        /// Why the lease is not held.
        #[source]
        source: StoreError,
    },
}

impl From<StoreError> for SagaError {
    fn from(error: StoreError) -> Self {
        Self::Framework(Error::Store(error))
    }
}

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

struct Inner<S: Saga> {
    app: Orchestrix,
    saga: S,
    steps: Vec<Step<S::Data>>,
    category: String,
    /// Where the lease comes from, if the manager runs under one.
    leases: std::sync::Mutex<Option<Arc<dyn Leases>>>,
    /// The lease, while this manager's runner holds it.
    lease: tokio::sync::Mutex<Option<Box<dyn Lease>>>,
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

/// How one execution of an action or compensation ended.
enum Outcome {
    Applied,
    Failed { error: String, timed_out: bool },
}

impl<S: Saga> SagaManager<S> {
    /// A manager of `saga`'s instances, sending their commands through `app`.
    pub fn new(app: Orchestrix, saga: S) -> Self {
        let steps = saga.steps();
        let inner = Inner {
            app,
            saga,
            steps,
            category: Self::category(),
            leases: std::sync::Mutex::new(None),
            lease: tokio::sync::Mutex::new(None),
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

    /// Runs this manager only while it holds the lease
    /// [`SagaManager::lease_name`] from `leases`: the condition under
    /// which each step runs exactly once (ADR 0007) enforced, for every
    /// runner of this saga kind that shares `leases` (the same SQLite
    /// file, the same PostgreSQL database, the same
    /// [`crate::memory::InMemoryLeases`]). Clones share the setting. See
    /// [`SagaManager::spawn`].
    pub fn with_leases(self, leases: impl Leases) -> Self {
        *self.inner.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(leases));
        self
    }

    /// The name of the lease the manager's runner holds:
    /// `saga:<NAME>`.
    pub fn lease_name() -> String {
        format!("saga:{}", S::NAME)
    }

    fn leases(&self) -> Option<Arc<dyn Leases>> {
        self.inner.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
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
    pub async fn spawn(
        self,
        engine: &ProjectionEngine,
        options: ProjectionOptions,
    ) -> Result<ProjectionHandle<Self>, SagaError> {
        self.inner.app.check_uses(super::register::sends::<S>(&self.inner.steps)).map_err(SagaError::Unregistered)?;
        if let Some(leases) = self.leases() {
            let engine = engine.clone();
            return Ok(ProjectionHandle::spawn_runner(Self::category(), move |control| {
                super::lease::run(self, leases, engine, options, control)
            }));
        }
        self.resume_incomplete().await?;
        Ok(engine.spawn(self, options))
    }

    /// With leases: fails unless this manager holds its lease, checked
    /// now. Called right before every step's execution, so that a runner
    /// that lost its lease runs nothing more.
    async fn fence(&self) -> Result<(), SagaError> {
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
            steps: self.inner.steps.iter().map(|s| s.name().to_owned()).collect(),
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
        match store.append(&stream, ExpectedVersion::NoStream, vec![encode(&started, metadata)?]).await {
            Ok(_) => {
                tracing::debug!(saga = S::NAME, %saga_id, trigger = %event.id, "saga started");
                Ok(Some(saga_id))
            }
            // Another runner started it first: the same instance.
            Err(error) if error.is_conflict() => Ok(Some(saga_id)),
            Err(error) => Err(error.into()),
        }
    }

    /// Drives the instance `saga_id` to its end from wherever it is, and
    /// returns its final state.
    ///
    /// A step whose outcome is unknown (it started, but neither its
    /// completion nor its failure was recorded) is first checked with
    /// [`StepAction::already_applied`]: if it took effect, it is recorded
    /// as done rather than run again.
    pub async fn drive(&self, saga_id: Uuid) -> Result<SagaInstance<S::Data>, SagaError> {
        let span = tracing::info_span!("orchestrix.saga", saga = S::NAME, %saga_id);
        self.drive_inner(saga_id).instrument(span).await
    }

    fn step_span_fields(saga_id: Uuid, step: &str, kind: &'static str, step_id: Uuid) -> tracing::Span {
        tracing::info_span!(
            "orchestrix.saga.step",
            saga = S::NAME,
            %saga_id,
            step,
            kind,
            %step_id,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }

    async fn drive_inner(&self, saga_id: Uuid) -> Result<SagaInstance<S::Data>, SagaError> {
        let mut instance = self.load(saga_id).await?.ok_or(SagaError::NotFound { saga: S::NAME, id: saga_id })?;
        self.check_definition(&instance)?;
        let data: S::Data = serde_json::from_value(instance.data.clone()).map_err(|source| SagaError::Data {
            saga: S::NAME,
            id: saga_id,
            source,
        })?;
        let steps = &self.inner.steps;
        loop {
            match instance.next(|i| steps.get(i).is_some_and(Step::has_compensation)) {
                Next::Done => break,
                Next::Complete => {
                    let cause = instance.trigger;
                    self.record(&mut instance, SagaEvent::Completed(SagaCompleted {}), cause).await?;
                }
                Next::Fail => {
                    let failed = SagaFailed {
                        error: instance.error.clone().unwrap_or_default(),
                        failed_compensation: None,
                        compensation_error: None,
                    };
                    let cause = instance.trigger;
                    self.record(&mut instance, SagaEvent::Failed(failed), cause).await?;
                }
                Next::Act { step, in_doubt } => {
                    let definition = &steps[step];
                    let name = definition.name().to_owned();
                    let id = step_id(saga_id, step, StepKind::Action);
                    if !in_doubt {
                        let started = SagaStepStarted { step, name: name.clone(), step_id: id };
                        if !self.record(&mut instance, SagaEvent::StepStarted(started), id).await? {
                            continue;
                        }
                    }
                    self.fence().await?;
                    let action = definition.action.as_ref();
                    let span = Self::step_span_fields(saga_id, &name, "action", id);
                    let outcome = self
                        .run(action, &data, &instance, id, definition.step_timeout(), in_doubt)
                        .instrument(span.clone())
                        .await;
                    record_step(&span, &outcome);
                    let event = match outcome.map_err(|e| Self::step_error(saga_id, &name, e))? {
                        Outcome::Applied => SagaEvent::StepCompleted(SagaStepCompleted { step, name }),
                        Outcome::Failed { error, timed_out } => {
                            tracing::info!(step = %name, %error, timed_out, "saga step failed; compensating");
                            SagaEvent::StepFailed(SagaStepFailed { step, name, error, timed_out })
                        }
                    };
                    self.record(&mut instance, event, id).await?;
                }
                Next::Compensate { step, in_doubt } => {
                    let definition = &steps[step];
                    let name = definition.name().to_owned();
                    let id = step_id(saga_id, step, StepKind::Compensation);
                    let Some(compensation) = definition.compensation.as_deref() else {
                        // Only reachable if the definition lost a compensation
                        // since the instance began compensating: nothing to undo.
                        let done = SagaStepCompensated { step, name };
                        self.record(&mut instance, SagaEvent::StepCompensated(done), id).await?;
                        continue;
                    };
                    if !in_doubt {
                        let started = SagaCompensationStarted { step, name: name.clone(), step_id: id };
                        if !self.record(&mut instance, SagaEvent::CompensationStarted(started), id).await? {
                            continue;
                        }
                    }
                    self.fence().await?;
                    let span = Self::step_span_fields(saga_id, &name, "compensation", id);
                    let outcome = self
                        .run(compensation, &data, &instance, id, definition.step_timeout(), in_doubt)
                        .instrument(span.clone())
                        .await;
                    record_step(&span, &outcome);
                    let event = match outcome.map_err(|e| Self::step_error(saga_id, &name, e))? {
                        Outcome::Applied => SagaEvent::StepCompensated(SagaStepCompensated { step, name }),
                        Outcome::Failed { error, .. } => {
                            tracing::warn!(step = %name, %error, "saga compensation failed; the saga needs a human");
                            SagaEvent::Failed(SagaFailed {
                                error: instance.error.clone().unwrap_or_default(),
                                failed_compensation: Some(step),
                                compensation_error: Some(format!("compensation of `{name}` failed: {error}")),
                            })
                        }
                    };
                    self.record(&mut instance, event, id).await?;
                }
            }
        }
        tracing::debug!(status = ?instance.status, "saga ended");
        Self::typed(instance)
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

    /// Runs one execution of an action or compensation, checking first
    /// whether an execution in doubt already took effect.
    async fn run(
        &self,
        action: &dyn StepAction<S::Data>,
        data: &S::Data,
        instance: &SagaInstance<Value>,
        id: Uuid,
        timeout: Duration,
        in_doubt: bool,
    ) -> Result<Outcome, BoxError> {
        let app = &self.inner.app;
        if in_doubt && action.already_applied(app, data, id).await? {
            tracing::info!(step_id = %id, "a step in doubt had taken effect; not running it again");
            return Ok(Outcome::Applied);
        }
        let options = CommandOptions {
            command_id: Some(id),
            correlation_id: Some(instance.correlation_id),
            causation_id: Some(id),
            tenant: instance.tenant.clone(),
            traceparent: instance.traceparent.clone(),
            ..CommandOptions::default()
        };
        match tokio::time::timeout(timeout, action.execute(app, data, options)).await {
            Ok(Ok(())) => Ok(Outcome::Applied),
            Ok(Err(StepError::Failed(error))) => Ok(Outcome::Failed { error, timed_out: false }),
            Ok(Err(StepError::Transient(error))) => Err(error),
            Err(_) => {
                // The execution was dropped; it may have taken effect before.
                if action.already_applied(app, data, id).await? {
                    Ok(Outcome::Applied)
                } else {
                    Ok(Outcome::Failed { error: format!("timed out after {timeout:?}"), timed_out: true })
                }
            }
        }
    }

    fn step_error(id: Uuid, step: &str, source: BoxError) -> SagaError {
        tracing::warn!(step, error = %render(&*source), "saga step in doubt; it will be checked and retried");
        SagaError::Step { saga: S::NAME, id, step: step.to_owned(), source }
    }

    fn check_definition(&self, instance: &SagaInstance<Value>) -> Result<(), SagaError> {
        let defined = self.inner.steps.iter().map(Step::name);
        if instance.steps.iter().map(|s| s.name.as_str()).eq(defined) {
            return Ok(());
        }
        Err(SagaError::DefinitionChanged {
            saga: S::NAME,
            id: instance.id,
            stored: instance.steps.iter().map(|s| s.name.clone()).collect(),
            defined: self.inner.steps.iter().map(|s| s.name().to_owned()).collect(),
        })
    }

    fn typed(instance: SagaInstance<Value>) -> Result<SagaInstance<S::Data>, SagaError> {
        let id = instance.id;
        let data = serde_json::from_value(instance.data.clone()).map_err(|source| SagaError::Data {
            saga: S::NAME,
            id,
            source,
        })?;
        Ok(instance.map_data(|_| data))
    }

    /// Rebuilds the instance from its stream.
    async fn load(&self, saga_id: Uuid) -> Result<Option<SagaInstance<Value>>, SagaError> {
        let stream = Self::stream_id(saga_id)?;
        let mut records = self.inner.app.event_store().read_stream(&stream, 1);
        let mut instance: Option<SagaInstance<Value>> = None;
        while let Some(record) = records.next().await {
            let record = record?;
            let event: SagaEvent = record.decode().map_err(Error::from)?;
            if let Some(instance) = &mut instance {
                instance.apply(&event, record.stream_version);
            } else {
                let mut first = SagaInstance::from_first(saga_id, &event)
                    .ok_or(SagaError::Corrupt { saga: S::NAME, id: saga_id })?;
                first.version = record.stream_version;
                instance = Some(first);
            }
        }
        Ok(instance)
    }

    /// Appends one event if the instance's stream is still where `instance`
    /// says. On a conflict (another runner moved it), reloads `instance` and
    /// returns `false`.
    async fn record(
        &self,
        instance: &mut SagaInstance<Value>,
        event: SagaEvent,
        causation_id: Uuid,
    ) -> Result<bool, SagaError> {
        let metadata = Metadata {
            correlation_id: Some(instance.correlation_id),
            causation_id: Some(causation_id),
            tenant: instance.tenant.clone(),
            traceparent: instance.traceparent.clone(),
            ..Metadata::default()
        };
        let stream = Self::stream_id(instance.id)?;
        let expected = ExpectedVersion::Exact(instance.version);
        match self.inner.app.event_store().append(&stream, expected, vec![encode(&event, metadata)?]).await {
            Ok(records) => {
                let version = records.last().map_or(instance.version + 1, |r| r.stream_version);
                instance.apply(&event, version);
                Ok(true)
            }
            Err(error) if error.is_conflict() => {
                tracing::debug!(saga_id = %instance.id, "another runner moved the saga; reloading");
                *instance =
                    self.load(instance.id).await?.ok_or(SagaError::NotFound { saga: S::NAME, id: instance.id })?;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Records how a saga step's execution ended on its span.
fn record_step(span: &tracing::Span, outcome: &Result<Outcome, BoxError>) {
    match outcome {
        Ok(Outcome::Applied) => {
            span.record("outcome", "applied");
        }
        Ok(Outcome::Failed { error, timed_out }) => {
            span.record("outcome", if *timed_out { "timed_out" } else { "failed" });
            span.record("error", error.as_str());
        }
        Err(error) => {
            span.record("outcome", "in_doubt");
            span.record("error", tracing::field::display(render(&**error)));
            span.record("otel.status_code", "ERROR");
        }
    }
}

fn encode(event: &SagaEvent, metadata: Metadata) -> Result<NewEvent, Error> {
    NewEvent::encode(event, metadata).map_err(|source| Error::Serialize { what: "a saga event", source })
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
