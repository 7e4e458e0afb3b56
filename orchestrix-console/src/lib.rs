//! A web console for Orchestrix: look at a running system from a browser.
//!
//! [`router`] turns a [`Console`] into an [`axum::Router`] that an
//! application nests where it likes (`/orchestrix`), or that the
//! `orchestrix-console` binary (feature `cli`) serves on its own against a
//! SQLite or PostgreSQL store. Server-rendered pages (maud), one vendored
//! stylesheet and one small vendored script: no CDN, the pages work offline
//! and read on a phone.
//!
//! - **Streams**: search by stream id prefix and aggregate type (the
//!   store's stream listing), event type and recorded time (the log), a
//!   page at a time; a stream's events with their metadata and pretty
//!   JSON, and the state of a registered aggregate ([`Console::aggregate`])
//!   at any version.
//! - **Sagas**: every kind's instances by status; an instance's state,
//!   data, pending steps (waits and their deadlines) and compensations.
//! - **Causality**: from an event, the chain of what caused it (its
//!   causation ids, followed across streams), what it caused and the other
//!   events of its correlation.
//! - **Live tail** of the global log over server-sent events, with filters.
//! - **Dead letters**: the error and the event; retry and drop through the
//!   projection's handle.
//! - **Projections**: state, position, lag, events handled and parked.
//! - **Tenants**: with [`Console::tenants`], every page is a tenant's view
//!   ([`orchestrix::tenant::TenantStore`]) and a switch moves between them.
//!
//! **Security** (ADR 0042): read-only unless [`Console::write_token`] is
//! set; without it the routes that change state do not exist. With it, a
//! change needs a signed-in session (the token, entered once, opens an
//! `HttpOnly`, `SameSite=Strict` session cookie) plus the session's CSRF
//! token in the form and a same-origin `Origin`/`Referer`, or the token as
//! `Authorization: Bearer` (for scripts). Encrypted personal data is shown
//! as encrypted, declared personal fields as hidden, unless
//! [`Console::reveal_personal_data`] is called. Every string is escaped.
//!
//! ```
//! use std::sync::Arc;
//! use orchestrix::memory::{InMemoryDeadLetterStore, InMemoryEventStore};
//! use orchestrix_console::{router, Console};
//!
//! let events = InMemoryEventStore::new();
//! let console = Console::new(events).dead_letters(InMemoryDeadLetterStore::new());
//! // Nest it into the application's router:
//! let app: axum::Router = axum::Router::new().nest("/orchestrix", router(console));
//! # let _ = app;
//! ```

mod actions;
mod causality;
mod config;
mod dead_letters;
mod layout;
mod projections;
mod render;
mod sagas;
mod scope;
mod search;
mod security;
mod streams;
mod tail;
mod throughput;
mod time_travel;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use config::{Console, ProjectionControl, DEFAULT_SCAN_WINDOW};

use config::Shared;

/// The console as a router to nest into an application
/// (`Router::new().nest("/orchestrix", router(console))`) or to serve on
/// its own. Links are relative to where it is mounted.
pub fn router(console: Console) -> Router {
    let shared = Arc::new(Shared::new(console));
    let mut root = Router::new()
        .route("/assets/console.css", get(layout::stylesheet))
        .route("/assets/console.js", get(layout::script));
    if shared.writable() {
        root = root.route("/session", post(security::sign_in)).route("/session/end", post(security::sign_out));
    }
    // The pages of a tenant's view are routes of their own under
    // `/t/{tenant}` (not a nested router), so the tenant is a path
    // parameter every handler sees.
    let root = if shared.has_tenants() {
        pages(root.route("/", get(scope::tenant_chooser)), "/t/{tenant}", shared.writable())
    } else {
        pages(root, "", shared.writable())
    };
    root.layer(axum::middleware::from_fn(security::headers)).with_state(shared)
}

/// The pages of one scope (the whole store, or one tenant's view) under
/// `prefix`.
fn pages(router: Router<Arc<Shared>>, prefix: &str, writable: bool) -> Router<Arc<Shared>> {
    let at = |path: &str| if path == "/" && !prefix.is_empty() { prefix.to_owned() } else { format!("{prefix}{path}") };
    let mut router = router
        .route(&at("/"), get(search::list))
        .route(&at("/stream"), get(streams::stream))
        .route(&at("/events/{event}"), get(causality::event))
        .route(&at("/tail"), get(tail::page))
        .route(&at("/tail/events"), get(tail::events))
        .route(&at("/dead-letters"), get(dead_letters::list))
        .route(&at("/dead-letters/{letter}"), get(dead_letters::letter))
        .route(&at("/projections"), get(projections::list))
        .route(&at("/sagas"), get(sagas::list))
        .route(&at("/saga"), get(sagas::instance));
    if writable {
        router = router
            .route(&at("/dead-letters/{letter}/retry"), post(actions::retry))
            .route(&at("/dead-letters/{letter}/drop"), post(actions::drop_letter))
            .route(&at("/projections/{projection}/pause"), post(actions::pause))
            .route(&at("/projections/{projection}/resume"), post(actions::resume))
            .route(&at("/projections/{projection}/rebuild"), post(actions::rebuild));
    }
    router
}
