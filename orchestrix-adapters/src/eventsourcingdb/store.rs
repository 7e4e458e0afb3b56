//! [`EsdbStore`]: the event store and snapshot store on EventSourcingDB.

use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;
use futures_util::{stream, StreamExt, TryStreamExt};
use orchestrix::query::{AppendCondition, Query};
use orchestrix::store::{
    validate_append_if, validate_append_many, EventFilter, EventStream, ExpectedVersion, StreamAppend,
};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    event::{EventSchema, EventSchemas},
    store::EventStore,
    StoreError, StreamId,
};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::api::{ApiVersion, Item, Op};
use super::config::EsdbConfig;
use super::error::EsdbError;
use super::http::{Http, Lines};
use super::wire::{
    self, Bound, EnvelopeIn, EventCandidate, Precondition, ReadEvents, ReadOptions, WireEvent, WriteEvents,
};

/// An [`EventStore`] and [`SnapshotStore`](orchestrix::store::SnapshotStore) on EventSourcingDB's HTTP API.
///
/// - A stream is the subject `/<aggregate type>/<id>` (both parts
///   percent-encoded); its snapshots live below it, at
///   `/<aggregate type>/<id>/snapshots`.
/// - An event's type is `<prefix>.<type>.v<schema version>`; its data is an
///   envelope `{"streamVersion", "data", "metadata"}`; `traceparent` and
///   `tracestate` travel as CloudEvent fields. The server assigns its ids
///   and the times: the global position is the server's id + 1. The event
///   id is the caller's ([`NewEvent::id`]), kept in the envelope as
///   `eventId` (ADR 0033); an event written before the adapter kept ids
///   reads with a UUID v7 made from the server's time and id, the same on
///   every read, and [`EventStore::read_event`] finds it by that id too.
/// - Appends are atomic server-side through the preconditions
///   `isSubjectPristine` and `isSubjectOnEventId`; a 409 becomes
///   [`StoreError::WrongExpectedVersion`]. A multi-stream append is one
///   write with one precondition per subject (ADR 0018).
/// - Consistency by query (ADR 0023): tags live in the envelope's
///   metadata; `read_by_query` and the condition of `append_if` are
///   EventQL queries, the condition an `isEventQlQueryTrue` precondition of
///   the write.
/// - Subscriptions observe the log, skip heartbeats and reconnect from the
///   last id seen with back-off, so no event is delivered twice.
///
/// - Refusals are typed (ADR 0028): only a failed precondition is a
///   conflict; a full store is [`EsdbError::StoreFull`] (inside
///   [`StoreError::Backend`], never retried); a request the server refuses
///   as malformed is [`StoreError::InvalidInput`] with its explanation.
/// - Reads are bounded: a line longer than
///   [`EsdbConfig::with_max_line_bytes`], or not complete within the
///   request (or heartbeat) timeout, ends the read with a typed error.
///
/// **Retried appends are answered as the original** (ADR 0027, ADR
/// 0033). Every write (`append`, `append_many`, `append_if`, also with
/// `ExpectedVersion::Any`) carries one precondition more, an
/// `isEventQlQueryTrue` query that no stored event of the adapter's carries
/// one of the write's ids; the server checks it atomically with the write.
/// A refused append (that precondition, a version that does not fit, a
/// failed condition) looks its ids up with one EventQL query: all stored as
/// its events is a retry, answered with the stored events and nothing
/// written; some stored elsewhere is [`StoreError::DuplicateEventId`];
/// none stored keeps the append's own error. So an append whose
/// acknowledgement was lost ([`StoreError::Unavailable`]) is retried, with
/// any expectation, and stored once; and the command bus's command ids
/// (`CommandOptions::command_id`) apply a command once. The cost: the
/// server evaluates one more EventQL query with every write (a query over
/// the events, as the condition of `append_if` is), and a refusal costs
/// one query more. [`EventStore::read_event`] is one EventQL query on the
/// stored id.
///
/// Cloning is cheap; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct EsdbStore {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) http: Http,
    pub(super) config: EsdbConfig,
    pub(super) snapshot_type: String,
    pub(super) snapshots_deleted_type: String,
}

/// The last event of a subject: its id and its stream version.
pub(super) struct Latest {
    pub(super) id: String,
    pub(super) version: u64,
}

