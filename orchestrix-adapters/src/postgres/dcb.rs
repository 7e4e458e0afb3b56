//! Consistency by query on PostgreSQL (ADR 0023).
//!
//! - **Tags** live in the event's metadata (`metadata.tags`); migration 3
//!   adds `events.tags text[]`, a stored column generated from them, and a
//!   GIN index on it, so `tags @> ARRAY[...]` finds a tag's events without
//!   scanning the log.
//! - **The check** of a conditional append runs inside the append's
//!   transaction: `global_position > after AND (item OR item ...)`. With a
//!   recent `after` the primary key's range is short; with an old one the
//!   GIN index narrows it. Either way the cost follows the matching or
//!   recent events, not the size of the store.
//! - **No write skew**: before the check, the transaction takes advisory
//!   locks (`pg_advisory_xact_lock`) on keys derived from `(type, tag)`:
//!   exclusive for what the condition's query can match, shared for what
//!   its own events are, in ascending key order (no deadlock between
//!   conditional appends). An event matching a query item always shares a
//!   key with it: the item's key is `(type, first tag)` for each of its
//!   types (`*` for any type, no tag for none), and an event takes
//!   `(type, tag)`, `(*, tag)` for each of its tags plus `(type, -)` and
//!   `(*, -)`. So two conditional appends of which one's events match the
//!   other's query are serialized, and the later one's check (a new
//!   statement, so a new snapshot under READ COMMITTED) sees the earlier
//!   one's committed events.
//! - **Commit order** (ADR 0008): a decision reads below the watermark, so
//!   every event it did not see commits at a position above the last one
//!   it read, which is the condition's `after`: the check cannot miss an
//!   event because positions commit out of order.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use orchestrix::query::{AppendCondition, Query};
use orchestrix::store::{EventStream, StreamAppend};
use orchestrix::StoreError;
use sqlx::postgres::PgArguments;
use sqlx::query::Query as SqlQuery;
use sqlx::{Postgres, Row, Transaction};

use super::read::{event_row, read_all_bound, GLOBAL_CHUNK};
use super::schema::fnv1a;
use super::PgStore;
use crate::common::{decode_chunk, paged, to_i64};

/// The SQL predicate of a query over `events` (aliased `e`), with its
/// parameters numbered from `first`: one `(types, tags)` pair of `text[]`
/// per item, omitted where the item leaves it empty.
pub(super) fn predicate(query: &Query, first: usize) -> (String, Vec<Vec<String>>) {
    let mut params = Vec::new();
    let mut alternatives = Vec::new();
    for item in query.items() {
        let mut parts = Vec::new();
        if !item.event_types().is_empty() {
            params.push(item.event_types().to_vec());
            parts.push(format!("e.event_type = ANY(${}::text[])", first + params.len() - 1));
        }
        if !item.tags().is_empty() {
            params.push(item.tags().to_vec());
            parts.push(format!("e.tags @> ${}::text[]", first + params.len() - 1));
        }
        alternatives.push(if parts.is_empty() { "true".to_owned() } else { format!("({})", parts.join(" AND ")) });
    }
    if alternatives.is_empty() {
        alternatives.push("false".to_owned());
    }
    (format!("({})", alternatives.join(" OR ")), params)
}

fn bind_all<'q>(
    mut query: SqlQuery<'q, Postgres, PgArguments>,
    params: &'q [Vec<String>],
) -> SqlQuery<'q, Postgres, PgArguments> {
    for param in params {
        query = query.bind(param);
    }
    query
}

/// The advisory lock keys of a conditional append: `true` for exclusive
/// (what the condition's query can match), `false` for shared (what the
/// appended events are), sorted by key.
pub(super) fn lock_keys(schema: &str, condition: &AppendCondition, appends: &[StreamAppend]) -> Vec<(i64, bool)> {
    let key = |event_type: &str, tag: &str| {
        i64::from_be_bytes(fnv1a(&format!("orchestrix-dcb:{schema}\u{1f}{event_type}\u{1f}{tag}")).to_be_bytes())
    };
    let mut keys: BTreeMap<i64, bool> = BTreeMap::new();
    for event in appends.iter().flat_map(|append| &append.events) {
        let tags = event.tags();
        for event_type in [event.event_type.as_str(), "*"] {
            keys.entry(key(event_type, "-")).or_insert(false);
            for tag in tags {
                keys.entry(key(event_type, tag)).or_insert(false);
            }
        }
    }
    for item in condition.query.items() {
        // A matching event carries every tag of the item, so the first one.
        let tag = item.tags().first().map_or("-", String::as_str);
        if item.event_types().is_empty() {
            keys.insert(key("*", tag), true);
        } else {
            for event_type in item.event_types() {
                keys.insert(key(event_type, tag), true);
            }
        }
    }
    keys.into_iter().collect()
}

