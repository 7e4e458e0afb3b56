//! Serves the Orchestrix console on a store given by URL, until Ctrl-C.
//!
//! ```text
//! orchestrix-console --store sqlite:bank.db [--listen 127.0.0.1:8080]
//!                    [--schema orchestrix] [--tenant acme --tenant globex]
//! orchestrix-console --store postgres://user@host:5432/db --schema orchestrix
//! ```
//!
//! Read-only unless the environment variable `ORCHESTRIX_CONSOLE_TOKEN`
//! holds a write token (an environment variable, not an argument: command
//! lines show in `ps`). The store URL is never shown on a page or printed
//! with its password.

use std::net::SocketAddr;
use std::process::ExitCode;

use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};
use orchestrix_console::{router, Console};

const USAGE: &str =
    "usage: orchestrix-console --store <sqlite:PATH | postgres://...> [--listen ADDR] [--schema NAME] [--tenant ID]...
  ORCHESTRIX_CONSOLE_TOKEN=<token> enables retry and drop of dead letters.";

struct Args {
    store: String,
    listen: SocketAddr,
    schema: String,
    tenants: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut store = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut schema = "orchestrix".to_owned();
    let mut tenants = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--store" => store = Some(value("--store")?),
            "--listen" => listen = value("--listen")?,
            "--schema" => schema = value("--schema")?,
            "--tenant" => tenants.push(value("--tenant")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let store = store.ok_or("--store is required")?;
    let listen = listen.parse().map_err(|_| format!("--listen `{listen}` is not an address such as 127.0.0.1:8080"))?;
    Ok(Args { store, listen, schema, tenants })
}

async fn console(args: &Args) -> Result<Console, orchestrix::StoreError> {
    let console =
        if let Some(path) = args.store.strip_prefix("sqlite://").or_else(|| args.store.strip_prefix("sqlite:")) {
            let store = SqliteStore::open(path, SqliteConfig::default()).await?;
            Console::new(store.clone()).dead_letters(store)
        } else if args.store.starts_with("postgres://") || args.store.starts_with("postgresql://") {
            let store = PgStore::connect(&args.store, PgConfig::new(args.schema.clone())?).await?;
            Console::new(store.clone()).dead_letters(store)
        } else {
            return Err(orchestrix::StoreError::InvalidInput("--store takes sqlite:PATH or postgres://...".into()));
        };
    let console = if args.tenants.is_empty() { console } else { console.tenants(args.tenants.clone())? };
    Ok(match std::env::var("ORCHESTRIX_CONSOLE_TOKEN") {
        Ok(token) if !token.is_empty() => console.write_token(token),
        _ => console,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("orchestrix-console: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let console = match console(&args).await {
        Ok(console) => console,
        Err(error) => {
            eprintln!("orchestrix-console: cannot open the store: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("orchestrix-console: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("orchestrix-console: serving on http://{}/", args.listen);
    let served = axum::serve(listener, router(console))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orchestrix-console: {error}");
            ExitCode::FAILURE
        }
    }
}
