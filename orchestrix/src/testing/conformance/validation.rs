//! Checks of what every append refuses and what every read gives back
//! (the contract in [`EventStore`]'s docs, ADR 0026): input no backend
//! can store and read back is refused up front with
//! [`StoreError::InvalidInput`], the same on every backend, and payloads
//! come back as equal JSON values, not necessarily as equal bytes.
//!
//! The checks run with the [`EventStore`] checks (the `event_store` list
//! names them; [`super::event_store::unreadable_payloads_are_refused`] is
//! the same function) and, for conditional appends, with the
//! consistency-by-query checks.

use std::sync::Arc;

use super::support::{
    append, collect, event_with, expect, expect_eq, expect_invalid_input, json, ok, unique_stream, within,
};
use crate::envelope::{Metadata, NewEvent, RecordedEvent, MAX_JSON_DEPTH};
use crate::error::StoreError;
use crate::query::{AppendCondition, Query, QueryItem, MAX_TAG_LEN};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StreamAppend};
use crate::stream::StreamId;

/// JSON nested `depth` arrays deep around `0`.
fn nested(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

/// Event data no backend can store and read back, each with what it is.
fn unreadable_data() -> Vec<(&'static str, String)> {
    vec![
        ("a lone leading surrogate escape", r#"{"text":"\ud800"}"#.to_owned()),
        ("a lone trailing surrogate escape", r#"{"text":"a\udc00b"}"#.to_owned()),
        ("a lone surrogate escape in a key", r#"{"\ud800":1}"#.to_owned()),
        ("a NUL escape", r#"{"text":"a\u0000b"}"#.to_owned()),
        ("a NUL escape in a key", r#"{"a\u0000":1}"#.to_owned()),
        ("a NUL escape deep inside", r#"{"a":[{"b":["\u0000"]}]}"#.to_owned()),
        ("a number beyond f64", r#"{"n":1e400}"#.to_owned()),
        ("nesting one level past the limit", nested(MAX_JSON_DEPTH + 1)),
        ("nesting 100,000 levels deep", nested(100_000)),
    ]
}

/// Metadata no backend can store and read back, each with what it is.
fn unreadable_metadata() -> Vec<(&'static str, Metadata)> {
    vec![
        ("a NUL in a header value", Metadata::default().with_header("source", "a\0b")),
        ("a NUL in a header name", Metadata::default().with_header("so\0urce", "import")),
        ("a NUL in the tenant", Metadata::default().with_tenant("ac\0me")),
    ]
}

/// Tags conditions refuse ([`crate::query::validate_tag`]), each with what
/// it is.
fn invalid_tags() -> Vec<(&'static str, String)> {
    vec![
        ("a tag over the limit", format!("sku:{}", "x".repeat(MAX_TAG_LEN))),
        ("a tag with NUL", "sku:a\0b".to_owned()),
        ("an empty tag", String::new()),
    ]
}

/// Every refused event: bad data, bad metadata, bad tags, bad types.
fn refused_events() -> Vec<(String, NewEvent)> {
    let mut events = Vec::new();
    for (what, data) in unreadable_data() {
        events.push((format!("data with {what}"), event_with("Noted", &data, Metadata::default())));
    }
    for (what, metadata) in unreadable_metadata() {
        events.push((format!("metadata with {what}"), event_with("Noted", "{}", metadata)));
    }
    for (what, tag) in invalid_tags() {
        events.push((format!("an event with {what}"), event_with("Noted", "{}", Metadata::default().with_tag(tag))));
    }
    for event_type in [".", ".."] {
        events.push((format!("the event type `{event_type}`"), event_with(event_type, "{}", Metadata::default())));
    }
    events
}

async fn version<S: EventStore>(check: &str, store: &S, stream: &StreamId) -> Option<u64> {
    ok(check, "stream_version", within(check, "stream_version", store.stream_version(stream)).await)
}

async fn head<S: EventStore>(check: &str, store: &S) -> Option<u64> {
    ok(check, "head_position", within(check, "head_position", store.head_position()).await)
}

/// Fails unless the store holds nothing at all.
async fn expect_nothing_stored<S: EventStore>(check: &str, store: &S, stream: &StreamId) {
    expect_eq(check, "stream version after the refusals", &version(check, store, stream).await, &None);
    expect_eq(check, "head after the refusals", &head(check, store).await, &None);
    let all = collect(check, "read_all after the refusals", store.read_all(0, &EventFilter::all())).await;
    expect_eq(check, "events in the global log after the refusals", &all.len(), &0);
}

/// Data that is valid JSON but not storable everywhere (lone surrogate
/// escapes, `\u0000`, numbers beyond `f64`, nesting past
/// [`MAX_JSON_DEPTH`]), metadata with NUL, tags conditions refuse and the
/// event types `.` and `..` are refused by [`EventStore::append`] and
/// [`EventStore::append_many`] with [`StoreError::InvalidInput`], alone
/// or after a valid event of the same call, and nothing is stored.
pub async fn unreadable_payloads_are_refused<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::unreadable_payloads_are_refused";
    let stream = unique_stream("Note");
    let fine = || event_with("Noted", r#"{"text":"fine"}"#, Metadata::default());
    for (what, event) in refused_events() {
        let alone = within(CHECK, "append", store.append(&stream, ExpectedVersion::Any, vec![event.clone()])).await;
        expect_invalid_input(CHECK, &format!("append of {what}"), &alone);
        let after_a_good_one =
            within(CHECK, "append", store.append(&stream, ExpectedVersion::Any, vec![fine(), event.clone()])).await;
        expect_invalid_input(CHECK, &format!("append of a valid event and {what}"), &after_a_good_one);
        let parts = vec![
            StreamAppend::new(unique_stream("Note"), ExpectedVersion::Any, vec![fine()]),
            StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event]),
        ];
        let many = within(CHECK, "append_many", store.append_many(parts)).await;
        expect_invalid_input(CHECK, &format!("append_many with {what}"), &many);
    }
    expect_nothing_stored(CHECK, &store, &stream).await;
}

/// What is just within the rules is stored and read back as the same JSON
/// value: nesting of exactly [`MAX_JSON_DEPTH`], a surrogate *pair* escape
/// (one character, 🦀), escaped control characters other than NUL, and a
/// tag of exactly [`MAX_TAG_LEN`] bytes.
pub async fn payloads_at_the_limits_are_stored<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::payloads_at_the_limits_are_stored";
    let stream = unique_stream("Note");
    let tag = format!("sku:{}", "x".repeat(MAX_TAG_LEN - 4));
    let datas = [nested(MAX_JSON_DEPTH), r#"{"crab":"\ud83e\udd80","ctl":"\u0001\u001f\t"}"#.to_owned()];
    let events: Vec<NewEvent> =
        datas.iter().map(|data| event_with("Noted", data, Metadata::default().with_tag(tag.clone()))).collect();
    let written = ok(
        CHECK,
        "append at the limits",
        within(CHECK, "append", store.append(&stream, ExpectedVersion::NoStream, events)).await,
    );
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    expect_eq(CHECK, "events read back", &read.len(), &datas.len());
    for ((record, data), written) in read.iter().zip(&datas).zip(&written) {
        expect_eq(CHECK, "data read back, as a JSON value", &json(record.data.get()), &json(data));
        expect_eq(CHECK, "data returned by the append, as a JSON value", &json(written.data.get()), &json(data));
        expect_eq(CHECK, "tags read back", record.tags(), &[tag.clone()][..]);
    }
    let crab: serde_json::Value = json(read[1].data.get());
    expect_eq(CHECK, "the surrogate pair decoded", &crab["crab"], &serde_json::Value::from("🦀"));
}

/// Data and metadata come back as **equal JSON values**; their bytes may
/// differ (PostgreSQL's jsonb reorders keys and drops whitespace). The
/// check compares values only, and does not require bytes to be kept: a
/// store that keeps them (memory, SQLite) and one that does not
/// (PostgreSQL) both pass.
pub async fn payloads_come_back_as_equal_values<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::payloads_come_back_as_equal_values";
    let stream = unique_stream("Note");
    // Keys out of order at every level, with whitespace a store may drop.
    let data = r#"{ "zeta": 1, "alpha": { "y": [3, {"b": true, "a": null}], "x": "é\n" }, "mid": -2.5 }"#;
    let reordered = r#"{"alpha":{"x":"é\n","y":[3,{"a":null,"b":true}]},"mid":-2.5,"zeta":1}"#;
    // The comparison is by value: a reordered payload is the same value with
    // different bytes, so nothing below may compare text.
    expect_eq(CHECK, "a reordered payload, as a value", &json(data), &json(reordered));
    assert_ne!(data, reordered, "the fixture's two spellings differ as bytes");
    let metadata = Metadata::default().with_header("zeta", "1").with_header("alpha", "2").with_tag("note:1");
    let written =
        append(CHECK, &store, &stream, ExpectedVersion::NoStream, vec![event_with("Noted", data, metadata.clone())])
            .await;
    let read = collect(CHECK, "read_stream", store.read_stream(&stream, 1)).await;
    let all = collect(CHECK, "read_all", store.read_all(0, &EventFilter::all())).await;
    for (what, record) in [("the append's record", &written[0]), ("read_stream", &read[0]), ("read_all", &all[0])] {
        expect_eq(CHECK, &format!("data from {what}, as a JSON value"), &json(record.data.get()), &json(data));
        expect_eq(CHECK, &format!("metadata from {what}"), &record.metadata, &metadata);
    }
}

/// [`EventStore::append_if`] refuses what [`EventStore::append`] refuses
/// (unreadable data and metadata, tags conditions would refuse, `.` and
/// `..`) with [`StoreError::InvalidInput`] before checking the condition,
/// and stores nothing.
pub async fn append_if_refuses_unreadable_payloads<S: EventStore>(store: S) {
    const CHECK: &str = "consistency_by_query::append_if_refuses_unreadable_payloads";
    let stream = unique_stream("Note");
    let condition = || AppendCondition::new(Query::new([QueryItem::types(["Noted"]).raw_tag("note:1")]), None);
    for (what, event) in refused_events() {
        let parts = vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event])];
        let result: Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> =
            within(CHECK, "append_if", store.append_if(condition(), parts)).await;
        expect_invalid_input(CHECK, &format!("append_if with {what}"), &result);
    }
    expect_nothing_stored(CHECK, &store, &stream).await;
}

/// One store shared by several tenant views in [`tenants_cannot_forge_tenant_tags`].
#[derive(Debug)]
struct Shared<S>(Arc<S>);

#[async_trait::async_trait]
impl<S: EventStore> EventStore for Shared<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        self.0.append(stream, expected, events).await
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.0.append_many(appends).await
    }

    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> crate::store::EventStream<'a> {
        self.0.read_stream(stream, from_version)
    }

    fn read_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        at_or_before: Option<u64>,
        snapshots: &'a dyn crate::store::SnapshotStore,
    ) -> crate::store::BoxFuture<'a, Result<crate::store::SnapshotAndTail<'a>, StoreError>> {
        self.0.read_from_snapshot(stream, at_or_before, snapshots)
    }

    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> crate::store::EventStream<'a> {
        self.0.read_all(from_position, filter)
    }

    fn subscribe(&self, from_position: u64, filter: EventFilter) -> crate::store::EventStream<'static> {
        self.0.subscribe(from_position, filter)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        self.0.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Option<u64>, StoreError> {
        self.0.head_position().await
    }

    fn read_by_query<'a>(&'a self, query: &'a Query, from_position: u64) -> crate::store::EventStream<'a> {
        self.0.read_by_query(query, from_position)
    }

    fn declare_personal_data(&self, data: &'static [crate::personal::PersonalData]) -> bool {
        self.0.declare_personal_data(data)
    }

    async fn append_if(
        &self,
        condition: AppendCondition,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
        self.0.append_if(condition, appends).await
    }
}

