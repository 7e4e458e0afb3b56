//! `projections pause|resume`, `dead-letters retry` and a rebuild of a
//! projection that runs elsewhere (ADR 0050), on SQLite and PostgreSQL:
//! the stock binary as a process, and a binary of the user's (the CLI as
//! a library) while the projection runs in another task.

mod support;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrix::envelope::RecordedEvent;
use orchestrix::error::BoxError;
use orchestrix::projection::{PoisonPolicy, Projection, ProjectionEngine, ProjectionOptions, ProjectionState};
use orchestrix::retry::RetryPolicy;
use orchestrix::store::{
    CheckpointStore, ConsumerControl, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore, ExpectedVersion,
};
use support::{event, orchestrix, sqlite, stream};

const WAIT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime")
}

/// `ORCHESTRIX_PG_URL` with a fresh schema, or `None` outside CI.
fn pg_url() -> Option<String> {
    let base = match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var_os("CI").is_some() => panic!("ORCHESTRIX_PG_URL must be set under CI"),
        _ => return None,
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}schema=cli_{}", orchestrix::Uuid::now_v7().simple()))
}

/// The stock binary: pause, resume, and what it refuses.
fn stock_binary_pauses_and_resumes(url: &str) {
    let run = orchestrix(&["--store", url, "--json", "projections", "pause", "ledger"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["pause_requested"], true);
    assert!(run.stderr.contains("no checkpoint"), "an unknown name is warned about: {}", run.stderr);
    let run = orchestrix(&["--store", url, "projections", "pause", "ledger", "--wait", "--timeout", "1"]);
    assert_eq!(run.code, 7, "no runner acknowledges: {run:?}");
    assert!(run.stderr.contains("no runner acknowledged the pause of `ledger`"), "{}", run.stderr);
    let run = orchestrix(&["--store", url, "projections", "resume", "ledger"]);
    assert_eq!((run.code, run.stdout.trim()), (0, "resumed `ledger`"), "{run:?}");
    let run = orchestrix(&["--store", url, "projections", "resume", "ledger"]);
    assert_eq!((run.code, run.stdout.trim()), (0, "`ledger` is not paused; nothing to do"), "{run:?}");

    let id = orchestrix::Uuid::now_v7().to_string();
    let run = orchestrix(&["--store", url, "--yes", "dead-letters", "retry", &id]);
    assert_eq!(run.code, 4, "no such letter: {run:?}");
    let run = orchestrix(&["--store", url, "--yes", "dead-letters", "retry", "--all"]);
    assert_eq!(run.code, 2, "--all needs --projection: {run:?}");
    let run = orchestrix(&["--store", url, "--yes", "dead-letters", "retry", "--all", "--projection", "ledger"]);
    assert_eq!(run.code, 0, "no letters, nothing to do: {run:?}");
}

#[test]
fn the_stock_binary_pauses_and_resumes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, url) = runtime().block_on(sqlite(dir.path(), "app.db"));
    stock_binary_pauses_and_resumes(&url);
}

#[test]
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
fn the_stock_binary_pauses_and_resumes_on_postgres() {
    let Some(url) = pg_url() else { return };
    assert_eq!(orchestrix(&["--store", &url, "migrate"]).code, 0);
    stock_binary_pauses_and_resumes(&url);
}

/// Records (stream, version) of every event it applies; refuses the
/// events of `n == 2` while `broken`. Its model is shared by its clones,
/// as a durable read model is by every process.
#[derive(Clone, Default)]
struct Ledger {
    applied: Arc<Mutex<Vec<(String, u64)>>>,
    broken: Arc<AtomicBool>,
}

#[orchestrix::async_trait]
impl Projection for Ledger {
    fn name(&self) -> Cow<'static, str> {
        "ledger".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::types(["Noted"])
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let value: serde_json::Value = serde_json::from_str(event.data.get())?;
        if self.broken.load(Ordering::SeqCst) && value["n"] == 2 {
            return Err("event 2 refused".into());
        }
        self.applied.lock().unwrap().push((event.stream.id().to_owned(), event.stream_version));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.applied.lock().unwrap().clear();
        Ok(())
    }
}

impl Ledger {
    fn versions(&self, id: &str) -> Vec<u64> {
        self.applied.lock().unwrap().iter().filter(|(s, _)| s == id).map(|(_, v)| *v).collect()
    }
}

