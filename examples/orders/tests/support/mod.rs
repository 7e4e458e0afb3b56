//! Shared helpers of the process tests: the services' addresses with the
//! skip-or-fail policy of orchestrix-adapters/tests (a missing variable
//! skips with a printed reason, or fails under `CI`), an isolated place
//! per test run (a PostgreSQL schema, a JetStream stream and subject
//! prefix), and the spawned processes.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrix_adapters::nats::async_nats::jetstream;
use orchestrix_adapters::nats::{connect, EventStreamConfig};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

fn variable(name: &str, example: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{name} is not set, but CI is: the process tests must run in CI (set it to e.g. {example})"
            );
            eprintln!("skipped: {name} is not set (e.g. {example})");
            None
        }
    }
}

/// Where the test's processes keep their state.
pub struct Place {
    pub pg_url: String,
    pub nats_url: String,
    pub store: PgStore,
    pub schema: String,
    pub prefix: String,
    pub stream: String,
    pub js: jetstream::Context,
}

impl Place {
    /// A fresh schema (migrated: the event store and the example's tables)
    /// and fresh JetStream names, or `None` when the test skips.
    pub async fn new() -> Option<Self> {
        let pg_url = variable("ORCHESTRIX_PG_URL", "postgres://postgres@127.0.0.1:5432/test")?;
        let nats_url = variable("ORCHESTRIX_NATS_URL", "nats://127.0.0.1:4222")?;
        let token = format!("{}_{:012x}", std::process::id(), fastrand::u64(..) & 0xffff_ffff_ffff);
        // The `orx_t_<pid>_` form lets the adapters' tests drop it once this process is gone.
        let schema = format!("orx_t_{token}");
        let store = match PgStore::connect(&pg_url, PgConfig::new(schema.clone()).unwrap().with_max_connections(4))
            .await
        {
            Ok(store) => store,
            Err(error) => {
                assert!(std::env::var_os("CI").is_none(), "PostgreSQL at {pg_url} is unreachable under CI: {error}");
                eprintln!("skipped: PostgreSQL at {pg_url} is unreachable: {error}");
                return None;
            }
        };
        let client = match tokio::time::timeout(Duration::from_secs(10), connect(&nats_url)).await {
            Ok(Ok(client)) => client,
            other => {
                assert!(std::env::var_os("CI").is_none(), "NATS at {nats_url} is unreachable under CI: {other:?}");
                eprintln!("skipped: NATS at {nats_url} is unreachable");
                return None;
            }
        };
        store.migrate().await.expect("the store's migrations apply");
        orders::migrate(store.pool(), &schema).await.expect("the example's tables are created");
        Some(Self {
            pg_url,
            nats_url,
            store,
            schema,
            prefix: format!("orxtest.orders{token}"),
            stream: format!("ORXTEST_ORDERS_{token}"),
            js: jetstream::new(client),
        })
    }

    /// The arguments every process of this place takes.
    pub fn args(&self) -> Vec<String> {
        [
            ("--pg-url", self.pg_url.as_str()),
            ("--nats-url", &self.nats_url),
            ("--schema", &self.schema),
            ("--prefix", &self.prefix),
            ("--stream", &self.stream),
            ("--partitions", "8"),
        ]
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
        .collect()
    }

    /// Drops the schema and the JetStream stream (also done on drop, so
    /// a failing test leaves nothing behind).
    pub async fn delete(&self) {
        if let Ok(config) = EventStreamConfig::new(self.stream.clone()) {
            let _ = config.delete(&self.js).await;
        }
        let _ = self.store.drop_schema().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // The tests run on the multi-threaded runtime, where blocking here is allowed.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| handle.block_on(self.delete()));
        }
    }
}

/// A spawned `orders` process whose stdout lines are kept.
pub struct Process {
    pub child: Child,
    /// Every stdout line so far.
    pub lines: watch::Receiver<Vec<String>>,
}

impl Process {
    /// Spawns `orders <role> <args>` with extra environment variables;
    /// killed if dropped.
    pub fn spawn(role: &str, args: &[String], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orders"));
        command.arg(role).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        // Keep the processes' logs out of the test's output unless asked.
        if std::env::var_os("ORDERS_TEST_LOGS").is_none() {
            command.stderr(Stdio::null());
        }
        let mut child = command.spawn().expect("the orders binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                tx.send_modify(|lines| lines.push(line));
            }
        });
        Self { child, lines }
    }

    /// Waits (up to `limit`) for a stdout line that `pick` accepts.
    pub async fn wait_for_line<T>(&mut self, limit: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.lines.borrow().iter().rev().find_map(|line| pick(line)) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the process ended first; its output: {:?}", self.lines.borrow()),
                Err(elapsed) => {
                    panic!("no such line within {limit:?} ({elapsed}); the output: {:?}", self.lines.borrow())
                }
            }
        }
    }

    /// The partitions the worker reported last (order-views, saga).
    pub fn partitions(&self) -> Option<(String, String)> {
        self.lines.borrow().iter().rev().find_map(|line| parse_partitions(line))
    }

    /// Sends SIGTERM and waits (up to a minute) for a successful exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("the process runs");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}");
        let exit = tokio::time::timeout(Duration::from_mins(1), self.child.wait())
            .await
            .expect("the process stops within a minute of SIGTERM")
            .unwrap();
        assert!(exit.success(), "the process exits cleanly on SIGTERM: {exit}");
    }
}

/// `partitions order-views={..} saga-Fulfilment={..}` -> the two sets.
pub fn parse_partitions(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("partitions order-views=")?;
    let (views, saga) = rest.split_once(" saga-Fulfilment=")?;
    Some((views.to_owned(), saga.to_owned()))
}

/// Polls `check` (every 200 ms) until it returns `Some`, or gives up
/// after `limit` with `None`.
pub async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
