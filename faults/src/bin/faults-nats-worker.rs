//! `faults-nats-worker`: one worker process of the NATS worker scenario
//! (`tests/nats_workers.rs`): runs the [`Tally`] read model on a
//! [`ProjectionWorker`], sharing the partitions with the other processes
//! through PostgreSQL leases, until killed.
//!
//! ```text
//! faults-nats-worker --pg-url URL --schema STORE_SCHEMA --read-model SCHEMA --nats-url URL[,URL...] \
//!     --prefix SUBJECT.PREFIX --stream STREAM --partitions N --id NAME --status FILE
//! ```
//!
//! It rewrites `FILE` (through a rename, so a reader never sees half of
//! it) whenever its partitions or counts change: `partitions 0,3` (the
//! partitions it holds), `workers 4` (the live workers it counted),
//! `handled N` and `applied N`. It exits with status 2 if the worker
//! fails (an event it could not apply, for example one out of order).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use orchestrix_adapters::nats::{connect, EventStreamConfig, ProjectionWorker, Subjects, WorkerOptions, WorkerStatus};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_faults::tally::Tally;

const USAGE: &str = "usage: faults-nats-worker --pg-url URL --schema STORE_SCHEMA --read-model SCHEMA \
                     --nats-url URL[,URL...] --prefix PREFIX --stream STREAM --partitions N --id NAME --status FILE";

fn args() -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(key) = args.next() {
        let key = key.strip_prefix("--").ok_or_else(|| format!("unexpected argument `{key}`\n{USAGE}"))?.to_owned();
        let value = args.next().ok_or_else(|| format!("`--{key}` needs a value\n{USAGE}"))?;
        map.insert(key, value);
    }
    Ok(map)
}

fn render(status: &WorkerStatus, applied: u64) -> String {
    let partitions: Vec<String> = status.partitions.iter().map(u32::to_string).collect();
    format!(
        "partitions {}\nworkers {}\nhandled {}\napplied {applied}\n",
        partitions.join(","),
        status.workers,
        status.handled
    )
}

fn publish(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let get = |key: &str| args.get(key).cloned().ok_or_else(|| format!("`--{key}` is required\n{USAGE}"));
    let store = PgStore::connect(&get("pg-url")?, PgConfig::new(get("schema")?)?.with_max_connections(2)).await?;
    let read_model = Tally::new(store.pool().clone(), &get("read-model")?, get("id")?)?;
    let applied = read_model.applied();
    let client = connect(&get("nats-url")?).await?;
    let partitions: u32 = get("partitions")?.parse().map_err(|e| format!("`--partitions`: {e}"))?;
    let subjects = Subjects::new(get("prefix")?, partitions)?;
    let stream = EventStreamConfig::new(get("stream")?)?;
    let status_file = PathBuf::from(get("status")?);
    let options = WorkerOptions::default().batch(64).lease_interval(Duration::from_millis(250));
    let handle = ProjectionWorker::new(client, subjects, stream, store).spawn(read_model, options);
    let mut written = String::new();
    loop {
        let status = handle.status();
        if let Some(failure) = status.failed {
            return Err(format!("the worker failed: {failure}").into());
        }
        let text = render(&status, applied.load(Ordering::Relaxed));
        if text != written {
            publish(&status_file, &text)?;
            written = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faults-nats-worker: {error}");
            ExitCode::from(2)
        }
    }
}
