//! Single-stream appends on EventSourcingDB (ADR 0012, ADR 0033): read the
//! subject's last event, check the expected version, write with
//! `isSubjectPristine` or `isSubjectOnEventId` and the precondition that
//! none of the events' ids is stored yet.

use std::sync::Arc;

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::store::ExpectedVersion;
use orchestrix::{StoreError, StreamId};

use super::error::EsdbError;
use super::idempotent;
use super::store::EsdbStore;
use super::wire::{self, Precondition};

impl EsdbStore {
    /// An append of events the caller validated
    /// (`orchestrix::store::validate_append`). A 409 whose ids turn out
    /// stored is answered as a retry ([`EsdbStore::answer_refused`]); any
    /// other 409 re-reads the subject: `Any` tries again (up to its retry
    /// policy), an exact expectation is
    /// [`StoreError::WrongExpectedVersion`].
    pub(super) async fn append_checked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let config = self.config();
        let ids_query = idempotent::no_stored_id_query(&config.type_prefix, events.iter().map(|event| event.id));
        let mut types = Vec::with_capacity(events.len());
        for event in events {
            wire::validate_event_type(&event.event_type)?;
            types.push(wire::esdb_type(&config.type_prefix, &event.event_type, event.schema_version));
        }
        let subject = wire::stream_subject(stream);
        let mut latest = self.latest(&subject).await?;
        let mut attempt = 0;
        loop {
            let actual = latest.as_ref().map(|l| l.version);
            if !expected.admits(actual) {
                return Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual });
            }
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let first = actual.unwrap_or(0) + 1;
            let mut candidates = Vec::with_capacity(events.len());
            wire::push_candidates(&mut candidates, &config.source, &subject, first, events, &types)?;
            let mut preconditions = vec![match &latest {
                None => Precondition::SubjectPristine { subject: &subject },
                Some(l) => Precondition::SubjectOnEventId { subject: &subject, event_id: &l.id },
            }];
            if let Some(query) = &ids_query {
                preconditions.push(Precondition::EventQlQueryTrue { query });
            }
            let body = self.write_body(candidates, preconditions);
            match self.write(&body).await {
                Ok(written) => {
                    if written.len() != events.len() {
                        return Err(EsdbError::malformed(
                            "write-events answer",
                            format!("{} events for a batch of {}", written.len(), events.len()),
                        )
                        .into());
                    }
                    let mut recorded = Vec::with_capacity(written.len());
                    for event in written {
                        let record = self.record_of(event)?.ok_or_else(|| {
                            EsdbError::malformed("write-events answer", "an event that is not the one written")
                        })?;
                        recorded.push(Arc::new(record));
                    }
                    return Ok(recorded);
                }
                Err(EsdbError::Conflict) => {
                    drop(body);
                    // The ids' precondition fails for good once they are stored.
                    if let Some(mut parts) = self.answer_refused(&[(stream, events)]).await? {
                        return Ok(parts.pop().unwrap_or_default());
                    }
                    latest = self.latest(&subject).await?;
                    attempt += 1;
                    if expected != ExpectedVersion::Any || config.any_retry_policy().delay_after(attempt).is_none() {
                        let actual = latest.as_ref().map(|l| l.version);
                        return Err(StoreError::WrongExpectedVersion { stream: stream.clone(), expected, actual });
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}
