#!/usr/bin/env bash
# The weight of the smallest useful build, side by side with a peer's, in one
# run: how many crates it compiles and how long a cold debug build takes.
#
#   just build-weight            # or: bash scripts/build-weight.sh
#
# Two throwaway crates are made in a temporary folder: one that uses
# `orchestrix` with its default features (the macros and the in-memory
# store: an event, an aggregate, a command handler), and one that uses
# cqrs-es 0.5.0 (an aggregate with its in-memory store, in its 0.5 API:
# `const TYPE`, `handle` writing to an `EventSink`). Each is built from
# cold with a target directory of its own, one after the other, so both
# see the same machine; the ratio is what to read, not the seconds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/minimal/src" "$work/peer/src"
cat > "$work/minimal/Cargo.toml" <<TOML
[package]
name = "weight-orchestrix"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
orchestrix = { path = "$root/orchestrix" }
tokio = { version = "1", features = ["rt", "macros"] }
[workspace]
TOML
cat > "$work/minimal/src/main.rs" <<'RS'
use orchestrix::prelude::*;

#[event]
#[derive(Debug, Clone)]
pub enum CounterEvent { Incremented { by: u32 } }

#[derive(Debug)]
pub struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") }
}
impl std::error::Error for Never {}

#[aggregate(event = CounterEvent, error = Never)]
#[derive(Debug, Default)]
pub struct Counter { value: u32 }

impl Counter {
    fn apply(&mut self, event: &CounterEvent) {
        match event { CounterEvent::Incremented { by } => self.value += by }
    }
}

#[derive(Debug, Clone)]
pub struct Increment { by: u32 }

#[command_handler]
impl Counter {
    #[command(requires = any)]
    fn increment(&self, cmd: Increment) -> Result<CounterEvent, Never> {
        Ok(CounterEvent::Incremented { by: cmd.by })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let app = Orchestrix::builder().in_memory().aggregate::<Counter>().build().unwrap();
    let id = orchestrix::Uuid::now_v7();
    app.execute(id, Increment { by: 2 }).await.unwrap();
}
RS
cat > "$work/peer/Cargo.toml" <<'TOML'
[package]
name = "weight-cqrs-es"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
cqrs-es = "=0.5.0"
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt", "macros"] }
[workspace]
TOML
cat > "$work/peer/src/main.rs" <<'RS'
use cqrs_es::event_sink::EventSink;
use cqrs_es::mem_store::MemStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent { Incremented { by: u32 } }
impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String { "Incremented".into() }
    fn event_version(&self) -> String { "1".into() }
}

#[derive(Debug)]
pub struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") }
}
impl std::error::Error for Never {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter { value: u32 }

#[derive(Debug, Deserialize)]
pub struct Increment { by: u32 }

impl Aggregate for Counter {
    const TYPE: &'static str = "Counter";
    type Command = Increment;
    type Event = CounterEvent;
    type Error = Never;
    type Services = ();
    async fn handle(&mut self, cmd: Increment, (): &(), sink: &EventSink<Self>) -> Result<(), Never> {
        sink.write(CounterEvent::Incremented { by: cmd.by }, self).await;
        Ok(())
    }
    fn apply(&mut self, event: CounterEvent) {
        match event { CounterEvent::Incremented { by } => self.value += by }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = MemStore::<Counter>::default();
    let cqrs = CqrsFramework::new(store, vec![], ());
    cqrs.execute("c-1", Increment { by: 2 }).await.unwrap();
}
RS

crates() {
    # Every package in the build graph (normal and build dependencies), the crate itself excluded.
    (cd "$1" && cargo tree -e normal,build --prefix none 2>/dev/null) \
        | sed 's/ (\*)//; s/ (proc-macro)//' | awk '{print $1" "$2}' | sort -u | grep -vc '^weight-'
}
cold_build() {
    local dir="$1"
    rm -rf "$dir/target"
    local start end
    start=$(date +%s.%N)
    # A build that fails must stop the script: its time would be a lie.
    if ! (cd "$dir" && CARGO_TARGET_DIR="$dir/target" CARGO_INCREMENTAL=0 cargo build -q) >&2; then
        echo "build-weight: the build in $dir failed; no figures" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

# Fetch first, so that no download is timed.
(cd "$work/minimal" && cargo fetch -q) && (cd "$work/peer" && cargo fetch -q)
mine_crates=$(crates "$work/minimal")
peer_crates=$(crates "$work/peer")
mine_time=$(cold_build "$work/minimal")
peer_time=$(cold_build "$work/peer")

printf '\n%-34s %8s %14s\n' "minimal build" "crates" "cold build (s)"
printf '%-34s %8d %14.1f\n' "orchestrix (default features)" "$mine_crates" "$mine_time"
printf '%-34s %8d %14.1f\n' "cqrs-es 0.5 (the peer)" "$peer_crates" "$peer_time"
awk -v mc="$mine_crates" -v pc="$peer_crates" -v mt="$mine_time" -v pt="$peer_time" \
    'BEGIN { printf "ratio (orchestrix / cqrs-es): crates %.2f, cold build time %.2f\n", mc / pc, mt / pt }'
printf 'goal: at most 35 crates and at most 1.5 x the peer'"'"'s cold build time\n'

# The adapters with every feature, as a user's build compiles them: no
# aws-lc-rs (a C build) where rustls's ring provider does (ADR 0040).
tree=$(cd "$root" && cargo tree -p orchestrix-adapters -e normal,build --prefix none -i aws-lc-rs \
    --features postgres-tls,sqlite,eventsourcingdb-tls,nats-relay 2>&1) && ok=1 || ok=0
if printf '%s\n' "$tree" | grep -q 'nothing to print\|did not match any packages'; then
    printf 'aws-lc-rs in orchestrix-adapters (every feature): none\n'
elif [ "$ok" = 1 ]; then
    printf 'aws-lc-rs in orchestrix-adapters (every feature): %s\n' "$(printf '%s\n' "$tree" | head -1)"
else
    printf 'aws-lc-rs in orchestrix-adapters: cargo tree failed:\n%s\n' "$tree"
fi
