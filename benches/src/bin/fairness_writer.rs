//! One service replica of the suite's fairness scenario (issue 22, goal
//! 9): an `Orchestrix` app over `PgStore` (aggregate cache and snapshots
//! on, as a service has them) whose clients all deposit into one account,
//! from a common start time for a fixed time. The suite starts one or two
//! of these processes and reads the one JSON line each prints.
//!
//! ```text
//! ORCHESTRIX_PG_URL=... fairness_writer <schema> <account id> <clients> <start, unix ms> <duration, ms>
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use orchestrix::error::CommandError;
use orchestrix::{Orchestrix, Uuid};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_benches::ledger::{Account, Deposit};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one client saw.
struct Tally {
    latencies: Histogram<u64>,
    ok: u64,
    conflicts: u64,
    other_errors: u64,
    attempts: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

struct Args {
    url: String,
    schema: String,
    account: Uuid,
    clients: u64,
    start_unix_ms: u64,
    duration: Duration,
}

fn args() -> Result<Args, String> {
    let usage = "usage: fairness_writer <schema> <account id> <clients> <start, unix ms> <duration, ms> \
                 (with ORCHESTRIX_PG_URL set)";
    let url = std::env::var("ORCHESTRIX_PG_URL").map_err(|_| format!("ORCHESTRIX_PG_URL is not set; {usage}"))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [schema, account, clients, start, duration] = args.as_slice() else {
        return Err(usage.to_owned());
    };
    let number = |what: &str, value: &str| value.parse::<u64>().map_err(|e| format!("{what} `{value}`: {e}; {usage}"));
    Ok(Args {
        url,
        schema: schema.clone(),
        account: account.parse().map_err(|e| format!("account id `{account}`: {e}; {usage}"))?,
        clients: number("clients", clients)?.max(1),
        start_unix_ms: number("start", start)?,
        duration: Duration::from_millis(number("duration", duration)?),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("fairness_writer: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<String, BoxError> {
    let store = PgStore::connect(&args.url, PgConfig::new(args.schema.clone())?.with_max_connections(4)).await?;
    let app = Orchestrix::builder()
        .event_store(store.clone())
        .snapshot_store(store.clone())
        .aggregate::<Account>()
        .build()?;
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    tokio::time::sleep(Duration::from_millis(args.start_unix_ms.saturating_sub(now_ms))).await;
    let started = Instant::now();
    let deadline = started + args.duration;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let app = Arc::clone(&app);
            let account = args.account;
            tokio::spawn(async move {
                let mut tally = Tally {
                    latencies: histogram(),
                    ok: 0,
                    conflicts: 0,
                    other_errors: 0,
                    attempts: 0,
                    first_error: None,
                };
                while Instant::now() < deadline {
                    let at = Instant::now();
                    let result = app.execute(account, Deposit { amount: 1 }).await;
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tally.latencies.saturating_record(micros.max(1));
                    match result {
                        Ok(outcome) => {
                            tally.ok += 1;
                            tally.attempts += u64::from(outcome.attempts);
                        }
                        Err(error) => {
                            if matches!(error, CommandError::Conflict { .. }) {
                                tally.conflicts += 1;
                            } else {
                                tally.other_errors += 1;
                            }
                            tally.first_error.get_or_insert_with(|| error.to_string());
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all =
        Tally { latencies: histogram(), ok: 0, conflicts: 0, other_errors: 0, attempts: 0, first_error: None };
    for task in tasks {
        let tally = task.await?;
        all.latencies.add(tally.latencies)?;
        all.ok += tally.ok;
        all.conflicts += tally.conflicts;
        all.other_errors += tally.other_errors;
        all.attempts += tally.attempts;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    let elapsed = started.elapsed();
    Ok(serde_json::json!({
        "commands": all.ok,
        "conflict_errors": all.conflicts,
        "other_errors": all.other_errors,
        "attempts": all.attempts,
        "p50_us": all.latencies.value_at_quantile(0.5),
        "p99_us": all.latencies.value_at_quantile(0.99),
        "max_us": all.latencies.max(),
        "elapsed_s": elapsed.as_secs_f64(),
        "first_error": all.first_error,
    })
    .to_string())
}
