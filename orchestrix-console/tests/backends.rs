//! The console over the SQL stores: a stream's page, an event's causality,
//! a tenant's view and the tail, on SQLite and on PostgreSQL.

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
