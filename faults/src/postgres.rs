//! PostgreSQL clusters of a scenario's own (scenarios 3 and 4 of issue 23):
//! `initdb` in a temporary folder, a loopback port of their own, started
//! and stopped with `pg_ctl`, killed by process id; a streaming standby
//! made with `pg_basebackup -R`; and [`Failover`], the way an application
//! finds the writable server again after a failover (ADR 0049).
//!
//! As root, the server programs run as the `postgres` user (`runuser`),
//! since `initdb` refuses to run as root. Dropping a [`Cluster`] stops its
//! server by process id (a fast shutdown, then SIGKILL to it and its
//! children after 15 s), so a failing scenario leaves no server behind.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orchestrix::envelope::NewEvent;
use orchestrix::store::{EventStore as _, ExpectedVersion};
use orchestrix::{StoreError, StreamId};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde_json::value::RawValue;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Mutex;

use crate::audit::Append;
use crate::process;

include!("../../orchestrix-adapters/tests/support/pg_binaries.rs");

/// PostgreSQL's server programs (`initdb`, `pg_ctl`, `pg_basebackup`),
/// found as the adapters' tests find them: `ORCHESTRIX_PG_BINDIR`, the
/// `PATH`, `pg_config --bindir`, or the newest `/usr/lib/postgresql/*/bin`.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// The folder holding `initdb` and `pg_ctl`, if there is one.
    pub fn find() -> Option<Self> {
        pg_server_binaries().map(|dir| Self { dir })
    }

    /// The path of `program`: in that folder, else beside the file
    /// `initdb` links to (`/usr/local/bin/initdb` may be a link into
    /// `/usr/lib/postgresql/15/bin`, which holds `pg_basebackup` too).
    pub fn program(&self, program: &str) -> PathBuf {
        let here = self.dir.join(program);
        if here.is_file() {
            return here;
        }
        std::fs::canonicalize(self.dir.join("initdb"))
            .ok()
            .and_then(|initdb| initdb.parent().map(|dir| dir.join(program)))
            .filter(|there| there.is_file())
            .unwrap_or(here)
    }

    /// Whether `program` is there (`pg_basebackup` may be missing where
    /// only the server is installed).
    pub fn has(&self, program: &str) -> bool {
        self.program(program).is_file()
    }
}

/// The binaries, or `None` with the reason printed; under `CI` a missing
/// binary fails (ADR 0037: CI never skips a scenario silently).
pub fn binaries_or_skip() -> Option<PgBinaries> {
    let found = PgBinaries::find();
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI is set, but PostgreSQL's initdb and pg_ctl were not found");
        eprintln!("skipped: PostgreSQL's initdb and pg_ctl were not found (set ORCHESTRIX_PG_BINDIR)");
    }
    found
}

