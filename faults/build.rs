//! Tells the scenarios which services and programs they were given, so
//! that without them they are reported `ignored` with the reason instead
//! of passing silently (ADR 0037). Under `CI` the cfgs are always set: the
//! scenarios run, and fail on a missing program or variable.
//!
//! - `orchestrix_pg_binaries`: PostgreSQL's server programs are installed
//!   (the PostgreSQL scenarios start clusters of their own).
//! - `orchestrix_pg`: `ORCHESTRIX_PG_URL` is set (the NATS scenarios keep
//!   their store, leases and read model in that server).

include!("../orchestrix-adapters/tests/support/pg_binaries.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../orchestrix-adapters/tests/support/pg_binaries.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_PG_BINDIR");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_pg_binaries)");
    let ci = std::env::var_os("CI").is_some();
    if ci || pg_server_binaries().is_some() {
        println!("cargo:rustc-cfg=orchestrix_pg_binaries");
    }
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_PG_URL");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_pg)");
    if ci || std::env::var_os("ORCHESTRIX_PG_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=orchestrix_pg");
    }
}
