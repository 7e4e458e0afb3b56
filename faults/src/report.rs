//! The figures each scenario measures, written to
//! `target/faults/<scenario>.json` and rendered into the operations guide
//! between `<!-- faults:begin -->` and `<!-- faults:end -->` by the
//! `faults-report` binary.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What one scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// The scenario's name, e.g. `"nats-cluster"`.
    pub scenario: String,
    /// `"short"` or `"full"`.
    pub version: String,
    /// Faults injected (kills, restarts, failovers).
    pub faults: u64,
    /// Events the application had acknowledged.
    pub acknowledged: u64,
    /// Acknowledged events missing at the end (goal 0).
    pub lost: u64,
    /// Events applied twice to the read model (goal 0).
    pub duplicated: u64,
    /// Other figures of the scenario (recovery times in ms, rates), by name.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Where the figures are written: `$CARGO_TARGET_DIR/faults` or `target/faults`
/// beside the workspace.
pub fn directory() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("faults"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/faults"),
    }
}

/// Writes `figures` to [`directory`]`/<scenario>.json`.
pub fn record(figures: &Figures) -> std::io::Result<PathBuf> {
    let dir = directory();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", figures.scenario));
    std::fs::write(&path, serde_json::to_vec_pretty(figures).map_err(std::io::Error::other)?)?;
    Ok(path)
}

/// Every recorded scenario, sorted by name.
pub fn load_all() -> std::io::Result<Vec<Figures>> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory()) else { return Ok(all) };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "json") {
            let bytes = std::fs::read(entry.path())?;
            all.push(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?);
        }
    }
    all.sort_by(|a: &Figures, b: &Figures| a.scenario.cmp(&b.scenario));
    Ok(all)
}
