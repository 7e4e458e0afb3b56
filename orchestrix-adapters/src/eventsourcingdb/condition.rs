//! Consistency by query on EventSourcingDB (ADR 0023): reads by query and
//! conditional appends through EventQL, the condition checked by the
//! server with an `isEventQlQueryTrue` precondition in the same write.
//!
//! EventQL has no `>` on event ids that is safe to rely on (ids are
//! strings), so the condition "no matching event after `after`" is checked
//! in two steps that together are exact:
//!
//! 1. The adapter runs `FROM e IN events WHERE <filter> PROJECT INTO
//!    {id, type, tags}`. `<filter>` selects at least every event the query
//!    matches (see [`filter`]); the adapter matches each row exactly
//!    itself. A matching row above `after` fails the condition at once,
//!    with its position. Otherwise the filter selected `n` rows.
//! 2. The write carries the precondition `FROM e IN events WHERE <filter>
//!    PROJECT INTO COUNT() == n`: the server writes only if nothing the
//!    filter selects arrived since step 1. If something did (a 409), the
//!    adapter starts again from step 1, which tells a real conflict from a
//!    row the filter selected but the query does not match.
//!
//! Events are never removed from the log, so the rows at or below `after`
//! cannot change between the steps: the count is exact.

use futures_util::{StreamExt, TryStreamExt};
use orchestrix::query::{AppendCondition, Query, QueryItem};
use orchestrix::store::EventStream;
use orchestrix::StoreError;
use serde::Deserialize;

use super::error::EsdbError;
use super::store::EsdbStore;
use super::wire::{self, WireEvent};

/// Where EventSourcingDB keeps an event's tags: the envelope's metadata.
const TAGS: &str = "e.data.metadata.tags";

/// The EventQL condition that selects at least every event `query` matches
/// among the events of the adapter with type prefix `prefix` (an empty
/// query: none).
///
/// Types become ranges (`p.Name.v` ≤ type < `p.Name.w`: every schema
/// version of `Name`), tags `CONTAINS` tests on the envelope's tags. A tag
/// that cannot be written as an EventQL string literal (it holds both kinds
/// of quote, or a backslash) is left out, which only widens the selection.
pub(super) fn filter(prefix: &str, query: &Query) -> String {
    if query.is_empty() {
        return "false".to_owned();
    }
    let items: Vec<String> = query.items().iter().map(|item| item_filter(prefix, item)).collect();
    items.join(" OR ")
}

fn item_filter(prefix: &str, item: &QueryItem) -> String {
    let types = if item.event_types().is_empty() {
        // Every event of the adapter's: `p.` ≤ type < `p/`.
        range(&format!("{prefix}."))
    } else {
        // A name the adapter refuses to write (`wire::validate_event_type`)
        // is the type of none of its events, so it selects nothing; every
        // name that passes is ASCII letters, digits, `.`, `-`, `_`, safe in
        // a string literal. Nothing of the caller's reaches EventQL
        // unchecked.
        let ranges: Vec<String> = item
            .event_types()
            .iter()
            .map(|name| match wire::validate_event_type(name) {
                Ok(()) => range(&format!("{prefix}.{name}.v")),
                Err(_) => "false".to_owned(),
            })
            .collect();
        format!("({})", ranges.join(" OR "))
    };
    let mut clauses = vec![types];
    clauses.extend(item.tags().iter().filter_map(|tag| literal(tag)).map(|tag| format!("{TAGS} CONTAINS {tag}")));
    format!("({})", clauses.join(" AND "))
}

/// The types that start with `prefix`: at least `prefix`, below `prefix`
/// with its last byte raised. `prefix` is a validated type prefix (ASCII
/// letters, digits, `.`, `-`, `_`; the store refuses others) followed by
/// `.` or `.<validated name>.v`, so it ends in `.` or `v` and needs no
/// quoting.
pub(super) fn range(prefix: &str) -> String {
    let upper = match prefix.as_bytes().split_last() {
        Some((&last, head)) if last.is_ascii() && head.is_ascii() => {
            let mut upper = prefix[..head.len()].to_owned();
            upper.push(char::from(last + 1));
            upper
        }
        // Unreachable for validated input; select nothing rather than guess.
        _ => return "false".to_owned(),
    };
    format!("(e.type >= \"{prefix}\" AND e.type < \"{upper}\")")
}

/// `text` as an EventQL string literal, if it can be one without escapes
/// (and without control characters).
fn literal(text: &str) -> Option<String> {
    if text.contains('\\') || text.chars().any(char::is_control) {
        None
    } else if !text.contains('"') {
        Some(format!("\"{text}\""))
    } else if !text.contains('\'') {
        Some(format!("'{text}'"))
    } else {
        None
    }
}

/// A row of the check query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckRow {
    id: Id,
    subject: String,
    event_type: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// An event id, which EventQL may give as a string or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    /// The global position of the event with this id (the id + 1).
    fn position(&self) -> Result<u64, StoreError> {
        let id = match self {
            Self::Text(text) => text.parse().map_err(|_| EsdbError::malformed("event id", format!("{text:?}")))?,
            Self::Number(id) => *id,
        };
        Ok(id + 1)
    }
}

