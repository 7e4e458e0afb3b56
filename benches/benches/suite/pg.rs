//! Scenarios 1 to 5, on PostgreSQL: Orchestrix (the `Orchestrix` app over
//! `PgStore`) beside plain sqlx statements into an identical table (made
//! by the adapter's own migration SQL) and beside cqrs-es 0.5 with
//! postgres-es 0.5 (its documented table layout). Every contestant writes
//! into a fresh schema of its own, `orx_suite_<pid>_<scenario>_<who>`,
//! dropped when the scenario ends.

use std::error::Error;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use cqrs_es::persist::{PersistedEventStore, QueryReplay};
use cqrs_es::{CqrsFramework, EventEnvelope, Query};
use futures_util::TryStreamExt;
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion, Snapshot, SnapshotStore},
    Metadata, Orchestrix, StoreError, StreamId, Uuid,
};
use orchestrix_adapters::postgres::{migration_sql, PgConfig, PgStore};
use orchestrix_benches::ledger::{self, Account, AccountEvent, PeerAccount, PeerCommand, CATEGORY, SNAPSHOT_EVERY};
use orchestrix_benches::{race, round, Counting, Rate};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row as _};

use crate::report::{Entry, Row};
use crate::{Options, Size};

pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

pub(crate) const OWNER: &str = "Ada Lovelace";
pub(crate) const RAW: &str = "raw sqlx INSERT";
pub(crate) const PEER: &str = "cqrs-es 0.5";
const WRITERS: u64 = 16;
pub(crate) const BATCH: u64 = 100;

/// The documented postgres-es 0.5 tables (its `db/init.sql`), in a schema.
fn peer_tables(schema: &str) -> String {
    format!(
        "CREATE TABLE \"{schema}\".events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
         sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
         payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence)); \
         CREATE TABLE \"{schema}\".snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
         last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, current_snapshot bigint CHECK (current_snapshot >= 0) \
         NOT NULL, payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));"
    )
}

/// The server, and the schemas this run created there.
pub(crate) struct Server {
    url: String,
    prefix: String,
    admin: PgPool,
    created: std::sync::Mutex<Vec<String>>,
    /// The contestants' pools, closed when a scenario ends so that their
    /// connections are back at once (the server is shared).
    pools: std::sync::Mutex<Vec<PgPool>>,
}

impl Server {
    pub(crate) async fn connect(url: &str) -> Result<Self, BoxError> {
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        Ok(Self {
            url: url.to_owned(),
            prefix: format!("orx_suite_{}", std::process::id()),
            admin,
            created: std::sync::Mutex::default(),
            pools: std::sync::Mutex::default(),
        })
    }

