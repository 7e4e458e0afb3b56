//! Shared helpers of the PostgreSQL tests: the server URL, fresh isolated
//! schemas, and the skip-or-fail policy.
#![allow(dead_code, unreachable_pub)]

use orchestrix::{envelope::NewEvent, StreamId};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde_json::value::RawValue;

/// An event of type `event_type` whose data is the JSON text `data`.
pub fn event(event_type: &str, data: &str) -> NewEvent {
    NewEvent::new(event_type, 1, RawValue::from_string(data.to_owned()).expect("valid JSON"))
}

/// The stream `Account/<id>`.
pub fn stream(id: &str) -> StreamId {
    StreamId::new("Account", id).expect("a valid stream id")
}

/// The server URL from `ORCHESTRIX_PG_URL`, or `None` (with the reason
/// printed) when it is unset outside CI. Under CI (`CI` set) a missing
/// variable fails the test.
pub fn pg_url() -> Option<String> {
    match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ORCHESTRIX_PG_URL is not set, but CI is: the PostgreSQL tests must run in CI \
                 (set it to e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            eprintln!("skipped: ORCHESTRIX_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
            None
        }
    }
}

/// A fresh schema name, unique to this test: `orx_t_<pid>_<random>`.
pub fn schema_name() -> String {
    format!("orx_t_{}_{:016x}", std::process::id(), fastrand::u64(..))
}

/// A migrated store in a fresh schema, or `None` when the tests skip.
/// An unreachable server fails the test under CI and skips it otherwise.
pub async fn pg_store() -> Option<PgStore> {
    pg_store_with(|config| config).await
}

/// Like [`pg_store`], with a configuration tweak.
pub async fn pg_store_with(tweak: impl FnOnce(PgConfig) -> PgConfig) -> Option<PgStore> {
    let url = pg_url()?;
    let config = tweak(PgConfig::new(schema_name()).expect("a valid schema name").with_max_connections(4));
    let store = match PgStore::connect(&url, config).await {
        Ok(store) => store,
        Err(error) => {
            assert!(std::env::var_os("CI").is_none(), "PostgreSQL at {url} is unreachable under CI: {error}");
            eprintln!("skipped: PostgreSQL at {url} is unreachable: {error}");
            return None;
        }
    };
    drop_stale_schemas(&store).await;
    store.migrate().await.expect("migrations apply");
    Some(store)
}

/// Drops the test schemas of processes that are gone (the conformance
/// checks get their store by value, so they cannot drop theirs).
async fn drop_stale_schemas(store: &PgStore) {
    let Ok(names) =
        sqlx::query_scalar::<_, String>("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'orx\\_t\\_%'")
            .fetch_all(store.pool())
            .await
    else {
        return;
    };
    for name in names {
        let pid = name.split('_').nth(2).and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).execute(store.pool()).await;
        }
    }
}
