//! PostgreSQL-specific behaviour: the watermark, hostile input, corrupt
//! rows, leases, exactly-once projections and killed backends.
#![cfg(feature = "postgres")]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::{StoreError, StreamId};
use orchestrix_adapters::postgres::{PgConfig, PgLease, PgProjection, PgProjectionOptions, PgStore};
use sqlx::Connection;
use support::{event, stream};

/// A store whose connections carry `application_name`, so that a test can
/// find and terminate their backends.
async fn named_store(app: &str) -> Option<PgStore> {
    let url = support::pg_url()?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let config = PgConfig::new(support::schema_name()).ok()?.with_max_connections(4);
    let store = PgStore::connect(&format!("{url}{separator}application_name={app}"), config).await.ok()?;
    store.migrate().await.expect("migrations apply");
    Some(store)
}

/// Terminates every backend whose `application_name` is `app`; returns how many.
async fn terminate(admin: &mut sqlx::PgConnection, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(app)
    .fetch_one(admin)
    .await
    .unwrap_or(0)
}

#[test]
fn hostile_schema_names_are_refused() {
    for name in ["", "Public", "a-b", "x\"; DROP SCHEMA public CASCADE; --", "sch ema", "1x", "ü", &"a".repeat(49)] {
        assert!(matches!(PgConfig::new(name), Err(StoreError::InvalidInput(_))), "{name:?} was accepted");
    }
    let sql = orchestrix_adapters::postgres::migration_sql(&PgConfig::new("tenant_1").unwrap());
    assert!(sql.contains("CREATE TABLE \"tenant_1\".events"));
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_is_harmless_and_script_matches() {
    let Some(store) = support::pg_store().await else { return };
    store.migrate().await.expect("a second migrate is a no-op");
    let applied: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\".schema_migrations", store.config().schema()))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(applied, 7, "migrations 1 (initial), 2 (data_keys), 3 (tags), 4 (event_ids), 5 (forgotten_subjects), 6 (dead_letter_streams) and 7 (consumer_controls)");
    // The script applies cleanly on top of migrate() (it records the same versions).
    let script = orchestrix_adapters::postgres::migration_sql(store.config());
    sqlx::raw_sql(&script).execute(store.pool()).await.unwrap();
    store.drop_schema().await.unwrap();
    // And alone, on an empty database: the tags column is generated from
    // the metadata (its quoting survives the script's EXECUTE).
    sqlx::raw_sql(&script).execute(store.pool()).await.unwrap();
    let tags: Vec<String> = sqlx::query_scalar(&format!(
        "INSERT INTO \"{}\".events (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) VALUES (1, gen_random_uuid(), 'C', '1', 1, 'T', 1, '{{}}', \
         '{{\"tags\":[\"a:1\",\"b:2\"]}}', now()) RETURNING tags",
        store.config().schema()
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tags, ["a:1", "b:2"]);
    store.drop_schema().await.unwrap();
}

