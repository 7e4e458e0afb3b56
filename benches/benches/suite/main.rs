//! The benchmark suite (issue 8): Orchestrix beside the raw database and
//! beside a peer framework (cqrs-es 0.5 with postgres-es 0.5), scenario by
//! scenario, every contestant in the same process and the same run, in
//! rotating turns, after a warm-up round, reporting medians.
//!
//! ```text
//! ORCHESTRIX_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p orchestrix-benches --bench suite -- [--quick] [--only 1,3] [--out PATH] [--docs PATH]
//! ```
//!
//! Scenarios (PostgreSQL unless said):
//! 1. one command per new aggregate, sequential;
//! 2. the same with 16 concurrent writers;
//! 3. 1,000 commands on one aggregate (a hot stream), with and without
//!    snapshots, with the aggregate cache and without;
//! 4. 100 events per command (batched append);
//! 5. projection catch-up over 1,000,000 events;
//! 6. in memory: command round trip, rehydration of 10,000 events, and
//!    heap bytes per stored event (counted by this binary's allocator);
//! 7. SQLite: sequential commands;
//! 8. projection catch-up through one tenant's view (`TenantStore`) of a log
//!    four tenants share, beside the same catch-up unfiltered;
//! 10. the size of the store: commands and catch-up on a store of 2,000,000
//!     events beside one of 100,000 (schemas kept between runs).
//! 20. the writer curve: 1 to 256 writers, p50 and p99 per command
//!     (`curve.rs`, drawn by `chart.rs` into `docs/benchmarks-writers.svg`);
//! 21. fairness across processes: two replicas on one hot aggregate
//!     (`fairness.rs`, the `fairness_writer` binary).
//!
//! Prints a table and writes `summary.json` into `bench/` under the cargo
//! target directory (one object per scenario); with `--docs PATH` also the
//! Markdown page `docs/benchmarks.md` is made from (`just bench-docs`). PostgreSQL scenarios are
//! skipped, and say so, when `ORCHESTRIX_PG_URL` is unset; each contestant
//! writes into a fresh schema of its own, dropped afterwards.

mod chart;
mod curve;
mod fairness;
mod memory;
mod pg;
mod pg_tenant;
mod report;
mod sqlite;
mod store_size;

use std::path::PathBuf;
use std::process::ExitCode;

use report::Row;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts every allocation, so that scenario 6 measures heap bytes per
/// stored event rather than estimating them. Its cost (a few atomic adds
/// per allocation) is paid by every contestant alike.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The heap bytes currently allocated by this process.
fn live_heap_bytes() -> i128 {
    let stats = ALLOCATOR.stats();
    i128::try_from(stats.bytes_allocated).unwrap_or(i128::MAX)
        - i128::try_from(stats.bytes_deallocated).unwrap_or(i128::MAX)
}

/// Heap allocations made by this process so far.
fn allocations() -> usize {
    ALLOCATOR.stats().allocations
}

/// Allocations per operation of `run(ops)`, counted on one extra untimed run.
async fn allocations_per_op<F: std::future::Future<Output = ()>>(ops: u64, run: impl FnOnce(u64) -> F) -> f64 {
    let before = allocations();
    run(ops).await;
    #[allow(clippy::cast_precision_loss)]
    let per = (allocations() - before) as f64 / ops as f64;
    per
}

/// How long a run is: full, or small enough for CI.
#[derive(Debug, Clone, Copy)]
struct Size {
    quick: bool,
}

impl Size {
    /// `full` when running the full suite, `quick` with `--quick`.
    fn pick<T>(self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    fn rounds(self) -> usize {
        self.pick(7, 3)
    }
}

#[derive(Debug)]
struct Options {
    size: Size,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
    docs: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Self { size: Size { quick: false }, only: None, out: None, docs: None };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.size.quick = true,
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of scenarios, for example `--only 1,3`")?;
                    options.only = Some(list.split(',').map(|s| s.trim().to_owned()).collect());
                }
                "--out" => options.out = Some(args.next().ok_or("--out needs a file path")?.into()),
                "--docs" => options.docs = Some(args.next().ok_or("--docs needs a file path")?.into()),
                // What cargo passes to every bench target.
                "--bench" => {}
                "--help" | "-h" => {
                    return Err("usage: suite [--quick] [--only 1,2,3a,...] [--out PATH] [--docs PATH]".to_owned());
                }
                other => return Err(format!("unknown argument `{other}`; try --help")),
            }
        }
        Ok(options)
    }

    /// Whether scenario `id` (such as `3b`) runs: `--only 3` selects every
    /// scenario 3.
    fn runs(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|only| {
            only.iter().any(|o| {
                o == id || id.strip_prefix(o.as_str()).is_some_and(|rest| rest.starts_with(char::is_alphabetic))
            })
        })
    }
}

/// `summary.json`'s default place: `bench/` in the cargo target directory
/// (`CARGO_TARGET_DIR`, else the one this binary was built into).
fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).or_else(|| {
        // <target>/<profile>/deps/suite-<hash>
        std::env::current_exe().ok().and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
    });
    target.unwrap_or_else(|| PathBuf::from("target")).join("bench").join("summary.json")
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    println!("{}", report::machine());
    let mut rows: Vec<Row> = Vec::new();

    // In memory first, before any pool or worker thread exists, so that
    // the allocation counts of scenario 6 see nothing but the stores.
    let current_thread = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rows.extend(current_thread().block_on(memory::run(&options)));

    // A failed scenario is reported at the end; the others still run.
    let mut failures = Vec::new();
    match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
            let (pg_rows, result) = runtime.block_on(pg::run(&url, &options));
            rows.extend(pg_rows);
            if let Err(error) = result {
                failures.push(format!("PostgreSQL scenarios stopped: {error}"));
            }
            if options.runs(curve::ID) {
                match runtime.block_on(curve::run(&url, &options)) {
                    Ok(curve_rows) => rows.extend(curve_rows),
                    Err(error) => failures.push(format!("the writer curve stopped: {error}")),
                }
            }
            if options.runs(fairness::ID) {
                match runtime.block_on(fairness::run(&url, &options)) {
                    Ok(row) => rows.push(row),
                    Err(error) => failures.push(format!("the fairness scenario stopped: {error}")),
                }
            }
        }
        Err(_) => println!(
            "scenarios 1-5, 8, 10, 20 and 21 skipped: set ORCHESTRIX_PG_URL, for example postgres://postgres@127.0.0.1:5432/test\n"
        ),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    match runtime.block_on(sqlite::run(&options)) {
        Ok(sqlite_rows) => rows.extend(sqlite_rows),
        Err(error) => failures.push(format!("SQLite scenario failed: {error}")),
    }

    rows.sort_by_key(|row| report::order(&row.id));
    println!("{}", report::table(&rows, options.size.quick));
    let out = options.out.clone().unwrap_or_else(default_out);
    match report::write_json(&out, &rows, options.size.quick) {
        Ok(()) => println!("wrote {}", out.display()),
        Err(error) => failures.push(format!("could not write {}: {error}", out.display())),
    }
    if let Some(docs) = &options.docs {
        match report::write_markdown(docs, &rows, options.size.quick) {
            Ok(()) => println!("wrote {}", docs.display()),
            Err(error) => failures.push(format!("could not write {}: {error}", docs.display())),
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
