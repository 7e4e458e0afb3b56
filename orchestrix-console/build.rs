//! Tells the browser tests whether Chromium and its WebDriver are here, so
//! that without them the tests are reported `ignored` with the reason
//! instead of passing silently (ADR 0037, ADR 0042).
//!
//! `orchestrix_browser` is set when `CI` is set (CI installs Debian's
//! `chromium` and `chromium-driver`, so the tests must run there), when
//! `ORCHESTRIX_CHROMEDRIVER` names a driver, or when `/usr/bin/chromedriver`
//! and `/usr/bin/chromium` exist.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_CHROMEDRIVER");
    println!("cargo:rerun-if-changed=/usr/bin/chromedriver");
    println!("cargo:rerun-if-changed=/usr/bin/chromium");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_browser)");
    // The PostgreSQL test, as in orchestrix-adapters (ADR 0037).
    println!("cargo:rerun-if-env-changed=ORCHESTRIX_PG_URL");
    println!("cargo::rustc-check-cfg=cfg(orchestrix_pg)");
    let pg = std::env::var_os("ORCHESTRIX_PG_URL").is_some_and(|value| !value.is_empty());
    if pg || std::env::var_os("CI").is_some() {
        println!("cargo:rustc-cfg=orchestrix_pg");
    }
    let ci = std::env::var_os("CI").is_some();
    let named = std::env::var_os("ORCHESTRIX_CHROMEDRIVER").is_some_and(|value| !value.is_empty());
    let installed =
        std::path::Path::new("/usr/bin/chromedriver").exists() && std::path::Path::new("/usr/bin/chromium").exists();
    if ci || named || installed {
        println!("cargo:rustc-cfg=orchestrix_browser");
    }
}