    /// A fresh, empty schema of this run.
    pub(crate) async fn schema(&self, tag: &str) -> Result<String, BoxError> {
        let name = format!("{}_{tag}", self.prefix);
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE; CREATE SCHEMA \"{name}\""))
            .execute(&self.admin)
            .await?;
        self.created.lock().expect("not poisoned").push(name.clone());
        Ok(name)
    }

    /// Closes the contestants' pools and drops every schema this run
    /// created so far.
    pub(crate) async fn drop_schemas(&self) -> Result<(), BoxError> {
        let pools = std::mem::take(&mut *self.pools.lock().expect("not poisoned"));
        for pool in pools {
            pool.close().await;
        }
        let names = std::mem::take(&mut *self.created.lock().expect("not poisoned"));
        for name in names {
            sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).execute(&self.admin).await?;
        }
        Ok(())
    }

    pub(crate) async fn pool(&self, max: u32) -> Result<PgPool, BoxError> {
        let pool = PgPoolOptions::new().max_connections(max).connect(&self.url).await?;
        self.pools.lock().expect("not poisoned").push(pool.clone());
        Ok(pool)
    }

    /// Orchestrix's store in a schema of its own.
    pub(crate) async fn store(&self, tag: &str, max: u32) -> Result<PgStore, BoxError> {
        self.store_with(tag, max, |config| config).await
    }

    /// The same with a configuration tweak.
    pub(crate) async fn store_with(
        &self,
        tag: &str,
        max: u32,
        tweak: impl FnOnce(PgConfig) -> PgConfig,
    ) -> Result<PgStore, BoxError> {
        let schema = self.schema(&format!("{tag}_orx")).await?;
        let store = PgStore::connect(&self.url, tweak(PgConfig::new(schema)?.with_max_connections(max))).await?;
        self.pools.lock().expect("not poisoned").push(store.pool().clone());
        store.migrate().await?;
        Ok(store)
    }

    /// The raw contestant: the same table, made by the same migration SQL,
    /// written with plain sqlx statements.
    pub(crate) async fn raw(&self, tag: &str, max: u32) -> Result<Raw, BoxError> {
        let schema = self.schema(&format!("{tag}_raw")).await?;
        let pool = self.pool(max).await?;
        sqlx::raw_sql(&migration_sql(&PgConfig::new(schema.as_str())?)).execute(&pool).await?;
        Ok(Raw::new(pool, &schema))
    }

    /// cqrs-es with postgres-es, over its documented tables in a schema of
    /// its own; snapshots every `snapshots` events if given.
    pub(crate) async fn peer(&self, tag: &str, max: u32, snapshots: Option<usize>) -> Result<Peer, BoxError> {
        let schema = self.schema(&format!("{tag}_peer")).await?;
        let pool = self.pool(max).await?;
        sqlx::raw_sql(&peer_tables(&schema)).execute(&pool).await?;
        let repository = peer_repository(pool.clone(), &schema);
        let store = match snapshots {
            Some(size) => PersistedEventStore::new_snapshot_store(repository, size),
            None => PersistedEventStore::new_event_store(repository),
        };
        Ok(Peer { cqrs: Arc::new(CqrsFramework::new(store, vec![], ())), pool, schema })
    }
}

fn peer_repository(pool: PgPool, schema: &str) -> PostgresEventRepository {
    PostgresEventRepository::new(pool).with_tables(&format!("\"{schema}\".events"), &format!("\"{schema}\".snapshots"))
}

/// [`ledger::command_metadata`] as JSON.
fn command_metadata() -> String {
    serde_json::to_string(&ledger::command_metadata()).expect("metadata serializes")
}

/// The raw baseline: plain sqlx statements writing the rows Orchestrix
/// writes, into an identical table, with no read and no version check
/// (the unique index alone guards the streams).
#[derive(Clone)]
pub(crate) struct Raw {
    pool: PgPool,
    one: Arc<str>,
    batch: Arc<str>,
}

const ROW_COLUMNS: &str = "(global_position, event_id, category, aggregate_id, stream_version, event_type, \
                           schema_version, data, metadata, recorded_at)";

impl Raw {
    fn new(pool: PgPool, schema: &str) -> Self {
        let table = format!("\"{schema}\".events");
        let one = format!(
            "INSERT INTO {table} {ROW_COLUMNS} VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, $1, $2, $3, $4, \
             $5, 1, $6::jsonb, $7::jsonb, $8)"
        );
        // One multi-row INSERT of BATCH rows: $1 category, $2 aggregate id,
        // $3 metadata, $4 recorded at; then per row its id, type and data.
        let rows: Vec<String> = (0..BATCH)
            .map(|i| {
                let p = 5 + 3 * i;
                format!(
                    "((pg_current_xact_id()::text::bigint << 20) | {v}, ${p}, $1, $2, {v}, ${t}, 1, ${d}::jsonb, \
                     $3::jsonb, $4)",
                    v = i + 1,
                    t = p + 1,
                    d = p + 2
                )
            })
            .collect();
        let batch = format!("INSERT INTO {table} {ROW_COLUMNS} VALUES {}", rows.join(", "));
        Self { pool, one: one.into(), batch: batch.into() }
    }