/// A projection runs in a task of this process (its own runtime: another
/// process as far as the CLI can tell) while a binary of the user's
/// pauses it, retries its dead letter, rebuilds it and resumes it.
fn live_runner_scenario<S>(rt: &tokio::runtime::Runtime, store: &S, url: &str)
where
    S: EventStore + CheckpointStore + DeadLetterStore + Clone,
{
    let ledger = Ledger::default();
    ledger.broken.store(true, Ordering::SeqCst);
    let options =
        ProjectionOptions::default().poison(PoisonPolicy::Park).retry(RetryPolicy::fixed(1, Duration::from_millis(1)));
    let engine = ProjectionEngine::new(store.clone(), store.clone()).with_dead_letters(store.clone());
    let mut handle = rt.block_on(async { engine.spawn(ledger.clone(), options) });
    let noted = |n: u64| event("Noted", serde_json::json!({ "n": n }));
    let append = |id: &str, from: u64, to: u64| {
        rt.block_on(store.append(
            &stream(&format!("Ledger/{id}")),
            ExpectedVersion::Any,
            (from..=to).map(noted).collect(),
        ))
        .unwrap();
    };
    append("a", 1, 3); // 2 parked, 3 parked behind it
    append("b", 1, 1);
    rt.block_on(handle.wait_caught_up(WAIT)).unwrap();
    let letters = rt.block_on(store.query(&DeadLetterQuery::consumer("ledger"))).unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    ledger.broken.store(false, Ordering::SeqCst);
    append("a", 4, 4); // parked behind as well: the stream waits
    rt.block_on(handle.wait_caught_up(WAIT)).unwrap();

    let admin = || orchestrix_cli::Cli::new().rebuildable(ledger.clone());
    let first = letters[0].id.to_string();
    assert_eq!(admin().run_from(["my-admin", "--store", url, "dead-letters", "retry", &first]), 5, "asks first");
    assert_eq!(admin().run_from(["my-admin", "--store", url, "--yes", "dead-letters", "retry", &first]), 0);
    assert_eq!(ledger.versions("a"), [1, 2, 3, 4], "the letters applied once, in order, by the CLI");
    assert_eq!(rt.block_on(store.count(&DeadLetterQuery::consumer("ledger"))).unwrap(), 0);
    assert_eq!(
        rt.block_on(store.load_control("ledger")).unwrap(),
        Some(ConsumerControl::new(false, None)),
        "the CLI withdrew the pause it made"
    );
    // The runner resumed: the stream's next event follows, nothing lost.
    append("a", 5, 5);
    rt.block_on(handle.wait_caught_up(WAIT)).unwrap();
    assert_eq!(ledger.versions("a"), [1, 2, 3, 4, 5]);
    assert_ne!(handle.status().state, ProjectionState::Paused);

    // Paused by an operator: a rebuild pauses nothing more and leaves it paused.
    assert_eq!(admin().run_from(["my-admin", "--store", url, "projections", "pause", "ledger", "--wait"]), 0);
    assert_eq!(handle.status().state, ProjectionState::Paused);
    append("b", 2, 2);
    assert_eq!(admin().run_from(["my-admin", "--store", url, "--yes", "projections", "rebuild", "ledger"]), 0);
    assert_eq!((ledger.versions("a"), ledger.versions("b")), (vec![1, 2, 3, 4, 5], vec![1, 2]), "rebuilt");
    assert!(rt.block_on(store.load_control("ledger")).unwrap().is_some_and(|r| r.is_paused()), "still paused");
    assert_eq!(admin().run_from(["my-admin", "--store", url, "projections", "resume", "ledger"]), 0);
    append("b", 3, 3);
    rt.block_on(handle.wait_caught_up(WAIT)).unwrap();
    assert_eq!(
        (ledger.versions("a"), ledger.versions("b")),
        (vec![1, 2, 3, 4, 5], vec![1, 2, 3]),
        "resumed from the rebuilt checkpoint: nothing handled twice"
    );
    rt.block_on(handle.stop()).unwrap();
}

#[test]
fn a_running_projection_is_paused_retried_rebuilt_and_resumed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "app.db"));
    live_runner_scenario(&rt, &Arc::new(store), &url);
}

#[test]
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
fn a_running_projection_is_paused_retried_rebuilt_and_resumed_on_postgres() {
    let Some(url) = pg_url() else { return };
    assert_eq!(orchestrix(&["--store", &url, "migrate"]).code, 0);
    let rt = runtime();
    let (base, schema) = url.rsplit_once("schema=").unwrap();
    let base = base.trim_end_matches(['?', '&']);
    let config = orchestrix_adapters::postgres::PgConfig::new(schema).unwrap();
    let store = rt.block_on(orchestrix_adapters::postgres::PgStore::connect(base, config)).unwrap();
    live_runner_scenario(&rt, &store, &url);
    rt.block_on(store.drop_schema()).unwrap();
}
