//! What commands print: aligned tables for people, JSON for scripts,
//! progress bars on a terminal, and confirmations.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Failure;

/// Renders rows under headers, each column as wide as its widest cell.
///
/// ```
/// let text = orchestrix_cli::output::table(&["STREAM", "EVENTS"], &[vec!["Account/1".into(), "3".into()]]);
/// assert_eq!(text, "STREAM     EVENTS\nAccount/1  3\n");
/// ```
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&headers).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            text.push_str(cell);
            if i < last {
                text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        text.push('\n');
    }
    text
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::Store(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Writes one line to stdout, flushing it (for `tail`).
pub(crate) fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(Failure::from)
}

/// A progress bar on stderr when stderr is a terminal, hidden otherwise;
/// `total` is the length when known.
pub(crate) fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} events ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_owned());
    bar
}

/// Asks `question` on the terminal unless `yes`; without a terminal the
/// command is refused (ADR 0041).
pub(crate) fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Refused(format!(
            "{question} Not confirmed: no terminal to ask on; pass --yes to confirm"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::Refused("not confirmed; nothing was changed".to_owned()))
    }
}
