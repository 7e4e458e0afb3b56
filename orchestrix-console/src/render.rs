//! How stored things are shown: event data as pretty JSON with personal
//! data masked, metadata with secrets masked, event rows, error texts
//! without credentials, and links.

use std::fmt::Write as _;

use maud::{html, Markup};
use orchestrix::envelope::RecordedEvent;
use serde_json::Value;

use crate::config::Console;
use crate::scope::Mount;

/// The key of an encrypted personal value's stored form (ADR 0020).
const ENCRYPTED: &str = "$orchestrix.encrypted";

/// Percent-encodes `text` for a path segment or a query value.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The link to a stream's page.
pub(crate) fn stream_href(mount: &Mount, stream: &str) -> String {
    mount.href(&format!("/stream?id={}", encode_component(stream)))
}

/// The link to an event's page.
pub(crate) fn event_href(mount: &Mount, id: uuid::Uuid) -> String {
    mount.href(&format!("/events/{id}"))
}

/// Whether a metadata header's value may be a secret: then it is masked.
fn secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["authorization", "token", "secret", "password", "cookie", "api-key", "apikey", "credential"]
        .iter()
        .any(|word| name.contains(word))
}

/// `text` without the credentials of any URL in it
/// (`postgres://user:pass@host` becomes `postgres://***@host`).
pub(crate) fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(credentials_end) => {
                out.push_str("***");
                rest = &after[credentials_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The event's data as pretty JSON: encrypted values as a placeholder
/// naming their subject (never the ciphertext), declared personal fields
/// hidden unless the console reveals them.
pub(crate) fn data_json(console: &Console, event: &RecordedEvent) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(event.data.get()) else {
        return event.data.get().to_owned();
    };
    mask(console, &event.event_type, &mut value, Shown::Placeholder);
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| event.data.get().to_owned())
}

/// How [`mask`] shows what it hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// A text saying what is hidden: for a page.
    Placeholder,
    /// `null`, the erased marker of ADR 0020 (personal fields are
    /// `Option`s): for data that is decoded into the application's types.
    Erased,
}

/// Hides in `value` (the data of an event of `event_type`) the encrypted
/// values, and the declared personal fields unless the console reveals
/// them.
pub(crate) fn mask(console: &Console, event_type: &str, value: &mut Value, shown: Shown) {
    mask_encrypted(value, shown);
    if console.reveal_personal {
        return;
    }
    let Value::Object(fields) = value else { return };
    let declared = console.personal.iter().flat_map(|data| data.iter()).filter(|data| data.event_type == event_type);
    for data in declared {
        for field in data.fields {
            if let Some(value) = fields.get_mut(field.name) {
                if !value.is_null() && !value.as_str().is_some_and(|text| text.starts_with("🔒")) {
                    *value = match shown {
                        Shown::Placeholder => Value::String("‹personal data hidden›".into()),
                        Shown::Erased => Value::Null,
                    };
                }
            }
        }
    }
}

fn mask_encrypted(value: &mut Value, shown: Shown) {
    match value {
        Value::Object(fields) => {
            if let Some(sealed) = fields.get(ENCRYPTED) {
                *value = match shown {
                    Shown::Placeholder => {
                        let subject = sealed.get("subject").map_or_else(String::new, |subject| match subject {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        });
                        Value::String(format!("🔒 encrypted (subject {subject})"))
                    }
                    Shown::Erased => Value::Null,
                };
                return;
            }
            fields.values_mut().for_each(|value| mask_encrypted(value, shown));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| mask_encrypted(value, shown)),
        _ => {}
    }
}

/// The metadata of an event as a definition list, secrets masked.
pub(crate) fn metadata(mount: &Mount, event: &RecordedEvent) -> Markup {
    let meta = &event.metadata;
    html! {
        dl.metadata {
            dt { "id" } dd { code { (event.id) } }
            dt { "stream" } dd { a href=(stream_href(mount, &event.stream.to_string())) { (event.stream.to_string()) } " @ " (event.stream_version) }
            dt { "position" } dd { (event.global_position) }
            dt { "type" } dd { (event.event_type) " v" (event.schema_version) }
            dt { "recorded" } dd { (event.recorded_at.to_rfc3339()) }
            @if let Some(id) = meta.correlation_id { dt { "correlation" } dd { code { (id) } } }
            @if let Some(id) = meta.causation_id { dt { "causation" } dd { a href=(event_href(mount, id)) { code { (id) } } } }
            @if let Some(tenant) = event.tenant() { dt { "tenant" } dd { (tenant) } }
            @if let Some(trace) = &meta.traceparent { dt { "traceparent" } dd { code { (trace) } } }
            @if !meta.tags.is_empty() { dt { "tags" } dd { (meta.tags.join(", ")) } }
            @for (name, value) in &meta.headers {
                dt { (name) }
                dd { @if secret_header(name) { "‹hidden›" } @else { (value) } }
            }
        }
    }
}

/// A table of events, one row each, linking to their pages.
pub(crate) fn event_table(mount: &Mount, events: &[std::sync::Arc<RecordedEvent>], show_stream: bool) -> Markup {
    html! {
        div.scroll {
            table.events {
                thead { tr {
                    th { "pos" }
                    @if show_stream { th { "stream" } }
                    th { "ver" } th { "type" } th { "recorded" }
                } }
                tbody {
                    @for event in events {
                        tr {
                            td { a href=(event_href(mount, event.id)) { (event.global_position) } }
                            @if show_stream { td { a href=(stream_href(mount, &event.stream.to_string())) { (event.stream.to_string()) } } }
                            td { (event.stream_version) }
                            td { a href=(event_href(mount, event.id)) { (event.event_type) } }
                            td { time { (event.recorded_at.format("%Y-%m-%d %H:%M:%S")) } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_cut() {
        assert_eq!(
            without_credentials("cannot reach postgres://admin:hunter2@db:5432/x now"),
            "cannot reach postgres://***@db:5432/x now"
        );
        assert_eq!(without_credentials("http://host/path a@b"), "http://host/path a@b");
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("Account/4 2?&"), "Account%2F4%202%3F%26");
    }

    #[test]
    fn encrypted_values_show_their_subject_only() {
        let mut value: Value = serde_json::json!({"name": {"$orchestrix.encrypted": {"key": "k", "subject": "c-1", "nonce": "n", "data": "CIPHER"}}, "n": 1});
        mask_encrypted(&mut value, Shown::Placeholder);
        assert_eq!(value["name"], "🔒 encrypted (subject c-1)");
        assert!(!value.to_string().contains("CIPHER"));
    }
}
