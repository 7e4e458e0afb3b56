//! `verify`: a store's invariants, as a report (ADR 0041).

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt as _;
use orchestrix::crypto::{sealed_values, ENCRYPTED_MARKER};
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, KeyStore};
use orchestrix::{StreamId, Uuid};
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
    let mut keys = store.keys.as_deref().map(KeyCheck::new);
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
        if let Some(keys) = &mut keys {
            for finding in keys.check(&event).await? {
                note(finding);
            }
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
    let (snapshots_checked, snapshot_findings) = check_snapshots(store, &versions).await?;
    snapshot_findings.into_iter().for_each(&mut note);
    if options.json {
        print_json(&json!({
            "store": store.shown, "events": events, "streams": versions.len(), "decoded": decoded,
            "snapshots_checked": snapshots_checked,
            "sealed_values": keys.as_ref().map(KeyCheck::summary),
            "violations": found, "findings": findings,
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
        match &keys {
            Some(keys) => println!("keys         {}", keys.line()),
            None => println!("keys         not checked: the store keeps no keys (EventSourcingDB)"),
        }
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

/// Each stream's latest snapshot against its head: how many were checked,
/// and the findings.
async fn check_snapshots(store: &Store, versions: &BTreeMap<StreamId, u64>) -> Result<(u64, Vec<String>), Failure> {
    let (mut checked, mut findings) = (0u64, Vec::new());
    if let Some(snapshots) = &store.snapshots {
        for (stream, version) in versions {
            if let Some(snapshot) = snapshots.load(stream, None).await? {
                checked += 1;
                if snapshot.version > *version {
                    findings.push(format!(
                        "the snapshot of `{stream}` is at version {}, past its head {version}",
                        snapshot.version
                    ));
                }
            }
        }
    }
    Ok((checked, findings))
}

/// The key check (ADR 0051): every sealed personal value must belong to a
/// subject that has its key, or that was forgotten (or forgotten and
/// re-admitted: it has a newer key). One lookup per subject.
struct KeyCheck<'a> {
    keys: &'a dyn KeyStore,
    /// Per subject: its current key id, and whether it is forgotten.
    subjects: HashMap<String, (Option<Uuid>, bool)>,
    readable: u64,
    erased: u64,
    missing: u64,
}

impl<'a> KeyCheck<'a> {
    fn new(keys: &'a dyn KeyStore) -> Self {
        Self { keys, subjects: HashMap::new(), readable: 0, erased: 0, missing: 0 }
    }

    /// The counts, for `--json`.
    fn summary(&self) -> serde_json::Value {
        json!({
            "readable": self.readable, "erased": self.erased, "missing_key": self.missing,
            "subjects": self.subjects.len(),
        })
    }

    /// The counts, for people.
    fn line(&self) -> String {
        format!(
            "{} sealed personal values of {} subjects: {} readable, {} erased (forgotten), {} without a key",
            self.readable + self.erased + self.missing,
            self.subjects.len(),
            self.readable,
            self.erased,
            self.missing
        )
    }

    /// The findings of one event's sealed values.
    async fn check(&mut self, event: &RecordedEvent) -> Result<Vec<String>, Failure> {
        // Most events hold no sealed value: they are not parsed.
        if !event.data.get().contains(ENCRYPTED_MARKER) {
            return Ok(Vec::new());
        }
        let place = format!("`{}`#{}", event.stream, event.stream_version);
        let values = match sealed_values(event.data.get()) {
            Ok(values) => values,
            Err(error) => return Ok(vec![format!("{place}: {error}")]),
        };
        let mut findings = Vec::new();
        for value in values {
            let state = if let Some(state) = self.subjects.get(&value.subject) {
                *state
            } else {
                let key = self.keys.key(&value.subject).await?.map(|key| key.id());
                let forgotten = key.is_none() && self.keys.is_forgotten(&value.subject).await?;
                self.subjects.insert(value.subject.clone(), (key, forgotten));
                (key, forgotten)
            };
            match state {
                (Some(key), _) if key == value.key => self.readable += 1,
                // Forgotten, or forgotten and re-admitted (a newer key).
                (Some(_), _) | (None, true) => self.erased += 1,
                (None, false) => {
                    self.missing += 1;
                    findings.push(format!(
                        "{place}: `{}` holds personal data of subject `{}` (key {}), but the key store has no key \
                         for that subject and it was not forgotten: the data is unreadable though nobody forgot it \
                         (keys restored from an older backup, or kept in another database?)",
                        value.path, value.subject, value.key
                    ));
                }
            }
        }
        Ok(findings)
    }
}
