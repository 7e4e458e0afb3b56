//! The release benchmark of `export` and `copy` (issue 20, ADR 0051),
//! each side by side with its baseline in one run:
//!
//! - `export` of a store to a file, against a raw `SELECT` of every
//!   column of the same events table, streamed and decoded (SQLite, and
//!   PostgreSQL after the copy);
//! - `copy` SQLite → PostgreSQL (read, write in batches of 500, read back
//!   and verify), against `append_many` batches of 500 of the same events
//!   into PostgreSQL;
//! - the peak memory (`VmHWM`) of the `orchestrix` process for each size,
//!   which must stay flat in the number of events.
//!
//! The commands run as the release `orchestrix` binary, a process as an
//! operator runs it. Needs `ORCHESTRIX_PG_URL` (the PostgreSQL parts are
//! skipped without it).
//!
//! ```text
//! just bench-cli                         # 100,000 and 1,000,000 events
//! just bench-cli --sizes 10000           # a quick look
//! just bench-cli --docs docs/guide/cli.md  # and write the table there
//! ```

#![allow(missing_docs, clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use orchestrix::envelope::NewEvent;
use orchestrix::store::{EventStore, ExpectedVersion, StreamAppend};
use orchestrix::StreamId;
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use sqlx::Row as _;

/// Events per stream, and per batch (the CLI's default batch).
const PER_STREAM: u64 = 10;
const BATCH: usize = 500;

/// The goal of both ratios (issue 20).
const GOAL: f64 = 0.7;

/// One measured row of the report.
struct Row {
    what: String,
    events: u64,
    seconds: f64,
    baseline_seconds: f64,
    peak_rss_mib: Option<f64>,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.baseline_seconds / self.seconds
    }
}

/// The events of stream `s`, versions 1..=PER_STREAM.
fn events_of(s: u64) -> Vec<NewEvent> {
    (0..PER_STREAM)
        .map(|v| {
            let data = serde_json::json!({"amount": s * 100 + v, "currency": "EUR", "note": "monthly transfer"});
            NewEvent::new("Deposited", 1, serde_json::value::to_raw_value(&data).expect("json"))
        })
        .collect()
}

/// Appends `events` events in batches of [`BATCH`] (streams of
/// [`PER_STREAM`]); returns the seconds it took.
async fn append_batches(store: &dyn EventStore, events: u64) -> f64 {
    let start = Instant::now();
    let streams = events / PER_STREAM;
    let per_batch = BATCH as u64 / PER_STREAM;
    let mut s = 0;
    while s < streams {
        let parts = (s..(s + per_batch).min(streams))
            .map(|s| {
                let stream = StreamId::new("Account", s.to_string()).expect("a stream id");
                StreamAppend::new(stream, ExpectedVersion::NoStream, events_of(s))
            })
            .collect();
        store.append_many(parts).await.expect("append_many");
        s += per_batch;
    }
    start.elapsed().as_secs_f64()
}

/// Runs the `orchestrix` binary; the seconds it took and its peak RSS in
/// MiB (`VmHWM`, polled every 10 ms while it runs).
fn orchestrix(args: &[&str]) -> (f64, Option<f64>) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the orchestrix binary runs");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib: Option<u64> = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            if let Some(hwm) = hwm {
                peak_kib = Some(peak_kib.map_or(hwm, |p| p.max(hwm)));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr);
        panic!("orchestrix {args:?} failed ({status}): {stderr}");
    }
    (seconds, peak_kib.map(|k| k as f64 / 1024.0))
}

/// A raw streamed `SELECT` of every column of SQLite's events table, each
/// row decoded into owned values; the seconds it took.
async fn select_sqlite(path: &Path, events: u64) -> f64 {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("sqlite");
    let start = Instant::now();
    let mut rows = sqlx::query(
        "SELECT global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
         data, metadata, recorded_at FROM orchestrix_events ORDER BY global_position",
    )
    .fetch(&pool);
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await.expect("a row") {
        let position: i64 = row.get(0);
        let id: String = row.get(1);
        let (category, aggregate): (String, String) = (row.get(2), row.get(3));
        let (version, kind, schema): (i64, String, i64) = (row.get(4), row.get(5), row.get(6));
        let (data, metadata, at): (String, String, i64) = (row.get(7), row.get(8), row.get(9));
        bytes += id.len() + category.len() + aggregate.len() + kind.len() + data.len() + metadata.len();
        count += u64::from(position > 0 && version > 0 && schema > 0 && at > 0);
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(count, events, "the raw SELECT saw every event ({bytes} bytes)");
    seconds
}

/// The same on PostgreSQL's events table in `schema`.
async fn select_postgres(url: &str, schema: &str, events: u64) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.expect("postgres");
    let start = Instant::now();
    let sql = format!(
        "SELECT global_position, event_id, category, aggregate_id, stream_version, event_type, schema_version, \
         data::text, metadata::text, recorded_at FROM \"{schema}\".events ORDER BY global_position"
    );
    let mut rows = sqlx::query(&sql).fetch(&pool);
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await.expect("a row") {
        let position: i64 = row.get(0);
        let id: orchestrix::Uuid = row.get(1);
        let (category, aggregate): (String, String) = (row.get(2), row.get(3));
        let (version, kind, schema): (i64, String, i64) = (row.get(4), row.get(5), row.get(6));
        let (data, metadata): (String, String) = (row.get(7), row.get(8));
        let at: chrono::DateTime<chrono::Utc> = row.get(9);
        bytes += id.as_bytes().len() + category.len() + aggregate.len() + kind.len() + data.len() + metadata.len();
        count += u64::from(position > 0 && version > 0 && schema > 0 && at.timestamp() > 0);
    }
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(count, events, "the raw SELECT saw every event ({bytes} bytes)");
    seconds
}

