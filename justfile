# Thin wrappers over cargo; every recipe is a plain cargo command you can run yourself.

# the README's test command: unit, integration, doc and ui tests
test:
    cargo test --workspace --all-features

# formatting and lints, as CI checks them
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# the compile-error snapshots only; `just ui-overwrite` regenerates them
ui:
    cargo test -p orchestrix-ui-tests

ui-overwrite:
    TRYBUILD=overwrite cargo test -p orchestrix-ui-tests

# benchmarks, each beside its baseline, printing the ratio
bench:
    cargo bench -p orchestrix-benches

# the PostgreSQL benchmark (needs ORCHESTRIX_PG_URL)
bench-pg:
    cargo bench -p orchestrix-adapters --features postgres --bench postgres

# the quick-start example
demo:
    cargo run -p bank

fmt:
    cargo fmt --all

# everything CI runs
ci:
    bash .ci/run