impl PgStore {
    /// Locks the condition's keys and checks it, inside the append's
    /// transaction. `Ok(Some(position))`: the first event that breaks it.
    pub(super) async fn check_condition(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        condition: &AppendCondition,
        appends: &[StreamAppend],
    ) -> Result<Option<u64>, sqlx::Error> {
        if condition.query.is_empty() && appends.iter().all(|append| append.events.is_empty()) {
            return Ok(None);
        }
        let (keys, exclusive): (Vec<i64>, Vec<bool>) =
            lock_keys(self.inner.config.schema(), condition, appends).into_iter().unzip();
        // One statement; unnest yields the keys in order, so they are
        // locked in ascending order.
        sqlx::query(
            "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k)::text ELSE pg_advisory_xact_lock_shared(k)::text END \
             FROM unnest($1::int8[], $2::bool[]) AS t(k, x)",
        )
        .bind(&keys)
        .bind(&exclusive)
        .execute(&mut **tx)
        .await?;
        if condition.query.is_empty() {
            return Ok(None);
        }
        // A new statement, so a snapshot taken after the locks were granted.
        let (predicate, params) = predicate(&condition.query, 2);
        let sql = format!(
            "SELECT e.global_position FROM \"{}\".events e WHERE e.global_position > $1 AND {predicate} \
             ORDER BY e.global_position LIMIT 1",
            self.inner.config.schema()
        );
        let after = to_i64(condition.after.unwrap_or(0));
        // Not prepared, so planned for this `after` and these tags.
        let row = bind_all(sqlx::query(&sql).persistent(false).bind(after), &params).fetch_optional(&mut **tx).await?;
        let first: Option<i64> = row.map(|row| row.try_get(0)).transpose()?;
        Ok(first.and_then(|p| u64::try_from(p).ok()))
    }

    /// [`orchestrix::store::EventStore::read_by_query`]: chunks of the matching
    /// events below the watermark, found through the tag index.
    ///
    /// Like `read_all`, it waits (up to the configured read wait) for the
    /// watermark to pass the head as of the call, so that it returns every
    /// event committed before it; past the wait it stops at the watermark.
    /// Either way every position it returns is final, so an event it did
    /// not return lies above the last one it did, and a condition built on
    /// the read catches it.
    pub(super) fn read_query<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a> {
        if query.is_empty() {
            return stream::empty().boxed();
        }
        let inner = &*self.inner;
        let (predicate, params) = predicate(query, 4);
        let sql = format!(
            "SELECT global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
             data::text, metadata::text, recorded_at FROM \"{}\".events e WHERE e.global_position >= $1 \
             AND e.global_position < $2 AND {predicate} ORDER BY e.global_position LIMIT $3",
            inner.config.schema()
        );
        let shared = Arc::new((sql, params));
        stream::once(async move { read_all_bound(inner).await })
            .flat_map(move |bound| match bound {
                Err(error) => stream::once(async move { Err(error) }).boxed(),
                Ok(None) => stream::empty().boxed(),
                Ok(Some(upper)) => {
                    let shared = Arc::clone(&shared);
                    paged(from_position, move |from| {
                        let shared = Arc::clone(&shared);
                        async move {
                            let (sql, params) = &*shared;
                            // Not prepared: a generic plan cannot know how
                            // selective the tags are and may walk the
                            // primary key over the whole log.
                            let query = sqlx::query(sql)
                                .persistent(false)
                                .bind(to_i64(from))
                                .bind(to_i64(upper))
                                .bind(GLOBAL_CHUNK);
                            let rows = bind_all(query, params).fetch_all(&inner.pool).await;
                            decode_chunk(
                                rows,
                                GLOBAL_CHUNK,
                                |row| event_row(row)?.into_record(),
                                |event| event.global_position,
                            )
                        }
                    })
                }
            })
            .boxed()
    }
}

/// Turns a failed check into the store's error.
pub(super) fn condition_failed(position: u64, condition: &AppendCondition) -> StoreError {
    StoreError::ConditionFailed { position, after: condition.after }
}

#[cfg(test)]
mod tests {
    use orchestrix::query::QueryItem;
    use orchestrix::{envelope::NewEvent, store::ExpectedVersion, Metadata, StreamId};
    use serde_json::value::RawValue;

    use super::*;

    fn event(event_type: &str, tags: &[&str]) -> NewEvent {
        NewEvent::new(event_type, 1, RawValue::from_string("{}".to_owned()).unwrap())
            .with_metadata(Metadata::default().with_tags(tags.iter().copied()))
    }

    #[test]
    fn a_matching_event_shares_a_key_with_the_item() {
        let appends = |e| vec![StreamAppend::new(StreamId::new("S", "1").unwrap(), ExpectedVersion::Any, vec![e])];
        let none = AppendCondition::default();
        let shared: Vec<i64> = lock_keys("s", &none, &appends(event("Sub", &["course:1", "student:2"])))
            .into_iter()
            .map(|(k, x)| {
                assert!(!x);
                k
            })
            .collect();
        for item in [
            QueryItem::types(["Sub"]).raw_tag("course:1"),
            QueryItem::types(["Sub", "Other"]).raw_tag("student:2").raw_tag("course:1"),
            QueryItem::any().raw_tag("student:2"),
            QueryItem::types(["Sub"]),
            QueryItem::any(),
        ] {
            let condition = AppendCondition::new(Query::new([item.clone()]), None);
            let exclusive = lock_keys("s", &condition, &[]);
            assert!(exclusive.iter().any(|(k, x)| *x && shared.contains(k)), "{item:?}");
        }
        let unrelated = AppendCondition::new(Query::new([QueryItem::types(["Sub"]).raw_tag("course:9")]), None);
        assert!(lock_keys("s", &unrelated, &[]).iter().all(|(k, _)| !shared.contains(k)));
    }

    #[test]
    fn predicates_number_their_parameters() {
        let query =
            Query::new([QueryItem::types(["A"]).raw_tag("t:1"), QueryItem::any().raw_tag("u:2"), QueryItem::any()]);
        let (sql, params) = predicate(&query, 2);
        assert_eq!(
            sql,
            "((e.event_type = ANY($2::text[]) AND e.tags @> $3::text[]) OR (e.tags @> $4::text[]) OR true)"
        );
        assert_eq!(params.len(), 3);
        assert_eq!(predicate(&Query::none(), 1).0, "(false)");
    }
}
