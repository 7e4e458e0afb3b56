//! `export`, `import`, `copy` and `migrate` as processes: SQLite to
//! SQLite, to PostgreSQL and back, to EventSourcingDB; bad files, foreign
//! streams, resuming after an interruption.

mod support;

use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use support::{event, orchestrix, seed, sqlite, stream};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime")
}

#[test]
fn export_then_import_is_verified_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (source, source_url) = rt.block_on(sqlite(dir.path(), "source.db"));
    let recorded = rt.block_on(seed(&source));
    let file = dir.path().join("log.jsonl");
    let file_arg = file.display().to_string();

    let run = orchestrix(&["--store", &source_url, "export", "--out", &file_arg]);
    assert_eq!(run.code, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 6, "five events and the last line");
    assert!(!dir.path().join("log.jsonl.partial").exists());
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&first["event_type"], &first["stream"]["category"]),
        (&serde_json::json!("Opened"), &serde_json::json!("Account"))
    );

    let run = orchestrix(&["--store", &source_url, "export", "--cloudevents", "--type", "Deposited"]);
    let lines: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (&lines[0]["specversion"], &lines[0]["subject"], &lines[0]["data"]["amount"]),
        (&serde_json::json!("1.0"), &serde_json::json!("Account/1"), &serde_json::json!(100))
    );

    // Into an empty store: written and verified.
    let target_url = format!("sqlite://{}", dir.path().join("target.db").display());
    let run = orchestrix(&["--store", &target_url, "--json", "import", &file_arg, "--batch", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!((&report["written"], &report["verified"]), (&serde_json::json!(5), &serde_json::json!(true)));
    assert_eq!(report["source"]["digest"], report["target"]["digest"]);
    let run = orchestrix(&["--store", &target_url, "--json", "tail", "--from", "1", "--count", "5"]);
    let order: Vec<String> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = recorded.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(order, expected, "the global order is the source's");

    // Again: the store is not empty, so it asks; with --yes it resumes and writes nothing.
    let run = orchestrix(&["--store", &target_url, "import", &file_arg]);
    assert_eq!(run.code, 5, "{run:?}");
    let run = orchestrix(&["--store", &target_url, "--json", "--yes", "import", &file_arg]);
    assert_eq!(
        (run.code, &run.json()["written"], &run.json()["already_there"]),
        (0, &serde_json::json!(0), &serde_json::json!(5))
    );

    // An interrupted import: the target holds the first two events of a stream.
    let (partial, partial_url) = rt.block_on(sqlite(dir.path(), "partial.db"));
    rt.block_on(async {
        let first_two = vec![recorded[0].to_new_event(), recorded[2].to_new_event()];
        partial.append(&stream("Account/1"), ExpectedVersion::NoStream, first_two).await.unwrap();
    });
    let run = orchestrix(&["--store", &partial_url, "--json", "--yes", "import", &file_arg]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        (&run.json()["written"], &run.json()["already_there"], &run.json()["verified"]),
        (&serde_json::json!(3), &serde_json::json!(2), &serde_json::json!(true))
    );

    // A store that holds another stream of the same name: refused, nothing written.
    let (foreign, foreign_url) = rt.block_on(sqlite(dir.path(), "foreign.db"));
    rt.block_on(foreign.append(
        &stream("Order/9"),
        ExpectedVersion::NoStream,
        vec![event("Placed", serde_json::json!({}))],
    ))
    .unwrap();
    let run = orchestrix(&["--store", &foreign_url, "--yes", "import", &file_arg]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("already holds stream `Order/9`"), "{}", run.stderr);
    assert_eq!(rt.block_on(foreign.head_position()).unwrap(), Some(1), "nothing was written");
}

#[test]
fn a_cloudevents_export_imports_with_the_digest_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (source, source_url) = rt.block_on(sqlite(dir.path(), "source.db"));
    rt.block_on(seed(&source));
    let plain = dir.path().join("log.jsonl");
    assert_eq!(orchestrix(&["--store", &source_url, "export", "--out", &plain.display().to_string()]).code, 0);
    let trailer: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&plain).unwrap().lines().last().unwrap()).unwrap();
    let digest = trailer["orchestrix_export"]["digest"].clone();
    let file = dir.path().join("log.ce.jsonl");
    let file_arg = file.display().to_string();
    assert_eq!(orchestrix(&["--store", &source_url, "export", "--cloudevents", "--out", &file_arg]).code, 0);

    let target_url = format!("sqlite://{}", dir.path().join("target.db").display());
    let run = orchestrix(&["--store", &target_url, "--json", "import", &file_arg, "--batch", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!((&report["written"], &report["verified"]), (&serde_json::json!(5), &serde_json::json!(true)));
    assert_eq!((&report["source"]["digest"], &report["target"]["digest"]), (&digest, &digest), "{report}");
    let again = dir.path().join("again.jsonl");
    assert_eq!(orchestrix(&["--store", &target_url, "export", "--out", &again.display().to_string()]).code, 0);
    assert_eq!(
        std::fs::read_to_string(&again).unwrap().lines().last(),
        std::fs::read_to_string(&plain).unwrap().lines().last(),
        "a plain export of the imported store has the source's count and digest"
    );
    let run =
        orchestrix(&["--store", &target_url, "--json", "tail", "--from", "1", "--tenant", "acme", "--count", "1"]);
    assert!(run.stdout.contains("Account/acme/2"), "the tenant came along: {run:?}");
    let run = orchestrix(&["--store", &target_url, "--json", "--yes", "import", &file_arg]);
    assert_eq!((run.code, &run.json()["already_there"]), (0, &serde_json::json!(5)), "resumes: {run:?}");

    // Cut inside the last line, or not an Orchestrix CloudEvent: nothing written.
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = &text[..text.len() - 20];
    let foreign = text.replacen("\"subject\"", "\"nosubject\"", 1);
    for (i, (case, content)) in [("cut", cut.to_owned()), ("no subject", foreign)].into_iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}.ce.jsonl"));
        std::fs::write(&bad, content).unwrap();
        let (target, url) = rt.block_on(sqlite(dir.path(), &format!("ce{i}.db")));
        let run = orchestrix(&["--store", &url, "--yes", "import", &bad.display().to_string()]);
        assert_eq!(run.code, 1, "{case}: {run:?}");
        assert!(run.stderr.contains("CloudEvent"), "{case}: {}", run.stderr);
        assert_eq!(rt.block_on(target.head_position()).unwrap(), None, "{case}: nothing was written");
    }
}

