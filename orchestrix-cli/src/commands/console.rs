//! `console`: the web console (`orchestrix_console::router`) served on the
//! store the command line opened (ADR 0051), until Ctrl-C.

use std::net::SocketAddr;

use orchestrix_console::{router, Console};

use crate::connect::Store;
use crate::error::Failure;
use crate::Cli;

pub(super) async fn serve(
    cli: &Cli,
    store: &Store,
    listen: SocketAddr,
    write_token: Option<&str>,
    tenants: &[String],
) -> Result<(), Failure> {
    let mut console = Console::new(store.events.clone());
    // The registered types' personal fields show hidden.
    for data in &cli.personal {
        console = console.personal_data(data);
    }
    if let Some(dead_letters) = &store.dead_letters {
        console = console.dead_letters(dead_letters.clone());
    }
    if !tenants.is_empty() {
        console = console.tenants(tenants.iter().cloned()).map_err(|e| Failure::Usage(format!("--tenant: {e}")))?;
    }
    let writable = match write_token.filter(|t| !t.is_empty()) {
        Some(token) => {
            console = console.write_token(token);
            true
        }
        None => false,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Store(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr()?;
    eprintln!(
        "serving the console of {} on http://{address}/ ({}); Ctrl-C ends it",
        store.shown,
        if writable { "actions need the write token" } else { "read-only: no write token" }
    );
    axum::serve(listener, router(console)).await.map_err(|e| Failure::Store(format!("the console stopped: {e}")))
}