impl EsdbStore {
    /// Connects: finds out the API version as the official client does
    /// (`GET /api/v2/system/ping`: v2 if it answers as v2, v1 if it
    /// answers 404 or 405), then pings and verifies the API token through
    /// that version.
    pub async fn connect(config: EsdbConfig) -> Result<Self, StoreError> {
        wire::validate_type_prefix(&config.type_prefix)?;
        let http = Http::new(&config, ApiVersion::V1)?;
        let version = http.probe().await?;
        let store = Self::with_http(config, http.with_version(version))?;
        let ping = store.inner.http.call(Op::Ping, None::<&()>).await?;
        version.check_ping(&ping)?;
        store.verify_api_token().await?;
        tracing::debug!(api = store.inner.http.api_url(), "connected to EventSourcingDB");
        Ok(store)
    }

    /// A store that speaks `version` without contacting the server first.
    pub fn unchecked(config: EsdbConfig, version: ApiVersion) -> Result<Self, StoreError> {
        let http = Http::new(&config, version)?;
        Self::with_http(config, http)
    }

    /// The store; refuses a type prefix that cannot start an
    /// EventSourcingDB type (it goes into every type and every EventQL
    /// query the adapter builds).
    fn with_http(config: EsdbConfig, http: Http) -> Result<Self, StoreError> {
        wire::validate_type_prefix(&config.type_prefix)?;
        let snapshot_type = wire::esdb_type(&config.type_prefix, "snapshot-taken", 1);
        let snapshots_deleted_type = wire::esdb_type(&config.type_prefix, "snapshots-deleted", 1);
        Ok(Self { inner: Arc::new(Inner { http, config, snapshot_type, snapshots_deleted_type }) })
    }

    /// The API base this store speaks, for example `http://host:3000/api/v1`.
    pub fn api_url(&self) -> &str {
        self.inner.http.api_url()
    }