/// The core of ADR 0008: an event committed by a later transaction is not
/// delivered while an earlier transaction (a lower position) is in flight,
/// and both arrive in position order once it commits.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_never_lets_a_lower_position_appear_behind_a_reader() {
    let Some(store) = support::pg_store_with(|c| c.with_read_wait(Duration::from_millis(300))).await else { return };
    let s = store.config().schema().to_owned();
    let mut subscription = store.subscribe(0, EventFilter::all());
    // Transaction A takes its transaction id first, and so a lower position.
    let mut slow = store.pool().begin().await.unwrap();
    let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint").fetch_one(&mut *slow).await.unwrap();
    // B commits meanwhile, with a higher position.
    let b = store.append(&stream("b"), ExpectedVersion::NoStream, vec![event("B", "{}")]).await.unwrap();
    assert!(b[0].global_position > (xid << 20).try_into().unwrap());
    // Neither a finite read nor a subscription shows B yet.
    let read: Vec<_> = store.read_all(0, &EventFilter::all()).collect().await;
    assert!(read.is_empty(), "read_all returned events above the watermark: {read:?}");
    assert!(tokio::time::timeout(Duration::from_millis(300), subscription.next()).await.is_err());
    // A writes an event (as an append would) and commits.
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".events (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, \
         gen_random_uuid(), 'Account', 'a', 1, 'A', 1, '{{}}', '{{}}', now())"
    ))
    .execute(&mut *slow)
    .await
    .unwrap();
    slow.commit().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.unwrap().unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((first.event_type.as_str(), second.event_type.as_str()), ("A", "B"));
    assert!(first.global_position < second.global_position);
    let all: Vec<_> = store.read_all(0, &EventFilter::all()).map(|e| e.unwrap().event_type.clone()).collect().await;
    assert_eq!(all, ["A", "B"]);
    drop(subscription);
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_any_appends_get_contiguous_versions() {
    let Some(store) = support::pg_store().await else { return };
    let target = stream("contended");
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (store, target) = (store.clone(), target.clone());
            tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .append(
                            &target,
                            ExpectedVersion::Any,
                            vec![event("Any", &format!("{{\"t\":{task},\"i\":{i}}}"))],
                        )
                        .await
                        .expect("Any never conflicts");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let versions: Vec<u64> = store.read_stream(&target, 1).map(|e| e.unwrap().stream_version).collect().await;
    assert_eq!(versions, (1..=80).collect::<Vec<_>>());
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_round_trips_or_is_refused() {
    let Some(store) = support::pg_store().await else { return };
    let hostile = ["'; DROP TABLE events; --", "semi;colon \"quoted\" 🦀", &"z".repeat(10 * 1024)];
    for id in hostile {
        let target = StreamId::new(format!("Cat';--{}", id.len()), id).unwrap();
        let recorded = store
            .append(&target, ExpectedVersion::NoStream, vec![event("Type\"';--", r#"{"x":"';--"}"#)])
            .await
            .unwrap();
        let read: Vec<_> = store.read_stream(&target, 1).map(Result::unwrap).collect().await;
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].stream, target);
        assert_eq!(read[0].id, recorded[0].id);
        assert_eq!(read[0].event_type, "Type\"';--");
    }
    // jsonb cannot hold U+0000: a typed refusal, and nothing is written.
    let target = stream("nul");
    let result = store.append(&target, ExpectedVersion::NoStream, vec![event("Nul", r#"{"s":"a\u0000b"}"#)]).await;
    assert!(matches!(result, Err(StoreError::InvalidInput(_))), "{result:?}");
    assert_eq!(store.stream_version(&target).await.unwrap(), None);
    let too_long = "t".repeat(10 * 1024 + 1);
    let result = store.append(&target, ExpectedVersion::Any, vec![event(&too_long, "{}")]).await;
    assert!(matches!(result, Err(StoreError::InvalidInput(_))));
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_typed_errors_naming_stream_and_version() {
    let Some(store) = support::pg_store().await else { return };
    let s = store.config().schema().to_owned();
    let target = stream("corrupt");
    store.append(&target, ExpectedVersion::NoStream, vec![event("Fine", "{}")]).await.unwrap();
    // By hand: metadata of the wrong shape at version 2.
    sqlx::query(&format!(
        "INSERT INTO \"{s}\".events (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, \
         gen_random_uuid(), 'Account', 'corrupt', 2, 'Broken', 1, '{{}}', '{{\"correlation_id\": 42}}', now())"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let items: Vec<_> = store.read_stream(&target, 1).collect().await;
    assert!(items[0].is_ok());
    match &items[1] {
        Err(StoreError::Corrupt { stream, version, reason }) => {
            assert_eq!((stream, *version), (&target, 2));
            assert!(reason.contains("metadata"), "{reason}");
        }
        other => panic!("expected Corrupt, found {other:?}"),
    }
    // A subscription yields the typed error too, then ends.
    let mut subscription = store.subscribe(0, EventFilter::all());
    assert!(subscription.next().await.unwrap().is_ok());
    assert!(matches!(subscription.next().await, Some(Err(StoreError::Corrupt { version: 2, .. }))));
    assert!(subscription.next().await.is_none());
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_admits_one_runner_and_passes_on() {
    let Some(store) = support::pg_store().await else { return };
    let first = store.try_lease("totals").await.unwrap().expect("a free lease");
    assert!(store.try_lease("totals").await.unwrap().is_none(), "a held lease was granted twice");
    assert!(store.try_lease("other").await.unwrap().is_some(), "leases of other names are independent");
    first.release().await.unwrap();
    assert!(store.try_lease("totals").await.unwrap().is_some(), "a released lease is free again");

    // Two runners race for one projection: exactly one runs at any time,
    // and when it stops the other takes over.
    let active = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let (store, active, runs) = (store.clone(), Arc::clone(&active), Arc::clone(&runs));
            tokio::spawn(async move {
                let mut lease = PgLease::acquire(&store, "race", Duration::from_millis(20)).await.unwrap();
                assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0, "two runners were active at once");
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                lease.check().await.expect("the lease is still held");
                active.fetch_sub(1, Ordering::SeqCst);
                drop(lease); // the connection closes: the server frees the lock
            })
        })
        .collect();
    for runner in runners {
        tokio::time::timeout(Duration::from_secs(10), runner).await.expect("the second runner took over").unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    store.drop_schema().await.unwrap();
}

/// One projection step per event: a NON-idempotent read model (a counter
/// incremented per event, a row inserted per event) and the checkpoint
/// commit in one transaction; the checkpoint moves conditionally.
async fn project_some(store: &PgStore, table: &str, limit: usize) -> Result<usize, StoreError> {
    use orchestrix::store::CheckpointStore;
    let mut checkpoint = CheckpointStore::load(store, "counter").await?;
    let from = checkpoint.map_or(0, |p| p + 1);
    let events: Vec<_> = store.read_all(from, &EventFilter::all()).take(limit).collect().await;
    let mut done = 0;
    for event in events {
        let event = event?;
        let mut tx = store.begin().await?;
        sqlx::query(&format!("UPDATE {table} SET n = n + 1, total = total + $1"))
            .bind(i64::try_from(event.stream_version).unwrap())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        sqlx::query(&format!("INSERT INTO {table}_seen VALUES ($1)"))
            .bind(i64::try_from(event.global_position).unwrap())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        store.save_checkpoint_in(&mut tx, "counter", checkpoint, event.global_position).await?;
        tx.commit().await.map_err(StoreError::backend)?;
        checkpoint = Some(event.global_position);
        done += 1;
    }
    Ok(done)
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_projection_is_exactly_once_across_kills() {
    let app = format!("orx_proj_{:x}", fastrand::u32(..));
    let Some(store) = named_store(&app).await else { return };
    let Some(url) = support::pg_url() else { return };
    let table = format!("\"{}\".counter", store.config().schema());
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (n bigint NOT NULL, total bigint NOT NULL); INSERT INTO {table} VALUES (0, 0); CREATE TABLE {table}_seen (p bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let mut expected_total = 0;
    for i in 0..40u64 {
        store
            .append(&stream(&format!("p{i}")), ExpectedVersion::NoStream, vec![event("E", "{}"), event("E", "{}")])
            .await
            .unwrap();
        expected_total += 3;
    }
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    // Runs killed at random points: the task aborted mid-transaction, or its
    // backends terminated under it. Each run resumes from the checkpoint.
    for round in 0..30 {
        let runner = {
            let (store, table) = (store.clone(), table.clone());
            tokio::spawn(async move { project_some(&store, &table, 7).await })
        };
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..15))).await;
        if round % 2 == 0 {
            runner.abort();
        } else {
            terminate(&mut admin, &app).await;
        }
        let _ = runner.await;
    }
    // Then run to the end without interference.
    for _ in 0..100 {
        if project_some(&store, &table, 100).await.unwrap_or(1) == 0 {
            break;
        }
    }
    let (n, total): (i64, i64) =
        sqlx::query_as(&format!("SELECT n, total FROM {table}")).fetch_one(store.pool()).await.unwrap();
    let distinct: i64 = sqlx::query_scalar(&format!("SELECT count(DISTINCT p) FROM {table}_seen"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(distinct, 80, "every event applied");
    assert_eq!(n, 80, "every event counted exactly once");
    assert_eq!(total, expected_total);
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backends_lose_nothing_acknowledged_and_subscribers_resume() {
    let app = format!("orx_fault_{:x}", fastrand::u32(..));
    let Some(store) = named_store(&app).await else { return };
    let Some(url) = support::pg_url() else { return };
    let mut subscription = store.subscribe(0, EventFilter::all());
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let target = stream(&format!("w{w}"));
                let mut acknowledged = Vec::new();
                for batch in 0..40u32 {
                    let events =
                        (0..3).map(|i| event("F", &format!("{{\"b\":{batch},\"i\":{i}}}"))).collect::<Vec<_>>();
                    // Any: a retried append after an unacknowledged one may
                    // or may not find it stored; both are fine.
                    match store.append(&target, ExpectedVersion::Any, events).await {
                        Ok(recorded) => acknowledged.push((batch, recorded[0].global_position)),
                        Err(StoreError::Unavailable(_) | StoreError::Backend(_)) => {}
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                (target, acknowledged)
            })
        })
        .collect();
    let killer = tokio::spawn(async move {
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut total = 0;
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(5..40))).await;
            total += terminate(&mut admin, &app).await;
        }
        total
    });
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.unwrap());
    }
    let terminated = killer.await.unwrap();
    assert!(terminated > 0, "the test killed no backend");
    let all: Vec<_> = store.read_all(0, &EventFilter::all()).map(Result::unwrap).collect().await;
    for (target, acknowledged) in &results {
        let read: Vec<_> = store.read_stream(target, 1).map(Result::unwrap).collect().await;
        let versions: Vec<u64> = read.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (1..=u64::try_from(read.len()).unwrap()).collect::<Vec<_>>());
        // No batch is stored in part, none twice.
        let mut per_batch: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for e in &read {
            let data: serde_json::Value = serde_json::from_str(e.data.get()).unwrap();
            per_batch.entry(data["b"].as_u64().unwrap()).or_default().push(data["i"].as_u64().unwrap());
        }
        for (batch, items) in &per_batch {
            assert_eq!(items, &[0, 1, 2], "batch {batch} of {target} is partial or duplicated");
        }
        for (batch, position) in acknowledged {
            assert!(per_batch.contains_key(&u64::from(*batch)), "acknowledged batch {batch} is missing");
            assert!(all.iter().any(|e| e.global_position == *position));
        }
    }
    // The subscription lived through the kills: it delivers the whole log,
    // in order, without gaps or duplicates.
    let mut seen = Vec::new();
    while seen.len() < all.len() {
        let item =
            tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.expect("the subscription resumed");
        seen.push(item.unwrap().unwrap().global_position);
    }
    let expected: Vec<u64> = all.iter().map(|e| e.global_position).collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    drop(subscription);
    store.drop_schema().await.unwrap();
}

/// A non-idempotent read model run by the adapter's transactional runner:
/// a counter and one inserted row per event, through the batch's
/// transaction. Fails (after writing) on events whose data says so.
struct Counter {
    table: String,
}

#[orchestrix::async_trait]
impl PgProjection for Counter {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "counter".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::types(["E", "Poison"])
    }

    async fn handle(
        &mut self,
        tx: &mut sqlx::PgConnection,
        event: &orchestrix::envelope::RecordedEvent,
    ) -> Result<(), orchestrix::error::BoxError> {
        let table = &self.table;
        sqlx::query(&format!("UPDATE {table} SET n = n + 1, total = total + $1"))
            .bind(i64::try_from(event.stream_version)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("INSERT INTO {table}_seen VALUES ($1)"))
            .bind(i64::try_from(event.global_position)?)
            .execute(&mut *tx)
            .await?;
        if event.event_type == "Poison" {
            return Err("this event cannot be projected".into());
        }
        Ok(())
    }
}

