//! `new NAME`: a service laid out as the examples are (an aggregate with
//! its events and command handlers, a projection, given/when/then tests,
//! a main program on SQLite or PostgreSQL, a justfile and a README).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Options;
use crate::args::StoreKind;
use crate::error::Failure;
use crate::output::print_json;

const CARGO: &str = include_str!("scaffold/Cargo.toml.tmpl");
const LIB: &str = include_str!("scaffold/lib.rs.tmpl");
const MAIN: &str = include_str!("scaffold/main.rs.tmpl");
const JUSTFILE: &str = include_str!("scaffold/justfile.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");

/// Whether `name` can name a package: ASCII lowercase letters, digits,
/// `-` and `_`, starting with a letter, at most 64 characters.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Writes the service `name` into `parent/name`, which must not exist or
/// be empty. With `checkout`, the Orchestrix crates come from that
/// source checkout (path dependencies); otherwise from the registry.
pub(super) fn new_service(
    name: &str,
    parent: &Path,
    store: StoreKind,
    checkout: Option<&Path>,
    options: Options,
) -> Result<(), Failure> {
    if !valid_name(name) {
        return Err(Failure::Usage(format!(
            "`{name}` cannot name a package: use lowercase letters, digits, `-` and `_`, starting with a letter"
        )));
    }
    let dir = parent.join(name);
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(Failure::Refused(format!("`{}` exists and is not empty; nothing was written", dir.display())));
    }
    let feature = match store {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
    };
    let (orchestrix, adapters, testing) = match checkout {
        Some(root) => {
            let root = std::fs::canonicalize(root)
                .map_err(|e| Failure::NotFound(format!("no Orchestrix checkout at `{}`: {e}", root.display())))?;
            let at = |krate: &str| toml_string(&root.join(krate));
            (
                format!("orchestrix = {{ path = {} }}", at("orchestrix")),
                format!("orchestrix-adapters = {{ path = {}, features = [\"{feature}\"] }}", at("orchestrix-adapters")),
                format!("orchestrix = {{ path = {}, features = [\"testing\"] }}", at("orchestrix")),
            )
        }
        None => (
            "orchestrix = \"0.1\"".to_owned(),
            format!("orchestrix-adapters = {{ version = \"0.1\", features = [\"{feature}\"] }}"),
            "orchestrix = { version = \"0.1\", features = [\"testing\"] }".to_owned(),
        ),
    };
    let crate_name = name.replace('-', "_");
    let (store_use, store_open, run, store_text, store_url) = match store {
        StoreKind::Sqlite => (
            "use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};".to_owned(),
            format!("    let store = SqliteStore::open(\"{name}.db\", SqliteConfig::default()).await?;"),
            "cargo run".to_owned(),
            format!("an SQLite file, `{name}.db`"),
            format!("sqlite://{name}.db"),
        ),
        StoreKind::Postgres => {
            let url = format!("postgres://postgres@127.0.0.1:5432/{crate_name}");
            (
                "use orchestrix_adapters::postgres::{PgConfig, PgStore};".to_owned(),
                format!(
                    "    let url = std::env::var(\"DATABASE_URL\").map_err(|_| \"set DATABASE_URL, for example {url}\")?;\n    \
                     let store = PgStore::connect(&url, PgConfig::new(\"orchestrix\")?).await?;\n    \
                     store.migrate().await?;"
                ),
                format!("DATABASE_URL={url} cargo run"),
                format!("PostgreSQL (`DATABASE_URL`, schema `orchestrix`), for example `{url}`"),
                url,
            )
        }
    };
    let fill = |template: &str| {
        template
            .replace("{{orchestrix}}", &orchestrix)
            .replace("{{adapters}}", &adapters)
            .replace("{{orchestrix_testing}}", &testing)
            .replace("{{store_use}}", &store_use)
            .replace("{{store_open}}", &store_open)
            .replace("{{store_text}}", &store_text)
            .replace("{{store_url}}", &store_url)
            .replace("{{run}}", &run)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{name}}", name)
    };
    let files: [(&str, &str); 5] = [
        ("Cargo.toml", CARGO),
        ("src/lib.rs", LIB),
        ("src/main.rs", MAIN),
        ("justfile", JUSTFILE),
        ("README.md", README),
    ];
    std::fs::create_dir_all(dir.join("src"))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for (file, template) in files {
        let path = dir.join(file);
        std::fs::write(&path, fill(template))?;
        written.push(path);
    }
    if options.json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        return print_json(&json!({"created": dir.display().to_string(), "files": files}));
    }
    println!("created {}: cd there, then `cargo test` and `{run}`", dir.display());
    Ok(())
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_package_names() {
        assert!(valid_name("tasks") && valid_name("my-service_2"));
        for bad in ["", "Tasks", "2fast", "a b", "../x", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
