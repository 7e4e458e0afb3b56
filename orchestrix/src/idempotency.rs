//! Appends that are safe to retry, and commands applied once (ADR 0027).
//!
//! - **Event ids are unique across a store.** Every [`NewEvent`] carries
//!   its id ([`NewEvent::id`]).
//! - **A retried append is answered as the original.** An append (or a
//!   multi-stream or conditional append) whose events' ids are *all*
//!   stored already, each part's as consecutive events of its stream in
//!   the part's order, writes nothing and returns the stored events,
//!   whatever its expected versions or condition say now. So an append
//!   that failed with [`StoreError::Unavailable`] (outcome unknown) is
//!   retried with the same `NewEvent`s, and stored once.
//! - **Anything in between is refused.** An append of which only some ids
//!   are stored, or whose stored ids sit in another stream or another
//!   order, is [`StoreError::DuplicateEventId`] and writes nothing. An
//!   append whose ids are not stored at all is checked as usual. Two
//!   events of one call with the same id are [`StoreError::InvalidInput`]
//!   ([`validate_event_ids`](crate::store::validate_event_ids)).
//! - **Commands with a command id are applied once.** The command bus
//!   gives the events of a command the ids [`command_event_id`] derives
//!   from its command id, so a second execution of the same command id is
//!   recognised (before its handler runs, through
//!   [`crate::store::EventStore::read_event`], or by the store when both race) and
//!   answered with the first one's outcome.
//!
//! Adapters call [`validate_event_ids`](crate::store::validate_event_ids) before they write and
//! [`answer_retry`] when an append fails (a version conflict, a failed
//! condition, a unique violation on the event id): the check costs nothing
//! on the path of an append that succeeds.

use std::sync::Arc;

use uuid::Uuid;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::store::EventStore;
use crate::stream::StreamId;

/// Decides what a failed append is, given the stored events with its ids
/// (`stored(id)`: the event stored with that id, if any). `parts` are the
/// call's streams and events, in the call's order.
///
/// - `Ok(None)`: none of the ids is stored; report the append's own error.
/// - `Ok(Some(events))`: every id is stored, each part's as consecutive
///   events of its stream in its order: the append is a retry of one that
///   was stored; answer with `events` (per part) and write nothing.
/// - `Err(StoreError::DuplicateEventId)`: anything else.
pub fn answer_retry(
    parts: &[(&StreamId, &[NewEvent])],
    mut stored: impl FnMut(Uuid) -> Option<Arc<RecordedEvent>>,
) -> Result<Option<Vec<Vec<Arc<RecordedEvent>>>>, StoreError> {
    let mut answer = Vec::with_capacity(parts.len());
    let mut found_any = false;
    let mut misfit: Option<Arc<RecordedEvent>> = None;
    let mut missing = false;
    for (stream, events) in parts {
        let mut part: Vec<Arc<RecordedEvent>> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let Some(record) = stored(event.id) else {
                missing = true;
                continue;
            };
            found_any = true;
            // It fits a retry if every event before it in its part did, and
            // it follows the one before in the same stream.
            let fits = record.stream == **stream
                && part.len() == index
                && part.last().is_none_or(|last| record.stream_version == last.stream_version + 1);
            if fits {
                part.push(record);
            } else if misfit.is_none() {
                misfit = Some(record);
            }
        }
        answer.push(part);
    }
    if !found_any {
        return Ok(None);
    }
    let first_stored = || {
        parts
            .iter()
            .flat_map(|(_, events)| events.iter())
            .find_map(|event| stored(event.id))
            .expect("an id was found above")
    };
    match misfit {
        None if !missing => Ok(Some(answer)),
        misfit => {
            let record = misfit.unwrap_or_else(first_stored);
            Err(StoreError::DuplicateEventId {
                id: record.id,
                stream: record.stream.clone(),
                version: record.stream_version,
            })
        }
    }
}

/// The events a command with id `command_id` recorded, in order: the
/// stored events with the ids [`command_event_id`] derives, from index 0
/// up to the first that is not stored. Empty if the command recorded
/// nothing (or never ran). One [`EventStore::read_event`] per event.
pub async fn command_events(store: &dyn EventStore, command_id: Uuid) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    let mut events = Vec::new();
    for index in 0.. {
        match store.read_event(command_event_id(command_id, index)).await? {
            Some(event) => events.push(event),
            None => break,
        }
    }
    Ok(events)
}