async fn counter_table(store: &PgStore) -> String {
    let table = format!("\"{}\".counter", store.config().schema());
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (n bigint NOT NULL, total bigint NOT NULL); INSERT INTO {table} VALUES (0, 0); \
         CREATE TABLE {table}_seen (p bigint NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    table
}

async fn counted(store: &PgStore, table: &str) -> (i64, i64, i64) {
    let (n, total): (i64, i64) =
        sqlx::query_as(&format!("SELECT n, total FROM {table}")).fetch_one(store.pool()).await.unwrap();
    let distinct: i64 = sqlx::query_scalar(&format!("SELECT count(DISTINCT p) FROM {table}_seen"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    (n, total, distinct)
}

/// The runner, killed at random points (its task aborted, its backends
/// terminated) while events keep arriving, and raced by a second runner
/// without the lease: every event is counted exactly once.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_transactional_projection_is_exactly_once_across_kills_and_races() {
    let app = format!("orx_runner_{:x}", fastrand::u32(..));
    let Some(store) = named_store(&app).await else { return };
    let Some(url) = support::pg_url() else { return };
    let table = counter_table(&store).await;
    // The writer's connections are not named, so they survive the kills.
    let writer_store = PgStore::connect(&url, store.config().clone()).await.unwrap();
    let writer = {
        let store = writer_store.clone();
        tokio::spawn(async move {
            for i in 0..60u64 {
                let events = vec![event("E", "{}"), event("E", "{}"), event("Other", "{}")];
                store.append(&stream(&format!("r{i}")), ExpectedVersion::NoStream, events).await.unwrap();
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..4))).await;
            }
        })
    };
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let options = PgProjectionOptions::default().batch_size(5).exclusive(false);
    for round in 0..20 {
        // Two runners on one projection at once: only the fence keeps them
        // from counting an event twice.
        let first = store.spawn_projection(Counter { table: table.clone() }, options);
        let second = store.spawn_projection(Counter { table: table.clone() }, options);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..40))).await;
        if round % 2 == 0 {
            terminate(&mut admin, &app).await;
        }
        first.abort();
        second.abort();
    }
    writer.await.unwrap();
    let mut last = store.spawn_projection(Counter { table: table.clone() }, PgProjectionOptions::default());
    let filter = EventFilter::types(["E"]);
    let last_counted: Vec<_> = store.read_all(0, &filter).map(Result::unwrap).collect().await;
    let head = last_counted.last().unwrap().global_position;
    let status = last.wait_for_position(head, Duration::from_secs(30)).await.unwrap();
    assert!(status.position >= head, "the runner stopped early: {status:?}");
    last.stop().await.unwrap();
    let (n, total, distinct) = counted(&store, &table).await;
    assert_eq!(distinct, 120, "every event applied");
    assert_eq!(n, 120, "every event counted exactly once");
    assert_eq!(total, 60 * 3);
    store.drop_schema().await.unwrap();
}

