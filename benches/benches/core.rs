//! Core benchmark: the macro-generated domain against the hand-written
//! one, through the same in-memory application, in one run.
//!
//! `cargo bench -p orchestrix-benches --bench core` (add `-- --quick` for a
//! short run). The goal: every ratio at least 0.95.

use orchestrix::memory::{InMemoryEventStore, InMemorySnapshotStore};
use orchestrix::{command::CommandSet, repository::Repository, Aggregate, AggregateCommand, Orchestrix, Uuid};
use orchestrix_benches::{compare, hand, macros};

const HISTORY: u64 = 10_000;

fn app<A: CommandSet>(cache: usize, snapshots: bool) -> Orchestrix {
    let builder = Orchestrix::builder().event_store(InMemoryEventStore::new()).cache_capacity(cache);
    let builder = if snapshots { builder.snapshot_store(InMemorySnapshotStore::new()) } else { builder };
    builder.aggregate::<A>().build().expect("a valid configuration")
}

/// One new aggregate per command: load (an empty stream), handle, append.
async fn create<C>(app: &Orchestrix, ops: u64, make: impl Fn(u64) -> C)
where
    C: AggregateCommand + Clone,
    C::Aggregate: Aggregate<Id = Uuid>,
{
    for i in 0..ops {
        app.execute(Uuid::now_v7(), make(i)).await.expect("the command succeeds");
    }
}

/// Commands to existing aggregates, round robin over `ids`.
async fn update<C>(app: &Orchestrix, ids: &[Uuid], ops: u64, make: impl Fn(u64) -> C)
where
    C: AggregateCommand + Clone,
    C::Aggregate: Aggregate<Id = Uuid>,
{
    for i in 0..ops {
        let id = ids[usize::try_from(i).unwrap() % ids.len()];
        app.execute(id, make(i)).await.expect("the command succeeds");
    }
}

async fn load_many<A: Aggregate<Id = Uuid>>(repository: &Repository<A>, id: &Uuid, ops: u64) {
    for _ in 0..ops {
        let loaded = repository.load(id).await.expect("the aggregate loads");
        assert_eq!(loaded.version, HISTORY);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, scale) = if quick { (5, 1) } else { (15, 4) };
    println!("in-memory core: macros (candidate) vs hand-written (baseline), {rounds} rounds, medians\n");
    let mut ratios = Vec::new();

    // Command round trips on new aggregates, cache off: load, handle, append.
    let (m, h) = (app::<macros::Account>(0, true), app::<hand::Account>(0, true));
    ratios.push(
        compare(
            "command round trip, new aggregate",
            rounds,
            2_000 * scale,
            |ops| create(&m, ops, |i| macros::Open { owner: format!("owner {i}") }),
            |ops| create(&h, ops, |i| hand::Open { owner: format!("owner {i}") }),
        )
        .await,
    );

    // Command round trips on 100 existing aggregates, cached.
    let (m, h) = (app::<macros::Account>(1_000, true), app::<hand::Account>(1_000, true));
    let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    create_all(&m, &h, &ids).await;
    ratios.push(
        compare(
            "command round trip, cached aggregate",
            rounds,
            2_000 * scale,
            |ops| update(&m, &ids, ops, |i| macros::Deposit { amount: i + 1 }),
            |ops| update(&h, &ids, ops, |i| hand::Deposit { amount: i + 1 }),
        )
        .await,
    );

    // Rehydration of a 10,000-event aggregate, without and with a snapshot.
    for snapshots in [false, true] {
        let (m, h) = (app::<macros::Account>(0, snapshots), app::<hand::Account>(0, snapshots));
        let id = Uuid::now_v7();
        create_all(&m, &h, &[id]).await;
        update(&m, &[id], HISTORY - 1, |i| macros::Deposit { amount: i + 1 }).await;
        update(&h, &[id], HISTORY - 1, |i| hand::Deposit { amount: i + 1 }).await;
        let (rm, rh) = (m.repository::<macros::Account>(), h.repository::<hand::Account>());
        let name = if snapshots { "rehydrate 10,000 events, from a snapshot" } else { "rehydrate 10,000 events" };
        let ops = if snapshots { 2_000 * scale } else { 5 * scale };
        ratios.push(compare(name, rounds, ops, |n| load_many(&rm, &id, n), |n| load_many(&rh, &id, n)).await);
    }

    let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    println!("\nworst ratio {worst:.3} (goal: at least 0.95)");
}

async fn create_all(m: &Orchestrix, h: &Orchestrix, ids: &[Uuid]) {
    for id in ids {
        m.execute(*id, macros::Open { owner: "bench".into() }).await.expect("opens");
        h.execute(*id, hand::Open { owner: "bench".into() }).await.expect("opens");
    }
}
