//! The core's layering, read from the sources: every `crate::<module>`
//! path (grouped imports `crate::{a::X, b::Y}` included) outside comments
//! and `#[cfg(test)] mod tests`, per top-level module of `src/` (a
//! directory module's files count as that module; `lib.rs`, which
//! re-exports everything, and `tests.rs` files are left out).
//!
//! - The whole core is acyclic (ADR 0035): no chain of imports leads a
//!   module back to itself, and modules name items through their defining
//!   module, never through a crate-root re-export (which would hide the
//!   edge).
//! - `personal` (the vocabulary: `PersonalData`, `PersonalField`,
//!   `DataKey`) is a leaf that uses only `error`, and no module below the
//!   runtime reaches up into `crypto` (the store wrapper) for it (ADR 0031).
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules of `crate::...` paths that `file`'s code names; a name that
/// is not a module (`crate::Event`) is kept as it is, so the caller can
/// refuse it.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    uses_in(&text)
}

/// The `crate::` paths of `text`'s code, by their first segment.
fn uses_in(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let code: String =
        code.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue; // `$crate::` (a macro's path: its caller's crate) or `other_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => used.extend(group_heads(group)),
            None => used.extend(head(rest)),
        }
    }
    used
}

/// The first segment of a path.
fn head(path: &str) -> Option<String> {
    let name: String = path.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// The first segments of the entries of a `{...}` group (the text after its
/// opening brace).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut heads, mut entry_start) = (0usize, Vec::new(), true);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => entry_start = true,
            c if entry_start && !c.is_whitespace() => {
                entry_start = false;
                heads.extend(head(&group[at..]));
            }
            _ => {}
        }
    }
    heads
}

/// The `crate::` import graph of `src/`: each top-level module and the
/// modules (or root names) its files name.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let is_test = relative.file_name().is_some_and(|name| name == "tests.rs")
                || relative.components().any(|part| part.as_os_str() == "tests");
            if path.extension().is_none_or(|ext| ext != "rs") || relative == Path::new("lib.rs") || is_test {
                continue;
            }
            let first = relative.components().next().expect("a file").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            let mut used = uses(&path);
            used.remove(&module);
            graph.entry(module).or_default().extend(used);
        }
    }
    graph
}

/// A circle of `graph`, if there is one: a path of modules whose last
/// imports the first.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    /// Depth-first search; `path` is the chain from the root, `done` the
    /// modules whose every descendant was searched.
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(graph, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn the_core_is_acyclic() {
    let graph = import_graph();
    assert!(graph.len() > 20, "the graph misses modules: {:?}", graph.keys());
    assert!(graph["error"].contains("stream"), "the reader misses imports: {:?}", graph["error"]);
    if let Some(circle) = find_circle(&graph) {
        panic!("the core's modules import each other in a circle: {}", circle.join(" -> "));
    }
}

#[test]
fn modules_name_items_through_their_module_not_the_root() {
    for (module, used) in import_graph() {
        let root_names: Vec<_> = used.iter().filter(|name| name.starts_with(char::is_uppercase)).collect();
        assert!(
            root_names.is_empty(),
            "`{module}` names {root_names:?} through the crate root: name the defining module"
        );
    }
}

#[test]
fn the_reader_and_the_circle_finder_see_what_they_must() {
    let text = "use crate::{error::StoreError, stream::{StreamId, ExpectedVersion}};\n\
                // crate::crypto is only mentioned\n\
                fn f() -> crate::query::Query { $crate::app::x(); other_crate::tenant::y() }\n\
                #[cfg(test)]\nmod tests { use crate::saga::X; }";
    let expected = ["error", "query", "stream"].map(str::to_owned);
    assert_eq!(uses_in(text), BTreeSet::from(expected));

    let edges = |pairs: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in pairs {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
        }
        graph
    };
    assert_eq!(find_circle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    let circle = find_circle(&edges(&[("a", "b"), ("b", "c"), ("c", "b")])).expect("b and c import each other");
    assert_eq!(circle, ["b", "c", "b"]);
}

fn source(module: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(format!("{module}.rs"))
}

/// What the files of `module` name: `<module>.rs` and, for a directory
/// module, every file below `<module>/` (so that splitting a module into
/// files keeps it checked).
fn module_uses(module: &str) -> BTreeSet<String> {
    let file = source(module);
    let mut used = if file.exists() { uses(&file) } else { BTreeSet::new() };
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module)];
    let mut files = usize::from(file.exists());
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                used.extend(uses(&path));
                files += 1;
            }
        }
    }
    assert!(files > 0, "module `{module}` has no source file");
    used
}

#[test]
fn personal_is_a_leaf_that_uses_only_error() {
    let used = uses(&source("personal"));
    assert_eq!(used, BTreeSet::from(["error".to_owned()]), "`personal` must stay a leaf");
}

#[test]
fn the_layers_below_the_runtime_never_reach_into_crypto() {
    for module in ["envelope", "error", "event", "query", "store", "stream", "tenant", "memory/key_store"] {
        let used = module_uses(module);
        assert!(!used.contains("crypto"), "`{module}` uses `crate::crypto`: use `crate::personal` instead ({used:?})");
    }
}