/// A poison event rolls back its own writes; with `Park` its dead letter
/// and the checkpoint past it commit together and the projection goes on,
/// with `Stop` the projection stops before it with a typed error.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_in_the_same_transaction_or_stops_the_runner() {
    use orchestrix::projection::{PoisonPolicy, ProjectionError};
    use orchestrix::{
        retry::RetryPolicy,
        store::{CheckpointStore, DeadLetterStore},
    };
    let Some(store) = support::pg_store().await else { return };
    let table = counter_table(&store).await;
    store.append(&stream("a"), ExpectedVersion::NoStream, vec![event("E", "{}"), event("E", "{}")]).await.unwrap();
    let poison = store.append(&stream("b"), ExpectedVersion::NoStream, vec![event("Poison", "{}")]).await.unwrap();
    let tail = store.append(&stream("c"), ExpectedVersion::NoStream, vec![event("E", "{}")]).await.unwrap();

    let quick = RetryPolicy::fixed(2, Duration::from_millis(1));
    let stopping =
        store.spawn_projection(Counter { table: table.clone() }, PgProjectionOptions::default().retry(quick));
    match tokio::time::timeout(Duration::from_secs(10), stopping.join()).await.unwrap() {
        Err(ProjectionError::Poison(poison_event)) => {
            assert_eq!(poison_event.position, poison[0].global_position);
            assert_eq!(poison_event.attempts, 2);
        }
        other => panic!("expected a poison error, got {other:?}", other = other.map(|_| ())),
    }
    assert_eq!(counted(&store, &table).await, (2, 3, 2), "the events before the poison one are committed, it is not");
    assert!(CheckpointStore::load(&store, "counter").await.unwrap() < Some(poison[0].global_position));

    let options = PgProjectionOptions::default().retry(quick).poison(PoisonPolicy::Park);
    let mut parking = store.spawn_projection(Counter { table: table.clone() }, options);
    let status = parking.wait_for_position(tail[0].global_position, Duration::from_secs(30)).await.unwrap();
    assert_eq!((status.handled, status.parked), (1, 1));
    parking.stop().await.unwrap();
    assert_eq!(counted(&store, &table).await, (3, 4, 3), "the poison event's own writes were rolled back");
    let letters = store.list(Some("counter")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.global_position, poison[0].global_position);
    assert!(letters[0].error.contains("cannot be projected"), "{}", letters[0].error);
    assert_eq!(CheckpointStore::load(&store, "counter").await.unwrap(), Some(tail[0].global_position));
    store.drop_schema().await.unwrap();
}

