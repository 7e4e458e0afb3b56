//! The core's layering around personal data (ADR 0031): `personal` (the
//! vocabulary: `PersonalData`, `PersonalField`, `DataKey`) is a leaf that
//! uses only `error`, and no module below the runtime reaches up into
//! `crypto` (the store wrapper) for it. Read from the sources: every
//! `crate::<module>` path outside comments and `#[cfg(test)]` modules.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

/// The modules of `crate::...` paths that `file`'s code names.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let mut used = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (at, _) in line.match_indices("crate::") {
            let name: String =
                line[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

fn source(module: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(format!("{module}.rs"))
}

#[test]
fn personal_is_a_leaf_that_uses_only_error() {
    let used = uses(&source("personal"));
    assert_eq!(used, BTreeSet::from(["error".to_owned()]), "`personal` must stay a leaf");
}

#[test]
fn the_layers_below_the_runtime_never_reach_into_crypto() {
    for module in ["envelope", "error", "event", "query", "store", "stream", "tenant", "memory/key_store"] {
        let used = uses(&source(module));
        assert!(!used.contains("crypto"), "`{module}` uses `crate::crypto`: use `crate::personal` instead ({used:?})");
    }
}