/// A PostgreSQL URL with `?schema=` (or `&schema=`) added.
fn with_schema(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}schema={schema}")
}

async fn measure(events: u64, pg: Option<&str>, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let source = dir.path().join("source.db");
    let source_url = format!("sqlite://{}", source.display());
    {
        let store = SqliteStore::open(&source, SqliteConfig::default()).await.expect("sqlite");
        let seconds = append_batches(&store, events).await;
        eprintln!("  seeded SQLite with {events} events in {seconds:.1} s");
    }
    let out = dir.path().join("export.jsonl");
    let out_arg = out.display().to_string();

    let select = select_sqlite(&source, events).await;
    let (seconds, rss) = orchestrix(&["--store", &source_url, "export", "--out", &out_arg]);
    rows.push(Row { what: "export SQLite".into(), events, seconds, baseline_seconds: select, peak_rss_mib: rss });

    let Some(base) = pg else { return };
    let tag = orchestrix::Uuid::now_v7().simple().to_string();
    let (baseline_schema, copy_schema) = (format!("bench_append_{tag}"), format!("bench_copy_{tag}"));
    let baseline =
        PgStore::connect(base, PgConfig::new(baseline_schema.clone()).expect("a schema")).await.expect("postgres");
    baseline.migrate().await.expect("migrate");
    let append = append_batches(&baseline, events).await;
    let copy_url = with_schema(base, &copy_schema);
    let _ = orchestrix(&["--store", &copy_url, "migrate"]);
    let (seconds, rss) = orchestrix(&["copy", "--from", &source_url, "--to", &copy_url, "--yes"]);
    rows.push(Row {
        what: "copy SQLite → PostgreSQL".into(),
        events,
        seconds,
        baseline_seconds: append,
        peak_rss_mib: rss,
    });

    let select = select_postgres(base, &copy_schema, events).await;
    let (seconds, rss) = orchestrix(&["--store", &copy_url, "export", "--out", &out_arg]);
    rows.push(Row { what: "export PostgreSQL".into(), events, seconds, baseline_seconds: select, peak_rss_mib: rss });

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(base).await.expect("postgres");
    for schema in [baseline_schema, copy_schema] {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await;
    }
}

/// The report as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| command | events | seconds | events/s | baseline | baseline events/s | ratio (goal ≥ 0.7) | peak RSS |\n\
         | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let baseline = if row.what.starts_with("copy") { "append_many ×500" } else { "raw SELECT" };
        let _ = writeln!(
            text,
            "| `{}` | {} | {:.1} | {:.0} | {baseline} | {:.0} | {:.2}{} | {} |",
            row.what,
            row.events,
            row.seconds,
            row.events as f64 / row.seconds,
            row.events as f64 / row.baseline_seconds,
            row.ratio(),
            if row.ratio() >= GOAL { "" } else { " (below)" },
            row.peak_rss_mib.map_or("-".to_owned(), |m| format!("{m:.0} MiB")),
        );
    }
    text
}

/// Replaces the text between the bench's markers in `path` with `table`.
fn write_docs(path: &Path, table: &str) {
    const START: &str = "<!-- bench-cli:start -->";
    const END: &str = "<!-- bench-cli:end -->";
    let text = std::fs::read_to_string(path).expect("the docs file");
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        panic!("{} has no {START} … {END} markers", path.display());
    };
    let generated = format!(
        "{START}\n<!-- generated by `just bench-cli --docs docs/guide/cli.md` ({} cores); do not edit -->\n{table}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
    std::fs::write(path, updated).expect("write the docs");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut sizes = vec![100_000u64, 1_000_000];
    let mut docs = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .expect("--sizes N,N")
                    .split(',')
                    .map(|n| n.trim().parse().expect("a number of events"))
                    .collect();
            }
            "--docs" => docs = Some(args.next().expect("--docs FILE")),
            "--quick" => sizes = vec![10_000],
            "--bench" => {}
            other => panic!("unknown argument `{other}`: expected --sizes N,N, --quick or --docs FILE"),
        }
    }
    let pg = std::env::var("ORCHESTRIX_PG_URL").ok().filter(|u| !u.is_empty());
    if pg.is_none() {
        eprintln!("ORCHESTRIX_PG_URL is not set: the PostgreSQL rows (copy, export from PostgreSQL) are skipped");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let mut rows = Vec::new();
    for &events in &sizes {
        eprintln!("{events} events:");
        runtime.block_on(measure(events, pg.as_deref(), &mut rows));
    }
    let report = table(&rows);
    println!("{report}");
    let below = rows.iter().filter(|r| r.ratio() < GOAL).count();
    println!("{below} of {} ratios below the goal of {GOAL}", rows.len());
    if let Some(path) = docs {
        write_docs(Path::new(&path), &report);
        println!("written to {path}");
    }
}
