//! The log the test server keeps: stored events with their hash chain,
//! registered schemas, and the rules for subjects and types.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

#[derive(Debug, Serialize, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) specversion: &'static str,
    pub(crate) id: String,
    pub(crate) time: String,
    pub(crate) source: String,
    pub(crate) subject: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) datacontenttype: &'static str,
    pub(crate) data: Box<RawValue>,
    pub(crate) hash: String,
    pub(crate) predecessorhash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tracestate: Option<String>,
    pub(crate) signature: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<Arc<StoredEvent>>,
    /// Each event as EventQL sees it, made once when it is written (every
    /// `isEventQlQueryTrue` precondition runs over all of them).
    rows: Vec<serde_json::Value>,
    /// Per subject, the indexes of its events.
    pub(crate) subjects: HashMap<String, Vec<usize>>,
    /// Per event type, its registered schema.
    pub(crate) schemas: HashMap<String, Schema>,
}

/// A registered schema and its compiled validator.
pub(crate) struct Schema {
    pub(crate) json: serde_json::Value,
    pub(crate) validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("json", &self.json).finish_non_exhaustive()
    }
}

impl Schema {
    /// Why `data` does not match, if it does not.
    pub(crate) fn violation(&self, data: &RawValue) -> Option<String> {
        let value: serde_json::Value = match serde_json::from_str(data.get()) {
            Ok(value) => value,
            Err(e) => return Some(e.to_string()),
        };
        self.validator.validate(&value).err().map(|e| format!("{e} at {}", e.instance_path))
    }
}

impl Log {
    /// The events as EventQL sees them (the same JSON as served).
    pub(crate) fn eventql_rows(&self) -> impl Iterator<Item = &serde_json::Value> + '_ {
        self.rows.iter()
    }

    /// Appends a written event (its subject's index and its EventQL row with it).
    pub(crate) fn push(&mut self, event: Arc<StoredEvent>) {
        let index = self.events.len();
        self.subjects.entry(event.subject.clone()).or_default().push(index);
        self.rows.push(serde_json::to_value(&*event).expect("events serialize"));
        self.events.push(event);
    }
}

/// The time as Go's RFC 3339 with nanoseconds writes it (trailing zeros of
/// the fraction trimmed), as the hash covers it.
pub(crate) fn rfc3339_trimmed(time: DateTime<Utc>) -> String {
    let nanos = format!("{:09}", time.timestamp_subsec_nanos());
    let fraction = nanos.trim_end_matches('0');
    let seconds = time.format("%Y-%m-%dT%H:%M:%S");
    if fraction.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{fraction}Z")
    }
}

const HASH_PREFIX: &str = "esdb:hash:v2:";

/// The hash of an event as the server that wrote it computes it: version 2
/// since EventSourcingDB 1.3 (which offers API v2), version 1 before (a
/// server that offers API v1 only, as 1.2 does).
pub(crate) fn event_hash(event: &StoredEvent, version2: bool) -> String {
    if version2 {
        event_hash_v2(event)
    } else {
        event_hash_v1(event)
    }
}

/// The event hash of version 1, as EventSourcingDB 1.2 writes it and the
/// official clients verify it: no prefix; SHA-256 (hex) over the SHA-256
/// (hex) of the metadata fields joined by `|` followed by the SHA-256 (hex)
/// of `data` as stored; the trace fields are not covered.
fn event_hash_v1(event: &StoredEvent) -> String {
    let metadata = [
        event.specversion,
        &event.id,
        &event.predecessorhash,
        &event.time,
        &event.source,
        &event.subject,
        &event.event_type,
        event.datacontenttype,
    ]
    .join("|");
    let both =
        format!("{}{}", hex(&Sha256::digest(metadata.as_bytes())), hex(&Sha256::digest(event.data.get().as_bytes())));
    hex(&Sha256::digest(both.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

/// The event hash of version 2, as EventSourcingDB writes it since 1.3 and
/// the official clients verify it: SHA-256 over the prefix and every field
/// on a line of its own (a missing trace field as `-`, `data` exactly as
/// stored), hex-encoded behind the prefix.
fn event_hash_v2(event: &StoredEvent) -> String {
    let input = [
        HASH_PREFIX,
        event.specversion,
        &event.id,
        &event.predecessorhash,
        &event.time,
        &event.source,
        &event.subject,
        &event.event_type,
        event.datacontenttype,
        event.traceparent.as_deref().unwrap_or("-"),
        event.tracestate.as_deref().unwrap_or("-"),
        event.data.get(),
    ]
    .join("\n");
    format!("{HASH_PREFIX}{}", hex(&Sha256::digest(input.as_bytes())))
}

/// Whether `subject` is `base`, or (with `recursive`) below it.
pub(crate) fn matches_subject(base: &str, subject: &str, recursive: bool) -> bool {
    subject == base
        || (recursive && (base == "/" || subject.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))))
}

pub(crate) fn valid_subject(subject: &str) -> bool {
    subject.starts_with('/') && !subject.contains("//") && (subject == "/" || !subject.ends_with('/'))
}

pub(crate) fn valid_type(event_type: &str) -> bool {
    let parts: Vec<&str> = event_type.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// The last event of `subject` (with `recursive`, of it and every subject
/// below it).
pub(crate) fn latest_event<'a>(log: &'a Log, subject: &str, recursive: bool) -> Option<&'a StoredEvent> {
    if recursive {
        log.events.iter().rev().find(|e| matches_subject(subject, &e.subject, true)).map(|e| &**e)
    } else {
        log.subjects.get(subject).and_then(|s| s.last()).map(|&i| &*log.events[i])
    }
}