    pub(crate) async fn insert(&self, aggregate_id: &str, version: u64, event: &AccountEvent) {
        let (event_type, data) = ledger::stored(event);
        sqlx::query(&self.one)
            .bind(Uuid::now_v7())
            .bind(CATEGORY)
            .bind(aggregate_id)
            .bind(i64::try_from(version).expect("small"))
            .bind(event_type)
            .bind(data)
            .bind(command_metadata())
            .bind(Utc::now())
            .execute(&self.pool)
            .await
            .expect("the raw INSERT succeeds");
    }

    async fn open_accounts(self, n: u64) {
        for _ in 0..n {
            self.insert(&Uuid::now_v7().to_string(), 1, &AccountEvent::Opened { owner: OWNER.into() }).await;
        }
    }

    async fn hot_stream(self, n: u64) {
        let id = Uuid::now_v7().to_string();
        self.insert(&id, 1, &AccountEvent::Opened { owner: OWNER.into() }).await;
        for version in 2..=n {
            self.insert(&id, version, &AccountEvent::Deposited { amount: version }).await;
        }
    }

    async fn imports(self, n: u64) {
        for _ in 0..n {
            let id = Uuid::now_v7().to_string();
            let mut query = sqlx::query(&self.batch).bind(CATEGORY).bind(id).bind(command_metadata()).bind(Utc::now());
            for version in 1..=BATCH {
                let event = if version == 1 {
                    AccountEvent::Opened { owner: OWNER.into() }
                } else {
                    AccountEvent::Deposited { amount: version - 1 }
                };
                let (event_type, data) = ledger::stored(&event);
                query = query.bind(Uuid::now_v7()).bind(event_type).bind(data);
            }
            query.execute(&self.pool).await.expect("the raw multi-row INSERT succeeds");
        }
    }

    /// Streams every row of `table` in global order, decoding each column
    /// into the Rust types Orchestrix decodes them into; returns the count.
    pub(crate) async fn read_all(pool: &PgPool, table: &str, condition: Option<&str>) -> u64 {
        let condition = condition.map_or(String::new(), |condition| format!(" WHERE {condition}"));
        let sql = format!(
            "SELECT global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
             data::text, metadata::text, recorded_at FROM {table}{condition} ORDER BY global_position"
        );
        let mut rows = sqlx::query(&sql).fetch(pool);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await.expect("the raw SELECT succeeds") {
            let position: i64 = row.get(0);
            let _: (Uuid, String, String, i64) = (row.get(1), row.get(2), row.get(3), row.get(4));
            let _: (String, i64, String, String) = (row.get(5), row.get(6), row.get(7), row.get(8));
            let _: chrono::DateTime<Utc> = row.get(9);
            count += u64::from(position > 0);
        }
        count
    }
}

/// cqrs-es 0.5 over postgres-es 0.5.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) cqrs: Arc<PostgresCqrs<PeerAccount>>,
    pool: PgPool,
    schema: String,
}

impl Peer {
    async fn open_accounts(self, n: u64) {
        for _ in 0..n {
            let open = PeerCommand::Open { owner: OWNER.into() };
            self.cqrs.execute(&Uuid::now_v7().to_string(), open).await.expect("cqrs-es opens");
        }
    }

    async fn hot_stream(self, n: u64) {
        let id = Uuid::now_v7().to_string();
        self.cqrs.execute(&id, PeerCommand::Open { owner: OWNER.into() }).await.expect("cqrs-es opens");
        for amount in 2..=n {
            self.cqrs.execute(&id, PeerCommand::Deposit { amount }).await.expect("cqrs-es deposits");
        }
    }

    async fn imports(self, n: u64) {
        for _ in 0..n {
            let import = PeerCommand::Import { owner: OWNER.into(), count: BATCH };
            self.cqrs.execute(&Uuid::now_v7().to_string(), import).await.expect("cqrs-es imports");
        }
    }
}

async fn open_accounts(app: Orchestrix, n: u64) {
    for _ in 0..n {
        app.execute(Uuid::now_v7(), ledger::Open { owner: OWNER.into() }).await.expect("the command succeeds");
    }
}

