//! Atomic multi-stream appends on EventSourcingDB (ADR 0018): one
//! `write-events` request carrying every part's events and one
//! precondition per subject, which the server checks atomically with the
//! write.

use std::sync::Arc;

use orchestrix::store::{first_conflict, validate_append_many, ExpectedVersion, StreamAppend};
use orchestrix::{RecordedEvent, StoreError};

use super::http::EsdbError;
use super::store::{EsdbStore, Latest};
use super::wire::{self, EnvelopeOut, EventCandidate, Precondition};

impl EsdbStore {
    /// [`orchestrix::EventStore::append_many`] for EventSourcingDB.
    ///
    /// - Every part's subject gets a precondition: `isSubjectPristine` for
    ///   a stream that has no event, else `isSubjectOnEventId` with the id
    ///   of its last event, read just before. The stream versions written
    ///   in the envelopes follow from those reads, so `Any` parts are
    ///   preconditioned too, and retried (up to `any_retries`) when only
    ///   they lost a race. Guards (parts without events) are preconditions
    ///   without events; an `Any` guard is skipped.
    /// - The server writes the candidates in request order, so the call's
    ///   events are consecutive in the log, part by part.
    /// - A call whose parts are all guards writes nothing, and the server
    ///   refuses empty writes: its guards are then checked by reading the
    ///   subjects, one after the other, not atomically with each other.
    pub(super) async fn append_many_in_one_write(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        validate_append_many(&appends)?;
        let config = self.config();
        let mut types = Vec::with_capacity(appends.len());
        for append in &appends {
            let mut part = Vec::with_capacity(append.events.len());
            for event in &append.events {
                wire::validate_event_type(&event.event_type)?;
                part.push(wire::esdb_type(&config.type_prefix, &event.event_type, event.schema_version));
            }
            types.push(part);
        }
        let subjects: Vec<String> = appends.iter().map(|append| wire::stream_subject(&append.stream)).collect();
        let mut latest = self.latest_of(&subjects).await?;
        let mut attempt = 0;
        loop {
            let actual: Vec<Option<u64>> = latest.iter().map(|l| l.as_ref().map(|l| l.version)).collect();
            if let Some(conflict) = first_conflict(&appends, &actual) {
                return Err(conflict);
            }
            let count: usize = appends.iter().map(|append| append.events.len()).sum();
            if count == 0 {
                return Ok(vec![Vec::new(); appends.len()]);
            }
            let mut candidates = Vec::with_capacity(count);
            let mut preconditions = Vec::with_capacity(appends.len());
            for (((append, subject), types), (latest, actual)) in
                appends.iter().zip(&subjects).zip(&types).zip(latest.iter().zip(&actual))
            {
                if append.is_guard() && append.expected == ExpectedVersion::Any {
                    continue;
                }
                preconditions.push(match latest {
                    None => Precondition::IsSubjectPristine { subject },
                    Some(l) => Precondition::IsSubjectOnEventId { subject, event_id: &l.id },
                });
                let first = actual.unwrap_or(0) + 1;
                for (offset, (event, event_type)) in append.events.iter().zip(types).enumerate() {
                    let (traceparent, tracestate, metadata) = wire::split_metadata(&event.metadata);
                    let envelope = EnvelopeOut { stream_version: first + offset as u64, data: &event.data, metadata };
                    let data = serde_json::value::to_raw_value(&envelope)
                        .map_err(|e| StoreError::InvalidInput(format!("cannot serialize the event envelope: {e}")))?;
                    candidates.push(EventCandidate {
                        source: &config.source,
                        subject,
                        event_type: event_type.clone(),
                        data,
                        traceparent,
                        tracestate,
                    });
                }
            }
            let body = self.write_body(candidates, preconditions);
            match self.write_events(&body).await {
                Ok(written) => {
                    if written.len() != count {
                        return Err(EsdbError::malformed(
                            "write-events answer",
                            format!("{} events for a multi-stream append of {count}", written.len()),
                        )
                        .into());
                    }
                    let mut written = written.into_iter();
                    let mut recorded = Vec::with_capacity(appends.len());
                    for append in &appends {
                        let mut part = Vec::with_capacity(append.events.len());
                        for event in written.by_ref().take(append.events.len()) {
                            let record =
                                self.record_of(event)?.filter(|r| r.stream == append.stream).ok_or_else(|| {
                                    EsdbError::malformed("write-events answer", "an event that is not the one written")
                                })?;
                            part.push(Arc::new(record));
                        }
                        recorded.push(part);
                    }
                    return Ok(recorded);
                }
                Err(EsdbError::Conflict) => {
                    drop(body);
                    latest = self.latest_of(&subjects).await?;
                    attempt += 1;
                    if attempt > config.any_retries {
                        let actual: Vec<Option<u64>> = latest.iter().map(|l| l.as_ref().map(|l| l.version)).collect();
                        return Err(first_conflict(&appends, &actual).unwrap_or_else(|| {
                            StoreError::Backend(
                                format!("a multi-stream append lost {attempt} races in a row; try again").into(),
                            )
                        }));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The last event of each subject, in order.
    async fn latest_of(&self, subjects: &[String]) -> Result<Vec<Option<Latest>>, StoreError> {
        let mut latest = Vec::with_capacity(subjects.len());
        for subject in subjects {
            latest.push(self.latest(subject).await?);
        }
        Ok(latest)
    }
}