impl EsdbStore {
    /// Step 1 of a conditional append (see the module): fails with
    /// [`StoreError::ConditionFailed`] if an event matching the condition's
    /// query lies above its `after`, else returns how many events `filter`
    /// selects.
    pub(super) async fn check_condition(&self, condition: &AppendCondition, filter: &str) -> Result<u64, StoreError> {
        let query =
            format!("FROM e IN events WHERE {filter} PROJECT INTO {{ id: e.id, subject: e.subject, eventType: e.type, tags: {TAGS} }}");
        let prefix = &self.config().type_prefix;
        let mut rows = std::pin::pin!(self.run_eventql_query_raw(&query));
        let mut selected = 0_u64;
        let mut first_violation: Option<u64> = None;
        while let Some(row) = rows.try_next().await? {
            let row: CheckRow =
                serde_json::from_str(row.get()).map_err(|e| EsdbError::malformed("EventQL row of a condition", e))?;
            selected += 1;
            let position = row.id.position()?;
            // Only the adapter's stream events count (not its snapshots).
            let Some((name, _)) = wire::parse_esdb_type(prefix, &row.event_type) else { continue };
            if wire::parse_stream_subject(&row.subject).is_none() {
                continue;
            }
            let tags = row.tags.unwrap_or_default();
            if condition.violated_by(position, name, &tags) {
                first_violation = Some(first_violation.map_or(position, |first| first.min(position)));
            }
        }
        match first_violation {
            Some(position) => Err(StoreError::ConditionFailed { position, after: condition.after }),
            None => Ok(selected),
        }
    }

    /// [`orchestrix::store::EventStore::read_by_query`] through EventQL: the
    /// server selects by [`filter`], the adapter matches exactly.
    pub(super) fn read_by_eventql<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a> {
        if query.is_empty() {
            return futures_util::stream::empty().boxed();
        }
        let text = format!("FROM e IN events WHERE {} PROJECT INTO e", filter(&self.config().type_prefix, query));
        let mut last = 0_u64;
        self.run_eventql_query_raw(&text)
            .map(move |row| -> Result<Option<_>, StoreError> {
                let event: WireEvent =
                    serde_json::from_str(row?.get()).map_err(|e| EsdbError::malformed("EventQL row of a read", e))?;
                let Some(record) = self.record_of(event)? else { return Ok(None) };
                if record.global_position <= last {
                    return Err(EsdbError::malformed(
                        "EventQL answer",
                        format!("position {} after {last}: the rows are not in log order", record.global_position),
                    )
                    .into());
                }
                last = record.global_position;
                let keep = record.global_position >= from_position && query.matches(&record.event_type, record.tags());
                Ok(keep.then(|| std::sync::Arc::new(record)))
            })
            .filter_map(|item| std::future::ready(item.transpose()))
            .boxed()
    }
}

/// The precondition of step 2: the filter still selects `count` events.
pub(super) fn count_query(filter: &str, count: u64) -> String {
    format!("FROM e IN events WHERE {filter} PROJECT INTO COUNT() == {count}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_every_version_and_require_the_tags() {
        let query = Query::new([
            QueryItem::types(["CourseDefined", "Subscribed"]).tag("course", "c1"),
            QueryItem::any().tag("student", "s\"1").raw_tag("odd:\"'"),
        ]);
        assert_eq!(
            filter("p", &query),
            "(((e.type >= \"p.CourseDefined.v\" AND e.type < \"p.CourseDefined.w\") OR \
             (e.type >= \"p.Subscribed.v\" AND e.type < \"p.Subscribed.w\")) AND e.data.metadata.tags CONTAINS \"course:c1\") \
             OR ((e.type >= \"p.\" AND e.type < \"p/\") AND e.data.metadata.tags CONTAINS 'student:s\"1')"
        );
        assert_eq!(filter("p", &Query::none()), "false");
        // A name the adapter cannot write selects nothing, whatever it holds.
        let hostile = Query::new([QueryItem::types([r#"X.v") OR (e.type == "p.Y.v1"#, ".", "é", "Ok"])]);
        assert_eq!(
            filter("p", &hostile),
            "((false OR (e.type >= \"p.Ok.v\" AND e.type < \"p.Ok.w\") OR false OR false))"
        );
        assert_eq!(count_query("x", 3), "FROM e IN events WHERE x PROJECT INTO COUNT() == 3");
    }

    #[test]
    fn literals_need_no_escapes() {
        assert_eq!(literal("a:b"), Some("\"a:b\"".to_owned()));
        assert_eq!(literal("a:\"b"), Some("'a:\"b'".to_owned()));
        assert_eq!(literal("a:\"'b"), None);
        assert_eq!(literal("a:\\b"), None);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        let row: CheckRow =
            serde_json::from_str(r#"{"id":"41","subject":"/a/b","eventType":"p.X.v1","tags":null}"#).unwrap();
        assert_eq!(row.id.position().unwrap(), 42);
        let row: CheckRow = serde_json::from_str(r#"{"id":7,"subject":"/a/b","eventType":"p.X.v1"}"#).unwrap();
        assert_eq!(row.id.position().unwrap(), 8);
        let row: CheckRow = serde_json::from_str(r#"{"id":"x","subject":"/a/b","eventType":"p.X.v1"}"#).unwrap();
        assert!(row.id.position().is_err());
    }
}