/// The id of the `index`-th event (from 0) recorded by the command whose
/// id is `command_id`: what makes a second execution of the same command
/// id recognisable to the store (ADR 0027).
///
/// A UUID version 8 whose first 48 bits are the command id's (for a UUID
/// v7 command id, its millisecond timestamp, so that ids of commands close
/// in time stay close in the stores' id indexes) and whose other bits are
/// a 128-bit FNV-1a hash of the command id and the index, fixed here and
/// never dependent on the toolchain.
///
/// ```
/// use orchestrix::idempotency::command_event_id;
/// use orchestrix::Uuid;
///
/// let command = Uuid::now_v7();
/// assert_eq!(command_event_id(command, 0), command_event_id(command, 0));
/// assert_ne!(command_event_id(command, 0), command_event_id(command, 1));
/// assert_ne!(command_event_id(command, 0), command);
/// assert_eq!(command_event_id(command, 0).get_version_num(), 8);
/// assert_eq!(command_event_id(command, 0).as_bytes()[..6], command.as_bytes()[..6]);
/// ```
pub fn command_event_id(command_id: Uuid, index: u32) -> Uuid {
    let index = index.to_be_bytes();
    let input = b"orchestrix.command.event".iter().chain(command_id.as_bytes()).chain(&index);
    let mut bytes = fnv1a_128(input).to_be_bytes();
    bytes[..6].copy_from_slice(&command_id.as_bytes()[..6]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// A command id from an idempotency key a client chose (an HTTP
/// `Idempotency-Key`, a message id), within `scope` (the operation and
/// its target, say `deposit:<account id>`, so that one key sent to two
/// operations names two commands): a UUID version 8 hashed (128-bit
/// FNV-1a, fixed here) from both. The same key in the same scope gives the
/// same command id, so its command is applied once.
///
/// ```
/// use orchestrix::idempotency::command_id_from_key;
///
/// let id = command_id_from_key("deposit:42", "3f6c9b1e");
/// assert_eq!(id, command_id_from_key("deposit:42", "3f6c9b1e"));
/// assert_ne!(id, command_id_from_key("deposit:43", "3f6c9b1e"));
/// assert_ne!(id, command_id_from_key("deposit:42", "3f6c9b1f"));
/// assert_eq!(id.get_version_num(), 8);
/// ```
pub fn command_id_from_key(scope: &str, key: &str) -> Uuid {
    // Lengths first, so that ("ab", "c") and ("a", "bc") differ.
    let lengths = [scope.len(), key.len()].map(|len| u64::try_from(len).unwrap_or(u64::MAX).to_be_bytes());
    let input =
        b"orchestrix.command.key".iter().chain(lengths.iter().flatten()).chain(scope.as_bytes()).chain(key.as_bytes());
    uuid::Builder::from_custom_bytes(fnv1a_128(input).to_be_bytes()).into_uuid()
}

/// 128-bit FNV-1a, as the saga step ids use (ADR 0007).
fn fnv1a_128<'a>(input: impl Iterator<Item = &'a u8>) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    input.fold(OFFSET, |hash, byte| (hash ^ u128::from(*byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use serde_json::value::RawValue;

    use super::*;
    use crate::envelope::Metadata;

    fn new_event() -> NewEvent {
        NewEvent {
            id: Uuid::now_v7(),
            event_type: "Noted".to_owned(),
            schema_version: 1,
            data: RawValue::from_string("{}".to_owned()).unwrap(),
            metadata: Metadata::default(),
        }
    }

    fn stored(event: &NewEvent, stream: &StreamId, version: u64) -> Arc<RecordedEvent> {
        Arc::new(RecordedEvent {
            id: event.id,
            stream: stream.clone(),
            stream_version: version,
            global_position: version,
            recorded_at: Utc::now(),
            event_type: event.event_type.clone(),
            schema_version: 1,
            data: event.data.clone(),
            metadata: Metadata::default(),
        })
    }

    #[test]
    fn retries_partial_and_foreign_appends_are_told_apart() {
        let (a, b) = (StreamId::new("A", "1").unwrap(), StreamId::new("A", "2").unwrap());
        let events = vec![new_event(), new_event()];
        let in_a: HashMap<Uuid, Arc<RecordedEvent>> =
            events.iter().enumerate().map(|(i, e)| (e.id, stored(e, &a, 3 + i as u64))).collect();
        let parts = [(&a, events.as_slice())];
        let answer = answer_retry(&parts, |id| in_a.get(&id).cloned()).unwrap().expect("a retry");
        assert_eq!(answer[0].iter().map(|e| e.stream_version).collect::<Vec<_>>(), [3, 4]);
        assert!(answer_retry(&parts, |_| None).unwrap().is_none());
        // Only the first is stored.
        let first = events[0].id;
        let partial = answer_retry(&parts, |id| in_a.get(&id).filter(|_| id == first).cloned());
        assert!(matches!(partial, Err(StoreError::DuplicateEventId { id, version: 3, .. }) if id == first));
        // Stored in another stream.
        let elsewhere = [(&b, events.as_slice())];
        assert!(matches!(
            answer_retry(&elsewhere, |id| in_a.get(&id).cloned()),
            Err(StoreError::DuplicateEventId { .. })
        ));
        // Stored in the other order.
        let reversed: Vec<NewEvent> = events.iter().rev().cloned().collect();
        let reversed = [(&a, reversed.as_slice())];
        assert!(matches!(
            answer_retry(&reversed, |id| in_a.get(&id).cloned()),
            Err(StoreError::DuplicateEventId { .. })
        ));
    }

    #[test]
    fn command_event_ids_are_fixed() {
        let command = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        // Fixed forever: stored commands rely on it.
        assert_eq!(command_event_id(command, 0).to_string(), "01234567-89ab-800a-b76c-0d5eff64ae1d");
        assert_eq!(command_id_from_key("deposit:1", "k").to_string(), "5a63e969-2ebe-85dc-a946-0c5e79a6d3f2");
        let mut seen = std::collections::HashSet::new();
        for index in 0..1000 {
            assert!(seen.insert(command_event_id(command, index)));
            assert!(seen.insert(command_event_id(Uuid::nil(), index)));
        }
    }
}