    /// The API version this store speaks.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.http.version()
    }

    /// Asks the server whether the token is valid.
    pub async fn verify_api_token(&self) -> Result<(), StoreError> {
        let version = self.api_version();
        let answer = self.inner.http.call(Op::VerifyToken, version.verify_token_body().as_ref()).await?;
        if version.token_verified(&answer)? {
            Ok(())
        } else {
            Err(EsdbError::Unauthorized.into())
        }
    }

    /// Runs an EventQL query and streams its rows as JSON, unchanged.
    pub fn run_eventql_query(
        &self,
        query: &str,
    ) -> impl Stream<Item = Result<serde_json::Value, StoreError>> + Send + 'static {
        let body = serde_json::json!({ "query": query });
        finite(Arc::clone(&self.inner), Op::RunEventQlQuery, body).map(|item| match item? {
            Item::Row(value) => {
                serde_json::from_str(value.get()).map_err(|e| EsdbError::malformed("EventQL row", e).into())
            }
            _ => Err(EsdbError::malformed("EventQL answer", "an item that is not a row").into()),
        })
    }

    /// Runs an EventQL query and streams its rows as the server sent them.
    pub(super) fn run_eventql_query_raw(
        &self,
        query: &str,
    ) -> impl Stream<Item = Result<Box<RawValue>, StoreError>> + Send + 'static {
        let body = serde_json::json!({ "query": query });
        finite(Arc::clone(&self.inner), Op::RunEventQlQuery, body).map(|item| match item? {
            Item::Row(value) => Ok(value),
            _ => Err(EsdbError::malformed("EventQL answer", "an item that is not a row").into()),
        })
    }

    /// Registers a JSON schema for the EventSourcingDB type of
    /// `event_type` at `schema_version`; the server then refuses events of
    /// that type whose data does not match ([`EsdbError::SchemaViolated`]).
    /// The schema describes the whole stored data, that is the envelope
    /// (see ADR 0012); [`EsdbStore::register_event_schemas`] builds it from
    /// the Rust types.
    ///
    /// Idempotent: if the server already holds the same schema for the
    /// type, this succeeds; if it holds a different one, the error is
    /// [`EsdbError::SchemaConflict`] (schemas cannot be replaced: raise the
    /// event's version instead). Events already stored that violate the
    /// schema make the server refuse it ([`EsdbError::SchemaViolated`]).
    pub async fn register_event_schema(
        &self,
        event_type: &str,
        schema_version: u32,
        schema: &serde_json::Value,
    ) -> Result<(), StoreError> {
        wire::validate_event_type(event_type)?;
        let esdb_type = wire::esdb_type(&self.inner.config.type_prefix, event_type, schema_version);
        let version = self.api_version();
        let body = version.event_type_body(&esdb_type, Some(schema));
        let registered = match version {
            // v1 answers with the management event, v2 streams it.
            ApiVersion::V1 => self.inner.http.call(Op::RegisterEventSchema, Some(&body)).await.map(drop),
            ApiVersion::V2 => {
                finite(Arc::clone(&self.inner), Op::RegisterEventSchema, body)
                    .try_for_each(|_| std::future::ready(Ok(())))
                    .await
            }
        };
        match registered {
            Ok(()) => Ok(()),
            Err(error) if error.is_schema_already_registered() => {
                let registered = self.read_event_type_schema(&esdb_type).await?;
                if registered.as_ref() == Some(schema) {
                    return Ok(());
                }
                let mut registered = registered.map_or_else(|| "none".to_owned(), |s| s.to_string());
                if registered.len() > 300 {
                    let mut end = 300;
                    while !registered.is_char_boundary(end) {
                        end -= 1;
                    }
                    registered.truncate(end);
                    registered.push('…');
                }
                Err(EsdbError::SchemaConflict { event_type: esdb_type, registered }.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Registers the schema of every stored type of `E` (its current
    /// versions), derived from the Rust types by `#[event(schema)]`
    /// (feature `schemars` of `orchestrix`), each wrapped in the adapter's
    /// envelope. Idempotent, as [`EsdbStore::register_event_schema`]: call
    /// it at every start.
    ///
    /// ```no_run
    /// use orchestrix::prelude::*;
    /// use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};
    ///
    /// #[event(schema)]
    /// #[derive(Debug, Clone)]
    /// pub enum AccountEvent {
    ///     Opened { owner: String },
    ///     Deposited { amount: u64 },
    /// }
    ///
    /// # async fn run() -> Result<(), orchestrix::StoreError> {
    /// let store = EsdbStore::connect(EsdbConfig::from_env()?).await?;
    /// store.register_event_schemas::<AccountEvent>().await?;
    /// # Ok(())
    /// # }
    /// # fn main() { let _ = run; }
    /// ```
    pub async fn register_event_schemas<E: EventSchemas>(&self) -> Result<(), StoreError> {
        self.register_schemas(&E::event_schemas()).await
    }

    /// Registers each schema (of an event's data, as in [`EventSchema`])
    /// wrapped in the adapter's envelope; see
    /// [`EsdbStore::register_event_schemas`].
    pub async fn register_schemas(&self, schemas: &[EventSchema]) -> Result<(), StoreError> {
        for schema in schemas {
            let esdb_type = wire::esdb_type(&self.inner.config.type_prefix, schema.name, schema.version);
            let envelope = wire::envelope_schema(&esdb_type, &schema.schema);
            self.register_event_schema(schema.name, schema.version, &envelope).await?;
        }
        Ok(())
    }

    /// The schema the server holds for an EventSourcingDB event type, if any.
    async fn read_event_type_schema(&self, esdb_type: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let version = self.api_version();
        let body = version.event_type_body(esdb_type, None);
        let answer = self.inner.http.call(Op::ReadEventType, Some(&body)).await?;
        let answer = version.single_answer(&answer, "eventType")?;
        let answer: serde_json::Value =
            serde_json::from_str(answer.get()).map_err(|e| EsdbError::malformed("read-event-type answer", e))?;
        Ok(answer.get("schema").filter(|s| !s.is_null()).cloned())
    }

    pub(super) async fn latest(&self, subject: &str) -> Result<Option<Latest>, StoreError> {
        let body = ReadEvents {
            subject: subject.to_owned(),
            options: ReadOptions { recursive: false, order: Some("antichronological"), ..ReadOptions::default() },
        };
        let mut events = Box::pin(read_raw(Arc::clone(&self.inner), body));
        let Some(event) = events.next().await else { return Ok(None) };
        let event = event?;
        let envelope: EnvelopeIn = serde_json::from_str(event.data.get())
            .map_err(|e| EsdbError::malformed("event envelope", format!("event {}: {e}", event.id)))?;
        Ok(Some(Latest { id: event.id, version: envelope.stream_version }))
    }

    /// The configuration.
    pub(super) fn config(&self) -> &EsdbConfig {
        &self.inner.config
    }

    /// Writes events, for the multi-stream append.
    pub(super) async fn write_events(&self, body: &WriteEvents<'_>) -> Result<Vec<WireEvent>, EsdbError> {
        self.write(body).await
    }

    /// The record of a written event (`None`: not one of this adapter's
    /// stream events).
    pub(super) fn record_of(&self, event: WireEvent) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.record(event)
    }

    /// The body of a write, as this store's API version wants it.
    pub(super) fn write_body<'a>(
        &self,
        events: Vec<EventCandidate<'a>>,
        preconditions: Vec<Precondition<'a>>,
    ) -> WriteEvents<'a> {
        WriteEvents::new(self.api_version(), events, preconditions)
    }

    pub(super) async fn write(&self, body: &WriteEvents<'_>) -> Result<Vec<WireEvent>, EsdbError> {
        match self.api_version() {
            // v1 answers with a JSON array of the events written.
            ApiVersion::V1 => {
                let answer = self.inner.http.call(Op::WriteEvents, Some(body)).await?;
                serde_json::from_slice(&answer).map_err(|e| EsdbError::malformed("write-events answer", e))
            }
            // v2 streams them, then `end`; a failed precondition is an error item.
            ApiVersion::V2 => {
                let items = finite(Arc::clone(&self.inner), Op::WriteEvents, body);
                items
                    .and_then(|item| {
                        std::future::ready(match item {
                            Item::Event(event) => serde_json::from_str::<WireEvent>(event.get())
                                .map_err(|e| EsdbError::malformed("write-events answer", e)),
                            _ => Err(EsdbError::malformed("write-events answer", "an item that is not an event")),
                        })
                    })
                    .try_collect()
                    .await
            }
        }
    }
}

/// The data items (events, rows) of a finite streaming answer: heartbeats
/// skipped; an `error` item ends it with its typed error; v2's `end` item
/// ends it, and a v2 body that ends without one broke off (the error is
/// transient).
fn finite<'a, B: serde::Serialize + Send + Sync + 'a>(
    inner: Arc<Inner>,
    op: Op,
    body: B,
) -> impl Stream<Item = Result<Item, EsdbError>> + Send + 'a {
    enum State<B> {
        Start(Arc<Inner>, B),
        Reading(Lines, ApiVersion, String),
        Done,
    }
    stream::unfold(State::Start(inner, body), move |state| async move {
        let (mut lines, version, url) = match state {
            State::Done => return None,
            State::Reading(lines, version, url) => (lines, version, url),
            State::Start(inner, body) => {
                let version = inner.http.version();
                let url = format!("{}{}", inner.config.base_url(), version.route(op).1);
                match inner.http.stream(op, &body, inner.config.request_timeout).await {
                    Ok(lines) => (lines, version, url),
                    Err(error) => return Some((Err(error), State::Done)),
                }
            }
        };
        loop {
            let line = match lines.next().await {
                Some(Ok(line)) => line,
                Some(Err(error)) => return Some((Err(error), State::Done)),
                None if version.has_end_item() => {
                    let reason = "the answer ended before its `end` item".to_owned();
                    return Some((Err(EsdbError::Connection { url, reason }), State::Done));
                }
                None => return None,
            };
            match version.parse_item(&line) {
                Ok(Item::Heartbeat) => {}
                Ok(Item::End) => return None,
                Ok(Item::Error(error)) | Err(error) => return Some((Err(error), State::Done)),
                Ok(item) => return Some((Ok(item), State::Reading(lines, version, url))),
            }
        }
    })
}

