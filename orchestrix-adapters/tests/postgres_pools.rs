//! PostgreSQL connections (see `PgConfig`'s "Connections"): subscribers,
//! however many and however slow, never take the connections appends
//! need; the `LISTEN` connection is not the pool's.
#![cfg(feature = "postgres")]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix_adapters::postgres::ACQUIRE_TIMEOUT;
use support::{event, stream};

const EVENTS: usize = 10;

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_subscriptions_beyond_the_pool_size_do_not_starve_appends() {
    // A pool of 3 and the default subscription pool of 4; 9 subscriptions.
    let Some(store) = support::pg_store_with(|config| config.with_max_connections(3)).await else { return };
    for i in 0..EVENTS {
        store.append(&stream(&format!("s{i}")), ExpectedVersion::NoStream, vec![event("Seen", "{}")]).await.unwrap();
    }
    let (got_one, mut first_events) = tokio::sync::mpsc::channel(16);
    let mut tasks = Vec::new();
    // Three consumers take one event and then hold their stream open
    // without polling it: each keeps a query (and its connection) open.
    for _ in 0..3 {
        let (store, got_one) = (store.clone(), got_one.clone());
        tasks.push(tokio::spawn(async move {
            let mut events = store.subscribe(1, EventFilter::all());
            events.next().await.unwrap().unwrap();
            got_one.send(()).await.unwrap();
            tokio::time::sleep(Duration::from_hours(1)).await;
            drop(events);
            0
        }));
    }
    for _ in 0..3 {
        let started = tokio::time::timeout(3 * ACQUIRE_TIMEOUT, first_events.recv()).await;
        assert!(started.is_ok(), "three subscriptions could not get a connection between them");
    }
    // Six slow consumers: one event every 50 ms, to the end of the log.
    let mut readers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        readers.push(tokio::spawn(async move {
            let mut events = store.subscribe(1, EventFilter::all());
            let mut seen = 0;
            while seen < EVENTS {
                events.next().await.unwrap().unwrap();
                seen += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // An unrelated append succeeds, well within the pool's acquire timeout
    // (before the fix it failed with `Unavailable(PoolTimedOut)` after it).
    let unrelated = stream("unrelated");
    let append = store.append(&unrelated, ExpectedVersion::NoStream, vec![event("Seen", "{}")]);
    let appended = tokio::time::timeout(ACQUIRE_TIMEOUT, append).await;
    assert!(matches!(appended, Ok(Ok(_))), "the append waited for subscribers: {appended:?}");
    // And reads too.
    let read = tokio::time::timeout(ACQUIRE_TIMEOUT, store.stream_version(&stream("unrelated"))).await;
    assert!(matches!(read, Ok(Ok(Some(1)))), "{read:?}");

    // The slow consumers share what the held ones leave of their pool,
    // and all get to the end.
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_mins(2), reader).await.expect("a slow reader starved");
        assert_eq!(seen.unwrap(), EVENTS);
    }
    for task in tasks {
        task.abort();
    }
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_still_appends_while_a_subscription_listens_and_streams() {
    let Some(store) = support::pg_store_with(|config| config.with_max_connections(1)).await else { return };
    store.append(&stream("a"), ExpectedVersion::NoStream, vec![event("Seen", "{}")]).await.unwrap();
    let mut events = store.subscribe(1, EventFilter::all());
    let first = tokio::time::timeout(3 * ACQUIRE_TIMEOUT, events.next()).await;
    assert!(first.is_ok(), "the listener took the pool's only connection from the subscription");
    // The subscription is live (listening) and its stream open; the only
    // pool connection is free for the append, which the subscription sees.
    let b = stream("b");
    let append = store.append(&b, ExpectedVersion::NoStream, vec![event("Seen", "{}")]);
    let appended = tokio::time::timeout(ACQUIRE_TIMEOUT, append).await;
    assert!(matches!(appended, Ok(Ok(_))), "{appended:?}");
    let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.stream, stream("b"));
    drop(events);
    store.drop_schema().await.unwrap();
}

#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acquire_timeout_is_the_configured_one() {
    let Some(default) = support::pg_store_with(|config| config).await else { return };
    assert_eq!(default.pool().options().get_acquire_timeout(), ACQUIRE_TIMEOUT);
    let short = Duration::from_millis(1500);
    let Some(store) = support::pg_store_with(|config| config.with_acquire_timeout(short)).await else { return };
    assert_eq!(store.pool().options().get_acquire_timeout(), short, "the pool of appends and reads");
    // The store works with it.
    store.append(&stream("timeout"), ExpectedVersion::NoStream, vec![event("Seen", "{}")]).await.unwrap();
}
