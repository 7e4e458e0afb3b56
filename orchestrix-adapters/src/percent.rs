//! Percent-encoding, one home for the adapters that need it (through the
//! `percent-encoding` crate): EventSourcingDB subject segments, NATS subject
//! tokens and CloudEvent header values each keep a set of bytes as they are
//! and encode every other byte as `%XX`.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// EventSourcingDB subject segments keep `A-Z a-z 0-9 - _ . ~` (RFC 3986's
/// unreserved characters), so no `/` of an id can add a segment.
#[cfg(feature = "eventsourcingdb")]
pub(crate) const SUBJECT_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// NATS subject tokens keep `A-Z a-z 0-9 - _` (no `.`, `*`, `>` or space).
#[cfg(feature = "nats")]
pub(crate) const NATS_TOKEN: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// CloudEvent header values (HTTP binding) keep printable ASCII except
/// space, `"` and `%`.
#[cfg(feature = "nats")]
pub(crate) const HEADER_VALUE: &AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

/// `value` with every byte outside the kept set (and every non-ASCII byte)
/// as `%XX`, upper-case hex.
pub(crate) fn encode(value: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(value, set).to_string()
}

/// Reverses [`encode`] strictly: `None` unless `value` is exactly what
/// [`encode`] makes of some text (so a malformed escape, a lower-case or
/// needless escape, a byte that `set` encodes standing unencoded, or bytes
/// that are not UTF-8 are all refused).
// Read by the EventSourcingDB adapter only (a build with `nats` alone warned).
#[cfg_attr(not(feature = "eventsourcingdb"), allow(dead_code))]
pub(crate) fn decode(value: &str, set: &'static AsciiSet) -> Option<String> {
    let text = String::from_utf8(decode_escapes(value)?).ok()?;
    (encode(&text, set) == value).then_some(text)
}

/// The bytes of `value` with its escapes decoded, other bytes as they are;
/// `None` if a `%` is not followed by two hex digits.
pub(crate) fn decode_escapes(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !bytes.get(i + 1..i + 3)?.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(percent_decode_str(value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-');

    #[test]
    fn round_trips_and_refuses_malformed_escapes() {
        for value in ["plain-1", "a/b c%d", "é🦀", "%", ""] {
            let encoded = encode(value, SET);
            assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'%'), "{encoded}");
            assert_eq!(decode(&encoded, SET).as_deref(), Some(value));
        }
        assert_eq!(encode("é", SET), "%C3%A9");
        for bad in ["%", "%4", "%zz", "a b", "%FF", "é", "%c3%a9", "%41"] {
            assert_eq!(decode(bad, SET), None, "{bad}");
        }
    }
}
