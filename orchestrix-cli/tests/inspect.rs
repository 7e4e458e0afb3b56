//! `streams`, `show`, `stats`, `tail`, `projections`, `dead-letters` and
//! `verify` against SQLite, run as a process; and the answers to bad URLs.

mod support;

use std::io::{BufRead as _, BufReader};

use orchestrix::store::{CheckpointStore, DeadLetter, DeadLetterStore, EventStore, Snapshot, SnapshotStore};
use support::{command, event, orchestrix, seed, sqlite, stream};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime")
}

#[test]
fn streams_show_and_stats_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "bank.db"));
    let recorded = rt.block_on(seed(&store));

    let run = orchestrix(&["--store", &url, "streams"]);
    assert_eq!(run.code, 0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("STREAM"), "{lines:?}");
    assert!(
        lines[1].split_whitespace().eq(["Account/1", "3", "3", &recorded[4].global_position.to_string()]),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 4, "a header and three streams: {lines:?}");

    let run = orchestrix(&["--store", &url, "--json", "streams", "--type", "Account"]);
    let names: Vec<String> =
        run.json()["streams"].as_array().unwrap().iter().map(|s| s["stream"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["Account/1", "Account/acme/2"]);
    let run = orchestrix(&["--store", &url, "--json", "streams", "--tenant", "acme"]);
    assert_eq!(run.json()["streams"][0]["stream"], "Account/acme/2");
    let run = orchestrix(&["--store", &url, "--json", "streams", "--limit", "1"]);
    assert_eq!(
        (run.json()["streams"].as_array().unwrap().len(), &run.json()["truncated"]),
        (1, &serde_json::json!(true))
    );

    let run = orchestrix(&["--store", &url, "--json", "show", "Account/1", "--at", "2"]);
    assert_eq!(run.code, 0);
    let events = run.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["event_type"], "Deposited");
    assert_eq!(events[1]["data"]["amount"], 100);
    let run = orchestrix(&["--store", &url, "show", "Account/1"]);
    assert!(run.stdout.contains("#3 Deposited (schema v1)") && run.stdout.contains("\"amount\": 5"), "{}", run.stdout);
    let before = (recorded[0].recorded_at - chrono::Duration::seconds(1)).to_rfc3339();
    let run = orchestrix(&["--store", &url, "--json", "show", "Account/1", "--at", &before]);
    assert_eq!(run.json()["events"].as_array().unwrap().len(), 0);
    let run = orchestrix(&["--store", &url, "show", "Account/404"]);
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("Account/404"), "{}", run.stderr);
    let run = orchestrix(&["--store", &url, "show", "Account"]);
    assert_eq!(run.code, 2);
    let run = orchestrix(&["--store", &url, "show", "Account/1", "--at", "last tuesday"]);
    assert_eq!(run.code, 2);

    let run = orchestrix(&["--store", &url, "--json", "stats"]);
    let stats = run.json();
    assert_eq!((stats["events"].as_u64(), stats["streams"].as_u64()), (Some(5), Some(3)));
    assert_eq!(stats["types"]["Deposited"], 2);
    assert_eq!(stats["events_last_hour"], 5);
    let run = orchestrix(&["--store", &url, "stats"]);
    assert!(run.stdout.contains("events          5"), "{}", run.stdout);
}

