//! What the command-line tests share: the binary run as a process, and
//! stores seeded through the adapters.

#![allow(dead_code, unreachable_pub, clippy::needless_pass_by_value)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix::{Metadata, StreamId};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The binary, with no store in the environment and no terminal.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orchestrix"));
    command
        .args(args)
        .env_remove("ORCHESTRIX_STORE")
        .env_remove("ORCHESTRIX_ESDB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary to its end (within a minute).
pub fn orchestrix(args: &[&str]) -> Run {
    let child = command(args).spawn().expect("the binary runs");
    let output = wait_with_timeout(child, std::time::Duration::from_mins(1));
    let run = Run::from(output);
    eprintln!("orchestrix {args:?} -> {}\n{}\n{}", run.code, run.stdout, run.stderr);
    run
}

fn wait_with_timeout(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the command did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn event(kind: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: orchestrix::Uuid::now_v7(),
        event_type: kind.to_owned(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&data).expect("json"),
        metadata: Metadata::default(),
    }
}

pub fn stream(text: &str) -> StreamId {
    let (category, id) = text.split_once('/').expect("Type/id");
    StreamId::new(category, id).expect("a stream id")
}

/// Five events in three streams (one of tenant `acme`), in this global
/// order: Account/1 Opened, Order/9 Placed, Account/1 Deposited,
/// Account/acme/2 Opened, Account/1 Deposited.
pub async fn seed(store: &dyn EventStore) -> Vec<Arc<RecordedEvent>> {
    let mut recorded = Vec::new();
    let steps: [(&str, u64, NewEvent); 5] = [
        ("Account/1", 0, event("Opened", serde_json::json!({"owner": "Ada"}))),
        ("Order/9", 0, event("Placed", serde_json::json!({"total": 12.5, "lines": [1, 2]}))),
        ("Account/1", 1, event("Deposited", serde_json::json!({"amount": 100}))),
        ("Account/acme/2", 0, {
            let mut e = event("Opened", serde_json::json!({"owner": "Bob"}));
            e.metadata = Metadata::default().with_tenant("acme");
            e
        }),
        ("Account/1", 2, event("Deposited", serde_json::json!({"amount": 5}))),
    ];
    for (name, version, new) in steps {
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        recorded.extend(store.append(&stream(name), expected, vec![new]).await.expect("append"));
    }
    recorded
}

/// A new SQLite file in `dir`.
pub async fn sqlite(dir: &Path, name: &str) -> (SqliteStore, String) {
    let path = dir.join(name);
    let store = SqliteStore::open(&path, SqliteConfig::default()).await.expect("open");
    (store, format!("sqlite://{}", path.display()))
}
