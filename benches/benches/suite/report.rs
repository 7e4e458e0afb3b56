//! The suite's results: one [`Row`] per scenario, printed as a table and
//! written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One contestant's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) rate: f64,
}

impl Entry {
    pub(crate) fn new(name: impl Into<String>, rate: f64) -> Self {
        Self { name: name.into(), rate }
    }
}

/// A goal: `ratio` (a key of [`Row::ratios`]) at least `at_least`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Goal {
    pub(crate) ratio: &'static str,
    pub(crate) at_least: f64,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The scenario's number in issue 8, with a letter for its variants.
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    /// Whether a larger figure is better (false for bytes per event).
    pub(crate) higher_is_better: bool,
    pub(crate) orchestrix_name: String,
    pub(crate) orchestrix_rate: f64,
    pub(crate) baseline_name: String,
    pub(crate) baseline_rate: f64,
    pub(crate) peer_name: Option<String>,
    pub(crate) peer_rate: Option<f64>,
    /// A further contestant that a goal refers to (scenario 3: Orchestrix's
    /// own new-aggregate commands, measured in the same rounds).
    pub(crate) reference_name: Option<String>,
    pub(crate) reference_rate: Option<f64>,
    /// Orchestrix's figure divided by each other contestant's.
    pub(crate) ratios: BTreeMap<&'static str, f64>,
    pub(crate) goals: Vec<Goal>,
    /// Whether every goal is met (`None`: the scenario has none).
    pub(crate) goals_met: Option<bool>,
    /// How the figures were taken: rounds and operations per round.
    pub(crate) method: String,
    /// Per-command latencies, where the scenario times every command
    /// (the writer curve).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) latencies: Vec<crate::curve::Latency>,
}

impl Row {
    /// A row with Orchestrix's and the baseline's figures.
    pub(crate) fn new(id: &str, name: &str, unit: &'static str, orchestrix: Entry, baseline: Entry) -> Self {
        let mut ratios = BTreeMap::new();
        ratios.insert("to_baseline", orchestrix.rate / baseline.rate);
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            unit,
            higher_is_better: true,
            orchestrix_name: orchestrix.name,
            orchestrix_rate: orchestrix.rate,
            baseline_name: baseline.name,
            baseline_rate: baseline.rate,
            peer_name: None,
            peer_rate: None,
            reference_name: None,
            reference_rate: None,
            ratios,
            goals: Vec::new(),
            goals_met: None,
            method: String::new(),
            latencies: Vec::new(),
        }
    }

    pub(crate) fn peer(mut self, peer: Entry) -> Self {
        self.ratios.insert("to_peer", self.orchestrix_rate / peer.rate);
        self.peer_name = Some(peer.name);
        self.peer_rate = Some(peer.rate);
        self
    }

    pub(crate) fn reference(mut self, reference: Entry) -> Self {
        self.ratios.insert("to_reference", self.orchestrix_rate / reference.rate);
        self.reference_name = Some(reference.name);
        self.reference_rate = Some(reference.rate);
        self
    }

    /// A further ratio, which a goal may refer to.
    pub(crate) fn ratio(mut self, key: &'static str, value: f64) -> Self {
        self.ratios.insert(key, value);
        self
    }

    pub(crate) fn latencies(mut self, latencies: Vec<crate::curve::Latency>) -> Self {
        self.latencies = latencies;
        self
    }

    pub(crate) fn lower_is_better(mut self) -> Self {
        self.higher_is_better = false;
        self
    }

    pub(crate) fn goal(mut self, ratio: &'static str, at_least: f64) -> Self {
        self.goals.push(Goal { ratio, at_least });
        let met = self.goals.iter().all(|g| self.ratios.get(g.ratio).is_some_and(|r| *r >= g.at_least));
        self.goals_met = Some(met);
        self
    }

    pub(crate) fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// Prints the row as soon as the scenario is done.
    pub(crate) fn announce(self) -> Self {
        let peer = self
            .peer_rate
            .map_or(String::new(), |p| format!(", {} {}", self.peer_name.as_deref().unwrap_or(""), figure(p)));
        let reference = self
            .reference_rate
            .map_or(String::new(), |r| format!(", {} {}", self.reference_name.as_deref().unwrap_or(""), figure(r)));
        println!(
            "[{}] {}: Orchestrix {} {}, {} {}{peer}{reference}; ratios {}{}",
            self.id,
            self.name,
            figure(self.orchestrix_rate),
            self.unit,
            self.baseline_name,
            figure(self.baseline_rate),
            ratios(&self.ratios),
            self.goals_met.map_or("", |met| if met { " (goals met)" } else { " (GOAL MISSED)" }),
        );
        self
    }
}

