//! Consistency by query (a *dynamic consistency boundary*, ADR 0023).
//!
//! An event carries **tags** (`course:42`, `student:7`), computed from the
//! fields marked `#[event(tag)]`. A command that must respect an invariant
//! spanning several entities (a course's capacity *and* a student's course
//! limit) reads the events a [`Query`] selects, decides, and appends with an
//! [`AppendCondition`]: the append succeeds only if no event matching the
//! query was stored after the last position it read
//! ([`crate::store::EventStore::append_if`]); otherwise it fails with
//! [`crate::error::StoreError::ConditionFailed`], and the command reads, decides and
//! appends again ([`crate::app::Orchestrix::decide`]).
//!
//! # Untagged events
//!
//! A query item with tags selects only events that **carry** those tags.
//! Events written before a field was marked `#[event(tag)]`, or appended
//! raw without tags, are silently left out of every decision that asks by
//! tag: the day a team adds tags to an existing log, a bin that holds 5
//! units can look like it holds 1 to a decision, and it oversells. Before
//! relying on a new tag, count what it misses with
//! [`crate::retag::untagged_events`] (called with the decision's query) and
//! re-tag the old events with [`crate::retag::retag_from_fields`]
//! (ADR 0026).
//!
//! Tag names starting with `orchestrix.` are the framework's own (the
//! tenant tag, [`crate::tenant::TENANT_TAG`]); a tenant view refuses them
//! in a tenant's events and queries.
//!
//! ```
//! use orchestrix::query::{Query, QueryItem};
//!
//! let query = Query::new([
//!     QueryItem::types(["CourseDefined", "CourseCapacityChanged"]).tag("course", "c1"),
//!     QueryItem::types(["StudentSubscribed"]).tag("course", "c1"),
//! ]);
//! assert!(query.matches("StudentSubscribed", &["course:c1".to_owned(), "student:s1".to_owned()]));
//! assert!(!query.matches("StudentSubscribed", &["course:c2".to_owned()]));
//! assert!(!query.matches("CourseArchived", &["course:c1".to_owned()]));
//! ```

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The longest tag a store accepts, in bytes.
pub const MAX_TAG_LEN: usize = 1024;

/// A type whose values can be the value of a tag: `#[event(tag)]` on a
/// field of this type makes the tag `<name>:<value>`.
///
/// Implemented for strings, integers, `bool`, `char` and [`uuid::Uuid`];
/// implement it for your own identifiers (a newtype usually forwards to its
/// inner value):
///
/// ```
/// use orchestrix::query::TagValue;
///
/// struct CourseId(u32);
///
/// impl TagValue for CourseId {
///     fn tag_value(&self) -> String {
///         self.0.tag_value()
///     }
/// }
///
/// assert_eq!(orchestrix::query::tag("course", &CourseId(42)), "course:42");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the value of a tag",
    label = "not a tag value",
    note = "implement `orchestrix::query::TagValue` for `{Self}` (strings, integers, `bool`, `char` and `Uuid` already are), or tag another field"
)]
pub trait TagValue {
    /// The value as it appears after the `:` of the tag.
    fn tag_value(&self) -> String;
}

macro_rules! tag_value_by_display {
    ($($ty:ty),* $(,)?) => {
        $(impl TagValue for $ty {
            fn tag_value(&self) -> String {
                self.to_string()
            }
        })*
    };
}

tag_value_by_display!(
    str,
    String,
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    uuid::Uuid,
    std::num::NonZeroU32,
    std::num::NonZeroU64
);

impl<T: TagValue + ?Sized> TagValue for &T {
    fn tag_value(&self) -> String {
        (**self).tag_value()
    }
}

impl<T: TagValue + ?Sized> TagValue for Box<T> {
    fn tag_value(&self) -> String {
        (**self).tag_value()
    }
}

impl<T: TagValue + ?Sized> TagValue for std::sync::Arc<T> {
    fn tag_value(&self) -> String {
        (**self).tag_value()
    }
}

/// The tag `<name>:<value>`.
///
/// ```
/// assert_eq!(orchestrix::query::tag("student", &7_u32), "student:7");
/// ```
pub fn tag<T: TagValue + ?Sized>(name: &str, value: &T) -> String {
    let value = value.tag_value();
    let mut tag = String::with_capacity(name.len() + 1 + value.len());
    tag.push_str(name);
    tag.push(':');
    tag.push_str(&value);
    tag
}

/// Refuses tags no adapter can store faithfully or match reliably: empty,
/// longer than [`MAX_TAG_LEN`], or containing NUL. Every
/// [`crate::store::EventStore`] calls it for the tags of appended events and of
/// conditions.
pub fn validate_tag(tag: &str) -> Result<(), StoreError> {
    if tag.is_empty() {
        return Err(StoreError::InvalidInput("a tag must not be empty".to_owned()));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(StoreError::InvalidInput(format!("a tag is {} bytes long; the limit is {MAX_TAG_LEN}", tag.len())));
    }
    if tag.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "tag `{}` contains a NUL character",
            crate::stream::truncate_for_message(tag).replace('\0', "\\0")
        )));
    }
    Ok(())
}

