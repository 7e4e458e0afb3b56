//! SQLite killed mid-write (scenario 5 of issue 23): the writer process
//! (`faults-sqlite-writer`) and the lines it prints, which the scenario
//! reads back into [`Append`]s.
//!
//! The writer prints `try <category> <id> <first version> <event ids>`
//! before each append and `ack <category> <id> <first version>` once the
//! store answered it, each line written whole and flushed, so a line that
//! ends with a newline was printed before the kill. A `try` without its
//! `ack` is an append whose outcome the writer never learned.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrix::store::{EventStore as _, ExpectedVersion};
use orchestrix::{StoreError, StreamId};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use uuid::Uuid;

use crate::audit::Append;
use crate::postgres::event;

/// The category of the writer's streams.
pub const CATEGORY: &str = "Killed";

/// The `try` line of `append`.
pub fn try_line(append: &Append) -> String {
    let ids: Vec<String> = append.ids.iter().map(Uuid::to_string).collect();
    format!("try {} {} {} {}", append.stream.category(), append.stream.id(), append.first_version, ids.join(","))
}

/// The `ack` line of `append`.
pub fn ack_line(append: &Append) -> String {
    format!("ack {} {} {}", append.stream.category(), append.stream.id(), append.first_version)
}

/// The appends a writer's output tells of, acknowledged when their `ack`
/// line follows. Only whole lines count (a kill can cut the last one);
/// a line that is not the writer's is an error.
pub fn appends_from(output: &str) -> Result<Vec<Append>, String> {
    let mut appends: Vec<Append> = Vec::new();
    let whole = match output.rfind('\n') {
        Some(end) => &output[..end],
        None => "",
    };
    for line in whole.lines().filter(|line| !line.is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let stream = |category: &str, id: &str| StreamId::new(category, id).map_err(|e| format!("{line}: {e}"));
        let version = |v: &str| v.parse::<u64>().map_err(|e| format!("{line}: {e}"));
        match fields.as_slice() {
            ["try", category, id, first, ids] => {
                let ids = ids
                    .split(',')
                    .map(|id| Uuid::parse_str(id).map_err(|e| format!("{line}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let (stream, first_version) = (stream(category, id)?, version(first)?);
                appends.push(Append { stream, first_version, ids, acknowledged: false });
            }
            ["ack", category, id, first] => {
                let (stream, first_version) = (stream(category, id)?, version(first)?);
                let tried = appends
                    .iter_mut()
                    .rev()
                    .find(|append| append.stream == stream && append.first_version == first_version)
                    .ok_or_else(|| format!("an ack without its try: {line}"))?;
                tried.acknowledged = true;
            }
            _ => return Err(format!("not a line of the writer: {line}")),
        }
    }
    Ok(appends)
}

/// The writer process's work: `writers` tasks, each appending batches of
/// one to three events to its stream `Killed/<name>-<i>` (continuing from
/// its stored version) with exact expected versions, printing a `try`
/// line before and an `ack` line after each append, until it is killed or
/// `limit` has passed. Opening, the first read and every append (with the
/// same events) are retried while the database is busy or locked; any
/// other error ends the process with it.
pub async fn run_writer(path: &Path, name: &str, writers: usize, limit: Duration) -> Result<(), StoreError> {
    let until = Instant::now() + limit;
    // Another writer may hold the file's lock, or be recovering the WAL a
    // killed one left, for longer than the busy timeout on a loaded
    // machine: opening is retried like an append (ADR 0049).
    let store = busy_retried(until, || SqliteStore::open(path, SqliteConfig::default())).await?;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = store.clone();
        let stream = StreamId::new(CATEGORY, format!("{name}-{i}"))?;
        tasks.push(tokio::spawn(async move { write_stream(&store, &stream, until).await }));
    }
    for task in tasks {
        task.await.map_err(|e| StoreError::Backend(Box::new(e)))??;
    }
    Ok(())
}

/// `attempt` again while it fails with [`StoreError::Unavailable`] (a busy
/// or locked database) and `until` has not passed.
async fn busy_retried<T, F, Fut>(until: Instant, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    loop {
        match attempt().await {
            Err(StoreError::Unavailable(_)) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

async fn write_stream(store: &SqliteStore, stream: &StreamId, until: Instant) -> Result<(), StoreError> {
    let mut version = busy_retried(until, || store.stream_version(stream)).await?.unwrap_or(0);
    let stdout = Arc::new(std::io::stdout());
    let print = |line: String| {
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    while Instant::now() < until {
        let size = fastrand::u64(1..=3);
        let events: Vec<_> = (version..version + size).map(|k| event(stream.id(), k)).collect();
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        let append = Append {
            stream: stream.clone(),
            first_version: version + 1,
            ids: events.iter().map(|event| event.id).collect(),
            acknowledged: false,
        };
        print(try_line(&append));
        loop {
            match store.append(stream, expected, events.clone()).await {
                Ok(_) => break,
                Err(StoreError::Unavailable(_)) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(error) => return Err(error),
            }
        }
        print(ack_line(&append));
        version += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_cut_line_does_not_count() {
        let stream = StreamId::new(CATEGORY, "p0-1").unwrap();
        let first = Append { stream: stream.clone(), first_version: 1, ids: vec![Uuid::now_v7()], acknowledged: true };
        let second =
            Append { stream, first_version: 2, ids: vec![Uuid::now_v7(), Uuid::now_v7()], acknowledged: false };
        let output = format!("{}\n{}\n{}\n{}", try_line(&first), ack_line(&first), try_line(&second), "ack Killed p0");
        assert_eq!(appends_from(&output).unwrap(), vec![first.clone(), second]);
        assert!(appends_from("hello\n").is_err());
        assert!(appends_from(&format!("{}\n", ack_line(&first))).unwrap_err().contains("without its try"));
    }
}
