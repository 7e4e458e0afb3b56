//! Scenario 5 of issue 23 (ADR 0049): SQLite killed mid-write. Two writer
//! processes (`faults-sqlite-writer`, four writing tasks each) append to
//! one database file and print every append before and after it was
//! acknowledged; both are killed with SIGKILL after a random 150 to
//! 600 ms, again and again, each round continuing the same streams.
//!
//! Promises checked after every kill: `PRAGMA integrity_check` is `ok`;
//! at the end, every acknowledged append is stored at its version, no
//! event twice, no append in part, no version gap.
//!
//! Short by default (8 rounds); `ORCHESTRIX_FAULTS=full` runs 60.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore as _};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use orchestrix_faults::audit::{Append, Audit};
use orchestrix_faults::process::{full, scaled, Guarded};
use orchestrix_faults::report::{self, Figures};
use orchestrix_faults::sqlite::appends_from;

const PROCESSES: usize = 2;

/// `PRAGMA integrity_check` on the file, over a connection of its own.
async fn integrity(path: &Path) -> String {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.expect("the file opens");
    let rows: Vec<String> =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut connection).await.expect("integrity_check runs");
    connection.close().await.ok();
    rows.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_killed_mid_write_lose_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    let rounds = scaled(8, 60);
    let mut appends: Vec<Append> = Vec::new();
    let mut kills = 0_u64;
    let mut checks = Vec::new();
    for round in 0..rounds {
        let mut running = Vec::new();
        for p in 0..PROCESSES {
            // Its output goes to a file: what it printed before the kill is
            // there whole (each line is one write, flushed).
            let out = dir.path().join(format!("round{round}-p{p}.out"));
            let err = dir.path().join(format!("round{round}-p{p}.err"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_faults-sqlite-writer"));
            command.arg(&path).arg(format!("p{p}")).args(["4", "30"]);
            command.stdout(File::create(&out).unwrap()).stderr(File::create(&err).unwrap());
            let writer = Guarded::spawn(format!("writer p{p}"), &mut command).expect("the writer starts");
            running.push((writer, out, err));
        }
        // Let them write (the first round also creates the tables), then kill.
        let warm_up = if round == 0 { 800 } else { 0 };
        tokio::time::sleep(Duration::from_millis(warm_up + fastrand::u64(150..=600))).await;
        for (writer, _, err) in &mut running {
            let exited = writer.has_exited();
            let stderr = std::fs::read_to_string(&*err).unwrap_or_default();
            assert!(!exited, "{} exited before its kill: {stderr}", writer.name());
            writer.kill();
            kills += 1;
        }
        for (_, out, _) in running {
            let output = std::fs::read_to_string(out).expect("the writer's output");
            appends.extend(appends_from(&output).unwrap_or_else(|e| panic!("round {round}: {e}")));
        }
        let check = integrity(&path).await;
        assert_eq!(check, "ok", "round {round}: the file is corrupt");
        checks.push(check);
    }

    let store = SqliteStore::open(&path, SqliteConfig::default()).await.expect("the store opens again");
    let log: Vec<_> = store
        .read_all(0, &EventFilter::all())
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("the log reads");
    let audit = Audit::of(&log, &appends);
    let unknown = appends.iter().filter(|append| !append.acknowledged).count();
    println!("{audit}\n{rounds} rounds, {kills} writer processes killed, {unknown} appends in flight at a kill");

    let mut extra = serde_json::Map::new();
    extra.insert("build".into(), if cfg!(debug_assertions) { "debug" } else { "release" }.into());
    extra.insert("writer_processes".into(), PROCESSES.into());
    extra.insert("integrity_checks_ok".into(), checks.len().into());
    extra.insert("in_flight_at_kill".into(), unknown.into());
    extra.insert("unknown_outcome_stored".into(), audit.unacknowledged_stored.into());
    extra.insert("version_gaps".into(), audit.version_gaps.into());
    let figures = Figures {
        scenario: "sqlite-kill".into(),
        version: if full() { "full" } else { "short" }.into(),
        faults: kills,
        acknowledged: audit.acknowledged,
        lost: audit.lost,
        duplicated: audit.duplicated,
        extra,
    };
    report::record(&figures).expect("the figures are recorded");

    assert!(audit.holds(), "{audit}");
    assert_eq!(audit.lost, 0);
    assert!(audit.acknowledged > 0, "nothing was acknowledged");
    assert!(unknown > 0 || rounds < 4, "no kill hit an append in flight in {rounds} rounds");
}
