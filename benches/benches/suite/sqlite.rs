//! Scenario 7, SQLite: sequential commands through the `Orchestrix` app
//! over `SqliteStore`, beside a plain sqlx INSERT of the same row into an
//! identical table. Each contestant has its own database file (WAL,
//! `synchronous = FULL`, as the adapter opens it) in a temporary directory.

use std::error::Error;
use std::time::Duration;

use orchestrix::{Orchestrix, Uuid};
use orchestrix_adapters::sqlite::{migration_sql, SqliteConfig, SqliteStore};
use orchestrix_benches::ledger::{self, Account, AccountEvent, CATEGORY};
use orchestrix_benches::{race, round};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::report::{Entry, Row};
use crate::Options;

type BoxError = Box<dyn Error + Send + Sync>;

const OWNER: &str = "Ada Lovelace";

pub(crate) async fn run(options: &Options) -> Result<Vec<Row>, BoxError> {
    if !options.runs("7") {
        return Ok(Vec::new());
    }
    let size = options.size;
    let (rounds, ops) = (size.rounds(), size.pick(1_000, 200));
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("orchestrix.db"), SqliteConfig::default()).await?;
    let app = Orchestrix::builder().event_store(store).aggregate::<Account>().build()?;

    // The same pool options as the adapter's, and its table.
    let config = SqliteConfig::default();
    let connect = SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(connect).await?;
    sqlx::raw_sql(&migration_sql(&config)).execute(&pool).await?;
    let insert = format!(
        "INSERT INTO {p}events (event_id, category, aggregate_id, stream_version, event_type, schema_version, data, \
         metadata, recorded_at) VALUES (?1, ?2, ?3, 1, ?4, 1, ?5, ?6, ?7)",
        p = config.prefix()
    );

    let rates = race(
        rounds,
        ops,
        &mut [
            round(|n| {
                let app = &app;
                async move {
                    for _ in 0..n {
                        let open = ledger::Open { owner: OWNER.into() };
                        app.execute(Uuid::now_v7(), open).await.expect("the command succeeds");
                    }
                }
            }),
            round(|n| raw_inserts(&pool, &insert, n)),
        ],
    )
    .await;
    Ok(vec![Row::new(
        "7",
        "SQLite: one command per new aggregate, sequential",
        "commands/s",
        Entry::new("Orchestrix SqliteStore", rates[0].per_second),
        Entry::new("raw sqlx INSERT", rates[1].per_second),
    )
    .method(format!("{rounds} rounds of {ops} commands; WAL, synchronous = FULL"))
    .announce()])
}

/// `n` single-row INSERTs, each its own transaction, of the row Orchestrix
/// writes for an `Open` command.
async fn raw_inserts(pool: &SqlitePool, insert: &str, n: u64) {
    for _ in 0..n {
        let (event_type, data) = ledger::stored(&AccountEvent::Opened { owner: OWNER.into() });
        let metadata = ledger::command_metadata();
        sqlx::query(insert)
            .bind(Uuid::now_v7().to_string())
            .bind(CATEGORY)
            .bind(Uuid::now_v7().to_string())
            .bind(event_type)
            .bind(data)
            .bind(serde_json::to_string(&metadata).expect("metadata serializes"))
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(pool)
            .await
            .expect("the raw INSERT succeeds");
    }
}