#[test]
fn corrupt_and_truncated_files_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (source, source_url) = rt.block_on(sqlite(dir.path(), "source.db"));
    rt.block_on(seed(&source));
    let file = dir.path().join("log.jsonl");
    assert_eq!(orchestrix(&["--store", &source_url, "export", "--out", &file.display().to_string()]).code, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let cases = [
        ("cut mid-line", format!("{}\n{}", lines[0], &lines[1][..lines[1].len() / 2])),
        ("no last line", lines[..5].join("\n")),
        ("a changed event", text.replace("\"amount\":100", "\"amount\":101")),
        ("a line that is no event", format!("{}\nhello\n{}", lines[0], lines[1..].join("\n"))),
        ("a stream with a gap", [lines[0], lines[1], lines[3], lines[4]].join("\n")),
    ];
    for (i, (case, content)) in cases.iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}.jsonl"));
        std::fs::write(&bad, content).unwrap();
        let (target, target_url) = rt.block_on(sqlite(dir.path(), &format!("t{i}.db")));
        let run = orchestrix(&["--store", &target_url, "--yes", "import", &bad.display().to_string()]);
        assert_eq!(run.code, 1, "{case}: {run:?}");
        assert!(run.stderr.contains("bad"), "{case}: the message names the file: {}", run.stderr);
        assert_eq!(rt.block_on(target.head_position()).unwrap(), None, "{case}: nothing was written");
    }
    let run = orchestrix(&["--store", "sqlite://x.db", "import", &dir.path().join("none.jsonl").display().to_string()]);
    assert_eq!(run.code, 4, "{run:?}");
}