/// Through a [`TenantStore`](crate::tenant::TenantStore) view, a tenant
/// cannot put a reserved tag (`orchestrix.tenant:<another tenant>`) on its
/// events, by any append, nor ask for one in a query: each is
/// [`StoreError::InvalidInput`], nothing is stored, and the other tenant's
/// conditional appends go on succeeding.
pub async fn tenants_cannot_forge_tenant_tags<S: EventStore>(store: S) {
    use crate::tenant::TenantStore;
    const CHECK: &str = "consistency_by_query::tenants_cannot_forge_tenant_tags";
    let shared = Arc::new(store);
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let view = |name: &str| {
        let tenant = format!("{name}-{suffix}");
        ok(CHECK, "a tenant view", TenantStore::new(Shared(Arc::clone(&shared)), tenant))
    };
    let (acme, evil) = (view("acme"), view("evil"));
    let forged = acme.tenant_tag();
    let sku = "sku:42".to_owned();
    let stream = unique_stream("Stock");
    let item = || QueryItem::types(["StockReceived"]).raw_tag(sku.clone());
    let condition = || AppendCondition::new(Query::new([item()]), None);
    let forging = || event_with("StockReceived", "{}", Metadata::default().with_tags([forged.clone(), sku.clone()]));
    let part = |event: NewEvent| vec![StreamAppend::new(stream.clone(), ExpectedVersion::Any, vec![event])];

    let appended = within(CHECK, "append", evil.append(&stream, ExpectedVersion::Any, vec![forging()])).await;
    expect_invalid_input(CHECK, "an append with another tenant's tag", &appended);
    let many = within(CHECK, "append_many", evil.append_many(part(forging()))).await;
    expect_invalid_input(CHECK, "an append_many with another tenant's tag", &many);
    let conditional = within(CHECK, "append_if", evil.append_if(condition(), part(forging()))).await;
    expect_invalid_input(CHECK, "an append_if with another tenant's tag", &conditional);
    let reserved = || event_with("StockReceived", "{}", Metadata::default().with_tag("orchestrix.anything:1"));
    let other_reserved = within(CHECK, "append", evil.append(&stream, ExpectedVersion::Any, vec![reserved()])).await;
    expect_invalid_input(CHECK, "an append with a reserved tag", &other_reserved);
    let spying = Query::new([item().raw_tag(forged.clone())]);
    let spied = within(
        CHECK,
        "append_if",
        evil.append_if(
            AppendCondition::new(spying.clone(), None),
            part(event_with("StockReceived", "{}", Metadata::default())),
        ),
    )
    .await;
    expect_invalid_input(CHECK, "an append_if whose query names another tenant's tag", &spied);
    let read: Vec<_> =
        within(CHECK, "read_by_query", futures_util::StreamExt::collect::<Vec<_>>(evil.read_by_query(&spying, 0)))
            .await;
    expect(
        CHECK,
        matches!(read.as_slice(), [Err(StoreError::InvalidInput(_))]),
        format_args!("read_by_query with another tenant's tag gave {read:?}, expected one InvalidInput"),
    );
    expect_eq(CHECK, "head after the refusals", &head(CHECK, &*shared).await, &None);

    // Evil's own tag, and ordinary tags, still pass; acme's condition is
    // untouched by evil's events.
    let own = event_with("StockReceived", "{}", Metadata::default().with_tags([evil.tenant_tag(), sku.clone()]));
    ok(
        CHECK,
        "evil's own append",
        within(CHECK, "append", evil.append(&stream, ExpectedVersion::Any, vec![own])).await,
    );
    let acme_stream = unique_stream("Stock");
    let acme_part = vec![StreamAppend::new(
        acme_stream,
        ExpectedVersion::NoStream,
        vec![event_with("StockReceived", "{}", Metadata::default().with_tag(sku.clone()))],
    )];
    let acme_result = within(CHECK, "append_if", acme.append_if(condition(), acme_part)).await;
    ok(CHECK, "acme's conditional append after evil's events", acme_result);
}
