//! Appends safe to retry and commands applied once (ADR 0027) on SQLite
//! and PostgreSQL: eight racing deliveries of one command id through two
//! stores on one database (two processes, as far as the bus can tell),
//! the same for a multi-stream decision (`execute_decision`, also in
//! memory), an `Any` append retried after a lost acknowledgement, and
//! databases of the previous schema upgraded in place.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod support;

use std::sync::Arc;

use futures_util::TryStreamExt;
use orchestrix::prelude::*;
use orchestrix::{
    app::{CommandOptions, CommandOutcome},
    decision::Decision,
    envelope::RecordedEvent,
    repository::Repository,
    store::{EventStore, ExpectedVersion},
    StreamId, Uuid,
};

#[event]
#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened,
    Deposited { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[aggregate(event = AccountEvent, error = Refused)]
#[derive(Debug, Default)]
struct Account {
    balance: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited { amount } = event {
            self.balance += amount;
        }
    }
}

#[derive(Debug, Clone)]
struct Open;

#[derive(Debug, Clone)]
struct Deposit {
    amount: u64,
}

#[command_handler]
impl Account {
    fn open(_: Open) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Opened)
    }

    fn deposit(&self, cmd: Deposit) -> Result<AccountEvent, Refused> {
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }
}

fn app(store: Arc<dyn EventStore>) -> Orchestrix {
    Orchestrix::builder().event_store(store).aggregate::<Account>().build().expect("a valid application")
}

type Key = (u64, Uuid, Vec<(Uuid, u64, u64)>);

fn key(outcome: &CommandOutcome<AccountEvent>) -> Key {
    let events = outcome.events.iter().map(|e| (e.id, e.stream_version, e.global_position)).collect();
    (outcome.version, outcome.correlation_id, events)
}

async fn stream_len(store: &dyn EventStore, id: Uuid) -> usize {
    let stream = Repository::<Account>::stream_id(id).expect("a valid id");
    let events: Vec<Arc<RecordedEvent>> = store.read_stream(&stream, 0).try_collect().await.expect("a read");
    events.len()
}

/// Eight deliveries of each of `rounds` command ids, racing through two
/// applications on two stores of one database: each command id is
/// applied once, and every delivery returns the same outcome.
async fn racing_deliveries_apply_once(first: Arc<dyn EventStore>, second: Arc<dyn EventStore>, rounds: usize) {
    let apps = [app(Arc::clone(&first)), app(second)];
    let account = Uuid::now_v7();
    apps[0].execute(account, Open).await.expect("opened");
    apps[1].load::<Account>(&account).await.expect("loaded, so that both caches hold the account");
    for round in 0..rounds {
        let command = Uuid::now_v7();
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let app = apps[n % 2].clone();
                let options = CommandOptions::default().command_id(command);
                tokio::spawn(async move { app.execute_with(account, Deposit { amount: 1 }, options).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("no panic").expect("every delivery succeeds"));
        }
        for outcome in &outcomes[1..] {
            assert_eq!(key(outcome), key(&outcomes[0]), "round {round}: every delivery returns the first outcome");
        }
        assert_eq!(outcomes[0].events.len(), 1);
        assert_eq!(stream_len(&*first, account).await, round + 2, "round {round}: applied once");
    }
    assert_eq!(
        apps[0].load::<Account>(&account).await.expect("loaded").state.balance,
        u64::try_from(rounds).expect("a small count")
    );
}

