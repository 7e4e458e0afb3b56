//! The [`Event`] trait: how a Rust type becomes a stored, versioned event.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{DecodeErrorKind, StoreError, UpcastError};
use crate::stream::truncate_for_message;

/// One stored event type: its stable name and its current schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct EventType {
    /// The stable type name, stored with every event of this type.
    pub name: &'static str,
    /// The schema version the code writes today (1 or more).
    pub version: u32,
}

impl EventType {
    /// The stored type `name` at schema `version` (what `#[event]`
    /// generates; a hand-written [`Event`] lists its types with it).
    pub const fn new(name: &'static str, version: u32) -> Self {
        Self { name, version }
    }
}

/// The JSON schema of one stored event type's data (the object
/// [`Event::encode`] writes), at its current version.
///
/// `#[event(schema)]` derives one per stored type from the Rust types (with
/// the `schemars` feature), so that a store which validates events on write
/// can be told what each type's data looks like.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventSchema {
    /// The stored type name.
    pub name: &'static str,
    /// The schema version the schema describes (the current one).
    pub version: u32,
    /// A JSON Schema (draft 2020-12) document; shared definitions are under
    /// `$defs`, referenced from the root.
    pub schema: Value,
}

impl EventSchema {
    /// The `schema` of the stored type `name` at `version`.
    pub fn new(name: &'static str, version: u32, schema: Value) -> Self {
        Self { name, version, schema }
    }
}

/// An [`Event`] that knows the JSON schema of every stored type it writes.
///
/// Implemented by `#[event(schema)]` (feature `schemars`), which derives the
/// schema of each variant's (or the struct's) data, honouring its
/// `#[serde(...)]` attributes:
///
/// ```
/// # #[cfg(feature = "schemars")] {
/// use orchestrix::prelude::*;
/// use orchestrix::event::EventSchemas;
///
/// #[event(schema)]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum AccountEvent {
///     Opened { owner: String },
///     Deposited { amount: u64 },
/// }
///
/// let schemas = AccountEvent::event_schemas();
/// assert_eq!(schemas[1].name, "AccountDeposited");
/// assert_eq!(schemas[1].schema["properties"]["amount"]["type"], "integer");
/// assert_eq!(schemas[1].schema["required"], serde_json::json!(["amount"]));
/// # }
/// ```
pub trait EventSchemas: Event {
    /// One schema per entry of [`Event::event_types`], in the same order.
    fn event_schemas() -> Vec<EventSchema>;
}

/// A domain event: a fact that happened, stored as (type name, schema
/// version, JSON data).
///
/// Implemented by `#[event]` on an enum (one stored type per variant) or a
/// struct. The data carries no enum tag: a reader in another language sees a
/// plain JSON object. A hand-written implementation must keep the same
/// contract, which the `decode` of an older version upholds by *upcasting*
/// the JSON step by step to the current version before deserializing it.
///
/// ```
/// use orchestrix::prelude::*;
///
/// #[event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum AccountEvent {
///     Opened { owner: String },
///     Deposited { amount: u64 },
/// }
///
/// let event = AccountEvent::Deposited { amount: 5 };
/// assert_eq!(event.event_type(), "AccountDeposited");
/// assert_eq!(event.encode().unwrap().get(), r#"{"amount":5}"#);
/// let back = AccountEvent::decode("AccountDeposited", 1, &event.encode().unwrap()).unwrap();
/// assert_eq!(back, event);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "annotate the type with `#[orchestrix::event]`"
)]
pub trait Event: Debug + Send + Sync + Sized + 'static {
    /// Every stored type this Rust type can be, with its current version.
    fn event_types() -> &'static [EventType];

    /// The stored type name of this value.
    fn event_type(&self) -> &'static str;

    /// The schema version this value is written with.
    fn schema_version(&self) -> u32;

    /// Serializes the value's fields (no enum tag) as a JSON object.
    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error>;

    /// Rebuilds a value from a stored type name, schema version and data,
    /// upcasting data of an older version.
    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind>;

    /// The personal fields of each stored type, which a
    /// [`crate::crypto::CryptoStore`] encrypts per data subject; declared
    /// with `#[event(personal(subject = field))]` on a field. None by
    /// default.
    fn personal_data() -> &'static [crate::personal::PersonalData] {
        &[]
    }

    /// The tags of this value (`course:42`), from its fields marked
    /// `#[event(tag)]` or `#[event(tag = "name")]`; [`crate::envelope::NewEvent::encode`]
    /// stores them with the event, and [`crate::query::Query`]s select
    /// events by them. None by default.
    ///
    /// ```
    /// use orchestrix::prelude::*;
    ///
    /// #[event]
    /// #[derive(Debug, Clone)]
    /// pub enum CourseEvent {
    ///     StudentSubscribed {
    ///         #[event(tag = "course")]
    ///         course_id: String,
    ///         #[event(tag = "student")]
    ///         student_id: u32,
    ///     },
    /// }
    ///
    /// let event = CourseEvent::StudentSubscribed { course_id: "c1".into(), student_id: 7 };
    /// assert_eq!(event.tags(), ["course:c1", "student:7"]);
    /// ```
    fn tags(&self) -> Vec<String> {
        Vec::new()
    }

    /// The names of [`Event::event_types`], for filtering the global log.
    fn type_names() -> Vec<&'static str> {
        Self::event_types().iter().map(|t| t.name).collect()
    }
}