/// With the lease (the default), a second runner of the same projection
/// waits as a standby and takes over when the first stops.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_exclusive_runner_waits_and_takes_over() {
    use orchestrix::projection::ProjectionState;
    let Some(store) = support::pg_store().await else { return };
    let table = counter_table(&store).await;
    let first_events = store.append(&stream("a"), ExpectedVersion::NoStream, vec![event("E", "{}")]).await.unwrap();
    let mut first = store.spawn_projection(Counter { table: table.clone() }, PgProjectionOptions::default());
    first.wait_for_position(first_events[0].global_position, Duration::from_secs(30)).await.unwrap();
    let mut standby = store.spawn_projection(Counter { table: table.clone() }, PgProjectionOptions::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(standby.status().state, ProjectionState::CatchingUp, "the standby runs without the lease");
    assert_eq!(standby.status().handled, 0);
    first.stop().await.unwrap();
    let more = store.append(&stream("b"), ExpectedVersion::NoStream, vec![event("E", "{}")]).await.unwrap();
    let status = standby
        .wait_for_position(more[0].global_position, Duration::from_secs(10))
        .await
        .expect("the standby took over");
    assert_eq!(status.handled, 1, "the standby resumed from the first runner's checkpoint");
    standby.stop().await.unwrap();
    assert_eq!(counted(&store, &table).await, (2, 2, 2));
    store.drop_schema().await.unwrap();
}

