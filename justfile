# Thin wrappers over cargo; every recipe is a plain cargo command you can run yourself.

# the README's test command: unit, integration, doc and ui tests
test:
    cargo test --workspace --all-features

# formatting and lints, as CI checks them
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# the compile-error snapshots only; `just ui-overwrite` regenerates them
# (orchestrix-ui-tests-light: the same with the default features only, ADR 0039)
ui:
    cargo test -p orchestrix-ui-tests -p orchestrix-ui-tests-light

ui-overwrite:
    TRYBUILD=overwrite cargo test -p orchestrix-ui-tests -p orchestrix-ui-tests-light

# the benchmark suite (issue 8): every scenario beside the raw database and
# cqrs-es, a table and target/bench/summary.json; `just bench --quick`,
# `just bench --only 1,3`. PostgreSQL scenarios need ORCHESTRIX_PG_URL.
bench *ARGS:
    cargo bench -p orchestrix-benches --bench suite -- {{ARGS}}

# the full suite, then docs/benchmarks.md regenerated from its output (needs ORCHESTRIX_PG_URL)
bench-docs:
    cargo bench -p orchestrix-benches --bench suite -- --docs {{justfile_directory()}}/docs/benchmarks.md

# the micro-benchmarks: macros vs hand-written, projection engine, tracing overhead
bench-micro *ARGS:
    cargo bench -p orchestrix-benches --bench core --bench projection --bench instrumentation -- {{ARGS}}

# export and copy of the `orchestrix` command line on 100k and 1M events,
# beside a raw SELECT and batch appends, with peak memory (needs
# ORCHESTRIX_PG_URL for the PostgreSQL rows); `just bench-cli --sizes 10000`,
# `just bench-cli --docs docs/guide/cli.md` rewrites the table there
bench-cli *ARGS:
    cargo bench -p orchestrix-cli --bench transfer -- {{ARGS}}

# the PostgreSQL benchmark (needs ORCHESTRIX_PG_URL)
bench-pg:
    cargo bench -p orchestrix-adapters --features postgres --bench postgres

# the quick-start example
demo:
    cargo run -p bank

fmt:
    cargo fmt --all

# the console's screenshots in docs/console/ (needs chromium and chromedriver)
console-screenshots:
    ORCHESTRIX_CONSOLE_SCREENSHOTS="{{justfile_directory()}}/docs/console" cargo test -p orchestrix-console --test browser -- --include-ignored

# serve the console on a store: just console sqlite://bank.db
console STORE:
    cargo run -p orchestrix-cli -- --store {{STORE}} console

# the bank example's log in the console: http://127.0.0.1:8080
console-demo:
    cargo run -p bank -- --db target/console-demo.db
    cargo run -p orchestrix-cli -- --store sqlite://target/console-demo.db console

# everything CI runs
ci:
    bash .ci/run

# the smallest useful build's crates and cold build time, beside cqrs-es's, in one run
build-weight:
    bash scripts/build-weight.sh

# breaking changes of the public API against the newest v* release tag (or `just semver --baseline-rev REV`)
semver *ARGS:
    bash scripts/semver-check.sh {{ARGS}}

# the fault suite (issue 23), long version, then its figures into docs/guide/operations.md
faults:
    ORCHESTRIX_FAULTS=full cargo test -p orchestrix-faults --release -- --test-threads=1 --nocapture
    cargo run -p orchestrix-faults --bin faults-report -- {{justfile_directory()}}/docs/guide/operations.md
