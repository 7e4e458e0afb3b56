//! Deterministic costs of the in-memory command path and of rehydration,
//! beside the hand-rolled log of suite scenario 6
//! ([`orchestrix_benches::raw_log`]): heap allocations (and bytes) per
//! command and per rehydrated event, counted by this binary's allocator.
//! Counts do not depend on the machine's load, unlike timings.
//!
//! `cargo bench -p orchestrix-benches --bench percommand` prints the table.
//! For instruction counts, run one side alone under callgrind:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/deps/percommand-<hash> --only orchestrix-command --n 20000
//! callgrind_annotate cg.out | head -60
//! ```
//!
//! `--only` takes one of `orchestrix-command`, `raw-command`,
//! `orchestrix-rehydrate`, `raw-rehydrate`; `--n` the number of commands
//! (or loads of a 1,000-event aggregate).

use orchestrix::memory::InMemoryEventStore;
use orchestrix::{Orchestrix, Uuid};
use orchestrix_benches::ledger::{self, Account};
use orchestrix_benches::raw_log::RawStore;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Events in the aggregate the rehydration sides load.
const HISTORY: u64 = 1_000;

fn app() -> Orchestrix {
    Orchestrix::builder().event_store(InMemoryEventStore::new()).aggregate::<Account>().build().expect("valid")
}

/// Runs `n` operations of `what` (after a warm-up of `n / 10`) and returns
/// allocations and bytes allocated per operation (per event for loads).
async fn measure(what: &str, n: u64) -> (f64, f64) {
    let warm = (n / 10).max(1);
    let per = |stats: stats_alloc::Stats, ops: u64| {
        #[allow(clippy::cast_precision_loss)]
        let ops = ops as f64;
        #[allow(clippy::cast_precision_loss)]
        (stats.allocations as f64 / ops, stats.bytes_allocated as f64 / ops)
    };
    match what {
        "orchestrix-command" => {
            let app = app();
            let run = |ops: u64| {
                let app = &app;
                async move {
                    for _ in 0..ops {
                        let open = ledger::Open { owner: "Ada Lovelace".into() };
                        app.execute(Uuid::now_v7(), open).await.expect("opens");
                    }
                }
            };
            run(warm).await;
            let region = Region::new(ALLOCATOR);
            run(n).await;
            per(region.change(), n)
        }
        "raw-command" => {
            let raw = RawStore::default();
            let run = |ops: u64| {
                for _ in 0..ops {
                    raw.open(format!("Account-{}", Uuid::now_v7()), "Ada Lovelace");
                }
            };
            run(warm);
            let region = Region::new(ALLOCATOR);
            run(n);
            per(region.change(), n)
        }
        "orchestrix-rehydrate" => {
            let app = app();
            let id = Uuid::now_v7();
            app.execute(id, ledger::Open { owner: "Ada Lovelace".into() }).await.expect("opens");
            for version in 1..HISTORY {
                app.execute(id, ledger::Deposit { amount: version }).await.expect("deposits");
            }
            let repository = app.repository::<Account>();
            repository.load(&id).await.expect("loads");
            let region = Region::new(ALLOCATOR);
            for _ in 0..n {
                assert_eq!(repository.load(&id).await.expect("loads").state.deposits, HISTORY - 1);
            }
            per(region.change(), n * HISTORY)
        }
        "raw-rehydrate" => {
            let raw = RawStore::default();
            let stream = format!("Account-{}", Uuid::now_v7());
            raw.open(stream.clone(), "Ada Lovelace");
            for version in 1..HISTORY {
                raw.deposit(stream.clone(), version, version);
            }
            raw.rehydrate(&stream);
            let region = Region::new(ALLOCATOR);
            for _ in 0..n {
                assert_eq!(raw.rehydrate(&stream).deposits, HISTORY - 1);
            }
            per(region.change(), n * HISTORY)
        }
        other => panic!("unknown --only {other}; see the module docs"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let n: u64 = value("--n").map_or(20_000, |n| n.parse().expect("--n takes a number"));
    if let Some(only) = value("--only") {
        let (allocations, bytes) = measure(&only, n).await;
        println!("{only}: {allocations:.2} allocations, {bytes:.0} bytes per operation");
        return;
    }
    let loads = (n / 1_000).max(5);
    println!("heap allocations per operation (counting allocator), Orchestrix beside the hand-rolled log\n");
    for (name, ours, theirs, ops) in [
        ("command round trip, new aggregate (per command)", "orchestrix-command", "raw-command", n),
        ("rehydrate 1,000 events (per event)", "orchestrix-rehydrate", "raw-rehydrate", loads),
    ] {
        let (a, ab) = measure(ours, ops).await;
        let (b, bb) = measure(theirs, ops).await;
        println!("{name:<48} Orchestrix {a:>7.2} allocs {ab:>6.0} B | hand-rolled {b:>7.2} allocs {bb:>6.0} B");
    }
}
