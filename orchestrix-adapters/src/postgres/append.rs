//! Appends: one statement per batch (alone or in a group commit), checked
//! against the expected version in the same statement.

use std::sync::Arc;

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::store::ExpectedVersion;
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::group_commit::{GroupCommit, Outcome, Part, MAX_GROUPED_APPEND};
use super::PgStore;
use crate::common::{is_unique_violation, map_err, now_micros, recorded_events, to_i64};
#[cfg(doc)]
use orchestrix::store::EventStore;

/// The most events one append may carry: the batch index has 20 bits of
/// the global position (ADR 0008).
pub const MAX_BATCH: usize = (1 << 20) - 1;

/// How often an append whose expectation is [`ExpectedVersion::Any`]
/// retries after losing a race, before giving up with an error.
pub(super) const ANY_RETRIES: usize = 32;

impl PgStore {
    /// [`EventStore::append`]: validates the batch, then writes it alone or
    /// in a group commit.
    pub(super) async fn append_events(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        orchestrix::store::validate_append(&events)?;
        if events.len() > MAX_BATCH {
            return Err(StoreError::InvalidInput(format!(
                "a batch of {} events is too large; the limit is {MAX_BATCH}",
                events.len()
            )));
        }
        if events.is_empty() {
            let actual = self.fetch_version(stream).await?;
            return if expected.admits(actual) {
                Ok(Vec::new())
            } else {
                Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual })
            };
        }
        let part = Part::new(stream, expected, events)?;
        let Some(group) = self.inner.group.as_ref().filter(|_| part.events.len() <= MAX_GROUPED_APPEND) else {
            return self.append_alone(part).await;
        };
        if let Some(slot) = group.try_alone(&self.inner) {
            let result = self.append_alone(part).await;
            drop(slot);
            return result;
        }
        match GroupCommit::join(&self.inner, group, part).await? {
            (part, Outcome::Written(rows)) => {
                let recorded = recorded_events(&part.stream, part.recorded_at, rows, part.events, part.ids);
                self.wake_local();
                Ok(recorded)
            }
            (part, Outcome::Alone) => self.append_alone(part).await,
            (_, Outcome::Failed(error)) => Err(error),
        }
    }
}

impl Part {
    /// An append, with the ids and serialized metadata it binds.
    fn new(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Self, StoreError> {
        Ok(Self {
            stream: stream.clone(),
            expected,
            ids: events.iter().map(|event| event.id).collect(),
            metadata: metadata_texts(&events)?,
            events,
            recorded_at: now_micros(),
        })
    }
}

/// Each event's metadata as the JSON text an append binds.
pub(super) fn metadata_texts(events: &[NewEvent]) -> Result<Vec<String>, StoreError> {
    events
        .iter()
        .map(|event| serde_json::to_string(&event.metadata))
        .collect::<Result<_, _>>()
        .map_err(|error| StoreError::InvalidInput(format!("metadata cannot be serialized: {error}")))
}

impl PgStore {
    /// One append as its own statement: one round trip, retried while an
    /// [`ExpectedVersion::Any`] append loses races.
    async fn append_alone(&self, part: Part) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let Part { stream, expected, events, ids, metadata, recorded_at } = part;
        let conflict = |actual| StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual };
        let single = events.len() == 1;
        let (types, schemas, data): (Vec<&str>, Vec<i64>, Vec<&str>) = if single {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                events.iter().map(|e| e.event_type.as_str()).collect(),
                events.iter().map(|e| i64::from(e.schema_version)).collect(),
                events.iter().map(|e| e.data.get()).collect(),
            )
        };
        for _ in 0..ANY_RETRIES {
            let sql = &self.inner.sql;
            let (statement, exact) = match expected {
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                    (if single { &sql.append_new_one } else { &sql.append_new }, None)
                }
                ExpectedVersion::Exact(v) => {
                    (if single { &sql.append_exact_one } else { &sql.append_exact }, Some(to_i64(v)))
                }
                ExpectedVersion::Any => (if single { &sql.append_any_one } else { &sql.append_any }, None),
            };
            let query = sqlx::query_as::<_, (i64, i64)>(statement);
            let query = query.bind(stream.category()).bind(stream.id()).bind(recorded_at);
            let query = if single {
                let event = &events[0];
                query
                    .bind(ids[0])
                    .bind(event.event_type.as_str())
                    .bind(i64::from(event.schema_version))
                    .bind(event.data.get())
                    .bind(&metadata[0])
            } else {
                query.bind(&ids).bind(&types).bind(&schemas).bind(&data).bind(&metadata)
            };
            let query = match exact {
                Some(version) => query.bind(version),
                None => query,
            };
            let rows = match query.fetch_all(&self.inner.pool).await {
                Ok(rows) if rows.len() == events.len() => rows,
                Ok(_) => {
                    // The expectation failed in the statement's snapshot:
                    // a retry of a stored append (ADR 0027), or a conflict.
                    if let Some(mut answer) = self.retried(&[(&stream, &events)]).await? {
                        return Ok(answer.pop().unwrap_or_default());
                    }
                    let actual = self.fetch_version(&stream).await?;
                    if expected.admits(actual) {
                        continue; // the stream moved on to it meanwhile
                    }
                    return Err(conflict(actual));
                }
                Err(error) if is_unique_violation(&error) => {
                    // The event id's index (a retry), or a lost race.
                    if let Some(mut answer) = self.retried(&[(&stream, &events)]).await? {
                        return Ok(answer.pop().unwrap_or_default());
                    }
                    let actual = self.fetch_version(&stream).await?;
                    if expected == ExpectedVersion::Any || expected.admits(actual) {
                        continue;
                    }
                    return Err(conflict(actual));
                }
                Err(error) => return Err(map_err(error)),
            };
            drop((types, schemas, data));
            let recorded = recorded_events(&stream, recorded_at, rows, events, ids);
            self.wake_local();
            return Ok(recorded);
        }
        Err(StoreError::Backend(
            format!("the append to `{stream}` lost {ANY_RETRIES} races in a row; try again").into(),
        ))
    }
}

/// What an append binds: the batch as arrays.
pub(super) struct Batch<'a> {
    pub(super) ids: Vec<Uuid>,
    pub(super) types: Vec<&'a str>,
    pub(super) schemas: Vec<i64>,
    pub(super) data: Vec<&'a str>,
    pub(super) metadata: Vec<String>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(events: &'a [NewEvent]) -> Result<Self, StoreError> {
        Ok(Batch {
            ids: events.iter().map(|event| event.id).collect(),
            types: events.iter().map(|event| event.event_type.as_str()).collect(),
            schemas: events.iter().map(|event| i64::from(event.schema_version)).collect(),
            data: events.iter().map(|event| event.data.get()).collect(),
            metadata: metadata_texts(events)?,
        })
    }
}
