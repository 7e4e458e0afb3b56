// Where PostgreSQL's `initdb` and `pg_ctl` are: `ORCHESTRIX_PG_BINDIR`,
// else the `PATH`, `pg_config --bindir`, or the newest
// `/usr/lib/postgresql/*/bin`. Shared by the build script (which sets the
// cfg `orchestrix_pg_binaries`, ADR 0037) and the TLS test, with
// `include!`: plain functions, no imports.

/// The directory holding both `initdb` and `pg_ctl`, if any.
fn pg_server_binaries() -> Option<std::path::PathBuf> {
    let has_both = |dir: &std::path::Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("ORCHESTRIX_PG_BINDIR") {
        return Some(std::path::PathBuf::from(dir)).filter(|dir| has_both(dir));
    }
    let mut candidates: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        candidates.push(std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<std::path::PathBuf> = versions.flatten().map(|v| v.path().join("bin")).collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev());
    }
    candidates.into_iter().find(|dir| has_both(dir))
}