/// Streams the events of a `read-events` answer.
pub(super) fn read_raw(
    inner: Arc<Inner>,
    body: ReadEvents,
) -> impl Stream<Item = Result<WireEvent, StoreError>> + Send + 'static {
    finite(inner, Op::ReadEvents, body).map(|item| match item? {
        Item::Event(event) => {
            serde_json::from_str::<WireEvent>(event.get()).map_err(|e| EsdbError::malformed("event", e).into())
        }
        _ => Err(EsdbError::malformed("read-events answer", "an item that is not an event").into()),
    })
}

impl Inner {
    /// The record of a server event, or `None` for an event that is not
    /// one of this adapter's stream events (a snapshot, another writer's).
    pub(super) fn record(&self, event: WireEvent) -> Result<Option<RecordedEvent>, StoreError> {
        let Some(stream) = wire::parse_stream_subject(&event.subject) else { return Ok(None) };
        let Some((name, schema_version)) = wire::parse_esdb_type(&self.config.type_prefix, &event.event_type) else {
            return Ok(None);
        };
        let position: u64 =
            event.id.parse().map_err(|_| EsdbError::malformed("event id", format!("{:?}", event.id)))?;
        let envelope: EnvelopeIn = serde_json::from_str(event.data.get()).map_err(|e| StoreError::Corrupt {
            stream: stream.clone(),
            version: 0,
            reason: format!("event {} has no Orchestrix envelope: {e}", event.id),
        })?;
        let mut metadata = envelope.metadata;
        if event.traceparent.is_some() {
            metadata.traceparent = event.traceparent;
            metadata.tracestate = event.tracestate;
        }
        let id = envelope.event_id.unwrap_or_else(|| wire::event_uuid(event.time, position));
        let stored = NewEvent::from_parts(id, name.to_owned(), schema_version, envelope.data, metadata);
        Ok(Some(RecordedEvent::new(stored, stream, envelope.stream_version, position + 1, event.time)))
    }
}