async fn hot_stream(app: Orchestrix, n: u64) {
    let id = Uuid::now_v7();
    app.execute(id, ledger::Open { owner: OWNER.into() }).await.expect("opens");
    for amount in 2..=n {
        app.execute(id, ledger::Deposit { amount }).await.expect("deposits");
    }
}

async fn imports(app: Orchestrix, n: u64) {
    for _ in 0..n {
        let import = ledger::Import { owner: OWNER.into(), count: BATCH };
        app.execute(Uuid::now_v7(), import).await.expect("imports");
    }
}

/// Runs `ops` operations split over `writers` concurrent tasks.
async fn writers<F, Fut>(writers: u64, ops: u64, work: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> =
        (0..writers).map(|w| tokio::spawn(work(ops / writers + u64::from(w < ops % writers)))).collect();
    for task in tasks {
        task.await.expect("a writer panicked");
    }
}

pub(crate) fn app(store: &PgStore, snapshots: bool, cache: bool) -> Orchestrix {
    let builder = Orchestrix::builder().event_store(store.clone()).aggregate::<Account>();
    let builder = if snapshots { builder.snapshot_store(store.clone()) } else { builder };
    let builder = if cache { builder } else { builder.cache_capacity(0) };
    builder.build().expect("a valid configuration")
}

/// Runs the PostgreSQL scenarios; returns the rows of those that finished,
/// and the error that stopped the others, if any.
pub(crate) async fn run(url: &str, options: &Options) -> (Vec<Row>, Result<(), BoxError>) {
    let mut rows = Vec::new();
    let server = match Server::connect(url).await {
        Ok(server) => server,
        Err(error) => return (rows, Err(format!("cannot connect to ORCHESTRIX_PG_URL: {error}").into())),
    };
    let mut result = describe(&server).await;
    if result.is_ok() {
        result = scenarios(&server, options, &mut rows).await;
    }
    let cleanup = server.drop_schemas().await;
    (rows, result.and(cleanup))
}

async fn describe(server: &Server) -> Result<(), BoxError> {
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&server.admin).await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&server.admin).await?;
    println!("PostgreSQL {version}, synchronous_commit = {sync}\n");
    Ok(())
}

async fn scenarios(server: &Server, options: &Options, rows: &mut Vec<Row>) -> Result<(), BoxError> {
    if options.runs("1") {
        rows.push(new_aggregates(server, options.size, 1).await?);
    }
    if options.runs("2") {
        rows.push(new_aggregates(server, options.size, WRITERS).await?);
    }
    for variant in ["3a", "3b", "3c"] {
        if options.runs(variant) {
            rows.push(hot(server, options.size, variant).await?);
        }
    }
    if options.runs("4") {
        rows.push(batched(server, options.size).await?);
    }
    if options.runs("5") {
        rows.push(catch_up(server, options).await?);
        server.drop_schemas().await?;
    }
    if options.runs("8") {
        rows.push(crate::pg_tenant::catch_up(server, options).await?);
        server.drop_schemas().await?;
    }
    rows.extend(crate::store_size::run(&server.url, options).await?);
    Ok(())
}

