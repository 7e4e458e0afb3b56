//! Tells the tests which external services they were given, so that a
//! scenario needing one the environment does not name is reported
//! `ignored` with the reason instead of passing silently (ADR 0037).
//! Under `CI` the cfgs are set anyway: the scenarios run and their own
//! check fails on a missing variable.

/// The variables and the cfg each one sets.
const SERVICES: &[(&str, &str)] = &[("ORCHESTRIX_PG_URL", "orchestrix_pg")];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    let ci = std::env::var_os("CI").is_some();
    for (variable, cfg) in SERVICES {
        println!("cargo:rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if ci || std::env::var_os(variable).is_some_and(|value| !value.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
