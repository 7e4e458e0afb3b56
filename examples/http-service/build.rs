//! Tells the tests whether PostgreSQL was given, so that without it the
//! PostgreSQL test is reported `ignored` with the reason (ADR 0037). Under
//! `CI` the cfg is always set: the test runs and fails on a missing
//! variable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_PG_URL");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_pg)");
    if std::env::var_os("CI").is_some() || std::env::var_os("ORCHESTRIX_PG_URL").is_some_and(|value| !value.is_empty())
    {
        println!("cargo:rustc-cfg=orchestrix_pg");
    }
}
