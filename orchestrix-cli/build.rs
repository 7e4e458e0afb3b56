//! Tells the tests which external services they were given, so that a test
//! needing one the environment does not name is reported `ignored` with the
//! reason instead of passing silently (ADR 0037).
//!
//! Each cfg is set when its variable is set and not empty, and also when
//! `CI` is set: under CI the tests run and their own check fails on a
//! missing variable, so CI can never skip them by accident.

/// The variables and the cfg each one sets; `true` means CI forces the cfg.
const SERVICES: &[(&str, &str, bool)] = &[("ORCHESTRIX_PG_URL", "orchestrix_pg", true)];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    let ci = std::env::var_os("CI").is_some();
    for (variable, cfg, ci_forces) in SERVICES {
        println!("cargo:rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let given = std::env::var_os(variable).is_some_and(|value| !value.is_empty());
        if given || (ci && *ci_forces) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
