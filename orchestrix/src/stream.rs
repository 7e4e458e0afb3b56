//! Stream identity: which aggregate instance a run of events belongs to,
//! and what an append expects of its version.
//!
//! The bottom layer of the core (ADR 0035): it imports no other module of
//! the crate, so `error` can name streams and versions in its variants.
//! Its own refusal, [`InvalidStreamId`], converts into a
//! [`StoreError::InvalidInput`](crate::error::StoreError::InvalidInput).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The longest aggregate type name or id a stream accepts, in bytes.
///
/// Adapters index stream names; 10 kB is far past any sensible id and keeps
/// a hostile input from turning into a multi-megabyte index key.
pub const MAX_STREAM_PART_LEN: usize = 10 * 1024;

/// The identity of one event stream: an aggregate type (the *category*) and
/// the id of one aggregate of that type.
///
/// Cloning is cheap (two reference counts).
///
/// ```
/// use orchestrix::StreamId;
///
/// let stream = StreamId::new("Account", "42").unwrap();
/// assert_eq!(stream.to_string(), "Account/42");
/// assert!(StreamId::new("", "42").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "StreamIdParts")]
pub struct StreamId {
    category: Arc<str>,
    id: Arc<str>,
}

impl StreamId {
    /// Builds a stream id, refusing empty parts, parts longer than
    /// [`MAX_STREAM_PART_LEN`], NUL characters and a `/` in the category.
    ///
    /// The refusal converts into a [`StoreError::InvalidInput`](crate::error::StoreError::InvalidInput)
    /// (and into an [`Error`](crate::error::Error)) with `?`.
    pub fn new(category: impl Into<Arc<str>>, id: impl Into<Arc<str>>) -> Result<Self, InvalidStreamId> {
        let (category, id) = (category.into(), id.into());
        validate_part("aggregate type", &category)?;
        validate_part("aggregate id", &id)?;
        if category.contains('/') {
            return Err(InvalidStreamId(format!(
                "aggregate type `{}` contains `/`, which separates type and id in stream names",
                truncate_for_message(&category)
            )));
        }
        Ok(Self { category, id })
    }

    /// The aggregate type, for example `Account`.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The aggregate id within its type.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl StreamId {
    /// [`StreamId::new`] with an id given by its `Display` form, written
    /// without an intermediate `String` when it is short (a UUID, a
    /// number): the aggregate load and save paths build one per call.
    pub(crate) fn from_display(category: &Arc<str>, id: &dyn fmt::Display) -> Result<Self, InvalidStreamId> {
        let mut text = ShortText::default();
        fmt::write(&mut text, format_args!("{id}"))
            .map_err(|_| InvalidStreamId("the aggregate id could not be formatted".to_owned()))?;
        Self::new(Arc::clone(category), text.into_arc())
    }
}

/// Text written through [`fmt::Write`]: on the stack up to 64 bytes, in a
/// `String` past that.
struct ShortText {
    bytes: [u8; 64],
    len: usize,
    spilled: Option<String>,
}

impl Default for ShortText {
    fn default() -> Self {
        Self { bytes: [0; 64], len: 0, spilled: None }
    }
}

impl ShortText {
    fn into_arc(self) -> Arc<str> {
        match self.spilled {
            Some(text) => Arc::from(text),
            // Only whole `&str`s are copied in, so the bytes are UTF-8.
            None => Arc::from(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()),
        }
    }
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if let Some(spilled) = &mut self.spilled {
            spilled.push_str(text);
        } else if let Some(room) = self.bytes.get_mut(self.len..self.len + text.len()) {
            room.copy_from_slice(text.as_bytes());
            self.len += text.len();
        } else {
            let mut spilled = String::with_capacity(self.len + text.len());
            spilled.push_str(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default());
            spilled.push_str(text);
            self.spilled = Some(spilled);
        }
        Ok(())
    }
}

/// Why [`StreamId::new`] refused its parts: an empty part, a part longer
/// than [`MAX_STREAM_PART_LEN`], a NUL character or a `/` in the category.
/// The message names the part and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidStreamId(pub String);

/// What an append expects of the stream's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version; `Exact(0)` is the
    /// same as [`ExpectedVersion::NoStream`].
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` satisfies this
    /// expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match (self, actual) {
            (Self::Any, _) | (Self::NoStream | Self::Exact(0), None) => true,
            (Self::Exact(v), Some(a)) => v == a,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The unvalidated form a [`StreamId`] is deserialized from.
#[derive(Deserialize)]
struct StreamIdParts {
    category: String,
    id: String,
}

impl TryFrom<StreamIdParts> for StreamId {
    type Error = InvalidStreamId;

    fn try_from(parts: StreamIdParts) -> Result<Self, InvalidStreamId> {
        Self::new(parts.category, parts.id)
    }
}

fn validate_part(what: &str, value: &str) -> Result<(), InvalidStreamId> {
    if value.is_empty() {
        return Err(InvalidStreamId(format!("{what} must not be empty")));
    }
    if value.len() > MAX_STREAM_PART_LEN {
        return Err(InvalidStreamId(format!(
            "{what} is {} bytes long; the limit is {MAX_STREAM_PART_LEN}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(InvalidStreamId(format!(
            "{what} `{}` contains a NUL character",
            truncate_for_message(value).replace('\0', "\\0")
        )));
    }
    Ok(())
}

/// Shortens a user-supplied string so that an error message stays readable.
pub(crate) fn truncate_for_message(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.category, self.id)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hostile_but_valid_strings() {
        let id = "'; DROP TABLE events; -- \u{1F980} \"quoted\"";
        let stream = StreamId::new("Account", id).unwrap();
        assert_eq!(stream.id(), id);
    }

    #[test]
    fn refuses_nul_empty_slash_and_oversized_parts() {
        for (category, id) in [("A", "x\0y"), ("A", ""), ("A/B", "1")] {
            let refused = StreamId::new(category, id).unwrap_err();
            let store_error = crate::error::StoreError::from(refused.clone());
            assert!(matches!(store_error, crate::error::StoreError::InvalidInput(ref text) if *text == refused.0));
        }
        let long = "x".repeat(MAX_STREAM_PART_LEN + 1);
        let err = StreamId::new("A", long).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(StreamId::new("A", "x".repeat(MAX_STREAM_PART_LEN)).is_ok());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(100);
        let t = truncate_for_message(&s);
        assert!(t.ends_with('…'));
        assert!(t.len() < s.len());
    }
}
