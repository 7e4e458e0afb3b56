//! Tenant views: one tenant cannot read or overwrite another's data through
//! any public API of its view, and a view behaves like a store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use orchestrix::memory::{
    InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore, InMemoryKeyStore, InMemoryKeyValueStore,
    InMemorySnapshotStore,
};
use orchestrix::store::{DeadLetter, EventStream, Snapshot, StreamAppend};
use orchestrix::tenant::{TenantId, TenantStore};
use orchestrix::testing::conformance;
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    store::{
        CheckpointStore, DeadLetterStore, EventFilter, EventStore, ExpectedVersion, KeyStore, KeyValueStore,
        SnapshotStore,
    },
    Metadata, StoreError, StreamId,
};
use serde_json::value::RawValue;
use uuid::Uuid;

fn event(event_type: &str, n: u32) -> NewEvent {
    NewEvent::new(event_type, 1, RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap())
}

fn stream(category: &str, id: &str) -> StreamId {
    StreamId::new(category, id).unwrap()
}

fn numbers(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
    events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e.data.get()).unwrap()["n"].as_u64().unwrap())
        .collect()
}

async fn read_stream(store: &impl EventStore, s: &StreamId) -> Vec<Arc<RecordedEvent>> {
    store.read_stream(s, 1).map(Result::unwrap).collect().await
}

async fn read_all(store: &impl EventStore) -> Vec<Arc<RecordedEvent>> {
    let filter = EventFilter::all();
    store.read_all(0, &filter).map(Result::unwrap).collect().await
}

/// Everything a subscription delivers until it stays quiet for a moment.
async fn drain(subscription: &mut EventStream<'static>) -> Vec<Arc<RecordedEvent>> {
    let mut events = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await {
        events.push(item.unwrap());
    }
    events
}

fn snapshot(s: &StreamId, version: u64, state: &str) -> Snapshot {
    Snapshot::new(s.clone(), version, 1, RawValue::from_string(state.to_owned()).unwrap(), Utc::now())
}

#[derive(Debug, Clone, Default)]
struct Shared {
    events: InMemoryEventStore,
    snapshots: InMemorySnapshotStore,
    checkpoints: InMemoryCheckpointStore,
    keys: InMemoryKeyValueStore,
    letters: InMemoryDeadLetterStore,
}

struct Tenant {
    events: TenantStore<InMemoryEventStore>,
    snapshots: TenantStore<InMemorySnapshotStore>,
    checkpoints: TenantStore<InMemoryCheckpointStore>,
    keys: TenantStore<InMemoryKeyValueStore>,
    letters: TenantStore<InMemoryDeadLetterStore>,
}