/// One alternative of a [`Query`]: events of one of `event_types` (any type
/// if empty) that carry every tag of `tags` (no tag needed if empty).
///
/// ```
/// use orchestrix::query::QueryItem;
///
/// let item = QueryItem::types(["StudentSubscribed"]).tag("student", "s1");
/// assert!(item.matches("StudentSubscribed", &["course:c1".into(), "student:s1".into()]));
/// assert!(!item.matches("StudentSubscribed", &["course:c1".into()]));
/// assert!(QueryItem::any().tag("student", "s1").matches("Anything", &["student:s1".into()]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueryItem {
    event_types: Vec<String>,
    tags: Vec<String>,
}

impl QueryItem {
    /// Events of any type, with no tag required (add some with
    /// [`QueryItem::tag`]).
    pub fn any() -> Self {
        Self::default()
    }

    /// Events of one of these types.
    pub fn types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut event_types: Vec<String> = types.into_iter().map(Into::into).collect();
        event_types.sort_unstable();
        event_types.dedup();
        Self { event_types, tags: Vec::new() }
    }

    /// Events of the stored types of the event type `E`.
    pub fn of<E: crate::event::Event>() -> Self {
        Self::types(E::type_names())
    }

    /// Also requires the tag `<name>:<value>`.
    pub fn tag<T: TagValue + ?Sized>(self, name: &str, value: &T) -> Self {
        self.raw_tag(tag(name, value))
    }

    /// Also requires `tag`, written out in full (`course:42`).
    pub fn raw_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if let Err(at) = self.tags.binary_search(&tag) {
            self.tags.insert(at, tag);
        }
        self
    }

    /// The event types (sorted); empty for any type.
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    /// The tags an event must all carry (sorted); empty for none.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether an event of `event_type` with `tags` matches.
    pub fn matches(&self, event_type: &str, tags: &[String]) -> bool {
        (self.event_types.is_empty() || self.event_types.binary_search_by(|t| t.as_str().cmp(event_type)).is_ok())
            && self.tags.iter().all(|wanted| tags.contains(wanted))
    }
}

/// The events a decision depends on: those matching any of its
/// [`QueryItem`]s. A query without items matches no event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Query {
    items: Vec<QueryItem>,
}

impl Query {
    /// A query matching the events any of `items` matches.
    pub fn new(items: impl IntoIterator<Item = QueryItem>) -> Self {
        Self { items: items.into_iter().collect() }
    }

    /// The query that matches nothing: an [`AppendCondition`] with it always
    /// holds.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds an alternative.
    pub fn or(mut self, item: QueryItem) -> Self {
        self.items.push(item);
        self
    }

    /// The alternatives.
    pub fn items(&self) -> &[QueryItem] {
        &self.items
    }

    /// Whether no event can match (the query has no items).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether an event of `event_type` with `tags` matches any item.
    pub fn matches(&self, event_type: &str, tags: &[String]) -> bool {
        self.items.iter().any(|item| item.matches(event_type, tags))
    }

    /// The global-log filter that passes at least every matching event:
    /// the union of the items' types, or every event if an item takes any
    /// type. Adapters without a tag index read with it and match the rest.
    pub fn type_filter(&self) -> EventFilter {
        if self.items.iter().any(|item| item.event_types.is_empty()) {
            EventFilter::all()
        } else {
            EventFilter::types(self.items.iter().flat_map(|item| item.event_types.iter().cloned()))
        }
    }

    /// Checks every type and tag of the query ([`crate::event::validate_event_type`],
    /// [`validate_tag`]).
    pub fn validate(&self) -> Result<(), StoreError> {
        for item in &self.items {
            for event_type in &item.event_types {
                crate::event::validate_event_type(event_type)?;
            }
            for tag in &item.tags {
                validate_tag(tag)?;
            }
        }
        Ok(())
    }
}

impl FromIterator<QueryItem> for Query {
    fn from_iter<I: IntoIterator<Item = QueryItem>>(items: I) -> Self {
        Self::new(items)
    }
}

/// Which events a global read or subscription delivers: those of the
/// given types (all types if none are given) that carry every one of the
/// given tags (`metadata.tags`, ADR 0023; no condition if none are given).
///
/// A store evaluates the whole filter before it delivers an event, so a
/// filter is never a hint; a store with a tag index evaluates the tags in
/// its query (PostgreSQL: the GIN index on `events.tags`), so a reader of
/// a small share of the log does not read the rest (ADR 0036).
///
/// ```
/// use orchestrix::store::EventFilter;
///
/// let all = EventFilter::all();
/// assert!(all.matches("Anything"));
/// let some = EventFilter::types(["AccountOpened", "AccountClosed"]);
/// assert!(some.matches("AccountOpened") && !some.matches("AccountDeposited"));
/// let tagged = EventFilter::all().with_tag("course:42");
/// assert_eq!(tagged.tags(), ["course:42"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    event_types: Option<Vec<String>>,
    /// Sorted, without duplicates.
    tags: Vec<String>,
}