/// Eight deliveries of each of `rounds` command ids of one multi-stream
/// decision (a deposit on two accounts, refused once the first account
/// holds the round's deposit: the rule the first delivery's own events
/// break), racing through two applications on two stores of one
/// database: each command id writes once, and every delivery returns the
/// same events, none a refusal.
async fn racing_decisions_apply_once(first: Arc<dyn EventStore>, second: Arc<dyn EventStore>, rounds: u64) {
    let apps = [app(Arc::clone(&first)), app(second)];
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    apps[0].execute(a, Open).await.expect("opened");
    apps[0].execute(b, Open).await.expect("opened");
    for round in 0..rounds {
        let command = Uuid::now_v7();
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let app = apps[n % 2].clone();
                let options = CommandOptions::default().command_id(command);
                tokio::spawn(async move {
                    app.execute_decision(options, move |app: Orchestrix| async move {
                        let (x, y) = (app.load::<Account>(a).await?, app.load::<Account>(b).await?);
                        if x.state.balance > round {
                            return Err(CommandError::Rejected(Refused));
                        }
                        Ok(Decision::new()
                            .append::<Account>(a, x.expected_version(), [AccountEvent::Deposited { amount: 1 }])
                            .append::<Account>(b, y.expected_version(), [AccountEvent::Deposited { amount: 1 }]))
                    })
                    .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            let events = task.await.expect("no panic").expect("every delivery succeeds");
            answers.push(events.iter().map(|e| (e.id, e.stream_version, e.global_position)).collect::<Vec<_>>());
        }
        for answer in &answers[1..] {
            assert_eq!(answer, &answers[0], "round {round}: every delivery returns the first one's events");
        }
        assert_eq!(answers[0].len(), 2);
        let expected = usize::try_from(round).expect("small") + 2;
        assert_eq!(stream_len(&*first, a).await, expected, "round {round}: applied once");
        assert_eq!(stream_len(&*first, b).await, expected, "round {round}: applied once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_decisions_in_memory_apply_once() {
    let store: Arc<dyn EventStore> = Arc::new(orchestrix::memory::InMemoryEventStore::new());
    racing_decisions_apply_once(Arc::clone(&store), store, 20).await;
}

/// An `Any` append whose acknowledgement was lost, retried with the same
/// events: answered with the stored events, stored once.
async fn lost_ack_any_retry_is_stored_once(store: &dyn EventStore) {
    let stream = StreamId::new("Account", Uuid::now_v7().to_string()).expect("a valid stream");
    let events = vec![support::event("Deposited", r#"{"amount":1}"#), support::event("Deposited", r#"{"amount":2}"#)];
    let first = store.append(&stream, ExpectedVersion::Any, events.clone()).await.expect("appended");
    // ... the answer is lost; the caller retries.
    let retry = store.append(&stream, ExpectedVersion::Any, events).await.expect("answered");
    let ids = |events: &[Arc<RecordedEvent>]| -> Vec<(Uuid, u64, u64)> {
        events.iter().map(|e| (e.id, e.stream_version, e.global_position)).collect()
    };
    assert_eq!(ids(&retry), ids(&first));
    assert_eq!(store.stream_version(&stream).await.expect("a version"), Some(2), "stored once");
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use orchestrix::{
        store::{EventStore, ExpectedVersion},
        StreamId,
    };
    use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_racing_deliveries_through_two_stores_apply_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("events.db");
        let first = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened");
        let second = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened again");
        super::racing_deliveries_apply_once(Arc::new(first), Arc::new(second), 10).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_racing_decisions_through_two_stores_apply_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("events.db");
        let first = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened");
        let second = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened again");
        super::racing_decisions_apply_once(Arc::new(first), Arc::new(second), 10).await;
    }

    #[tokio::test]
    async fn a_retried_any_append_is_stored_once() {
        super::lost_ack_any_retry_is_stored_once(&SqliteStore::in_memory().await.expect("a store")).await;
    }

    /// A database made by the previous schema (no index on the event id)
    /// gets it on open, and an append made before the upgrade is then
    /// recognised when retried.
    #[tokio::test]
    async fn a_database_of_the_previous_schema_is_upgraded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("old.db");
        let store = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened");
        sqlx::raw_sql("DROP INDEX orchestrix_events_event_id").execute(store.pool()).await.expect("dropped");
        let stream = StreamId::new("Account", "old").expect("a valid stream");
        let events = vec![super::support::event("Opened", "{}")];
        let before = store.append(&stream, ExpectedVersion::NoStream, events.clone()).await.expect("appended");
        drop(store);
        let store = SqliteStore::open(&path, SqliteConfig::default()).await.expect("opened and upgraded");
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'orchestrix_events_event_id'",
        )
        .fetch_all(store.pool())
        .await
        .expect("a query");
        assert_eq!(indexes.len(), 1, "the upgrade creates the index");
        let retry = store.append(&stream, ExpectedVersion::Any, events).await.expect("answered");
        assert_eq!(retry[0].id, before[0].id);
        assert_eq!(store.stream_version(&stream).await.expect("a version"), Some(1));
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use orchestrix::{
        store::{EventStore, ExpectedVersion},
        StreamId,
    };
    use orchestrix_adapters::postgres::{PgConfig, PgStore};

    use super::support::{event, pg_store_with, pg_url};

    /// A second store on the schema of `store`, with its own pool (and so
    /// its own group commit, cache-less of the first's appends).
    async fn twin(store: &PgStore, group_commit: usize) -> PgStore {
        let url = pg_url().expect("the first store connected");
        let config = PgConfig::new(store.config().schema()).expect("a valid schema").with_group_commit(group_commit);
        PgStore::connect(&url, config).await.expect("a second store connects")
    }

    #[cfg_attr(
        not(orchestrix_pg),
        ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_racing_deliveries_through_two_stores_apply_once() {
        // One store groups eagerly (ADR 0024), the other not at all.
        let Some(first) = pg_store_with(|config| config.with_group_commit(1)).await else { return };
        let second = twin(&first, 0).await;
        super::racing_deliveries_apply_once(Arc::new(first.clone()), Arc::new(second), 10).await;
        first.drop_schema().await.expect("dropped");
    }

    #[cfg_attr(
        not(orchestrix_pg),
        ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_racing_decisions_through_two_stores_apply_once() {
        let Some(first) = pg_store_with(|config| config.with_group_commit(1)).await else { return };
        let second = twin(&first, 0).await;
        super::racing_decisions_apply_once(Arc::new(first.clone()), Arc::new(second), 10).await;
        first.drop_schema().await.expect("dropped");
    }

    #[cfg_attr(
        not(orchestrix_pg),
        ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_any_append_is_stored_once() {
        for group_commit in [0, 1] {
            let Some(store) = pg_store_with(|config| config.with_group_commit(group_commit)).await else { return };
            super::lost_ack_any_retry_is_stored_once(&store).await;
            store.drop_schema().await.expect("dropped");
        }
    }

    /// A schema without migration 4 (no index on the event id) is upgraded by
    /// `migrate`, and an append made before the upgrade is then
    /// recognised when retried.
    #[cfg_attr(
        not(orchestrix_pg),
        ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
    )]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_of_the_previous_version_is_upgraded() {
        let Some(store) = pg_store_with(|config| config).await else { return };
        let s = store.config().schema().to_owned();
        sqlx::raw_sql(&format!(
            "DROP INDEX \"{s}\".events_event_id; DELETE FROM \"{s}\".schema_migrations WHERE version = 4"
        ))
        .execute(store.pool())
        .await
        .expect("back to migration 3");
        let stream = StreamId::new("Account", "old").expect("a valid stream");
        let events = vec![event("Opened", "{}")];
        let before = store.append(&stream, ExpectedVersion::NoStream, events.clone()).await.expect("appended");
        store.migrate().await.expect("upgraded");
        let versions: Vec<i64> =
            sqlx::query_scalar(&format!("SELECT version FROM \"{s}\".schema_migrations ORDER BY version"))
                .fetch_all(store.pool())
                .await
                .expect("a query");
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
        let retry = store.append(&stream, ExpectedVersion::Any, events).await.expect("answered");
        assert_eq!(retry[0].id, before[0].id);
        assert_eq!(store.stream_version(&stream).await.expect("a version"), Some(1));
        store.drop_schema().await.expect("dropped");
    }
}