impl Shared {
    fn tenant(&self, id: &str) -> Tenant {
        Tenant {
            events: TenantStore::new(self.events.clone(), id).unwrap(),
            snapshots: TenantStore::new(self.snapshots.clone(), id).unwrap(),
            checkpoints: TenantStore::new(self.checkpoints.clone(), id).unwrap(),
            keys: TenantStore::new(self.keys.clone(), id).unwrap(),
            letters: TenantStore::new(self.letters.clone(), id).unwrap(),
        }
    }
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
async fn one_tenant_cannot_read_or_overwrite_another_through_any_api_of_its_view() {
    let shared = Shared::default();
    // `acme-2` and `acm` share a prefix with `acme`; `globex` is unrelated.
    let acme = shared.tenant("acme");
    let others = [shared.tenant("globex"), shared.tenant("acme-2"), shared.tenant("acm")];
    let mut acme_subscription = acme.events.subscribe(0, EventFilter::all());
    let mut other_subscriptions: Vec<_> = others.iter().map(|t| t.events.subscribe(0, EventFilter::all())).collect();

    // acme writes a stream, a multi-stream append, a snapshot, a
    // checkpoint, a key and a dead letter.
    let account = stream("Account", "1");
    let (account2, order) = (stream("Account", "2"), stream("Order", "1"));
    acme.events
        .append(&account, ExpectedVersion::NoStream, vec![event("Opened", 1), event("Deposited", 2)])
        .await
        .unwrap();
    acme.events
        .append_many(vec![
            StreamAppend::new(account2.clone(), ExpectedVersion::NoStream, vec![event("Opened", 3)]),
            StreamAppend::new(order.clone(), ExpectedVersion::NoStream, vec![event("Placed", 4)]),
        ])
        .await
        .unwrap();
    acme.snapshots.save(snapshot(&account, 2, r#"{"owner":"acme"}"#)).await.unwrap();
    acme.checkpoints.save("balances", 42).await.unwrap();
    acme.keys.put("config/limit", Bytes::from_static(b"acme")).await.unwrap();
    let letter_id = Uuid::now_v7();
    let acme_event = read_stream(&acme.events, &account).await.remove(0);
    let letter = DeadLetter::new(letter_id, "balances", RecordedEvent::clone(&acme_event), "boom", 3, Utc::now());
    acme.letters.park(letter.clone()).await.unwrap();

    for (index, other) in others.iter().enumerate() {
        let what = other.events.tenant().to_string();
        // Reads: nothing of acme's.
        assert_eq!(other.events.stream_version(&account).await.unwrap(), None, "{what}");
        assert!(read_stream(&other.events, &account).await.is_empty(), "{what}");
        assert!(read_all(&other.events).await.is_empty(), "{what}");
        let filter = EventFilter::types(["Opened", "Placed"]);
        assert_eq!(other.events.read_all(0, &filter).count().await, 0, "{what}");
        assert!(other.snapshots.load(&account, None).await.unwrap().is_none(), "{what}");
        assert_eq!(CheckpointStore::load(&other.checkpoints, "balances").await.unwrap(), None, "{what}");
        assert_eq!(other.keys.get("config/limit").await.unwrap(), None, "{what}");
        assert!(other.keys.keys("").await.unwrap().is_empty(), "{what}");
        assert!(other.letters.list(None).await.unwrap().is_empty(), "{what}");
        assert!(other.letters.list(Some("balances")).await.unwrap().is_empty(), "{what}");
        assert!(other.letters.get(letter_id).await.unwrap().is_none(), "{what}");

        // Writes: an Exact expectation of acme's version finds no stream;
        // Any and NoStream create the tenant's own stream; multi-stream
        // appends stay in the tenant's namespace.
        let result = other.events.append(&account, ExpectedVersion::Exact(2), vec![event("Hijacked", 100)]).await;
        assert!(
            matches!(&result, Err(StoreError::WrongExpectedVersion { stream, actual: None, .. }) if *stream == account),
            "{what}: {result:?}"
        );
        let own = other.events.append(&account, ExpectedVersion::Any, vec![event("Own", 101)]).await.unwrap();
        assert_eq!((own[0].stream.clone(), own[0].stream_version), (account.clone(), 1), "{what}");
        let result = other
            .events
            .append_many(vec![
                StreamAppend::new(account.clone(), ExpectedVersion::Exact(1), vec![event("Own", 102)]),
                StreamAppend::new(account2.clone(), ExpectedVersion::Exact(1), vec![event("Hijacked", 103)]),
            ])
            .await;
        assert!(
            matches!(&result, Err(StoreError::WrongExpectedVersion { stream, actual: None, .. }) if *stream == account2),
            "{what}: {result:?}"
        );
        other
            .events
            .append_many(vec![
                StreamAppend::new(account.clone(), ExpectedVersion::Exact(1), vec![event("Own", 104)]),
                StreamAppend::new(order.clone(), ExpectedVersion::NoStream, vec![event("Own", 105)]),
            ])
            .await
            .unwrap();
        // A stream id that spells acme's namespace stays in the tenant's.
        let lookalike = stream("Account", "acme/1");
        other.events.append(&lookalike, ExpectedVersion::NoStream, vec![event("Own", 106)]).await.unwrap();
        // An event that claims to be acme's is refused.
        let mut forged = event("Forged", 107);
        forged.metadata = Metadata::default().with_tenant("acme");
        let result = other.events.append(&stream("Account", "9"), ExpectedVersion::Any, vec![forged]).await;
        assert!(matches!(result, Err(StoreError::InvalidInput(_))), "{what}: {result:?}");

        // Snapshots, checkpoints, keys and dead letters of the same names.
        other.snapshots.save(snapshot(&account, 2, r#"{"owner":"other"}"#)).await.unwrap();
        other.snapshots.delete(&account2).await.unwrap();
        CheckpointStore::save(&other.checkpoints, "balances", 1).await.unwrap();
        CheckpointStore::delete(&other.checkpoints, "balances").await.unwrap();
        other.keys.put("config/limit", Bytes::from_static(b"other")).await.unwrap();
        assert!(other.keys.delete("config/limit").await.unwrap(), "{what}");
        assert!(!other.letters.remove(letter_id).await.unwrap(), "{what}");
        let result = other
            .letters
            .park({
                let mut theirs = letter.clone();
                theirs.consumer = "mine".to_owned();
                theirs
            })
            .await;
        assert!(matches!(result, Err(StoreError::InvalidInput(_))), "{what}: {result:?}");

        // The tenant sees its own writes, as its own.
        let own_events = read_all(&other.events).await;
        assert_eq!(numbers(&own_events), vec![101, 104, 105, 106], "{what}");
        assert!(own_events.iter().all(|e| e.tenant() == Some(other.events.tenant().as_str())), "{what}");
        assert_eq!(own_events[3].stream, lookalike, "{what}");
        let delivered = drain(&mut other_subscriptions[index]).await;
        assert_eq!(numbers(&delivered), vec![101, 104, 105, 106], "{what}: its subscription");
    }

    // acme's data is exactly what acme wrote.
    assert_eq!(numbers(&read_stream(&acme.events, &account).await), vec![1, 2]);
    assert_eq!(acme.events.stream_version(&account2).await.unwrap(), Some(1));
    assert_eq!(acme.events.stream_version(&order).await.unwrap(), Some(1));
    assert!(read_stream(&acme.events, &stream("Account", "acme/1")).await.is_empty());
    let all = read_all(&acme.events).await;
    assert_eq!(numbers(&all), vec![1, 2, 3, 4]);
    assert!(all.iter().all(|e| e.tenant() == Some("acme")));
    assert_eq!(numbers(&drain(&mut acme_subscription).await), vec![1, 2, 3, 4]);
    let kept = acme.snapshots.load(&account, None).await.unwrap().unwrap();
    assert_eq!((kept.stream, kept.version, kept.state.get()), (account.clone(), 2, r#"{"owner":"acme"}"#));
    assert_eq!(CheckpointStore::load(&acme.checkpoints, "balances").await.unwrap(), Some(42));
    assert_eq!(acme.keys.get("config/limit").await.unwrap(), Some(Bytes::from_static(b"acme")));
    assert_eq!(acme.keys.keys("config/").await.unwrap(), vec!["config/limit".to_owned()]);
    let letters = acme.letters.list(None).await.unwrap();
    assert_eq!((letters.len(), letters[0].consumer.as_str()), (1, "balances"));
    assert!(acme.letters.remove(letter_id).await.unwrap());

    // Behind the views, one store holds every tenant's streams apart.
    assert_eq!(read_all(&shared.events).await.len(), 4 + 4 * others.len());
    assert_eq!(shared.events.stream_version(&stream("Account", "acme/1")).await.unwrap(), Some(2));
    assert_eq!(shared.events.stream_version(&stream("Account", "globex/acme/1")).await.unwrap(), Some(1));
}

#[test]
fn tenant_ids_refuse_separators_and_junk() {
    for bad in ["", "a/b", "/", "tab\there", " padded", "padded ", "nul\0", &"x".repeat(129)] {
        assert!(matches!(TenantId::new(bad), Err(StoreError::InvalidInput(_))), "{bad:?} was accepted");
        assert!(TenantStore::new(InMemoryEventStore::new(), bad).is_err(), "{bad:?} was accepted by a view");
    }
    for good in ["acme", "ACME Corp", "tenant-42", "ünï 🦀", &"x".repeat(128)] {
        assert_eq!(TenantId::new(good).unwrap().as_str(), good);
    }
}

fn view<S>(inner: S) -> TenantStore<S> {
    TenantStore::new(inner, "acme").unwrap()
}

/// A view is a store: the port checks pass through it. (The event checks
/// that write events for other tenants on purpose, `append_and_read_back`,
/// `hostile_strings_round_trip` and `payloads_come_back_as_equal_values`,
/// are left out: the view refuses those events, or stamps its tenant on
/// them, which the test above checks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_passes_the_port_checks() {
    use conformance::event_store as checks;
    let fresh = || view(InMemoryEventStore::new());
    checks::no_stream_on_existing_stream_conflicts(fresh()).await;
    checks::exact_mismatch_conflicts_and_writes_nothing(fresh()).await;
    checks::exact_zero_is_no_stream(fresh()).await;
    checks::any_appends_whatever_the_version(fresh()).await;
    checks::empty_batch_checks_and_stores_nothing(fresh()).await;
    checks::batch_is_atomic(fresh()).await;
    checks::read_stream_from_a_version(fresh()).await;
    checks::read_missing_stream_is_empty(fresh()).await;
    checks::stream_version_and_head_position(fresh()).await;
    checks::read_all_from_a_position_with_a_filter(fresh()).await;
    checks::global_order_across_streams(fresh()).await;
    checks::stream_ids_are_exact(fresh()).await;
    checks::long_streams_read_back_in_order(fresh()).await;
    checks::concurrent_exact_appends_to_one_stream(fresh()).await;
    checks::concurrent_appends_to_different_streams(fresh()).await;
    checks::subscribe_catches_up_then_follows_live(fresh()).await;
    checks::subscribe_with_a_filter(fresh()).await;
    checks::subscribe_from_a_middle_position(fresh()).await;
    checks::subscription_races_with_appends(fresh()).await;
    checks::dropped_subscription_is_harmless(fresh()).await;
    checks::invalid_event_types_are_refused(fresh()).await;
    checks::append_many_writes_every_stream(fresh()).await;
    checks::append_many_conflict_writes_nothing(fresh()).await;
    checks::append_many_guards_and_empty_calls(fresh()).await;
    checks::append_many_refuses_a_stream_twice(fresh()).await;
    checks::concurrent_append_many_is_all_or_nothing(fresh()).await;
    checks::subscribers_see_append_many_whole(fresh()).await;
    checks::guards_hold_against_concurrent_writes(fresh()).await;
    checks::unreadable_payloads_are_refused(fresh()).await;
    checks::payloads_at_the_limits_are_stored(fresh()).await;
    {
        // `tenants_cannot_forge_tenant_tags` makes views of its own, and
        // views do not nest.
        use conformance::consistency_by_query as conditions;
        conditions::tags_round_trip_and_queries_select(fresh()).await;
        conditions::global_reads_filter_by_tags(fresh()).await;
        conditions::condition_passes_then_fails(fresh()).await;
        conditions::condition_and_expectations_are_atomic(fresh()).await;
        conditions::concurrent_conditions_have_one_winner(fresh()).await;
        conditions::no_write_skew_across_queries(fresh()).await;
        conditions::append_if_refuses_unreadable_payloads(fresh()).await;
    }
    conformance::idempotent_append::events_keep_their_ids(fresh()).await;
    conformance::idempotent_append::retried_append_is_answered_as_the_original(fresh()).await;
    conformance::idempotent_append::retry_after_the_stream_moved_on(fresh()).await;
    conformance::idempotent_append::partial_or_foreign_ids_are_refused(fresh()).await;
    conformance::idempotent_append::concurrent_copies_store_once(fresh()).await;
    conformance::idempotent_append::retried_append_many_is_answered_as_the_original(fresh()).await;
    conformance::idempotent_append::retried_append_if_is_answered_as_the_original(fresh()).await;
    conformance::snapshot_store(|| async { view(InMemorySnapshotStore::new()) }).await;
    conformance::snapshot_trust(|| async { (view(InMemoryEventStore::new()), view(InMemorySnapshotStore::new())) })
        .await;
    conformance::checkpoint_store(|| async { view(InMemoryCheckpointStore::new()) }).await;
    conformance::key_value_store(|| async { view(InMemoryKeyValueStore::new()) }).await;
    conformance::dead_letter_store(|| async { view(InMemoryDeadLetterStore::new()) }).await;
    conformance::key_store(|| async { view(InMemoryKeyStore::new()) }).await;
}

#[tokio::test]
async fn data_subjects_are_per_tenant() {
    let keys = InMemoryKeyStore::new();
    let (acme, globex) = (view(keys.clone()), TenantStore::new(keys.clone(), "globex").unwrap());
    let acme_key = acme.key_or_create("c-1").await.unwrap();
    assert!(globex.key("c-1").await.unwrap().is_none());
    let globex_key = globex.key_or_create("c-1").await.unwrap();
    assert_ne!(acme_key.id(), globex_key.id());
    assert!(globex.delete_key("c-1").await.unwrap());
    assert_eq!(acme.key("c-1").await.unwrap().map(|k| k.id()), Some(acme_key.id()));
    assert!(!globex.delete_key("c-1").await.unwrap());
}

/// Consistency by query through views: another tenant's events never fail a
/// tenant's condition (its tags are the same), the tenant's own do, and the
/// view's tenant tag stays inside the inner store.
#[tokio::test]
async fn conditions_are_confined_to_the_tenant() {
    use orchestrix::query::{AppendCondition, Query, QueryItem};
    let shared = InMemoryEventStore::new();
    let acme = TenantStore::new(shared.clone(), "acme").unwrap();
    let globex = TenantStore::new(shared.clone(), "globex").unwrap();
    let tagged = |n| {
        let mut event = event("Subscribed", n);
        event.metadata = Metadata::default().with_tag("course:c1");
        event
    };
    let query = Query::new([QueryItem::types(["Subscribed"]).tag("course", "c1")]);
    let decided: Vec<_> = acme.read_by_query(&query, 0).collect().await;
    assert!(decided.is_empty());

    // Globex writes a matching event after acme read: acme's decision
    // stands, its condition holds.
    globex.append(&stream("Course", "c1"), ExpectedVersion::NoStream, vec![tagged(1)]).await.unwrap();
    let appended = acme
        .append_if(
            AppendCondition::new(query.clone(), None),
            vec![StreamAppend::new(stream("Course", "c1"), ExpectedVersion::NoStream, vec![tagged(2)])],
        )
        .await
        .unwrap();
    assert_eq!(appended[0][0].tags(), ["course:c1"], "the view shows the event's own tags");
    let inner: Vec<_> = read_all(&shared).await;
    assert_eq!(inner.len(), 2);
    assert_eq!(inner[1].tags(), ["course:c1", "orchestrix.tenant:acme"], "the inner store keeps the tenant tag");
    assert_eq!(read_all(&acme).await[0].tags(), ["course:c1"]);

    // Acme's own later event fails a condition that did not see it.
    let error = acme
        .append_if(
            AppendCondition::new(query.clone(), None),
            vec![StreamAppend::new(stream("Course", "c2"), ExpectedVersion::NoStream, vec![tagged(3)])],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed { position: 2, after: None }), "{error:?}");
    let after =
        acme.read_by_query(&query, 0).map(Result::unwrap).collect::<Vec<_>>().await.last().unwrap().global_position;
    assert_eq!(after, 2);
    acme.append_if(
        AppendCondition::new(query, Some(after)),
        vec![StreamAppend::new(stream("Course", "c2"), ExpectedVersion::NoStream, vec![tagged(3)])],
    )
    .await
    .unwrap();
}

/// A view's global reads ask the inner store for the tenant's tag (ADR
/// 0036): an event put into the tenant's stream through the inner store,
/// without the tag, is in the view's stream read but in neither its global
/// read nor its subscription; the tenant's own events are in all three.
#[tokio::test]
async fn global_reads_deliver_the_tenants_tagged_events_only() {
    let shared = InMemoryEventStore::new();
    let acme = view(shared.clone());
    let account = stream("Account", "1");
    acme.append(&account, ExpectedVersion::NoStream, vec![event("Opened", 1)]).await.unwrap();
    let inner = acme.inner_stream(&account).unwrap();
    shared.append(&inner, ExpectedVersion::Exact(1), vec![event("Deposited", 2)]).await.unwrap();
    acme.append(&account, ExpectedVersion::Exact(2), vec![event("Deposited", 3)]).await.unwrap();

    assert_eq!(numbers(&read_stream(&acme, &account).await), [1, 2, 3]);
    assert_eq!(numbers(&read_all(&acme).await), [1, 3]);
    let mut subscription = acme.subscribe(0, EventFilter::all());
    assert_eq!(numbers(&drain(&mut subscription).await), [1, 3]);
    let deposits = EventFilter::types(["Deposited"]);
    let read: Vec<_> = acme.read_all(0, &deposits).map(Result::unwrap).collect().await;
    assert_eq!(numbers(&read), [3]);
}