impl EventFilter {
    /// Every event.
    pub const fn all() -> Self {
        Self { event_types: None, tags: Vec::new() }
    }

    /// Only events of the given type names.
    pub fn types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut types: Vec<String> = types.into_iter().map(Into::into).collect();
        types.sort_unstable();
        types.dedup();
        Self { event_types: Some(types), tags: Vec::new() }
    }

    /// The same filter, further requiring the tag `tag` (a tag as
    /// [`crate::query::tag`] makes it, `name:value`): an event passes only
    /// if it carries every tag required.
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if let Err(at) = self.tags.binary_search(&tag) {
            self.tags.insert(at, tag);
        }
        self
    }

    /// The tags every delivered event carries, sorted; empty: no condition.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether the filter lets every event through.
    pub fn is_all(&self) -> bool {
        self.event_types.is_none() && self.tags.is_empty()
    }

    /// The type names, or `None` for every type.
    pub fn event_types(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// Whether an event of this type passes the type condition (the tags
    /// are not looked at: see [`EventFilter::matches_event`](crate::store::EventFilter::matches_event)).
    pub fn matches(&self, event_type: &str) -> bool {
        self.event_types.as_ref().is_none_or(|types| types.binary_search_by(|t| t.as_str().cmp(event_type)).is_ok())
    }

    /// Whether an event with these tags passes the tag condition.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        self.tags.iter().all(|tag| tags.contains(tag))
    }
}

/// The condition of [`crate::store::EventStore::append_if`]: no event matching
/// `query` may have a global position above `after` (with `after` `None`:
/// no matching event may exist at all).
///
/// `after` is the position of the last event the decision read (see
/// [`crate::app::Orchestrix::read_decision`]): every matching event up to it was
/// seen, and none after it may have arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppendCondition {
    /// The events the decision depended on.
    pub query: Query,
    /// The global position the decision read up to; `None` if it saw no
    /// matching event.
    pub after: Option<u64>,
}

impl AppendCondition {
    /// No event matching `query` after `after`.
    pub fn new(query: Query, after: Option<u64>) -> Self {
        Self { query, after }
    }

    /// Whether an event at `position` of `event_type` with `tags` breaks the
    /// condition.
    pub fn violated_by(&self, position: u64, event_type: &str, tags: &[String]) -> bool {
        self.after.is_none_or(|after| position > after) && self.query.matches(event_type, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_need_a_type_and_every_tag() {
        let item = QueryItem::types(["B", "A", "A"]).tag("x", &1_u8).raw_tag("y:2").raw_tag("x:1");
        assert_eq!(item.event_types(), ["A", "B"]);
        assert_eq!(item.tags(), ["x:1", "y:2"]);
        assert!(item.matches("A", &["y:2".into(), "x:1".into(), "z:3".into()]));
        assert!(!item.matches("A", &["x:1".into()]));
        assert!(!item.matches("C", &["x:1".into(), "y:2".into()]));
        assert!(QueryItem::any().matches("C", &[]));
    }

    #[test]
    fn empty_query_matches_nothing_and_condition_respects_after() {
        assert!(!Query::none().matches("A", &[]));
        let condition = AppendCondition::new(Query::new([QueryItem::types(["A"])]), Some(5));
        assert!(!condition.violated_by(5, "A", &[]));
        assert!(condition.violated_by(6, "A", &[]));
        assert!(!condition.violated_by(6, "B", &[]));
        assert!(AppendCondition::new(Query::new([QueryItem::any()]), None).violated_by(1, "B", &[]));
    }

    #[test]
    fn type_filter_covers_the_items() {
        let query = Query::new([QueryItem::types(["A"]), QueryItem::types(["B"]).raw_tag("t:1")]);
        assert!(query.type_filter().matches("A") && query.type_filter().matches("B"));
        assert!(!query.type_filter().matches("C"));
        assert!(query.or(QueryItem::any().raw_tag("t:1")).type_filter().matches("C"));
    }

    #[test]
    fn bad_tags_are_refused() {
        assert!(validate_tag("").is_err());
        assert!(validate_tag("a\0b").is_err());
        assert!(validate_tag(&"x".repeat(MAX_TAG_LEN + 1)).is_err());
        assert!(validate_tag("course:42").is_ok());
        assert!(Query::new([QueryItem::any().raw_tag("")]).validate().is_err());
    }
}