/// An upcaster turns the JSON data of schema version `n` into version `n + 1`.
pub type Upcaster = fn(Value) -> Result<Value, UpcastError>;

/// Deserializes `data` stored at `stored_version` into `T`, whose current
/// version is `current_version`, running `upcasters[v - 1]` for every
/// version `v` from the stored one up to the current one.
///
/// This is the engine behind the `decode` that `#[event]` generates; it is
/// public for hand-written [`Event`] implementations.
///
/// ```
/// use orchestrix::event::decode_versioned;
/// use orchestrix::error::UpcastError;
/// use serde_json::{json, value::RawValue, Value};
///
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Withdrawn { amount: u64, reason: String }
///
/// fn v1_to_v2(mut v: Value) -> Result<Value, UpcastError> {
///     v["reason"] = json!("unknown");
///     Ok(v)
/// }
///
/// let old = RawValue::from_string(r#"{"amount":3}"#.to_owned()).unwrap();
/// let ev: Withdrawn = decode_versioned(&old, 1, 2, &[v1_to_v2]).unwrap();
/// assert_eq!(ev, Withdrawn { amount: 3, reason: "unknown".into() });
/// ```
pub fn decode_versioned<T: DeserializeOwned>(
    data: &RawValue,
    stored_version: u32,
    current_version: u32,
    upcasters: &[Upcaster],
) -> Result<T, DecodeErrorKind> {
    if stored_version == current_version {
        return serde_json::from_str(data.get()).map_err(DecodeErrorKind::Malformed);
    }
    if stored_version > current_version {
        return Err(DecodeErrorKind::NewerThanCode { supported: current_version });
    }
    // The chain covers versions 1..current; anything below 1 has no upcaster.
    let first = usize::try_from(stored_version).unwrap_or(usize::MAX).checked_sub(1);
    let chain = first.and_then(|first| upcasters.get(first..));
    let Some(chain) = chain.filter(|c| c.len() as u64 == u64::from(current_version - stored_version)) else {
        return Err(DecodeErrorKind::NoUpcaster { supported: current_version });
    };
    let mut value: Value = serde_json::from_str(data.get()).map_err(DecodeErrorKind::Malformed)?;
    for (step, upcast) in chain.iter().enumerate() {
        let from = stored_version + u32::try_from(step).unwrap_or(u32::MAX);
        value = upcast(value).map_err(|error| DecodeErrorKind::Upcast { from, error })?;
    }
    serde_json::from_value(value).map_err(DecodeErrorKind::Malformed)
}

