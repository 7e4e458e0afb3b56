//! Checks of [`Retag`] implementations ([`crate::retag`]): untagged events
//! are found, re-tagging makes them visible to consistency queries and
//! conditions, and it changes nothing but tags, all or nothing.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::support::{
    append, collect, event_with, expect, expect_eq, expect_invalid_input, json, ok, unique_stream, within,
};
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::error::{DecodeErrorKind, StoreError};
use crate::event::{Event, EventType};
use crate::query::{AppendCondition, Query, QueryItem};
use crate::retag::{retag_from_fields, retag_with, untagged_events, Retag, TagChange};
use crate::store::{EventFilter, ExpectedVersion, StreamAppend};

/// The checks' event: stock of a SKU received, tagged `sku:<sku>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Received {
    sku: String,
    count: u32,
}

/// The stored type of [`Received`].
const RECEIVED: &str = "StockReceived";

impl Event for Received {
    fn event_types() -> &'static [EventType] {
        const TYPES: [EventType; 1] = [EventType { name: RECEIVED, version: 1 }];
        &TYPES
    }

    fn event_type(&self) -> &'static str {
        RECEIVED
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        crate::event::encode_raw(self)
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        if event_type != RECEIVED {
            return Err(DecodeErrorKind::UnknownType);
        }
        crate::event::decode_versioned(data, schema_version, 1, &[])
    }

    fn tags(&self) -> Vec<String> {
        vec![crate::query::tag("sku", &self.sku)]
    }
}

/// A [`Received`] written the old way: without tags, with a header.
fn untagged(sku: &str, count: u32) -> NewEvent {
    let mut event =
        NewEvent::encode(&Received { sku: sku.to_owned(), count }, Metadata::default().with_header("source", "import"))
            .expect("encodes");
    event.metadata.tags.clear();
    event
}

async fn by_query<S: Retag>(check: &str, store: &S, query: &Query) -> Vec<Arc<RecordedEvent>> {
    let events: Vec<_> = within(check, "read_by_query", store.read_by_query(query, 0).collect::<Vec<_>>()).await;
    events.into_iter().map(|event| ok(check, "read_by_query", event)).collect()
}

/// Events written before their tag existed are invisible to a query by
/// that tag and are counted by [`untagged_events`]; after
/// [`retag_from_fields`] the query and conditions see them, their data,
/// other metadata and positions unchanged, and a second run changes
/// nothing.
pub async fn retag_makes_untagged_events_visible<S: Retag>(store: S) {
    const CHECK: &str = "retag::retag_makes_untagged_events_visible";
    let sku = uuid::Uuid::now_v7().simple().to_string();
    let bin = unique_stream("Bin");
    let written = append(
        CHECK,
        &store,
        &bin,
        ExpectedVersion::NoStream,
        vec![
            untagged(&sku, 5),
            untagged("other", 1),
            event_with("BinOpened", "{}", Metadata::default()),
            untagged(&sku, 2),
        ],
    )
    .await;
    let query = Query::new([QueryItem::of::<Received>().tag("sku", sku.as_str())]);
    expect_eq(CHECK, "events a query by tag sees before re-tagging", &by_query(CHECK, &store, &query).await.len(), &0);
    let untagged_counts =
        ok(CHECK, "untagged_events", within(CHECK, "untagged_events", untagged_events(&store, &query)).await);
    expect_eq(
        CHECK,
        "untagged events per type",
        &untagged_counts.into_iter().collect::<Vec<_>>(),
        &vec![(RECEIVED.to_owned(), 3)],
    );

    let report = within(CHECK, "retag_from_fields", retag_from_fields::<Received, _>(&store)).await;
    let report = report.unwrap_or_else(|error| super::support::fail(CHECK, format_args!("retag_from_fields: {error}")));
    expect_eq(CHECK, "events scanned and changed", &(report.scanned, report.changed), &(3, 3));

    let seen = by_query(CHECK, &store, &query).await;
    let positions: Vec<u64> = seen.iter().map(|event| event.global_position).collect();
    expect_eq(
        CHECK,
        "positions a query by tag sees after re-tagging",
        &positions,
        &vec![written[0].global_position, written[3].global_position],
    );
    let read = collect(CHECK, "read_stream", store.read_stream(&bin, 1)).await;
    for (before, after) in written.iter().zip(&read) {
        expect_eq(CHECK, "id after re-tagging", &after.id, &before.id);
        expect_eq(CHECK, "position after re-tagging", &after.global_position, &before.global_position);
        expect_eq(CHECK, "data after re-tagging", &json(after.data.get()), &json(before.data.get()));
        expect_eq(CHECK, "headers after re-tagging", &after.metadata.headers, &before.metadata.headers);
    }
    expect_eq(CHECK, "tags of the other SKU's event", read[1].tags(), &["sku:other".to_owned()][..]);
    expect_eq(CHECK, "tags of the untouched type", read[2].tags(), &[][..]);
    let after_counts =
        ok(CHECK, "untagged_events", within(CHECK, "untagged_events", untagged_events(&store, &query)).await);
    expect(CHECK, after_counts.is_empty(), format_args!("untagged events after re-tagging: {after_counts:?}"));

    // A condition that read nothing now fails on the re-tagged events.
    let part =
        vec![StreamAppend::new(unique_stream("Reservation"), ExpectedVersion::NoStream, vec![untagged(&sku, 1)])];
    let result = within(CHECK, "append_if", store.append_if(AppendCondition::new(query, None), part)).await;
    expect(
        CHECK,
        matches!(result, Err(StoreError::ConditionFailed { .. })),
        format_args!("append_if after nothing was read, with re-tagged events: {result:?}"),
    );
    let again = within(CHECK, "retag_from_fields", retag_from_fields::<Received, _>(&store)).await;
    let again = again.unwrap_or_else(|error| super::support::fail(CHECK, format_args!("retag_from_fields: {error}")));
    expect_eq(CHECK, "events changed by a second run", &again.changed, &0);
}

