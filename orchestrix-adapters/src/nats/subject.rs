//! Subjects: where each event is published, and which consumer reads it.

use orchestrix::{envelope::RecordedEvent, StoreError, StreamId};

/// The most partitions a [`Subjects`] scheme may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// How events map to JetStream subjects:
/// `<prefix>.<aggregate type>.<event type>.<partition>`.
///
/// The partition is a stable hash of the event's stream modulo the number
/// of partitions, so every event of one stream lands in one partition and
/// a consumer filtered on one partition sees that stream's events in
/// order (ADR 0017). Tokens are escaped so that any aggregate or event type
/// makes a valid subject: ASCII letters, digits, `-` and `_` stay, every
/// other byte of the UTF-8 becomes `%XX`.
///
/// ```
/// use orchestrix_adapters::nats::Subjects;
///
/// let subjects = Subjects::new("orders.events", 4).unwrap();
/// let stream = orchestrix::StreamId::new("Order", "42").unwrap();
/// let subject = subjects.subject(&stream, "OrderPlaced");
/// assert!(subject.starts_with("orders.events.Order.OrderPlaced."));
/// assert_eq!(subjects.escape("Order.v2 *"), "Order%2Ev2%20%2A");
/// assert_eq!(subjects.partition_filter(3), "orders.events.*.*.3");
/// assert!(Subjects::new("bad prefix", 1).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    partitions: u32,
}

impl Subjects {
    /// A scheme under `prefix` (dot-separated tokens of ASCII letters,
    /// digits, `-` and `_`) with `partitions` partitions (1 to
    /// [`MAX_PARTITIONS`]).
    pub fn new(prefix: impl Into<String>, partitions: u32) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        let valid_token =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix.split('.').all(valid_token) {
            return Err(StoreError::InvalidInput(format!(
                "subject prefix `{prefix}` must be dot-separated tokens of ASCII letters, digits, `-` and `_`"
            )));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StoreError::InvalidInput(format!(
                "the number of partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"
            )));
        }
        Ok(Self { prefix, partitions })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The pattern that matches every subject of this scheme: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The partition of a stream: FNV-1a of its name modulo the partitions.
    pub fn partition(&self, stream: &StreamId) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.category().bytes().chain(std::iter::once(b'/')).chain(stream.id().bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        u32::try_from(hash % u64::from(self.partitions)).unwrap_or(0)
    }

    /// The subject of an event of type `event_type` in `stream`.
    pub fn subject(&self, stream: &StreamId, event_type: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            self.prefix,
            self.escape(stream.category()),
            self.escape(event_type),
            self.partition(stream)
        )
    }

    /// The subject of a recorded event.
    pub fn subject_of(&self, event: &RecordedEvent) -> String {
        self.subject(&event.stream, &event.event_type)
    }

    /// The filter of a consumer of one partition: `<prefix>.*.*.<partition>`.
    pub fn partition_filter(&self, partition: u32) -> String {
        format!("{}.*.*.{partition}", self.prefix)
    }

    /// Escapes one subject token (see the type's documentation).
    pub fn escape(&self, token: &str) -> String {
        escape_token(token)
    }
}

/// Escapes a subject token: ASCII letters, digits, `-` and `_` stay, every
/// other byte becomes `%XX`.
pub(crate) fn escape_token(token: &str) -> String {
    crate::percent::encode(token, crate::percent::NATS_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_one_partition_and_every_partition_used() {
        let subjects = Subjects::new("e", 8).unwrap();
        let mut seen = [false; 8];
        for i in 0..200 {
            let stream = StreamId::new("Order", i.to_string()).unwrap();
            let p = subjects.partition(&stream);
            assert_eq!(p, subjects.partition(&stream));
            seen[p as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn escaping_makes_valid_tokens() {
        assert_eq!(escape_token("Ab-_9"), "Ab-_9");
        assert_eq!(escape_token(">"), "%3E");
        assert_eq!(escape_token("é"), "%C3%A9");
        assert_eq!(escape_token("%"), "%25");
        assert!(Subjects::new("a..b", 1).is_err());
        assert!(Subjects::new("a.>", 1).is_err());
        assert!(Subjects::new("a", 0).is_err());
        assert!(Subjects::new("a", MAX_PARTITIONS + 1).is_err());
    }
}
