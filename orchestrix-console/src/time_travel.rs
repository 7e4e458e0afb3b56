//! Time travel: the state of a registered aggregate at any version of its
//! stream, rebuilt through [`Repository::load_at`] from events whose
//! personal data is masked as the console's pages mask it (ADR 0052).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use maud::{html, Markup};
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::repository::Repository;
use orchestrix::store::{EventFilter, EventStore, EventStream, ExpectedVersion, StreamAppend};
use orchestrix::{Aggregate, StoreError, StreamId};
use serde_json::Value;

use crate::config::Shared;
use crate::render::{encode_component, mask, without_credentials, Shown};
use crate::scope::Scope;

/// An aggregate type whose states the console shows
/// ([`Console::aggregate`](crate::Console::aggregate)).
#[async_trait]
pub(crate) trait StateOf: Send + Sync + 'static {
    /// The aggregate type's name: the category of its streams.
    fn category(&self) -> &'static str;

    /// The state of the aggregate `id` right after its event at
    /// `version`, as pretty JSON; `Err` with the reason it cannot be
    /// shown.
    async fn state_at(&self, events: Arc<dyn EventStore>, id: &str, version: u64) -> Result<String, String>;
}

/// [`StateOf`] for the aggregate type `A`.
pub(crate) struct Registered<A>(PhantomData<fn() -> A>);

impl<A> Registered<A> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

#[async_trait]
impl<A: Aggregate + serde::Serialize> StateOf for Registered<A> {
    fn category(&self) -> &'static str {
        A::NAME
    }

    async fn state_at(&self, events: Arc<dyn EventStore>, id: &str, version: u64) -> Result<String, String> {
        let typed: A::Id = id.parse().map_err(|_| format!("`{id}` is not an id of {}", A::NAME))?;
        // The repository reads the stream of the id as it displays it: an
        // id that does not display as it was written (`0042` read as the
        // number 42) names another stream.
        if typed.to_string() != id {
            return Err(format!(
                "`{id}` reads as the {} id `{typed}`, whose stream is another one: the state cannot be rebuilt",
                A::NAME
            ));
        }
        let loaded = Repository::<A>::new(events, None)
            .load_at(&typed, version)
            .await
            .map_err(|error| without_credentials(&error.to_string()))?;
        serde_json::to_string_pretty(&loaded.state).map_err(|error| format!("the state does not serialize: {error}"))
    }
}

/// The console's event store as a rebuild reads it: every event's
/// encrypted values and (unless revealed) declared personal fields are
/// `null`, the erased marker personal fields decode from (ADR 0020).
/// Read-only: appends are refused.
struct Masked {
    inner: Arc<dyn EventStore>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masked").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Masked {
    fn masked(shared: &Shared, event: Arc<RecordedEvent>) -> Result<Arc<RecordedEvent>, StoreError> {
        let Ok(mut value) = serde_json::from_str::<Value>(event.data.get()) else { return Ok(event) };
        mask(&shared.console, &event.event_type, &mut value, Shown::Erased);
        let mut event = RecordedEvent::clone(&event);
        event.data = serde_json::value::to_raw_value(&value)
            .map_err(|error| StoreError::InvalidInput(format!("a masked event does not serialize: {error}")))?;
        Ok(Arc::new(event))
    }

    fn map(shared: Arc<Shared>, events: EventStream<'_>) -> EventStream<'_> {
        events
            .map(move |event| match event {
                Ok(event) => Self::masked(&shared, event),
                Err(error) => Err(error),
            })
            .boxed()
    }

    fn refused() -> StoreError {
        StoreError::InvalidInput("the console's time travel reads; it does not append".into())
    }
}

#[async_trait]
impl EventStore for Masked {
    async fn append(
        &self,
        _stream: &StreamId,
        _expected: ExpectedVersion,
        _events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        Err(Self::refused())
    }

    async fn append_many(&self, _appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        Err(Self::refused())
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        Self::map(Arc::clone(&self.shared), self.inner.read_stream(stream, from_version))
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        Self::map(Arc::clone(&self.shared), self.inner.read_all(from_position, filter))
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        Self::map(Arc::clone(&self.shared), self.inner.subscribe(from_position, filter))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.inner.head_position().await
    }
}

/// The state panel of a stream's page: nothing when the stream's type is
/// not registered, else the state at `at` (a version; empty: the head),
/// with a version selector.
pub(crate) async fn panel(scope: &Scope, stream: &StreamId, at: &str) -> Markup {
    let console = &scope.shared.console;
    let Some(kind) = console.aggregates.iter().find(|kind| kind.category() == stream.category()) else {
        return html! {};
    };
    let head = match scope.events.stream_version(stream).await {
        Ok(Some(head)) => head,
        Ok(None) => return html! {},
        Err(error) => return failed(&without_credentials(&error.to_string())),
    };
    let version = match at.trim() {
        "" => Ok(head),
        text => match text.parse::<u64>() {
            Ok(0) => Err("Versions start at 1: version 0 is the aggregate before its first event.".to_owned()),
            Ok(version) if version > head => {
                Err(format!("Version {version} is past the end of the stream: its last version is {head}."))
            }
            Ok(version) => Ok(version),
            Err(_) => Err(format!("`at` is a version of the stream, a number from 1 to {head}.")),
        },
    };
    let state = match version {
        Ok(version) => {
            let events: Arc<dyn EventStore> =
                Arc::new(Masked { inner: Arc::clone(&scope.events), shared: Arc::clone(&scope.shared) });
            kind.state_at(events, stream.id(), version).await.map(|state| (version, state))
        }
        Err(reason) => Err(reason),
    };
    let mount = &scope.mount;
    let name = stream.to_string();
    let link = |version: u64| mount.href(&format!("/stream?id={}&at={version}", encode_component(&name)));
    let shown = state.as_ref().map_or(head, |(version, _)| *version);
    html! {
        section.state-panel id="state" {
            h2 { "State of the aggregate" }
            form.search.versions method="get" action=(mount.href("/stream")) {
                input type="hidden" name="id" value=(name);
                label { "At version " input type="number" name="at" min="1" max=(head) value=(shown); }
                button type="submit" { "Show" }
                span.steps {
                    a href=(link(1)) { "first" }
                    @if shown > 1 { a href=(link(shown - 1)) { "previous" } }
                    @if shown < head { a href=(link(shown + 1)) { "next" } }
                    a href=(link(head)) { "last (" (head) ")" }
                }
            }
            @match &state {
                Ok((version, state)) => {
                    p.hint id="state-version" {
                        "After the event at version " (version) " of " (head) ". Encrypted values show as erased (null)"
                        @if !console.reveal_personal && !console.personal.is_empty() { "; so do declared personal fields" }
                        "."
                    }
                    pre.json id="state-json" { (state) }
                }
                Err(reason) => p.message id="state-error" { (reason) },
            }
        }
    }
}

fn failed(reason: &str) -> Markup {
    html! { section.state-panel id="state" { h2 { "State of the aggregate" } p.message id="state-error" { (reason) } } }
}
