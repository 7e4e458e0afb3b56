//! Atomic multi-stream appends on EventSourcingDB (ADR 0018): one
//! `write-events` request carrying every part's events and one
//! precondition per subject, which the server checks atomically with the
//! write; with a condition (ADR 0023), one `isEventQlQueryTrue`
//! precondition more (see [`super::condition`]).

use std::sync::Arc;

use orchestrix::query::AppendCondition;
use orchestrix::store::{first_conflict, ExpectedVersion, StreamAppend};
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    StoreError, StreamId,
};

use super::{condition, idempotent};

use super::error::EsdbError;
use super::store::{EsdbStore, Latest};
use super::wire::{self, Precondition, WireEvent};

impl EsdbStore {
    /// [`EsdbStore::append_many_in_one_write`], with a refusal (a version
    /// that does not fit, a failed condition) answered as a retry when the
    /// parts' ids are stored (ADR 0033, [`EsdbStore::answer_refused`]).
    pub(super) async fn append_many_answering_retries(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        match self.append_many_in_one_write(&appends, condition).await {
            Err(error) if error.is_conflict() => match self.answer_refused(&parts_of(&appends)).await? {
                Some(parts) => Ok(parts),
                None => Err(error),
            },
            other => other,
        }
    }

    /// [`orchestrix::store::EventStore::append_many`] for EventSourcingDB, on
    /// parts the caller validated (`validate_append_many`, or
    /// `validate_append_if` with a condition).
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
    /// - With a `condition` ([`orchestrix::store::EventStore::append_if`]), every
    ///   attempt first checks it ([`EsdbStore::check_condition`]) and the
    ///   write carries the count precondition; a 409 starts the attempt
    ///   over, which tells a failed condition from a failed expectation.
    /// - The write carries the precondition that none of the events' ids
    ///   is stored (ADR 0033); a 409 whose ids turn out stored is answered
    ///   as a retry at once.
    async fn append_many_in_one_write(
        &self,
        appends: &[StreamAppend],
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        let filter = condition.map(|condition| condition::filter(&self.config().type_prefix, &condition.query));
        let config = self.config();
        let mut types = Vec::with_capacity(appends.len());
        for append in appends {
            let mut part = Vec::with_capacity(append.events.len());
            for event in &append.events {
                wire::validate_event_type(&event.event_type)?;
                part.push(wire::esdb_type(&config.type_prefix, &event.event_type, event.schema_version));
            }
            types.push(part);
        }
        let ids_query = idempotent::no_stored_id_query(
            &config.type_prefix,
            appends.iter().flat_map(|append| append.events.iter().map(|event| event.id)),
        );
        let subjects: Vec<String> = appends.iter().map(|append| wire::stream_subject(&append.stream)).collect();
        let mut latest = self.latest_of(&subjects).await?;
        let mut attempt = 0;
        loop {
            let actual: Vec<Option<u64>> = latest.iter().map(|l| l.as_ref().map(|l| l.version)).collect();
            if let Some(conflict) = first_conflict(appends, &actual) {
                return Err(conflict);
            }
            let count_query = match (condition, &filter) {
                (Some(condition), Some(filter)) => {
                    Some(condition::count_query(filter, self.check_condition(condition, filter).await?))
                }
                _ => None,
            };
            let count: usize = appends.iter().map(|append| append.events.len()).sum();
            if count == 0 {
                return Ok(vec![Vec::new(); appends.len()]);
            }
            let mut candidates = Vec::with_capacity(count);
            let mut preconditions = Vec::with_capacity(appends.len() + 1);
            if let Some(query) = &count_query {
                preconditions.push(Precondition::EventQlQueryTrue { query });
            }
            if let Some(query) = &ids_query {
                preconditions.push(Precondition::EventQlQueryTrue { query });
            }
            for (((append, subject), types), (latest, actual)) in
                appends.iter().zip(&subjects).zip(&types).zip(latest.iter().zip(&actual))
            {
                if append.is_guard() && append.expected == ExpectedVersion::Any {
                    continue;
                }
                preconditions.push(match latest {
                    None => Precondition::SubjectPristine { subject },
                    Some(l) => Precondition::SubjectOnEventId { subject, event_id: &l.id },
                });
                let first = actual.unwrap_or(0) + 1;
                wire::push_candidates(&mut candidates, &config.source, subject, first, &append.events, types)?;
            }
            let body = self.write_body(candidates, preconditions);
            match self.write_events(&body).await {
                Ok(written) => return self.recorded_parts(appends, written, count),
                Err(EsdbError::Conflict) => {
                    drop(body);
                    // The ids' precondition fails for good once they are stored.
                    if let Some(parts) = self.answer_refused(&parts_of(appends)).await? {
                        return Ok(parts);
                    }
                    latest = self.latest_of(&subjects).await?;
                    attempt += 1;
                    if config.any_retry_policy().delay_after(attempt).is_none() {
                        let actual: Vec<Option<u64>> = latest.iter().map(|l| l.as_ref().map(|l| l.version)).collect();
                        if let Some(conflict) = first_conflict(appends, &actual) {
                            return Err(conflict);
                        }
                        if let (Some(condition), Some(filter)) = (condition, &filter) {
                            self.check_condition(condition, filter).await?;
                        }
                        return Err(StoreError::Backend(
                            format!("a multi-stream append lost {attempt} races in a row; try again").into(),
                        ));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The records of a multi-stream write's answer, part by part.
    fn recorded_parts(
        &self,
        appends: &[StreamAppend],
        written: Vec<WireEvent>,
        count: usize,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        if written.len() != count {
            return Err(EsdbError::malformed(
                "write-events answer",
                format!("{} events for a multi-stream append of {count}", written.len()),
            )
            .into());
        }
        let mut written = written.into_iter();
        let mut recorded = Vec::with_capacity(appends.len());
        for append in appends {
            let mut part = Vec::with_capacity(append.events.len());
            for event in written.by_ref().take(append.events.len()) {
                let record = self.record_of(event)?.filter(|r| r.stream == append.stream).ok_or_else(|| {
                    EsdbError::malformed("write-events answer", "an event that is not the one written")
                })?;
                part.push(Arc::new(record));
            }
            recorded.push(part);
        }
        Ok(recorded)
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

/// The parts of a multi-stream append, as [`EsdbStore::answer_refused`] takes them.
fn parts_of(appends: &[StreamAppend]) -> Vec<(&StreamId, &[NewEvent])> {
    appends.iter().map(|append| (&append.stream, append.events.as_slice())).collect()
}
