//! Tells the tests whether PostgreSQL and NATS were given, so that without
//! them the tests are reported `ignored` with the reason (ADR 0037). Under
//! `CI` the cfgs are always set: the tests run and fail on a missing
//! variable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    let ci = std::env::var_os("CI").is_some();
    for (variable, cfg) in [("ORCHESTRIX_PG_URL", "orchestrix_pg"), ("ORCHESTRIX_NATS_URL", "orchestrix_nats")] {
        println!("cargo:rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if ci || std::env::var_os(variable).is_some_and(|value| !value.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
