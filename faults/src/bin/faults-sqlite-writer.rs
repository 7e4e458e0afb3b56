//! The writer process of scenario 5 (SQLite killed mid-write): appends to
//! a SQLite store and prints each append before and after the store
//! answered it (see `orchestrix_faults::sqlite`), until it is killed or
//! its time limit passes.
//!
//! Usage: `faults-sqlite-writer <database file> <name> [writers] [seconds]`
//! (4 writers, 60 s by default).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: faults-sqlite-writer <database file> <name> [writers] [seconds]";
    let (Some(path), Some(name)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let number = |index: usize, default: u64| match args.get(index) {
        None => Ok(default),
        Some(text) => text.parse::<u64>().map_err(|e| format!("{text}: {e}; {usage}")),
    };
    let (writers, seconds) = match (number(2, 4), number(3, 60)) {
        (Ok(writers), Ok(seconds)) => (writers, seconds),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let writers = usize::try_from(writers).unwrap_or(usize::MAX).clamp(1, 64);
    let limit = Duration::from_secs(seconds);
    match orchestrix_faults::sqlite::run_writer(&PathBuf::from(path), name, writers, limit).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faults-sqlite-writer: {error}");
            ExitCode::FAILURE
        }
    }
}