/// `show`, `stats`, `tail` and `verify` on a store that holds a copy of
/// the seeded events (see `support::seed`).
fn read_commands(url: &str, extra: &[&str]) {
    let with = |args: &[&str]| {
        let mut all = vec!["--store", url];
        all.extend_from_slice(extra);
        all.extend_from_slice(args);
        orchestrix(&all)
    };
    let run = with(&["--json", "show", "Account/1", "--at", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    let events = run.json()["events"].clone();
    assert_eq!((events.as_array().unwrap().len(), &events[1]["data"]["amount"]), (2, &serde_json::json!(100)));
    assert_eq!(with(&["show", "Account/404"]).code, 4);
    let run = with(&["--json", "stats"]);
    assert_eq!((&run.json()["events"], &run.json()["streams"]), (&serde_json::json!(5), &serde_json::json!(3)));
    let run = with(&["--json", "tail", "--from", "1", "--type", "Deposited", "--count", "2"]);
    assert_eq!(run.stdout.lines().count(), 2, "{run:?}");
    let run = with(&["--json", "tail", "--from", "1", "--tenant", "acme", "--count", "1"]);
    assert!(run.stdout.contains("Account/acme/2"), "{run:?}");
    assert_eq!(with(&["verify"]).code, 0);
}

/// `ORCHESTRIX_PG_URL`, or `None` outside CI (the test then skips).
fn pg_url() -> Option<String> {
    match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("ORCHESTRIX_PG_URL must be set under CI"),
        _ => None,
    }
}

#[test]
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
fn copy_sqlite_to_postgres_and_back() {
    let Some(base) = pg_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (source, source_url) = rt.block_on(sqlite(dir.path(), "source.db"));
    rt.block_on(seed(&source));
    let schema = format!("cli_{}", orchestrix::Uuid::now_v7().simple());
    let separator = if base.contains('?') { '&' } else { '?' };
    let pg = format!("{base}{separator}schema={schema}");

    let run = orchestrix(&["--store", &pg, "streams"]);
    assert_eq!(run.code, 1, "an unmigrated schema: {run:?}");
    assert!(run.stderr.contains("orchestrix migrate"), "{}", run.stderr);
    assert_eq!(orchestrix(&["--store", &pg, "migrate"]).code, 0);
    let run = orchestrix(&["--json", "copy", "--from", &source_url, "--to", &pg, "--batch", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!((&run.json()["written"], &run.json()["verified"]), (&serde_json::json!(5), &serde_json::json!(true)));
    let run = orchestrix(&["--store", &pg, "--json", "streams"]);
    let listed = run.json();
    let names: Vec<&str> =
        listed["streams"].as_array().unwrap().iter().map(|s| s["stream"].as_str().unwrap()).collect();
    assert_eq!(names, ["Account/1", "Account/acme/2", "Order/9"]);
    assert_eq!(orchestrix(&["--store", &pg, "verify"]).code, 0);
    read_commands(&pg, &[]);
    assert_eq!(orchestrix(&["--store", &pg, "dead-letters", "count"]).stdout.trim(), "0");
    let run = orchestrix(&["--store", &pg, "--json", "projections", "balances"]);
    assert_eq!(run.json()["projections"][0]["lag"], 5);

    let back = format!("sqlite://{}", dir.path().join("back.db").display());
    let run = orchestrix(&["--json", "copy", "--from", &pg, "--to", &back]);
    assert_eq!((run.code, &run.json()["verified"]), (0, &serde_json::json!(true)), "{run:?}");
    let digests = |url: &str| {
        let file = dir.path().join(format!("{}.jsonl", orchestrix::Uuid::now_v7()));
        assert_eq!(orchestrix(&["--store", url, "export", "--out", &file.display().to_string()]).code, 0);
        std::fs::read_to_string(file).unwrap().lines().last().unwrap().to_owned()
    };
    assert_eq!(digests(&source_url), digests(&back), "the same events came back");
}

#[test]
fn copy_to_eventsourcingdb() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (source, source_url) = rt.block_on(sqlite(dir.path(), "source.db"));
    rt.block_on(seed(&source));
    let server = rt.block_on(TestServer::start(TestServerOptions::default())).expect("the test server");
    let esdb = format!("esdb+{}", server.url());
    let run = orchestrix(&["--json", "--token", server.token(), "copy", "--from", &source_url, "--to", &esdb]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["verified"], true);
    assert!(!run.stdout.contains(server.token()) && !run.stderr.contains(server.token()));
    let run = orchestrix(&["--store", &esdb, "--token", server.token(), "--json", "streams", "--type", "Account"]);
    assert_eq!(run.json()["streams"].as_array().unwrap().len(), 2, "{run:?}");
    read_commands(&esdb, &["--token", server.token()]);
    let run = orchestrix(&["--store", &esdb, "--token", server.token(), "dead-letters", "count"]);
    assert_eq!(run.code, 2, "EventSourcingDB keeps no dead letters: {run:?}");
    let run = orchestrix(&["--store", &esdb, "--token", "wrong", "streams"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(!run.stderr.contains("wrong"), "{}", run.stderr);
}