fn ratios(ratios: &BTreeMap<&'static str, f64>) -> String {
    ratios.iter().map(|(k, v)| format!("{k} {v:.2}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn figure(x: f64) -> String {
    if x >= 100.0 {
        // Thousands separated by commas.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = x.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{x:.1}")
    }
}

/// Sort key of a scenario id such as `3b`.
pub(crate) fn order(id: &str) -> (u32, String) {
    let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(u32::MAX), id[digits.len()..].to_owned())
}

/// The results as a Markdown table (also what the README shows).
pub(crate) fn table(rows: &[Row], quick: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{} run, medians:\n", if quick { "quick (--quick)" } else { "full" });
    out.push_str("| # | scenario | unit | Orchestrix | baseline | × baseline | peer | × peer | goal |\n");
    out.push_str("|---|---|---|---:|---|---:|---|---:|---|\n");
    for row in rows {
        let goal = if row.goals.is_empty() {
            "—".to_owned()
        } else {
            let goals: Vec<String> = row
                .goals
                .iter()
                .map(|g| {
                    let what = match g.ratio {
                        "to_baseline" => "baseline",
                        "to_peer" => "peer",
                        "to_reference" => row.reference_name.as_deref().unwrap_or("reference"),
                        // A ratio of its own (see the scenario's method).
                        other => return format!("{other} ≥ {:.2}", g.at_least),
                    };
                    format!("≥ {} × {what}", g.at_least)
                })
                .collect();
            let verdict = if row.goals_met == Some(true) { "met" } else { "**missed**" };
            format!("{}: {verdict}", goals.join(", "))
        };
        let reference = row
            .ratios
            .get("to_reference")
            .map_or(String::new(), |r| format!(" ({r:.2} × {})", row.reference_name.as_deref().unwrap_or("reference")));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{reference} | {} {} | {:.2} | {} | {} | {goal} |",
            row.id,
            row.name,
            row.unit,
            figure(row.orchestrix_rate),
            row.baseline_name,
            figure(row.baseline_rate),
            row.ratios["to_baseline"],
            row.peer_rate.map_or("—".to_owned(), |p| format!(
                "{} {}",
                row.peer_name.as_deref().unwrap_or(""),
                figure(p)
            )),
            row.ratios.get("to_peer").map_or("—".to_owned(), |r| format!("{r:.2}")),
        );
    }
    out
}

#[derive(Serialize)]
struct Summary<'a> {
    quick: bool,
    machine: String,
    commit: String,
    scenarios: &'a [Row],
}

/// Writes `rows` as `{ "quick", "machine", "scenarios": [...] }`.
pub(crate) fn write_json(path: &Path, rows: &[Row], quick: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let summary = Summary { quick, machine: machine(), commit: commit(), scenarios: rows };
    let json = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
    std::fs::write(path, json + "\n")
}

/// The page `docs/benchmarks.md`: the run's table and how each figure was
/// taken, generated so that the figures in the docs cannot go stale.
pub(crate) fn markdown_page(rows: &[Row], quick: bool, svg: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "<!-- Generated by `just bench-docs` (the suite with `--docs docs/benchmarks.md`) from the run it \
         describes; do not edit by hand. -->\n\n",
    );
    out.push_str(
        "The benchmark suite races Orchestrix, scenario by scenario, against the raw database (plain sqlx \
         statements writing the same rows into an identical table, made by the adapter's own migration SQL) \
         and against a peer framework (cqrs-es 0.5 with postgres-es 0.5 over its documented tables) \
         implementing the same domain (`benches/src/ledger.rs`). Every contestant runs in the same process and \
         the same run, after a warm-up round, in rotating turns; the figures are medians, and the ratios \
         within one run are the figures to compare: absolute rates on a shared machine move between runs.\n\n",
    );
    let _ = writeln!(
        out,
        "Run on {} UTC, at commit `{}`, on {} ({}).",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        commit(),
        machine(),
        if quick { "a quick run, `--quick`" } else { "a full run" }
    );
    out.push_str(&table(rows, quick));
    out.push_str(&crate::chart::section(rows, svg));
    out.push_str("\nHow each scenario was measured:\n\n");
    for row in rows {
        let _ = writeln!(out, "- **{}** {}: {}", row.id, row.name, row.method);
    }
    out.push_str(
        "\nWhy the figures are what they are, and what was changed because of them: \
         [performance notes](performance-notes.md). Reproduce with `just bench` \
         (`ORCHESTRIX_PG_URL` set for the PostgreSQL scenarios).\n",
    );
    out
}

/// Writes [`markdown_page`] to `path`, and the writer curve's chart
/// beside it when the run has the curve.
pub(crate) fn write_markdown(path: &Path, rows: &[Row], quick: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let svg = crate::chart::svg(rows).map_err(std::io::Error::other)?;
    if let Some(svg) = &svg {
        std::fs::write(path.with_file_name(crate::chart::SVG_NAME), svg)?;
    }
    std::fs::write(path, markdown_page(rows, quick, svg.is_some().then_some(crate::chart::SVG_NAME)))
}

/// The commit the suite was built from (`git describe --always --dirty`
/// in this crate's directory), or `unknown` outside a git checkout.
pub(crate) fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |commit| commit.trim().to_owned())
}

/// One line about the machine: cores, CPU model, memory.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(|| std::env::consts::ARCH.to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| format!(", {} GiB", kb / (1024 * 1024)));
    format!("{cores} cores, {model}{memory}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}