/// Whether this process runs as root, where `initdb` refuses to run.
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `program` with `args` (as the `postgres` user when `as_postgres`),
/// and turns a failure into an error carrying its output.
fn run(as_postgres: bool, program: &Path, args: &[&str]) -> io::Result<()> {
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    let out = command.args(args).output().map_err(|e| io::Error::other(format!("{}: {e}", program.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} {args:?} failed ({}): {}{}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The process ids of `pid`'s children (`ps --ppid`).
fn children(pid: u32) -> Vec<u32> {
    Command::new("ps")
        .args(["-o", "pid=", "--ppid", &pid.to_string()])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether a process `pid` exists (`kill -0`).
fn alive(pid: u32) -> bool {
    Command::new("kill").args(["-0", &pid.to_string()]).output().is_ok_and(|out| out.status.success())
}

/// The settings every cluster of the suite starts from. `fsync = off`:
/// the scenarios crash the server's processes, not the machine, so what a
/// commit wrote is in the operating system's cache either way. A scenario
/// turns it on where the time a flush takes matters (scenario 3: a
/// backend terminated while its commit flushes dies after the commit,
/// before the answer, which is the case ADR 0027's retry answers). Power
/// loss is out of scope (ADR 0049).
const BASE_SETTINGS: &str = "listen_addresses = '127.0.0.1'\nfsync = off\nmax_connections = 80\n\
                             shared_buffers = 32MB\nlog_min_messages = warning\n";

/// A PostgreSQL cluster of a scenario's own, on a loopback port of its own.
#[derive(Debug)]
pub struct Cluster {
    bin: PgBinaries,
    as_postgres: bool,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    pid: Option<u32>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A new cluster (`initdb`, trust authentication for `postgres`), not
    /// started; `settings` are appended to its `postgresql.conf`.
    pub fn init(bin: &PgBinaries, settings: &str) -> io::Result<Self> {
        let cluster = Self::empty(bin)?;
        let data = cluster.data.to_str().ok_or_else(|| io::Error::other("a data folder that is not UTF-8"))?;
        run(cluster.as_postgres, &bin.program("initdb"), &["-D", data, "-A", "trust", "-U", "postgres", "-N"])?;
        cluster.add_settings(settings)?;
        Ok(cluster)
    }

    /// A streaming standby of `primary` (running), on `port` (a free one
    /// when `None`: a rebuilt standby can take the address of the primary
    /// it replaces): `pg_basebackup -R` copies the primary's data and
    /// writes `primary_conninfo`, so the standby replicates from it once
    /// started. Its own `settings` follow the copied configuration (and so
    /// override it).
    pub fn standby_of(primary: &Cluster, port: Option<u16>, settings: &str) -> io::Result<Self> {
        let bin = &primary.bin;
        if !bin.has("pg_basebackup") {
            return Err(io::Error::other(format!("pg_basebackup is not in {}", bin.dir.display())));
        }
        let mut cluster = Self::empty(bin)?;
        if let Some(port) = port {
            cluster.port = port;
        }
        let data = cluster.data.to_str().ok_or_else(|| io::Error::other("a data folder that is not UTF-8"))?;
        let primary_port = primary.port.to_string();
        run(
            cluster.as_postgres,
            &bin.program("pg_basebackup"),
            &["-h", "127.0.0.1", "-p", &primary_port, "-U", "postgres", "-D", data, "-R", "-X", "stream", "-c", "fast"],
        )?;
        cluster.add_settings(settings)?;
        Ok(cluster)
    }

    /// A temporary folder owned by the user the server runs as, and a port.
    fn empty(bin: &PgBinaries) -> io::Result<Self> {
        let as_postgres = is_root();
        let dir = tempfile::tempdir()?;
        if as_postgres {
            run(false, Path::new("chown"), &["postgres:", &dir.path().display().to_string()])?;
        }
        Ok(Self {
            bin: bin.clone(),
            as_postgres,
            port: process::free_port(),
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            pid: None,
            dir,
        })
    }

    /// Appends the base settings, this cluster's port and socket folder,
    /// and `settings` to `postgresql.conf` (later lines win). A running
    /// server reads them at `SELECT pg_reload_conf()` (those it can change
    /// without a restart).
    pub fn add_settings(&self, settings: &str) -> io::Result<()> {
        let path = self.data.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path)?;
        let _ = write!(
            conf,
            "\n# orchestrix-faults\n{BASE_SETTINGS}port = {}\nunix_socket_directories = '{}'\n{settings}\n",
            self.port,
            self.dir.path().display()
        );
        std::fs::write(&path, conf)
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl
    /// start -w`, at most 60 s).
    pub fn start(&mut self) -> io::Result<()> {
        let (data, log) = (self.data.display().to_string(), self.log.display().to_string());
        run(self.as_postgres, &self.bin.program("pg_ctl"), &["-D", &data, "-l", &log, "-w", "-t", "60", "start"])?;
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))?;
        self.pid = pid.lines().next().and_then(|line| line.trim().parse().ok());
        if self.pid.is_none() {
            return Err(io::Error::other(format!("no process id in postmaster.pid: {pid}")));
        }
        Ok(())
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint; the next start replays the WAL).
    pub fn stop_immediate(&mut self) -> io::Result<()> {
        let data = self.data.display().to_string();
        run(self.as_postgres, &self.bin.program("pg_ctl"), &["-D", &data, "-m", "immediate", "-w", "stop"])?;
        self.pid = None;
        Ok(())
    }

    /// Kills the server as a machine that dies would be: SIGKILL to the
    /// postmaster and to every process it started, at once (the backends,
    /// the WAL sender). Returns how many processes were killed.
    pub fn kill(&mut self) -> usize {
        let Some(pid) = self.pid.take() else { return 0 };
        // The postmaster first, so that it cannot restart the others after
        // one of them dies; then the rest, listed before any died.
        let mut victims = vec![pid];
        victims.extend(children(pid));
        let killed = victims.iter().filter(|victim| process::sigkill(**victim)).count();
        let deadline = Instant::now() + Duration::from_secs(10);
        while victims.iter().any(|victim| alive(*victim)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        killed
    }

    /// Promotes a standby to a primary (`pg_ctl promote -w`).
    pub fn promote(&self) -> io::Result<()> {
        let data = self.data.display().to_string();
        run(self.as_postgres, &self.bin.program("pg_ctl"), &["-D", &data, "-w", "-t", "60", "promote"])
    }

    /// The URL of `database` on this cluster, as the user `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(pid) {
            self.pid = Some(pid);
            self.kill();
        }
        // The temporary folder goes after the server.
    }
}

/// Whether the server behind `store` accepts writes (`pg_is_in_recovery()`
/// is false), as libpq's `target_session_attrs=read-write` checks.
pub async fn writable(store: &PgStore) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()").fetch_one(store.pool()).await.unwrap_or(false)
}

