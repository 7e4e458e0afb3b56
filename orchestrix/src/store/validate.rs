//! What an adapter checks before it writes anything: the part of the store
//! contract every backend enforces the same way (ADR 0026, ADR 0027), so
//! that every store refuses the same input with the same error.

use uuid::Uuid;

use super::StreamAppend;
use crate::envelope::NewEvent;
use crate::error::StoreError;
use crate::query::AppendCondition;

/// Checks the events of one [`EventStore::append`](super::EventStore::append) before anything is
/// stored: each as [`validate_new_event`](crate::envelope::validate_new_event) does
/// (type, data, metadata, tags), and no event id twice
/// ([`validate_event_ids`]). Every adapter calls it first, so every
/// backend refuses the same events with the same
/// [`StoreError::InvalidInput`].
///
/// ```
/// use orchestrix::store::validate_append;
/// use orchestrix::{Metadata, envelope::NewEvent, StoreError};
///
/// let tagged = |tag: String| NewEvent {
///     id: orchestrix::Uuid::now_v7(),
///     event_type: "StockReceived".into(),
///     schema_version: 1,
///     data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
///     metadata: Metadata::default().with_tag(tag),
/// };
/// assert!(validate_append(&[tagged("sku:42".into())]).is_ok());
/// let too_long = tagged(format!("sku:{}", "x".repeat(orchestrix::query::MAX_TAG_LEN)));
/// assert!(matches!(validate_append(&[too_long]), Err(StoreError::InvalidInput(_))));
/// ```
pub fn validate_append(events: &[NewEvent]) -> Result<(), StoreError> {
    events.iter().try_for_each(crate::envelope::validate_new_event)?;
    validate_event_ids(events)
}

/// Refuses a call whose events repeat an id (across all its parts): the
/// store could not tell its events apart. Every adapter calls it before
/// writing.
///
/// ```
/// use orchestrix::store::validate_event_ids;
/// use orchestrix::{Metadata, envelope::NewEvent, StoreError, Uuid};
///
/// let event = NewEvent {
///     id: Uuid::now_v7(),
///     event_type: "Noted".into(),
///     schema_version: 1,
///     data: serde_json::value::RawValue::from_string("{}".into())?,
///     metadata: Metadata::default(),
/// };
/// assert!(validate_event_ids([&event]).is_ok());
/// assert!(matches!(validate_event_ids([&event, &event]), Err(StoreError::InvalidInput(_))));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn validate_event_ids<'a>(events: impl IntoIterator<Item = &'a NewEvent>) -> Result<(), StoreError> {
    // One event (what a command usually appends) cannot repeat an id:
    // answered without allocating.
    let mut events = events.into_iter();
    let (Some(first), Some(second)) = (events.next(), events.next()) else {
        return Ok(());
    };
    let mut ids: Vec<Uuid> = [first.id, second.id].into_iter().chain(events.map(|event| event.id)).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(StoreError::InvalidInput(format!(
            "event id {} appears twice in one append; every event needs an id of its own",
            pair[0]
        ))),
        None => Ok(()),
    }
}

/// Checks the input of [`EventStore::append_many`](super::EventStore::append_many) before anything is
/// stored: every event as [`validate_append`] does, no stream appears
/// twice and no event id twice. Every adapter calls it first.
///
/// ```
/// use orchestrix::store::{validate_append_many, StreamAppend};
/// use orchestrix::{store::ExpectedVersion, StoreError, StreamId};
///
/// let stream = StreamId::new("Account", "1").unwrap();
/// let twice = [
///     StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![]),
///     StreamAppend::new(stream, ExpectedVersion::Any, vec![]),
/// ];
/// assert!(matches!(validate_append_many(&twice), Err(StoreError::InvalidInput(_))));
/// ```
pub fn validate_append_many(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(appends.len());
    for append in appends {
        if !seen.insert(&append.stream) {
            return Err(StoreError::InvalidInput(format!(
                "stream `{}` appears more than once in one multi-stream append; put all of its events in one part",
                crate::stream::truncate_for_message(&append.stream.to_string())
            )));
        }
        validate_append(&append.events)?;
    }
    validate_event_ids(appends.iter().flat_map(|append| &append.events))
}

/// The first part of a multi-stream append, in the call's order, whose
/// expectation `actual` (the streams' current versions, in the same order)
/// does not admit, as the error [`EventStore::append_many`](super::EventStore::append_many) returns.
pub fn first_conflict(appends: &[StreamAppend], actual: &[Option<u64>]) -> Option<StoreError> {
    appends.iter().zip(actual).find(|(append, &actual)| !append.expected.admits(actual)).map(|(append, &actual)| {
        StoreError::WrongExpectedVersion { stream: append.stream.clone(), expected: append.expected, actual }
    })
}

/// Checks the input of [`EventStore::append_if`](super::EventStore::append_if) before anything is stored:
/// the parts as [`validate_append_many`] does (the tags of every event
/// included), and the condition's query ([`Query::validate`](crate::query::Query::validate)).
pub fn validate_append_if(condition: &AppendCondition, appends: &[StreamAppend]) -> Result<(), StoreError> {
    validate_append_many(appends)?;
    condition.query.validate()
}
