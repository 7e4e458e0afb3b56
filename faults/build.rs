//! Tells the PostgreSQL scenarios whether PostgreSQL's server programs are
//! installed, so that without them they are reported `ignored` with the
//! reason instead of passing silently (ADR 0037). Under `CI` the cfg is
//! always set: the scenarios run, and fail on a missing program.

include!("../orchestrix-adapters/tests/support/pg_binaries.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../orchestrix-adapters/tests/support/pg_binaries.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_PG_BINDIR");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_pg_binaries)");
    if std::env::var_os("CI").is_some() || pg_server_binaries().is_some() {
        println!("cargo:rustc-cfg=orchestrix_pg_binaries");
    }
}