/// Whether the server at `url` accepts writes, over one connection of
/// its own that is not retried: `Err` says why it could not be asked.
/// (A pool would retry a refused connection until its acquire timeout.)
async fn probe(url: &str) -> Result<bool, String> {
    use sqlx::Connection as _;
    let ask = async {
        let mut connection = sqlx::PgConnection::connect(url).await?;
        let writable = sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()").fetch_one(&mut connection).await;
        let _ = connection.close().await;
        writable
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(writable)) => Ok(writable),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

/// The store of the first of `urls` whose server accepts writes, trying
/// them in order, again and again for at most `timeout`: what a multi-host
/// URL with `target_session_attrs=read-write` does in libpq, which sqlx
/// 0.8 does not support (ADR 0049). Each server is asked over a single
/// connection first; only the writable one gets a store, over a pool made
/// with `pool` ([`PgStore::from_pool`]).
///
/// Give `pool` a short `acquire_timeout` (a second or two): when the
/// server dies, the pool's connections are gone and an append waits that
/// long for a new one before it fails with [`StoreError::Unavailable`],
/// which is what starts the switch. [`PgStore::connect`] waits
/// [`orchestrix_adapters::postgres::ACQUIRE_TIMEOUT`] (10 s).
pub async fn connect_writable(
    urls: &[String],
    pool: &PgPoolOptions,
    config: &PgConfig,
    timeout: Duration,
) -> Result<PgStore, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        for url in urls {
            match probe(url).await {
                Ok(true) => match pool.clone().connect(url).await {
                    Ok(pool) => {
                        let store = PgStore::from_pool(pool, config.clone());
                        if writable(&store).await {
                            return Ok(store);
                        }
                        last = Some(format!("{url} became a standby"));
                    }
                    Err(error) => last = Some(format!("{url}: {error}")),
                },
                Ok(false) => last = Some(format!("{url} is a standby")),
                Err(error) => last = Some(format!("{url}: {error}")),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let last = last.unwrap_or_else(|| "no URL given".to_owned());
            return Err(StoreError::Unavailable(format!("no writable server within {timeout:?}; last: {last}").into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A store that follows the writable server: the application's side of a
/// failover (ADR 0049). Writers take [`Failover::store`]; one that gets
/// [`StoreError::Unavailable`] calls [`Failover::reopen`] with the
/// generation it used, and the first such caller connects again with
/// [`connect_writable`] while the others wait for its result; the old
/// store's pool is closed, so appends waiting for one of its connections
/// fail at once and are retried on the new store. Appends are
/// retried with the same events (ADR 0027), so one whose outcome was
/// unknown is stored once.
#[derive(Debug)]
pub struct Failover {
    urls: Vec<String>,
    pool: PgPoolOptions,
    config: PgConfig,
    current: Mutex<(u64, PgStore)>,
}

impl Failover {
    /// Connects to the first writable server of `urls` (see
    /// [`connect_writable`] for `pool`).
    pub async fn connect(
        urls: Vec<String>,
        pool: PgPoolOptions,
        config: PgConfig,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let store = connect_writable(&urls, &pool, &config, timeout).await?;
        Ok(Self { urls, pool, config, current: Mutex::new((0, store)) })
    }

    /// The current store and its generation (bumped by every reopening).
    pub async fn store(&self) -> (u64, PgStore) {
        let current = self.current.lock().await;
        (current.0, current.1.clone())
    }

    /// After an [`StoreError::Unavailable`] with the store of
    /// `generation`: connects to the writable server again, unless another
    /// caller already did since.
    pub async fn reopen(&self, generation: u64, timeout: Duration) -> Result<(u64, PgStore), StoreError> {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            let store = connect_writable(&self.urls, &self.pool, &self.config, timeout).await?;
            let old = std::mem::replace(&mut current.1, store);
            current.0 += 1;
            // Appends still waiting for a connection of the old pool fail
            // now (and go to the new store) instead of retrying a dead
            // server until their acquire timeout; statements in flight
            // finish. Closing marks the pool at once; waiting for its
            // connections is not needed.
            drop(old.pool().close());
        }
        Ok((current.0, current.1.clone()))
    }
}

/// Where a writer takes its store from.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// One store throughout: its pool must reconnect by itself after
    /// terminated backends and server restarts (scenario 3).
    Store(&'a PgStore),
    /// A store that follows the writable server (scenario 4).
    Failover(&'a Failover),
}

/// What one writer did.
#[derive(Debug, Default)]
pub struct Written {
    /// Every append it sent, acknowledged or not.
    pub appends: Vec<Append>,
    /// How often an append was sent again after an error.
    pub retries: u64,
    /// When each acknowledgment arrived.
    pub acknowledged_at: Vec<Instant>,
    /// The last error that made it retry, for the report.
    pub last_error: Option<String>,
    /// Appends retried after an error and answered with events stored by
    /// an attempt sent before the error: the commit had happened, only its
    /// answer was lost (ADR 0027's path). Told by the events' recording
    /// time, which the adapter sets when an attempt starts.
    pub answered_from_store: u64,
}

/// An event of the fault suite: `{"writer": ..., "n": ...}`.
pub fn event(writer: &str, n: u64) -> NewEvent {
    let data = serde_json::json!({ "writer": writer, "n": n }).to_string();
    NewEvent::new("FaultWritten", 1, RawValue::from_string(data).expect("a JSON object"))
}

/// Appends batches of one to three events to `stream` with exact expected
/// versions until `until`. An append that fails with
/// [`StoreError::Unavailable`] or [`StoreError::Backend`] (a terminated
/// backend, a server going down) is sent again with the same events, so
/// the store answers a retry of a stored append with the stored events
/// (ADR 0027); after `give_up` it stays unacknowledged. Any other error (a
/// version conflict: the stream moved without this writer) is returned,
/// since only this writer writes `stream`.
pub async fn write(target: Target<'_>, stream: StreamId, until: Instant, give_up: Instant) -> Result<Written, String> {
    let mut written = Written::default();
    let mut version = 0_u64;
    let mut n = 0_u64;
    while Instant::now() < until {
        let size = fastrand::u64(1..=3);
        let events: Vec<NewEvent> = (n..n + size).map(|k| event(stream.id(), k)).collect();
        n += size;
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        let append = Append {
            stream: stream.clone(),
            first_version: version + 1,
            ids: events.iter().map(|event| event.id).collect(),
            acknowledged: false,
        };
        written.appends.push(append);
        let mut failed_at = None;
        loop {
            let (generation, store) = match target {
                Target::Store(store) => (0, store.clone()),
                Target::Failover(failover) => failover.store().await,
            };
            match store.append(&stream, expected, events.clone()).await {
                Ok(recorded) => {
                    let versions: Vec<u64> = recorded.iter().map(|event| event.stream_version).collect();
                    let wanted: Vec<u64> = (version + 1..=version + size).collect();
                    if versions != wanted {
                        return Err(format!("`{stream}`: acknowledged at versions {versions:?}, expected {wanted:?}"));
                    }
                    version += size;
                    if failed_at.is_some_and(|failed| recorded.first().is_some_and(|e| e.recorded_at < failed)) {
                        written.answered_from_store += 1;
                    }
                    if let Some(append) = written.appends.last_mut() {
                        append.acknowledged = true;
                    }
                    written.acknowledged_at.push(Instant::now());
                    break;
                }
                Err(error @ (StoreError::Unavailable(_) | StoreError::Backend(_))) => {
                    failed_at.get_or_insert_with(chrono::Utc::now);
                    written.retries += 1;
                    written.last_error = Some(error.to_string());
                    if Instant::now() >= give_up {
                        return Ok(written);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Target::Failover(failover) = target {
                        if matches!(error, StoreError::Unavailable(_)) {
                            let left = give_up.saturating_duration_since(Instant::now());
                            let _ = failover.reopen(generation, left).await;
                        }
                    }
                }
                Err(other) => return Err(format!("`{stream}` at version {version}: {other}")),
            }
        }
    }
    Ok(written)
}

/// A side connection that terminates other sessions' backends
/// (`pg_terminate_backend`), reconnecting when the server restarted.
#[derive(Debug)]
pub struct Terminator {
    url: String,
    connection: Option<sqlx::PgConnection>,
}

impl Terminator {
    /// A terminator for the server at `url` (it connects when first used).
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), connection: None }
    }

    /// Terminates about `share` (0 to 1, at least one) of the other client
    /// backends of the server: those running a statement first (so that
    /// the fault hits statements in flight, commits included), the rest
    /// chosen at random; returns how many, or 0 when the server cannot be
    /// reached now.
    pub async fn terminate(&mut self, share: f64) -> u64 {
        use sqlx::Connection as _;
        if self.connection.is_none() {
            self.connection = sqlx::PgConnection::connect(&self.url).await.ok();
        }
        let Some(connection) = self.connection.as_mut() else { return 0 };
        let result = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM ( \
               SELECT pid FROM pg_stat_activity \
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
               ORDER BY state = 'active' DESC, random() \
               LIMIT greatest(1, ceil($1 * (SELECT count(*) FROM pg_stat_activity \
                                             WHERE backend_type = 'client backend'))::bigint)) AS chosen",
        )
        .bind(share)
        .fetch_one(connection)
        .await;
        if let Ok(n) = result {
            u64::try_from(n).unwrap_or(0)
        } else {
            self.connection = None;
            0
        }
    }
}
