//! `orchestrix new`: the generated service compiles and its tests pass
//! at once (against this checkout's crates), on SQLite and PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::orchestrix;

/// The workspace root (this crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// A build folder of its own beside this test's (the test's own is locked
/// by the cargo that runs it), kept between runs.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    // target/debug/deps/new-… -> target
    let target = exe.ancestors().nth(3).expect("the target folder").to_path_buf();
    target.join("orchestrix-new")
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    eprintln!("cargo {args:?}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn a_new_service_passes_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().display().to_string();
    let checkout = workspace().display().to_string();
    let run = orchestrix(&["new", "tasks-service", "--dir", &parent, "--orchestrix-path", &checkout]);
    assert_eq!(run.code, 0, "{run:?}");
    let service = dir.path().join("tasks-service");
    for file in ["Cargo.toml", "src/lib.rs", "src/main.rs", "justfile", "README.md"] {
        assert!(service.join(file).is_file(), "{file} is generated");
    }
    // The versions this checkout is tested with, so that nothing is fetched.
    std::fs::copy(workspace().join("Cargo.lock"), service.join("Cargo.lock")).unwrap();
    let test = cargo(&service, &["test"]);
    assert!(test.status.success(), "the generated tests pass");
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(stdout.contains("test tests::the_projection_keeps_the_open_tasks ... ok"), "{stdout}");
    let main = cargo(&service, &["run", "--quiet"]);
    assert!(main.status.success());
    assert_eq!(String::from_utf8_lossy(&main.stdout).trim(), r#"open tasks: ["ship it"]"#);
    assert!(service.join("tasks-service.db").is_file(), "the SQLite file");
    let listed =
        orchestrix(&["--store", &format!("sqlite://{}", service.join("tasks-service.db").display()), "streams"]);
    assert_eq!(listed.stdout.lines().count(), 3, "two task streams: {listed:?}");

    // PostgreSQL: the same service on another store compiles and passes.
    let run = orchestrix(&["new", "pg-tasks", "--store", "postgres", "--dir", &parent, "--orchestrix-path", &checkout]);
    assert_eq!(run.code, 0, "{run:?}");
    let pg = dir.path().join("pg-tasks");
    assert!(std::fs::read_to_string(pg.join("src/main.rs")).unwrap().contains("PgStore::connect"));
    std::fs::copy(workspace().join("Cargo.lock"), pg.join("Cargo.lock")).unwrap();
    assert!(cargo(&pg, &["test"]).status.success(), "the PostgreSQL service's tests pass");

    // Bad names and occupied folders.
    assert_eq!(orchestrix(&["new", "Bad Name", "--dir", &parent]).code, 2);
    assert_eq!(orchestrix(&["new", "tasks-service", "--dir", &parent]).code, 5);
    assert_eq!(orchestrix(&["new", "x", "--store", "esdb+http://h", "--dir", &parent]).code, 2);
}
