//! The digest that verifies an export, import or copy (ADR 0041): the
//! count of events and the sum (lane-wise, wrapping) of each event's
//! SHA-256 over its id, stream, version, type, schema version and data as
//! canonical JSON. A sum does not depend on the order events are read in,
//! so the source's global log and the target's streams give the same
//! digest; positions and metadata are left out on purpose.

use orchestrix::envelope::RecordedEvent;
use sha2::{Digest as _, Sha256};

/// Count and digest of a set of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) events: u64,
    sum: [u64; 4],
}

impl Digest {
    /// Adds one event.
    pub(crate) fn add(&mut self, event: &RecordedEvent) {
        let mut hash = Sha256::new();
        hash.update(event.id.as_bytes());
        for part in [event.stream.category(), event.stream.id(), event.event_type.as_str()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(event.stream_version.to_le_bytes());
        hash.update(event.schema_version.to_le_bytes());
        let mut canonical = String::new();
        match serde_json::from_str::<serde_json::Value>(event.data.get()) {
            Ok(value) => write_canonical(&value, &mut canonical),
            Err(_) => canonical.push_str(event.data.get()),
        }
        hash.update(canonical.as_bytes());
        let bytes = hash.finalize();
        for (lane, chunk) in self.sum.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
        self.events += 1;
    }

    /// The digest as 64 hex digits.
    pub(crate) fn hex(&self) -> String {
        use std::fmt::Write as _;
        self.sum.iter().fold(String::with_capacity(64), |mut text, lane| {
            let _ = write!(text, "{lane:016x}");
            text
        })
    }
}

/// JSON with object keys sorted, no whitespace, and integral numbers
/// written as integers (a store may respell `1e2` as `100`).
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(number) => match number.as_f64() {
            #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
            Some(f) if number.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => out.push_str(&(f as i64).to_string()),
            _ => out.push_str(&number.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = String::new();
        write_canonical(&serde_json::from_str(text).unwrap(), &mut out);
        out
    }

    #[test]
    fn equal_values_have_one_canonical_text() {
        assert_eq!(canonical(r#"{ "b": 1e2, "a": [1, {"d":2,"c":"x"}] }"#), r#"{"a":[1,{"c":"x","d":2}],"b":100}"#);
        assert_eq!(canonical(r#"{"a":1.5}"#), r#"{"a":1.5}"#);
    }
}
