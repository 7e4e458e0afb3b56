//! Instrumentation benchmark: in-memory command round trips with the
//! spans and metrics compiled in and no subscriber installed (baseline),
//! beside the same with a `tracing` subscriber that formats every span and
//! event at INFO into a sink (candidate). The ratio is the overhead of
//! actually tracing; the baseline is what an application that installs
//! nothing pays.
//!
//! `cargo bench -p orchestrix-benches --bench instrumentation` (add
//! `-- --quick` for a short run).

use orchestrix::memory::{InMemoryEventStore, InMemorySnapshotStore};
use orchestrix::{Orchestrix, Uuid};
use orchestrix_benches::{compare, macros};
use tracing_subscriber::layer::SubscriberExt;

fn app(cache: usize) -> Orchestrix {
    Orchestrix::builder()
        .event_store(InMemoryEventStore::new())
        .snapshot_store(InMemorySnapshotStore::new())
        .cache_capacity(cache)
        .aggregate::<macros::Account>()
        .build()
        .expect("a valid configuration")
}

fn subscriber() -> impl tracing::Subscriber + Send + Sync {
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::sink).with_ansi(false);
    tracing_subscriber::registry().with(fmt.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
}

use tracing_subscriber::Layer as _;

async fn open_many(app: &Orchestrix, ops: u64) {
    for i in 0..ops {
        let command = macros::Open { owner: format!("owner {i}") };
        app.execute(Uuid::now_v7(), command).await.expect("the command succeeds");
    }
}

async fn deposit_many(app: &Orchestrix, ids: &[Uuid], ops: u64) {
    for i in 0..ops {
        let id = ids[usize::try_from(i).unwrap() % ids.len()];
        app.execute(id, macros::Deposit { amount: 1 }).await.expect("the command succeeds");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, ops) = if quick { (5, 2_000) } else { (15, 10_000) };
    println!("instrumentation: with a subscriber (candidate) vs none (baseline), {rounds} rounds, medians\n");
    let dispatch = tracing::Dispatch::new(subscriber());

    let (traced, bare) = (app(0), app(0));
    compare(
        "new aggregate, cache off (load+append)",
        rounds,
        ops,
        |ops| {
            let guard = tracing::dispatcher::set_default(&dispatch);
            let app = traced.clone();
            async move {
                let _guard = guard;
                open_many(&app, ops).await;
            }
        },
        |ops| {
            let app = bare.clone();
            async move { open_many(&app, ops).await }
        },
    )
    .await;

    let (traced, bare) = (app(10_000), app(10_000));
    let mut ids = Vec::new();
    for app in [&traced, &bare] {
        for i in 0..100 {
            let id = Uuid::from_u128(i + 1);
            app.execute(id, macros::Open { owner: "o".into() }).await.expect("opens");
            ids.push(id);
        }
    }
    ids.truncate(100);
    compare(
        "existing aggregate, cached (append only)",
        rounds,
        ops,
        |ops| {
            let guard = tracing::dispatcher::set_default(&dispatch);
            let (app, ids) = (traced.clone(), ids.clone());
            async move {
                let _guard = guard;
                deposit_many(&app, &ids, ops).await;
            }
        },
        |ops| {
            let (app, ids) = (bare.clone(), ids.clone());
            async move { deposit_many(&app, &ids, ops).await }
        },
    )
    .await;
}
