//! Appends that are safe to retry on EventSourcingDB (ADR 0027, ADR 0033).
//!
//! - Every event the adapter writes keeps its [`orchestrix::envelope::NewEvent::id`]
//!   in its envelope (`eventId`, next to `streamVersion`), and reads give it
//!   back as [`RecordedEvent::id`]. Events written before ADR 0033 have
//!   none: their id stays the one derived from the server's time and id
//!   ([`super::wire::event_uuid`]).
//! - Every write (`append`, `append_many`, `append_if`, whatever the
//!   expected versions) carries one precondition more,
//!   `isEventQlQueryTrue` on [`no_stored_id_query`]: no stored event of the
//!   adapter's carries one of the write's ids. The server checks it
//!   atomically with the write, so two racing copies of one append store
//!   it once.
//! - A refused append (a failed precondition, a version that does not fit,
//!   a failed condition) looks its ids up ([`EsdbStore::answer_refused`])
//!   and lets [`answer_retry`] decide: every id stored as the append's
//!   events is a retry, answered with the stored events; some ids stored
//!   elsewhere is [`StoreError::DuplicateEventId`]; no id stored keeps the
//!   append's own error.
//! - [`EsdbStore::find_event`] reads one event by id with one EventQL
//!   query (two for an id that looks derived and is not stored).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::idempotency::answer_retry;
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::condition;
use super::error::EsdbError;
use super::store::EsdbStore;
use super::wire::WireEvent;

/// Where the adapter keeps an event's id: the envelope's `eventId`.
const EVENT_ID: &str = "e.data.eventId";

/// The EventQL condition selecting the adapter's events (type prefix
/// `prefix`) that carry one of `ids`, or `None` for no ids. A UUID's text
/// is hex digits and `-`, safe in a string literal.
fn ids_filter(prefix: &str, ids: impl IntoIterator<Item = Uuid>) -> Option<String> {
    let ids: Vec<String> = ids.into_iter().map(|id| format!("{EVENT_ID} == \"{id}\"")).collect();
    if ids.is_empty() {
        return None;
    }
    Some(format!("{} AND ({})", condition::range(&format!("{prefix}.")), ids.join(" OR ")))
}

/// The precondition every write carries (ADR 0033): no stored event of the
/// adapter's carries one of `ids`. `None` for a write without events.
pub(super) fn no_stored_id_query(prefix: &str, ids: impl IntoIterator<Item = Uuid>) -> Option<String> {
    ids_filter(prefix, ids).map(|filter| format!("FROM e IN events WHERE {filter} PROJECT INTO COUNT() == 0"))
}

/// The server id (global position − 1) a derived event id
/// ([`super::wire::event_uuid`]) was made from, if `id` has that shape: a UUID v7
/// whose 12 bits after the version are zero.
fn derived_server_id(id: Uuid) -> Option<u64> {
    let bytes = id.as_bytes();
    if id.get_version_num() != 7 || bytes[6] != 0x70 || bytes[7] != 0 {
        return None;
    }
    let mut low = [0_u8; 8];
    low.copy_from_slice(&bytes[8..]);
    low[0] &= 0x3f;
    Some(u64::from_be_bytes(low))
}

impl EsdbStore {
    /// The stored events of the adapter's that carry one of `ids`, by id.
    async fn stored_with_ids(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Arc<RecordedEvent>>, StoreError> {
        let Some(filter) = ids_filter(&self.config().type_prefix, ids.iter().copied()) else {
            return Ok(HashMap::new());
        };
        self.rows_as_records(&format!("FROM e IN events WHERE {filter} PROJECT INTO e")).await
    }

    /// The adapter's stream events among the rows of `query` (which
    /// projects whole events), by id.
    async fn rows_as_records(&self, query: &str) -> Result<HashMap<Uuid, Arc<RecordedEvent>>, StoreError> {
        let mut rows = std::pin::pin!(self.run_eventql_query_raw(query));
        let mut found = HashMap::new();
        while let Some(row) = rows.try_next().await? {
            let event: WireEvent =
                serde_json::from_str(row.get()).map_err(|e| EsdbError::malformed("EventQL row of an id lookup", e))?;
            if let Some(record) = self.record_of(event)? {
                found.insert(record.id, Arc::new(record));
            }
        }
        Ok(found)
    }

    /// What a refused append of `parts` is (see the module): `Ok(Some)`
    /// with the stored events for a retry of an append that was stored,
    /// `Ok(None)` when none of its ids is stored (the caller reports its
    /// own error), [`StoreError::DuplicateEventId`] otherwise.
    pub(super) async fn answer_refused(
        &self,
        parts: &[(&StreamId, &[NewEvent])],
    ) -> Result<Option<Vec<Vec<Arc<RecordedEvent>>>>, StoreError> {
        let ids: Vec<Uuid> = parts.iter().flat_map(|(_, events)| events.iter().map(|event| event.id)).collect();
        let stored = self.stored_with_ids(&ids).await?;
        answer_retry(parts, |id| stored.get(&id).cloned())
    }

    /// [`orchestrix::store::EventStore::read_event`]: the event stored with `id`
    /// in its envelope; failing that, for an id of the derived shape, the
    /// event written before ADR 0033 whose derived id it is.
    pub(super) async fn find_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError> {
        if let Some(event) = self.stored_with_ids(&[id]).await?.remove(&id) {
            return Ok(Some(event));
        }
        let Some(server_id) = derived_server_id(id) else { return Ok(None) };
        let query = format!("FROM e IN events WHERE e.id == \"{server_id}\" PROJECT INTO e");
        Ok(self.rows_as_records(&query).await?.remove(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precondition_names_every_id_among_the_adapters_events() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(
            no_stored_id_query("p", [a, b]).unwrap(),
            format!(
                "FROM e IN events WHERE (e.type >= \"p.\" AND e.type < \"p/\") AND \
                 (e.data.eventId == \"{a}\" OR e.data.eventId == \"{b}\") PROJECT INTO COUNT() == 0"
            )
        );
        assert_eq!(no_stored_id_query("p", []), None);
    }

    #[test]
    fn derived_ids_give_back_their_server_id() {
        let time = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        for server_id in [0, 1, 41, 1 << 40] {
            assert_eq!(derived_server_id(super::super::wire::event_uuid(time, server_id)), Some(server_id));
        }
        assert_eq!(derived_server_id(Uuid::from_u128(7)), None);
        assert_eq!(derived_server_id(orchestrix::idempotency::command_event_id(Uuid::now_v7(), 0)), None);
    }
}
