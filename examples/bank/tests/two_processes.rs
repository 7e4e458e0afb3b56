//! The bank example started twice on one file, the second while the first
//! runs (ADR 0032): the second logs that it waits for the saga lease, both
//! finish, every saga ends, and no step's effect is recorded twice.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use futures_util::TryStreamExt;
use orchestrix::saga::{step_id, StepKind};
use orchestrix::{
    store::{EventFilter, EventStore},
    Uuid,
};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_started_twice_runs_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bank.db");
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bank"));
        command.arg("--db").arg(&db).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    };
    let mut first = run().spawn().unwrap();
    // Start the second once the first is past its start (its saga runner
    // has taken the lease) and in the middle of its work.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut first_out = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let started = line.starts_with("opened accounts");
        first_out.push(line);
        if started {
            break;
        }
    }
    let second = run().spawn().unwrap();
    let rest = tokio::spawn(async move {
        while let Some(line) = lines.next_line().await.unwrap() {
            first_out.push(line);
        }
        first_out
    });
    let (first, second) = tokio::time::timeout(Duration::from_mins(2), async {
        (first.wait_with_output().await.unwrap(), second.wait_with_output().await.unwrap())
    })
    .await
    .expect("both runs end");
    let first_out = rest.await.unwrap().join("\n");
    let logs = |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(first.status.success(), "{first_out}\n{}", logs(&first));
    assert!(second.status.success(), "{}\n{}", String::from_utf8_lossy(&second.stdout), logs(&second));
    let waited = [&first, &second].iter().filter(|o| logs(o).contains("another runner holds the lease")).count();
    assert_eq!(waited, 1, "one run waits for the other's saga lease:\n{}\n{}", logs(&first), logs(&second));

    let store = SqliteStore::open(&db, SqliteConfig::default()).await.unwrap();
    let log: Vec<_> = store.read_all(1, &EventFilter::all()).try_collect().await.unwrap();
    let sagas: Vec<Uuid> = log.iter().filter(|e| e.event_type == "TransferRequested").map(|e| e.id).collect();
    assert_eq!(sagas.len(), 4, "two transfers per run");
    let ended: HashSet<&str> = log
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "SagaCompleted" | "SagaFailed"))
        .map(|e| e.stream.id())
        .collect();
    for saga in &sagas {
        assert!(ended.contains(saga.to_string().as_str()), "saga {saga} did not end");
    }
    let step_ids: HashSet<Uuid> = sagas
        .iter()
        .flat_map(|saga| {
            [(0, StepKind::Action), (0, StepKind::Compensation), (1, StepKind::Action)]
                .map(|(step, kind)| step_id(*saga, step, kind))
        })
        .collect();
    let mut effects: HashMap<Uuid, usize> = HashMap::new();
    for event in log.iter().filter(|e| e.stream.category() == "Account") {
        if let Some(cause) = event.metadata.causation_id.filter(|c| step_ids.contains(c)) {
            *effects.entry(cause).or_default() += 1;
        }
    }
    assert!(effects.values().all(|n| *n == 1), "a step's effect was recorded twice: {effects:?}");
    assert_eq!(effects.len(), 2 * 4, "a debit and a credit or a refund per transfer");
}