fn read_body(subject: String, recursive: bool, from_position: u64, order: Option<&'static str>) -> ReadEvents {
    let lower_bound = (from_position > 1).then(|| Bound::inclusive(from_position - 1));
    ReadEvents { subject, options: ReadOptions { recursive, order, lower_bound, from_latest_event: None } }
}

#[async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        orchestrix::store::validate_append(&events)?;
        match self.append_checked(stream, expected, &events).await {
            // A refusal may be a retry of an append that was stored (ADR 0033).
            Err(error) if error.is_conflict() => match self.answer_refused(&[(stream, &events)]).await? {
                Some(mut parts) => Ok(parts.pop().unwrap_or_default()),
                None => Err(error),
            },
            other => other,
        }
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_many(&appends)?;
        self.append_many_answering_retries(appends, None).await
    }

    /// One write with the parts' preconditions and an `isEventQlQueryTrue`
    /// precondition for the condition (see ADR 0023 and the adapter's
    /// `condition` module).
    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_if(&condition, &appends)?;
        let condition = (!condition.query.is_empty()).then_some(&condition);
        self.append_many_answering_retries(appends, condition).await
    }

    /// The event stored with `id`: one EventQL query on the id kept in the
    /// envelope (ADR 0033).
    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        self.find_event(id).await
    }

    /// The events the query selects, through EventQL.
    fn read_by_query<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a> {
        self.read_by_eventql(query, from_position)
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a> {
        let inner = Arc::clone(&self.inner);
        let body = read_body(wire::stream_subject(stream), false, 0, None);
        let mut count = 0_u64;
        read_raw(Arc::clone(&inner), body)
            .filter_map(move |event| {
                let result = event.and_then(|event| {
                    count += 1;
                    let id = event.id.clone();
                    match inner.record(event)? {
                        Some(record) if record.stream_version == count => Ok(Some(record)),
                        Some(record) => Err(StoreError::Corrupt {
                            stream: record.stream.clone(),
                            version: count,
                            reason: format!(
                                "event {id} says it is version {}, but it is event {count} of its subject",
                                record.stream_version
                            ),
                        }),
                        None => Err(StoreError::Corrupt {
                            stream: stream.clone(),
                            version: count,
                            reason: format!("event {id} on the stream's subject was not written by Orchestrix"),
                        }),
                    }
                });
                let item = match result {
                    Ok(Some(record)) if record.stream_version >= from_version => Some(Ok(Arc::new(record))),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                };
                std::future::ready(item)
            })
            .boxed()
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let inner = Arc::clone(&self.inner);
        let body = read_body("/".to_owned(), true, from_position, None);
        read_raw(Arc::clone(&inner), body)
            .filter_map(move |event| {
                let item = match event.and_then(|event| inner.record(event)) {
                    Ok(Some(record)) if filter.matches_event(&record) => Some(Ok(Arc::new(record))),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                };
                std::future::ready(item)
            })
            .boxed()
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        super::subscribe::subscribe(Arc::clone(&self.inner), from_position.saturating_sub(1), filter).boxed()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        Ok(self.latest(&wire::stream_subject(stream)).await?.map(|l| l.version))
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        let body = read_body("/".to_owned(), true, 0, Some("antichronological"));
        let mut events = Box::pin(read_raw(Arc::clone(&self.inner), body));
        while let Some(event) = events.next().await {
            if let Some(record) = self.inner.record(event?)? {
                return Ok(Some(record.global_position));
            }
        }
        Ok(None)
    }
}