#[test]
fn bad_urls_and_unreachable_servers_say_so_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let run = orchestrix(&["--store", "mysql://app:hunter2@db/x", "streams"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unsupported store URL") && !run.stderr.contains("hunter2"), "{}", run.stderr);
    let run = orchestrix(&["--store", "postgres://app:hunter2@127.0.0.1:9/x", "streams"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("cannot open `postgres://app:***@127.0.0.1:9/x`"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    let run = orchestrix(&["--store", "esdb+http://127.0.0.1:9", "--token", "hunter2", "streams"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(!run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"), "{run:?}");
    let run = orchestrix(&["--store", "esdb+http://127.0.0.1:9", "streams"]);
    assert_eq!(run.code, 2, "{run:?}");
    let missing = dir.path().join("missing.db");
    let run = orchestrix(&["--store", &format!("sqlite://{}", missing.display()), "streams"]);
    assert_eq!(run.code, 4);
    assert!(!missing.exists(), "a read-only command created the file");
    let run = orchestrix(&["streams"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--store"), "{}", run.stderr);
    let run = orchestrix(&["frobnicate"]);
    assert_eq!(run.code, 2);
    let run = orchestrix(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Exit codes: 0 done"), "the help documents the exit codes: {}", run.stdout);
}

#[test]
fn tail_follows_the_log_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "tail.db"));
    rt.block_on(seed(&store));

    let run = orchestrix(&["--store", &url, "--json", "tail", "--from", "1", "--type", "Deposited", "--count", "2"]);
    assert_eq!(run.code, 0);
    let amounts: Vec<u64> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["amount"].as_u64().unwrap())
        .collect();
    assert_eq!(amounts, [100, 5]);

    // Live: the tail starts after the head and sees what comes next.
    let mut child = command(&["--store", &url, "tail", "--tenant", "acme", "--count", "1"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    std::thread::sleep(std::time::Duration::from_millis(800));
    rt.block_on(async {
        store
            .append(
                &stream("Account/3"),
                orchestrix::store::ExpectedVersion::NoStream,
                vec![event("Opened", serde_json::json!({}))],
            )
            .await
            .unwrap();
        let mut acme = event("Deposited", serde_json::json!({"amount": 7}));
        acme.metadata = orchestrix::Metadata::default().with_tenant("acme");
        store
            .append(&stream("Account/acme/2"), orchestrix::store::ExpectedVersion::Exact(1), vec![acme])
            .await
            .unwrap();
    });
    let line = lines.next().expect("a line").unwrap();
    assert!(line.contains("Account/acme/2#2  Deposited  {\"amount\":7}"), "{line}");
    let status = child.wait().unwrap();
    assert!(status.success());

    // Without --count it follows until Ctrl-C, which ends it with exit 0.
    let mut child = command(&["--store", &url, "tail"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let interrupt = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupt.success());
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "tail did not end on SIGINT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn projections_dead_letters_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "admin.db"));
    let recorded = rt.block_on(seed(&store));
    rt.block_on(async {
        CheckpointStore::save(&store, "balances", recorded[2].global_position).await.unwrap();
        for (i, event) in [&recorded[0], &recorded[2]].into_iter().enumerate() {
            let letter = DeadLetter {
                id: orchestrix::Uuid::now_v7(),
                consumer: if i == 0 { "balances" } else { "emails" }.to_owned(),
                event: (**event).clone(),
                error: format!("handler failed: timeout {i}"),
                attempts: 3,
                parked_at: chrono::Utc::now() - chrono::Duration::days(10 * i64::try_from(i).unwrap()),
            };
            store.park(letter).await.unwrap();
        }
    });
    let run = orchestrix(&["--store", &url, "--json", "projections", "balances", "never-ran"]);
    assert_eq!(run.code, 0);
    let rows = run.json()["projections"].clone();
    assert_eq!(
        (&rows[0]["checkpoint"], &rows[0]["lag"], &rows[0]["dead_letters"]),
        (&serde_json::json!(recorded[2].global_position), &serde_json::json!(2), &serde_json::json!(1))
    );
    assert_eq!((&rows[1]["checkpoint"], &rows[1]["lag"]), (&serde_json::Value::Null, &serde_json::json!(5)));
    assert_eq!(orchestrix(&["--store", &url, "projections"]).code, 2);

    let run = orchestrix(&["--store", &url, "dead-letters", "count"]);
    assert_eq!(run.stdout.trim(), "2");
    let run = orchestrix(&["--store", &url, "--json", "dead-letters", "list", "--projection", "emails"]);
    let letters = run.json()["dead_letters"].clone();
    assert_eq!((letters.as_array().unwrap().len(), &letters[0]["stream"]), (1, &serde_json::json!("Account/1")));
    let run = orchestrix(&[
        "--store",
        &url,
        "--json",
        "dead-letters",
        "count",
        "--reason",
        "timeout 0",
        "--stream",
        "Account/1",
    ]);
    assert_eq!(run.json()["count"], 1);
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7)).format("%Y-%m-%d").to_string();
    let run = orchestrix(&["--store", &url, "dead-letters", "purge", "--older-than", &week_ago]);
    assert_eq!(run.code, 5, "no terminal and no --yes: refused");
    assert_eq!(orchestrix(&["--store", &url, "dead-letters", "count"]).stdout.trim(), "2");
    let run = orchestrix(&["--store", &url, "--yes", "dead-letters", "purge", "--older-than", &week_ago]);
    assert_eq!((run.code, run.stdout.trim()), (0, "purged 1 dead letters"));
    let unknown = orchestrix::Uuid::now_v7().to_string();
    assert_eq!(orchestrix(&["--store", &url, "--yes", "dead-letters", "drop", &unknown]).code, 4);
    let id = rt.block_on(DeadLetterStore::list(&store, None)).unwrap()[0].id.to_string();
    assert_eq!(orchestrix(&["--store", &url, "dead-letters", "drop", &id]).code, 5);
    assert_eq!(orchestrix(&["--store", &url, "--yes", "dead-letters", "drop", &id]).code, 0);
    assert_eq!(orchestrix(&["--store", &url, "dead-letters", "count"]).stdout.trim(), "0");

    let run = orchestrix(&["--store", &url, "verify"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ok: no violation found"), "{}", run.stdout);
    rt.block_on(async {
        let snapshot = Snapshot {
            stream: stream("Order/9"),
            version: 7,
            schema_version: 1,
            state: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
            taken_at: chrono::Utc::now(),
        };
        SnapshotStore::save(&store, snapshot).await.unwrap();
    });
    let run = orchestrix(&["--store", &url, "--json", "verify"]);
    assert_eq!(run.code, 6);
    assert_eq!(run.json()["violations"], 1);
    assert!(run.json()["findings"][0].as_str().unwrap().contains("past its head 1"), "{}", run.stdout);
}
