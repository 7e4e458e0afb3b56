#!/usr/bin/env bash
# Catches accidental breaking changes: compares the public API of the
# published crates (orchestrix, orchestrix-adapters; every feature on) with
# a baseline release using cargo-semver-checks, and fails when the change
# needs a bigger version bump than Cargo.toml's version makes. Before 1.0 a
# minor bump (0.1 -> 0.2) may break, a patch bump (0.1.0 -> 0.1.1) may not
# (CONTRIBUTING.md, "Compatibility policy"; ADR 0043).
#
#   scripts/semver-check.sh                      # against the newest v* tag
#   scripts/semver-check.sh --baseline-rev REV   # against any git revision
#   scripts/semver-check.sh --install            # install the tool if missing
#
# Without a release tag there is nothing to compare against: the script
# says so and succeeds (the check starts with the first release, v0.1.0).
# orchestrix-macros is a proc-macro crate, whose API cargo-semver-checks
# cannot see; what the macros generate is covered by the ui-tests.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=""
install=false
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline-rev) baseline="${2:?--baseline-rev needs a revision}"; shift 2 ;;
        --install) install=true; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "semver-check: unknown argument \`$1\` (try --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$baseline" ]; then
    baseline="$(git tag --list 'v[0-9]*' --sort=-version:refname | head -n 1)"
    if [ -z "$baseline" ]; then
        echo "semver-check: no release tag (v*) yet, so there is no published API to compare with;"
        echo "semver-check: skipped. It runs from the first release on (git tag v0.1.0)."
        exit 0
    fi
fi
git rev-parse --verify --quiet "$baseline^{commit}" >/dev/null || {
    echo "semver-check: \`$baseline\` is not a revision of this repository" >&2
    exit 2
}

if ! cargo semver-checks --version >/dev/null 2>&1; then
    if [ "$install" = true ]; then
        echo "semver-check: installing cargo-semver-checks (cargo install --locked; several minutes on 2 cores)"
        started=$(date +%s)
        cargo install cargo-semver-checks --locked
        echo "semver-check: installed in $(( $(date +%s) - started )) s"
    else
        echo "semver-check: cargo-semver-checks is missing; install it with" >&2
        echo "    cargo install cargo-semver-checks --locked" >&2
        echo "or run this script with --install" >&2
        exit 2
    fi
fi

echo "semver-check: $(cargo semver-checks --version) against $baseline ($(git rev-parse --short "$baseline^{commit}"))"
cargo semver-checks check-release \
    --package orchestrix --package orchestrix-adapters \
    --all-features \
    --baseline-rev "$baseline"