/// Scenarios 1 (one writer) and 2 (16): a command per new aggregate.
///
/// Scenario 1 takes turns of 25 commands (10 quick), not 1,000: a
/// sequential command waits for its WAL flush, whose latency drifts by
/// several times within seconds on a shared machine, so long turns
/// compared each contestant with a different disk. In short turns all
/// see the same disk, and the median of many turns is stable (on this
/// repository's machine the ratio to raw moved from 0.69 to 3.04 between
/// runs in turns of 150, and from 0.95 to 0.97 in turns of 10).
async fn new_aggregates(server: &Server, size: Size, writer_count: u64) -> Result<Row, BoxError> {
    let (id, rounds, ops) = if writer_count == 1 {
        ("1", size.pick(280, 45), size.pick(25, 10))
    } else {
        ("2", size.rounds(), size.pick(4_000, 800))
    };
    let max = u32::try_from(writer_count).expect("small").max(2);
    let tag = format!("s{id}");
    let (store, raw, peer) =
        (server.store(&tag, max).await?, server.raw(&tag, max).await?, server.peer(&tag, max, None).await?);
    let orchestrix = app(&store, false, true);
    // With concurrent writers, the same app over a store without group
    // commit (ADR 24), so that what group commit brings is measured too.
    let alone = if writer_count > 1 {
        let store = server.store_with(&format!("{tag}_alone"), max, |config| config.with_group_commit(0)).await?;
        Some(app(&store, false, true))
    } else {
        None
    };
    let mut contestants = vec![
        round(|n| writers(writer_count, n, |k| open_accounts(orchestrix.clone(), k))),
        round(|n| writers(writer_count, n, |k| raw.clone().open_accounts(k))),
        round(|n| writers(writer_count, n, |k| peer.clone().open_accounts(k))),
    ];
    if let Some(alone) = &alone {
        contestants.push(round(|n| writers(writer_count, n, |k| open_accounts(alone.clone(), k))));
    }
    let rates = race(rounds, ops, &mut contestants).await;
    let name = if writer_count == 1 {
        "one command per new aggregate, sequential".to_owned()
    } else {
        format!("one command per new aggregate, {writer_count} concurrent writers")
    };
    let mut row = three(id, &name, "commands/s", &rates, RAW);
    if let Some(alone) = rates.get(3) {
        row = row.reference(Entry::new("Orchestrix, group commit off", alone.per_second));
    }
    let row = row
        .goal("to_baseline", 0.9)
        .goal("to_peer", 2.0)
        .method(format!("{rounds} rounds of {ops} commands, {writer_count} task(s), {max} connections each"))
        .announce();
    server.drop_schemas().await?;
    Ok(row)
}

/// Scenario 3: 1,000 commands on one aggregate; `variant` says whether
/// with snapshots and the aggregate cache.
async fn hot(server: &Server, size: Size, variant: &str) -> Result<Row, BoxError> {
    let (name, snapshots, cache) = match variant {
        "3a" => ("hot stream: 1,000 commands on one aggregate, no snapshots", false, true),
        "3b" => ("hot stream, snapshots every 100 events", true, true),
        _ => ("hot stream, snapshots every 100 events, aggregate cache off", true, false),
    };
    let ops = size.pick(1_000, 200);
    let rounds = size.pick(5, 3);
    let peer_snapshots = snapshots.then_some(usize::try_from(SNAPSHOT_EVERY).expect("small"));
    let (store, raw, peer) = (
        server.store(variant, 2).await?,
        server.raw(variant, 2).await?,
        server.peer(variant, 2, peer_snapshots).await?,
    );
    // The reference runs in an app of its own configuration, so that the
    // hot stream's cache counts are the hot stream's alone.
    let (orchestrix, reference) = (app(&store, snapshots, cache), app(&store, snapshots, cache));
    // Without the cache, also the loads of two queries (the snapshot, then
    // the events): what one query replaced (ADR 0054).
    let apart = (!cache).then(|| {
        Orchestrix::builder()
            .event_store(store.clone())
            .snapshot_store(Apart(store.clone()))
            .aggregate::<Account>()
            .cache_capacity(0)
            .build()
            .expect("a valid configuration")
    });
    let mut contestants = vec![
        round(|n| hot_stream(orchestrix.clone(), n)),
        round(|n| raw.clone().hot_stream(n)),
        round(|n| peer.clone().hot_stream(n)),
        round(|n| open_accounts(reference.clone(), n)),
    ];
    if let Some(apart) = &apart {
        contestants.push(round(|n| hot_stream(apart.clone(), n)));
    }
    let rates = race(rounds, ops, &mut contestants).await;
    drop(contestants);
    let apart_line = rates.get(4).map_or(String::new(), |apart| {
        format!(
            "; loads in two queries (snapshot, then events): {:.0} commands/s, {:.2} of the new-aggregate rate",
            apart.per_second,
            apart.per_second / rates[3].per_second
        )
    });
    if !apart_line.is_empty() {
        println!("[{variant}] Orchestrix{apart_line}");
    }
    let stats = orchestrix.cache_stats::<Account>().expect("Account is registered");
    let hit_rate = stats.hit_rate().map_or("no lookups".to_owned(), |rate| format!("{:.1}%", rate * 100.0));
    let cache_line = format!(
        "aggregate cache hit rate {hit_rate} ({} hits, {} misses, {} evictions over the warm-up and all rounds)",
        stats.hits, stats.misses, stats.evictions
    );
    println!("[{variant}] Orchestrix {cache_line}");
    let suffix = if cache { "" } else { ", cache off" };
    let row = three(variant, name, "commands/s", &rates, RAW)
        .reference(Entry::new(format!("Orchestrix new aggregates{suffix}"), rates[3].per_second))
        .goal("to_reference", 0.8)
        .goal("to_peer", 2.0)
        .method(format!(
            "{rounds} rounds of {ops} commands on one new aggregate each; Orchestrix {cache_line}; reference: {ops} \
             commands on new aggregates through an app of the same configuration, in the same rounds; raw: INSERT of \
             the next version{apart_line}"
        ))
        .announce();
    server.drop_schemas().await?;
    Ok(row)
}