/// A subscriber of another store (another process, as far as the database
/// can tell) that would poll only once an hour learns of an append through
/// `NOTIFY` alone.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_a_subscriber_of_another_store() {
    let Some(writer) = support::pg_store().await else { return };
    let Some(url) = support::pg_url() else { return };
    let config = writer.config().clone().with_poll_interval(Duration::from_hours(1));
    let reader = PgStore::connect(&url, config).await.unwrap();
    let mut subscription = reader.subscribe(0, EventFilter::all());
    let waiting = tokio::spawn(async move { subscription.next().await });
    // Let the subscriber find the log empty and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorded = writer.append(&stream("n"), ExpectedVersion::NoStream, vec![event("E", "{}")]).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the notification woke the subscriber")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivered.id, recorded[0].id);
    writer.drop_schema().await.unwrap();
}

/// A subscription catching up over several chunks (read ahead while the
/// previous chunk is delivered) yields every event once, in order, then
/// follows live appends; a filtered one skips what it filters out.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_over_many_chunks_is_complete_and_ordered() {
    let Some(store) = support::pg_store().await else { return };
    for batch in 0..50 {
        let events = (0..100).map(|i| event(if i % 2 == 0 { "Even" } else { "Odd" }, "{}")).collect();
        store.append(&stream(&format!("c{batch}")), ExpectedVersion::NoStream, events).await.unwrap();
    }
    let all: Vec<u64> = store.read_all(0, &EventFilter::all()).map(|e| e.unwrap().global_position).collect().await;
    assert_eq!(all.len(), 5_000);
    let mut subscription = store.subscribe(0, EventFilter::all());
    let mut seen = Vec::new();
    while seen.len() < all.len() {
        seen.push(subscription.next().await.unwrap().unwrap().global_position);
    }
    assert_eq!(seen, all, "every event once, in order");
    let live = store.append(&stream("live"), ExpectedVersion::NoStream, vec![event("Even", "{}")]).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), subscription.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.global_position, live[0].global_position);

    let evens = EventFilter::types(["Even"]);
    let expected: Vec<u64> = store.read_all(0, &evens).map(|e| e.unwrap().global_position).collect().await;
    assert_eq!(expected.len(), 2_501);
    let filtered: Vec<u64> =
        store.subscribe(0, evens).take(expected.len()).map(|e| e.unwrap().global_position).collect().await;
    assert_eq!(filtered, expected);
    store.drop_schema().await.unwrap();
}

#[path = "../../orchestrix/tests/support/erasure.rs"]
mod erasure;

/// After `forget`, no copy the framework keeps on PostgreSQL holds the
/// subject's plaintext: key tables, snapshots, dead letters, saga data,
/// cached aggregates (ADR 0031; the scenario is shared with the in-memory
/// and SQLite runs).
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_erases_every_copy_on_postgres() {
    let Some(store) = support::pg_store().await else { return };
    erasure::forget_erases_every_copy(erasure::Stores {
        events: store.clone(),
        keys: Arc::new(store.clone()),
        snapshots: Arc::new(store.clone()),
        dead_letters: Arc::new(store.clone()),
        checkpoints: Arc::new(store),
    })
    .await;
}
