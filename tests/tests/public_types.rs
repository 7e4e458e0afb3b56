//! The rule of ADR 0043, read from the sources: every public enum, and
//! every public struct with a public field, of the published crates is
//! `#[non_exhaustive]`, unless it is one of the deliberately exhaustive
//! types listed here (each with its reason). A new public type that can
//! grow then cannot be published as exhaustive by accident, and adding a
//! field or variant to it stays a minor change.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};

/// The deliberately exhaustive types, and why (ADR 0043).
const EXHAUSTIVE: &[(&str, &str)] = &[
    ("ExpectedVersion", "every adapter must enforce each expectation; a new one must break them"),
    ("Existence", "the three answers to whether an aggregate must exist"),
    ("StepKind", "the two halves of a saga step, hashed into stable step ids"),
    ("Failure", "the runner protocol of projection::delivery"),
    ("DeliveryError", "the runner protocol of projection::delivery"),
    ("Behind", "the runner protocol of projection::delivery"),
    ("Envelope", "a typed event and its record: a pair by definition"),
    ("TraceHeaders", "the two headers of W3C Trace Context"),
    ("CommandDescriptor", "reached through `__private` only, not public API"),
    ("ServiceDescriptor", "reached through `__private` only, not public API"),
];

/// A public type found in the sources.
#[derive(Debug)]
struct Found {
    name: String,
    place: String,
    non_exhaustive: bool,
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// `pub enum`s, and `pub struct`s with a `pub` field, of `text`, with
/// whether the attributes above them say `non_exhaustive`.
fn public_types(text: &str, file: &str) -> Vec<Found> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let (is_enum, rest) = if let Some(rest) = trimmed.strip_prefix("pub enum ") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("pub struct ") {
            (false, rest)
        } else {
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !is_enum && !has_public_field(&lines[at..]) {
            continue;
        }
        let attributes = lines[..at].iter().rev().take_while(|l| {
            let l = l.trim_start();
            l.starts_with("#[") || l.starts_with("//") || l.starts_with(')') || l.starts_with('"')
        });
        let non_exhaustive = attributes.into_iter().any(|l| l.contains("non_exhaustive"));
        found.push(Found { name, place: format!("{file}:{}", at + 1), non_exhaustive });
    }
    found
}

/// Whether the struct starting at `lines[0]` has a `pub` field (named, or
/// of a tuple struct).
fn has_public_field(lines: &[&str]) -> bool {
    let head = lines[0];
    if head.contains('(') {
        return head.contains("(pub ") || head.contains(", pub ");
    }
    if !head.contains('{') || head.trim_end().ends_with(';') {
        return false;
    }
    let mut depth = 0_usize;
    for (at, line) in lines.iter().enumerate() {
        depth = (depth + line.matches('{').count()).saturating_sub(line.matches('}').count());
        let trimmed = line.trim_start();
        if at > 0 && depth == 1 && trimmed.starts_with("pub ") && !trimmed.starts_with("pub(") {
            return true;
        }
        if depth == 0 && line.contains('}') {
            return false;
        }
    }
    false
}

fn scan() -> Vec<Found> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in ["orchestrix", "orchestrix-adapters", "orchestrix-macros"] {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
            found.extend(public_types(&text, &shown));
        }
    }
    found
}

#[test]
fn public_types_that_can_grow_are_non_exhaustive() {
    let found = scan();
    assert!(found.len() > 50, "the scan found only {} public types: is it reading the sources?", found.len());
    let offenders: Vec<String> = found
        .iter()
        .filter(|f| !f.non_exhaustive && !EXHAUSTIVE.iter().any(|(name, _)| *name == f.name))
        .map(|f| format!("{} ({})", f.name, f.place))
        .collect();
    assert!(
        offenders.is_empty(),
        "public types without #[non_exhaustive] (ADR 0043): {offenders:#?}\n\
         add the attribute and a constructor, or list the type in EXHAUSTIVE with the reason"
    );
    let stale: Vec<&str> = EXHAUSTIVE
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !found.iter().any(|f| f.name == *name && !f.non_exhaustive))
        .collect();
    assert!(stale.is_empty(), "listed as exhaustive but not found as an exhaustive public type: {stale:?}");
}

#[test]
fn the_scan_sees_attributes_fields_and_tuple_structs() {
    let text = "\
/// Doc.
#[derive(Debug)]
#[non_exhaustive]
pub struct Grows {
    /// A field.
    pub a: u8,
}

pub struct Closed {
    pub(crate) hidden: u8,
}

#[derive(Debug)]
pub enum Open { A }

pub struct Wrapper(pub String);
";
    let found = public_types(text, "x.rs");
    let seen: Vec<(&str, bool)> = found.iter().map(|f| (f.name.as_str(), f.non_exhaustive)).collect();
    assert_eq!(seen, [("Grows", true), ("Open", false), ("Wrapper", false)]);
}