/// [`Retag::replace_tags`] is all or nothing: a position without an event
/// or an invalid tag is `InvalidInput` and changes nothing; empty tags
/// remove an event's tags; [`retag_with`] applies a function of the
/// caller's.
pub async fn replace_tags_is_all_or_nothing<S: Retag>(store: S) {
    const CHECK: &str = "retag::replace_tags_is_all_or_nothing";
    let stream = unique_stream("Bin");
    let written =
        append(CHECK, &store, &stream, ExpectedVersion::NoStream, vec![untagged("a", 1), untagged("b", 2)]).await;
    let (first, second) = (written[0].global_position, written[1].global_position);
    let head = ok(CHECK, "head_position", within(CHECK, "head_position", store.head_position()).await).unwrap_or(0);
    let tags_now = |read: &[Arc<RecordedEvent>]| read.iter().map(|event| event.tags().to_vec()).collect::<Vec<_>>();
    for (what, changes) in [
        (
            "a position without an event",
            vec![
                TagChange { position: first, tags: vec!["x:1".into()] },
                TagChange { position: head + 1000, tags: vec!["x:2".into()] },
            ],
        ),
        (
            "an invalid tag",
            vec![
                TagChange { position: first, tags: vec!["x:1".into()] },
                TagChange { position: second, tags: vec!["x\0".into()] },
            ],
        ),
    ] {
        let result = within(CHECK, "replace_tags", store.replace_tags(changes)).await;
        expect_invalid_input(CHECK, &format!("replace_tags with {what}"), &result);
        let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
        expect_eq(CHECK, &format!("tags after a refused change with {what}"), &tags_now(&read), &vec![vec![], vec![]]);
    }
    let changes = vec![TagChange { position: second, tags: vec!["z:1".into(), "a:1".into(), "z:1".into()] }];
    ok(CHECK, "replace_tags", within(CHECK, "replace_tags", store.replace_tags(changes)).await);
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    expect_eq(
        CHECK,
        "tags after replace_tags",
        &tags_now(&read),
        &vec![vec![], vec!["a:1".to_owned(), "z:1".to_owned()]],
    );
    let filter = EventFilter::types([RECEIVED]);
    let report = within(
        CHECK,
        "retag_with",
        retag_with(&store, &filter, |record| {
            Ok((record.global_position == first).then(|| vec!["bin:first".to_owned()]))
        }),
    )
    .await;
    let report = report.unwrap_or_else(|error| super::support::fail(CHECK, format_args!("retag_with: {error}")));
    expect_eq(CHECK, "events retag_with changed", &report.changed, &1);
    let removed = vec![TagChange { position: second, tags: vec![] }];
    ok(CHECK, "replace_tags", within(CHECK, "replace_tags", store.replace_tags(removed)).await);
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    expect_eq(CHECK, "tags at the end", &tags_now(&read), &vec![vec!["bin:first".to_owned()], vec![]]);
    expect_eq(CHECK, "headers kept", &read[1].metadata.headers, &written[1].metadata.headers);
}
