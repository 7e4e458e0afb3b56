//! Scenario 8, on PostgreSQL: a projection catching up through one
//! tenant's view ([`TenantStore`], ADR 0019) of a log that several tenants
//! share, beside a raw streaming `SELECT` of the same tenant's rows and
//! beside the same catch-up without a view over the whole log.

use std::sync::atomic::{AtomicU64, Ordering};

use orchestrix::envelope::NewEvent;
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix::tenant::TenantStore;
use orchestrix::{Metadata, StreamId};
use orchestrix_adapters::postgres::PgStore;
use orchestrix_benches::ledger::{AccountEvent, CATEGORY};
use orchestrix_benches::{race, round, Counting};

use crate::pg::{BoxError, Raw, Server, BATCH};
use crate::report::{Entry, Row};
use crate::Options;

/// How many tenants share the log; the view reads the first one's events,
/// a quarter of the log.
const TENANTS: u64 = 4;

fn tenant(no: u64) -> String {
    format!("tenant-{no}")
}

/// Scenario 8: catch-up through a tenant view, rated by the tenant's
/// events per second; the unfiltered catch-up over the whole log is the
/// reference, rated by all events per second.
#[allow(clippy::cast_precision_loss)] // event counts far below 2^52
pub(crate) async fn catch_up(server: &Server, options: &Options) -> Result<Row, BoxError> {
    let total = options.size.pick(1_000_000, 100_000);
    let own = total / TENANTS;
    let rounds = 3;
    let store = server.store("s8", 4).await?;
    seed(&store, total).await?;
    let table = format!("\"{}\".events", store.config().schema());
    sqlx::raw_sql(&format!("ANALYZE {table}")).execute(store.pool()).await?;
    let view = TenantStore::new(store.clone(), tenant(0))?;
    let tag = view.tenant_tag();
    let condition = format!("tags @> ARRAY['{tag}']");
    let (own_head,): (i64,) = sqlx::query_as(&format!("SELECT max(global_position) FROM {table} WHERE {condition}"))
        .fetch_one(store.pool())
        .await?;
    let own_head = u64::try_from(own_head)?;
    let head = store.head_position().await?.expect("seeded");
    let in_view = ProjectionEngine::new(view.clone(), view.clone());
    let unfiltered = ProjectionEngine::new(store.clone(), store.clone());
    let run = AtomicU64::new(0);
    let rates = race(
        rounds,
        own,
        &mut [
            round(|n| {
                let (engine, run) = (&in_view, &run);
                async move { assert_eq!(catch_up_once(engine, run, own_head).await, n) }
            }),
            round(|n| {
                let (pool, table, condition) = (store.pool(), &table, &condition);
                async move { assert_eq!(Raw::read_all(pool, table, Some(condition)).await, n) }
            }),
            round(|n| {
                let (engine, run) = (&unfiltered, &run);
                async move { assert_eq!(catch_up_once(engine, run, head).await, n * TENANTS) }
            }),
        ],
    )
    .await;
    // The unfiltered contestant delivers every tenant's events in its turn.
    let whole_log = rates[2].per_second * TENANTS as f64;
    Ok(Row::new(
        "8",
        &format!(
            "catch-up through a tenant view: {} of {} events, {TENANTS} tenants",
            crate::report::figure(own as f64),
            crate::report::figure(total as f64)
        ),
        "events/s",
        Entry::new("Orchestrix projection through TenantStore<PgStore>", rates[0].per_second),
        Entry::new("raw sqlx streaming SELECT of the tenant's rows", rates[1].per_second),
    )
    .reference(Entry::new("Orchestrix projection over PgStore, unfiltered", whole_log))
    .goal("to_reference", 0.8)
    .method(format!(
        "{rounds} rounds; {total} events written through {TENANTS} tenant views (streams of {BATCH}, one transaction \
         each, tenants interleaved; table ANALYZEd after the load); a new counting projection each round through the \
         view of one tenant ({own} events, rated per delivered event) and one without a view over the whole log \
         (the reference, rated per event of the log); raw: one SELECT ... WHERE {condition} ORDER BY \
         global_position, every column decoded"
    ))
    .announce())
}

/// Spawns a new counting projection on `engine`, waits until it has passed
/// `last`, and returns how many events it handled.
async fn catch_up_once(engine: &ProjectionEngine, run: &AtomicU64, last: u64) -> u64 {
    let name = format!("catch-up-{}", run.fetch_add(1, Ordering::Relaxed));
    let mut handle = engine.spawn(Counting::new(name), ProjectionOptions::default());
    handle.wait_for_position(last, std::time::Duration::from_mins(10)).await.expect("the projection catches up");
    handle.stop().await.expect("the projection ran").seen
}

/// Writes `total` events through [`TENANTS`] tenant views, one task each,
/// `BATCH` per stream and append.
async fn seed(store: &PgStore, total: u64) -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TENANTS)
        .map(|no| {
            let view = TenantStore::new(store.clone(), tenant(no));
            tokio::spawn(async move {
                let view = view?;
                let mut stream_no = 0;
                while (stream_no * TENANTS + no) * BATCH < total {
                    let stream = StreamId::new(CATEGORY, format!("seed-{stream_no}"))?;
                    let events = (0..BATCH)
                        .map(|i| NewEvent::encode(&AccountEvent::Deposited { amount: i + 1 }, Metadata::default()))
                        .collect::<Result<Vec<_>, _>>()?;
                    view.append(&stream, ExpectedVersion::NoStream, events).await?;
                    stream_no += 1;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("[8] seeded {total} events through {TENANTS} tenant views in {:.1?}", started.elapsed());
    Ok(())
}
