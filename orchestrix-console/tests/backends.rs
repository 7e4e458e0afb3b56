//! The console over the SQL stores: a stream's page, an event's causality,
//! a tenant's view, the tail, the search through the store's listing and
//! log (hostile input included), time travel and the saga pages, on SQLite
//! and on PostgreSQL.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use orchestrix::store::{DeadLetterStore, EventStore};
use orchestrix::Metadata;
use orchestrix_console::Console;
use support::*;
use tower::ServiceExt;

async fn scenario<S: EventStore + DeadLetterStore + Clone>(store: S) {
    let opened = append(
        &store,
        "Account/1",
        new_event("AccountOpened", serde_json::json!({"owner": HOSTILE}), Metadata::default()),
    )
    .await;
    let deposited = append(
        &store,
        "Account/1",
        new_event(
            "MoneyDeposited",
            serde_json::json!({"amount": 10}),
            Metadata::default().with_causation_id(opened.id),
        ),
    )
    .await;
    let acme = orchestrix::tenant::TenantStore::new(store.clone(), "acme").unwrap();
    let globex = orchestrix::tenant::TenantStore::new(store.clone(), "globex").unwrap();
    append(&acme, "Account/acme-only", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    let theirs =
        append(&globex, "Account/globex-only", new_event("AccountOpened", serde_json::json!({}), Metadata::default()))
            .await;

    let app = mounted(Console::new(store.clone()).dead_letters(store.clone()));
    let page = get(&app, "/orchestrix/stream?id=Account/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("MoneyDeposited")
            && page.body.contains("&lt;script&gt;")
            && !page.body.contains("<script>alert")
    );
    let event = get(&app, &format!("/orchestrix/events/{}", deposited.id)).await;
    assert!(event.body.contains(&format!("/orchestrix/events/{}", opened.id)), "the cause is linked");
    assert_eq!(get(&app, "/orchestrix/dead-letters").await.status, StatusCode::OK);

    let tenants = mounted(Console::new(store.clone()).dead_letters(store.clone()).tenants(["acme", "globex"]).unwrap());
    let view = get(&tenants, "/orchestrix/t/acme").await;
    assert!(
        view.body.contains(">Account/acme-only<")
            && !view.body.contains("globex-only")
            && !view.body.contains(">Account/1<"),
        "{}",
        view.body
    );
    assert_eq!(get(&tenants, &format!("/orchestrix/t/acme/events/{}", theirs.id)).await.status, StatusCode::NOT_FOUND);

    let response =
        app.clone().oneshot(Request::get("/orchestrix/tail/events").body(Body::empty()).unwrap()).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    append(&store, "Account/2", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next())
            .await
            .expect("within two seconds")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"stream\":\"Account/2\""), "{seen}");
    explore(&store).await;
}

/// The search, time travel and a saga instance (ADR 0052) on this store.
async fn explore<S: EventStore + Clone>(store: &S) {
    use orchestrix::event::Event as _;
    use support::book::{Book, Ledger};
    for amount in 1..=3 {
        append(store, &format!("Book/{amount}"), encoded(&Ledger::Deposited { amount })).await;
        append(store, "Book/3", encoded(&Ledger::Deposited { amount })).await;
    }
    append(store, &format!("Book%/{HOSTILE}"), new_event("Noted", serde_json::json!({}), Metadata::default())).await;
    sagas(store).await;
    let app = mounted(Console::new(store.clone()).aggregate::<Book>());
    let books = get(&app, "/orchestrix?prefix=Boo").await;
    assert!(books.body.contains(">Book/1<") && books.body.contains(">Book/3<") && !books.body.contains(">Account/1<"));
    assert!(books.body.contains("&lt;script&gt;") && !books.body.to_lowercase().contains("<script>"));
    let one = get(&app, "/orchestrix?prefix=Book/1").await;
    assert!(one.body.contains(">Book/1<") && !one.body.contains(">Book/2<"));
    let wildcard = get(&app, &format!("/orchestrix?prefix={}", percent("Book/%"))).await;
    assert!(wildcard.body.contains("id=\"no-streams\""), "`%` is no wildcard");
    let underscore = get(&app, &format!("/orchestrix?prefix={}", percent("Boo_"))).await;
    assert!(underscore.body.contains("id=\"no-streams\""), "`_` is no wildcard");
    for query in [
        format!("prefix={}", percent(HOSTILE)),
        format!("prefix={}", percent("Book%/<scr")),
        format!("type={}", percent("'; DROP TABLE events; --")),
        format!("prefix={}", percent("\u{10FFFF}é")),
        format!("event={}", percent(HOSTILE)),
    ] {
        let page = get(&app, &format!("/orchestrix?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        assert!(!page.body.to_lowercase().contains("<script>"), "{query}");
    }
    let hostile = get(&app, &format!("/orchestrix?prefix={}", percent("Book%/<scr"))).await;
    assert!(hostile.body.contains("class=\"stream\""), "the hostile stream is found by its prefix");
    assert_eq!(get(&app, "/orchestrix?prefix=a%00b").await.status, StatusCode::BAD_REQUEST);
    let deposited = Ledger::event_types().iter().find(|kind| kind.name.contains("Deposited")).unwrap().name;
    let typed = get(&app, &format!("/orchestrix?event={deposited}")).await;
    assert!(typed.body.contains(">Book/2<") && !typed.body.contains(">Account/1<"));
    let at = get(&app, "/orchestrix/stream?id=Book/3&at=2").await;
    assert!(at.body.contains("&quot;balance&quot;: 3") && at.body.contains("version 2 of 4"), "{}", at.body);
    let past = get(&app, "/orchestrix/stream?id=Book/3&at=5").await;
    assert!(past.body.contains("past the end"));
    let waiting = get(&app, "/orchestrix/sagas?status=waiting").await;
    assert!(waiting.body.contains(WAITING) && !waiting.body.contains(RUNNING));
    let instance = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{WAITING}")).await;
    assert!(instance.body.contains("2030-01-02 03:04:05 UTC"));
}

#[tokio::test]
async fn on_sqlite() {
    scenario(orchestrix_adapters::sqlite::SqliteStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
#[cfg_attr(not(orchestrix_pg), ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL database)")]
async fn on_postgres() {
    use orchestrix_adapters::postgres::{PgConfig, PgStore};
    let Ok(url) = std::env::var("ORCHESTRIX_PG_URL") else {
        assert!(std::env::var_os("CI").is_none(), "CI must set ORCHESTRIX_PG_URL");
        eprintln!("skipped: ORCHESTRIX_PG_URL is not set");
        return;
    };
    let schema = format!("console_{}", &orchestrix::Uuid::now_v7().simple().to_string()[20..]);
    let store = PgStore::connect(&url, PgConfig::new(schema).unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    scenario(store.clone()).await;
    store.drop_schema().await.unwrap();
}
