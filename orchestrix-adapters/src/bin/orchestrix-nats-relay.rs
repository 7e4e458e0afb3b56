//! `orchestrix-nats-relay`: publishes a PostgreSQL event store's global log
//! to NATS JetStream, checkpointed in the same database.
//!
//! ```text
//! orchestrix-nats-relay --pg-url URL --schema NAME --nats-url URL[,URL...] \
//!     --prefix SUBJECT.PREFIX --stream STREAM_NAME [--partitions N] [--name CHECKPOINT] [--window N] \
//!     [--replicas N]
//! ```
//!
//! For a NATS cluster, give every server's URL, comma-separated, and
//! `--replicas 3` (a three-node cluster) so that the stream survives the
//! loss of a server.
//!
//! Runs until killed or interrupted (Ctrl-C stops it cleanly: the
//! publishes in flight are settled and the checkpoint saved). Killing it
//! at any moment loses nothing: the next run starts from the checkpoint,
//! and the broker drops what is published twice within its duplicate
//! window.

use std::collections::HashMap;
use std::process::ExitCode;

use orchestrix_adapters::nats::{connect, EventStreamConfig, Relay, RelayOptions, Subjects};
use orchestrix_adapters::postgres::{PgConfig, PgStore};

const USAGE: &str = "usage: orchestrix-nats-relay --pg-url URL --schema NAME --nats-url URL --prefix PREFIX \
                     --stream NAME [--partitions N] [--name CHECKPOINT] [--window N] [--replicas N]";

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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let get = |key: &str| args.get(key).cloned().ok_or_else(|| format!("`--{key}` is required\n{USAGE}"));
    let number = |key: &str, default: u64| -> Result<u64, String> {
        args.get(key).map_or(Ok(default), |v| v.parse().map_err(|e| format!("`--{key} {v}`: {e}")))
    };
    let store = PgStore::connect(&get("pg-url")?, PgConfig::new(get("schema")?)?).await?;
    store.migrate().await?;
    let client = connect(&get("nats-url")?).await?;
    let subjects = Subjects::new(get("prefix")?, u32::try_from(number("partitions", 8)?)?)?;
    let mut stream = EventStreamConfig::new(get("stream")?)?;
    if args.contains_key("replicas") {
        stream = stream.with_replicas(usize::try_from(number("replicas", 1)?)?)?;
    }
    let options = RelayOptions::default()
        .name(args.get("name").cloned().unwrap_or_else(|| "nats-relay".to_owned()))
        .window(usize::try_from(number("window", 256)?)?);
    let handle = Relay::new(client, store.clone(), store, subjects, stream, options).spawn();
    tokio::signal::ctrl_c().await?;
    handle.stop().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orchestrix-nats-relay: {error}");
            ExitCode::FAILURE
        }
    }
}