/// Serializes `value` straight into a [`RawValue`].
pub fn encode_raw<T: serde::Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(value)
}

/// The longest event type name a store accepts, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 10 * 1024;

/// Refuses event type names that no adapter can store faithfully: empty,
/// `.` or `..` (which EventSourcingDB refuses, as a path segment would be),
/// longer than [`MAX_EVENT_TYPE_LEN`], or containing NUL. Every
/// [`EventStore`](crate::store::EventStore) calls it on append (through
/// [`validate_new_event`](crate::envelope::validate_new_event)); adapters
/// with stricter names call it before their own rules.
///
/// ```
/// use orchestrix::event::validate_event_type;
///
/// assert!(validate_event_type("AccountOpened").is_ok());
/// assert!(validate_event_type("..").is_err());
/// ```
pub fn validate_event_type(event_type: &str) -> Result<(), StoreError> {
    if event_type.is_empty() {
        return Err(StoreError::InvalidInput("event type must not be empty".to_owned()));
    }
    if event_type == "." || event_type == ".." {
        return Err(StoreError::InvalidInput(format!(
            "event type `{event_type}` is refused: `.` and `..` are path segments, not names; give the type a name"
        )));
    }
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(StoreError::InvalidInput(format!(
            "event type is {} bytes long; the limit is {MAX_EVENT_TYPE_LEN}",
            event_type.len()
        )));
    }
    if event_type.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "event type `{}` contains a NUL character",
            truncate_for_message(event_type).replace('\0', "\\0")
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unnecessary_wraps)] // upcasters must return a Result
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V3 {
        a: u32,
        b: u32,
        c: u32,
    }

    fn add_b(mut v: Value) -> Result<Value, UpcastError> {
        v["b"] = json!(2);
        Ok(v)
    }

    fn add_c(mut v: Value) -> Result<Value, UpcastError> {
        v["c"] = json!(3);
        Ok(v)
    }

    fn refuse(_: Value) -> Result<Value, UpcastError> {
        Err(UpcastError::new("field `a` is missing"))
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn chains_upcasters_from_any_older_version() {
        let chain: [Upcaster; 2] = [add_b, add_c];
        let from_v1: V3 = decode_versioned(&raw(r#"{"a":1}"#), 1, 3, &chain).unwrap();
        let from_v2: V3 = decode_versioned(&raw(r#"{"a":1,"b":2}"#), 2, 3, &chain).unwrap();
        let current: V3 = decode_versioned(&raw(r#"{"a":1,"b":2,"c":3}"#), 3, 3, &chain).unwrap();
        assert_eq!(from_v1, V3 { a: 1, b: 2, c: 3 });
        assert_eq!(from_v1, from_v2);
        assert_eq!(from_v2, current);
    }

    #[test]
    fn newer_missing_and_failing_versions_are_typed_errors() {
        let chain: [Upcaster; 2] = [add_b, refuse];
        let newer = decode_versioned::<V3>(&raw("{}"), 4, 3, &chain).unwrap_err();
        assert!(matches!(newer, DecodeErrorKind::NewerThanCode { supported: 3 }));
        let zero = decode_versioned::<V3>(&raw("{}"), 0, 3, &chain).unwrap_err();
        assert!(matches!(zero, DecodeErrorKind::NoUpcaster { supported: 3 }));
        let short = decode_versioned::<V3>(&raw("{}"), 1, 3, &chain[..1]).unwrap_err();
        assert!(matches!(short, DecodeErrorKind::NoUpcaster { .. }));
        let failed = decode_versioned::<V3>(&raw(r#"{"a":1}"#), 1, 3, &chain).unwrap_err();
        assert!(matches!(failed, DecodeErrorKind::Upcast { from: 2, .. }), "{failed:?}");
        let malformed = decode_versioned::<V3>(&raw(r#"{"a":"x"}"#), 3, 3, &chain).unwrap_err();
        assert!(matches!(malformed, DecodeErrorKind::Malformed(_)));
    }
}