/// The store as a snapshot store its event store does not recognise as
/// its own, so that a load takes two queries (the snapshot, then the
/// events), as every load did before ADR 0054.
#[derive(Debug)]
struct Apart(PgStore);

#[async_trait::async_trait]
impl SnapshotStore for Apart {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.0.save(snapshot).await
    }

    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        self.0.load(stream, at_or_before).await
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.0.delete(stream).await
    }
}

/// Scenario 4: commands of 100 events each.
async fn batched(server: &Server, size: Size) -> Result<Row, BoxError> {
    let rounds = size.rounds();
    let ops = size.pick(100, 20);
    let (store, raw, peer) =
        (server.store("s4", 2).await?, server.raw("s4", 2).await?, server.peer("s4", 2, None).await?);
    let orchestrix = app(&store, false, true);
    let rates = race(
        rounds,
        ops,
        &mut [
            round(|n| imports(orchestrix.clone(), n)),
            round(|n| raw.clone().imports(n)),
            round(|n| peer.clone().imports(n)),
        ],
    )
    .await;
    #[allow(clippy::cast_precision_loss)]
    let events: Vec<Rate> = rates.iter().map(|r| Rate { per_second: r.per_second * BATCH as f64, ..*r }).collect();
    let row = three("4", "batched append: 100 events per command", "events/s", &events, "raw sqlx multi-row INSERT")
        .goal("to_baseline", 0.8)
        .method(format!("{rounds} rounds of {ops} commands of {BATCH} events; raw: one multi-row INSERT"))
        .announce();
    server.drop_schemas().await?;
    Ok(row)
}

/// Orchestrix, raw and peer figures in the order `race` returned them.
fn three(id: &str, name: &str, unit: &'static str, rates: &[Rate], raw: &str) -> Row {
    Row::new(
        id,
        name,
        unit,
        Entry::new("Orchestrix PgStore", rates[0].per_second),
        Entry::new(raw, rates[1].per_second),
    )
    .peer(Entry::new(format!("{PEER} + postgres-es 0.5"), rates[2].per_second))
}

