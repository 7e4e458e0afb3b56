//! `verify`: a store's invariants, as a report (ADR 0041).

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use orchestrix::store::EventFilter;
use orchestrix::StreamId;
use serde_json::json;

use super::{up_to_head, Options};
use crate::connect::Store;
use crate::error::Failure;
use crate::output::{print_json, progress};
use crate::Cli;

/// At most this many findings are listed (all are counted).
const SHOWN: usize = 100;

pub(super) async fn verify(cli: &Cli, store: &Store, options: Options) -> Result<(), Failure> {
    let head = store.events.head_position().await?.unwrap_or(0);
    let mut findings: Vec<String> = Vec::new();
    let mut found = 0usize;
    let mut note = |finding: String| {
        found += 1;
        if findings.len() < SHOWN {
            findings.push(finding);
        }
    };
    let mut versions: BTreeMap<StreamId, u64> = BTreeMap::new();
    let (mut events, mut decoded, mut last_position) = (0u64, 0u64, 0u64);
    let all = EventFilter::all();
    let bar = progress(None, "verifying");
    let mut log = std::pin::pin!(up_to_head(store, &all, head));
    while let Some(event) = log.next().await {
        let event = event?;
        events += 1;
        bar.inc(1);
        if event.global_position <= last_position {
            note(format!(
                "position {} of `{}`#{} does not follow position {last_position}",
                event.global_position, event.stream, event.stream_version
            ));
        }
        last_position = last_position.max(event.global_position);
        let expected = versions.get(&event.stream).map_or(1, |v| v + 1);
        if event.stream_version != expected {
            note(format!("stream `{}` has version {} where {expected} was due", event.stream, event.stream_version));
        }
        versions.insert(event.stream.clone(), event.stream_version);
        if serde_json::from_str::<serde_json::Value>(event.data.get()).map_or(true, |v| !v.is_object()) {
            note(format!("`{}`#{}: the data is not a JSON object", event.stream, event.stream_version));
        }
        for decoder in &cli.decoders {
            match decoder(&event) {
                Some(Ok(())) => decoded += 1,
                Some(Err(reason)) => {
                    note(format!("`{}`#{} does not decode: {reason}", event.stream, event.stream_version));
                }
                None => continue,
            }
            break;
        }
    }
    bar.finish_and_clear();
    let mut snapshots_checked = 0u64;
    if let Some(snapshots) = &store.snapshots {
        for (stream, version) in &versions {
            if let Some(snapshot) = snapshots.load(stream, None).await? {
                snapshots_checked += 1;
                if snapshot.version > *version {
                    note(format!(
                        "the snapshot of `{stream}` is at version {}, past its head {version}",
                        snapshot.version
                    ));
                }
            }
        }
    }
    if options.json {
        print_json(&json!({
            "store": store.shown, "events": events, "streams": versions.len(), "decoded": decoded,
            "snapshots_checked": snapshots_checked, "violations": found, "findings": findings,
        }))?;
    } else {
        println!("store        {}", store.shown);
        println!("events       {events} in {} streams (up to position {head})", versions.len());
        println!("versions     contiguous from 1 in every stream: {}", if found == 0 { "yes" } else { "see below" });
        println!("positions    strictly increasing in the log");
        println!(
            "payloads     JSON objects; {decoded} decoded with the registered types ({} registered)",
            cli.decoders.len()
        );
        println!("snapshots    {snapshots_checked} checked against their stream's head");
        println!("keys         not checked: a key store cannot list its subjects");
        for finding in &findings {
            println!("VIOLATION    {finding}");
        }
        if found > findings.len() {
            println!("… and {} more", found - findings.len());
        }
        println!("{}", if found == 0 { "ok: no violation found".to_owned() } else { format!("{found} violations") });
    }
    if found == 0 {
        Ok(())
    } else {
        Err(Failure::Verification(format!("{found} violations in `{}`", store.shown)))
    }
}