/// Counts what cqrs-es replays.
struct CountingQuery(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Query<PeerAccount> for CountingQuery {
    async fn dispatch(&self, _: &str, events: &[EventEnvelope<PeerAccount>]) {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
    }
}

/// Scenario 5: a projection catching up over the whole log, beside a raw
/// streaming SELECT of the same rows, and cqrs-es replaying as many events
/// of its own table to a query.
#[allow(clippy::cast_precision_loss)] // event counts far below 2^52
async fn catch_up(server: &Server, options: &Options) -> Result<Row, BoxError> {
    let total = options.size.pick(1_000_000, 100_000);
    let rounds = 3;
    let store = server.store("s5", 4).await?;
    let peer = server.peer("s5", 2, None).await?;
    seed(&store, total).await?;
    seed_peer(&peer, total).await?;
    // Statistics as autovacuum leaves them a minute after a bulk load.
    // Without them, the adapter's catch-up query plans a sequential scan
    // per chunk (see the README's Benchmarks section).
    let table = format!("\"{}\".events", store.config().schema());
    sqlx::raw_sql(&format!("ANALYZE {table}; ANALYZE \"{}\".events", peer.schema)).execute(store.pool()).await?;
    let head = store.head_position().await?.expect("seeded");
    let engine = ProjectionEngine::new(store.clone(), store.clone());
    let run = AtomicU64::new(0);
    let rates = race(
        rounds,
        total,
        &mut [
            round(|n| {
                let (engine, run) = (&engine, &run);
                async move {
                    // A new projection each time: it starts from nothing.
                    let name = format!("catch-up-{}", run.fetch_add(1, Ordering::Relaxed));
                    let mut handle = engine.spawn(Counting::new(name), ProjectionOptions::default());
                    handle
                        .wait_for_position(head, std::time::Duration::from_mins(10))
                        .await
                        .expect("the projection catches up");
                    assert_eq!(handle.stop().await.expect("the projection ran").seen, n);
                }
            }),
            round(|n| {
                let (pool, table) = (store.pool(), &table);
                async move { assert_eq!(Raw::read_all(pool, table, None).await, n) }
            }),
            round(|n| {
                let peer = &peer;
                async move {
                    let seen = Arc::new(AtomicU64::new(0));
                    let repository = peer_repository(peer.pool.clone(), &peer.schema);
                    let replay = QueryReplay::new(repository, CountingQuery(Arc::clone(&seen)));
                    replay.replay_all().await.expect("cqrs-es replays");
                    assert_eq!(seen.load(Ordering::Relaxed), n);
                }
            }),
        ],
    )
    .await;
    Ok(Row::new(
        "5",
        &format!("projection catch-up over {} events", crate::report::figure(total as f64)),
        "events/s",
        Entry::new("Orchestrix projection (PgStore)", rates[0].per_second),
        Entry::new("raw sqlx streaming SELECT", rates[1].per_second),
    )
    .peer(Entry::new(format!("{PEER} QueryReplay"), rates[2].per_second))
    .goal("to_baseline", 0.7)
    .method(format!(
        "{rounds} rounds over {total} events (streams of {BATCH}, one transaction each; tables ANALYZEd after the \
         load), a new counting projection each round with the default options; raw: one SELECT ... ORDER BY \
         global_position, every column decoded"
    ))
    .announce())
}

/// Writes `total` events through the adapter, `BATCH` per stream and
/// append, from 4 tasks.
async fn seed(store: &PgStore, total: u64) -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..4u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stream_no = task;
                while stream_no * BATCH < total {
                    let stream = StreamId::new(CATEGORY, format!("seed-{stream_no}"))?;
                    let events = (0..BATCH)
                        .map(|i| {
                            let event = AccountEvent::Deposited { amount: i + 1 };
                            NewEvent::encode(&event, Metadata::default())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    store.append(&stream, ExpectedVersion::NoStream, events).await?;
                    stream_no += 4;
                }
                Ok::<(), BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("[5] seeded {total} events through PgStore in {:.1?}", started.elapsed());
    Ok(())
}

/// The same number of events in cqrs-es's table, written by one statement.
async fn seed_peer(peer: &Peer, total: u64) -> Result<(), BoxError> {
    let sql = format!(
        "INSERT INTO \"{s}\".events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
         metadata) SELECT '{CATEGORY}', 'seed-' || (i / {BATCH}), i % {BATCH} + 1, 'AccountDeposited', '1', \
         json_build_object('Deposited', json_build_object('amount', i % {BATCH} + 1)), '{{}}'::json \
         FROM generate_series(0, $1 - 1) AS i",
        s = peer.schema
    );
    sqlx::query(&sql).bind(i64::try_from(total)?).execute(&peer.pool).await?;
    Ok(())
}
