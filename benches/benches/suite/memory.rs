//! Scenario 6, in memory: Orchestrix's in-memory application and store
//! beside a hand-rolled event log (a map of streams to rows of serialized
//! events behind one mutex): what storing and replaying events costs with
//! no framework at all.
//!
//! No peer: cqrs-es's in-memory `MemStore` is documented as a test aid,
//! prints two lines to stdout per command and copies the whole stream on
//! every commit, so a figure for it would say nothing about cqrs-es.

use orchestrix::memory::InMemoryEventStore;
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion},
    Orchestrix, StreamId, Uuid,
};
use orchestrix_benches::ledger::{self, Account, AccountEvent};
use orchestrix_benches::raw_log::RawStore;
use orchestrix_benches::{race, round};

use crate::report::{Entry, Row};
use crate::{allocations_per_op, live_heap_bytes, Options, Size};

const HISTORY: u64 = 10_000;
const RAW: &str = "hand-rolled log";

fn app() -> Orchestrix {
    Orchestrix::builder().event_store(InMemoryEventStore::new()).aggregate::<Account>().build().expect("valid")
}

pub(crate) async fn run(options: &Options) -> Vec<Row> {
    let mut rows = Vec::new();
    if options.runs("6a") {
        rows.push(round_trip(options.size).await);
    }
    if options.runs("6b") {
        rows.push(rehydrate(options.size).await);
    }
    if options.runs("6c") {
        rows.push(heap(options.size).await);
    }
    rows
}

async fn round_trip(size: Size) -> Row {
    let ops = size.pick(20_000, 4_000);
    let rounds = size.pick(15, 5);
    let orchestrix = app();
    let raw = RawStore::default();
    let rates = race(
        rounds,
        ops,
        &mut [
            round(|ops| {
                let app = &orchestrix;
                async move {
                    for _ in 0..ops {
                        let open = ledger::Open { owner: "Ada Lovelace".into() };
                        app.execute(Uuid::now_v7(), open).await.expect("opens");
                    }
                }
            }),
            round(|ops| {
                let raw = &raw;
                async move {
                    for _ in 0..ops {
                        raw.open(format!("Account-{}", Uuid::now_v7()), "Ada Lovelace");
                    }
                }
            }),
        ],
    )
    .await;
    // Allocations per command, on one more (untimed) run of each.
    let ours = allocations_per_op(ops, |ops| {
        let app = &orchestrix;
        async move {
            for _ in 0..ops {
                app.execute(Uuid::now_v7(), ledger::Open { owner: "Ada Lovelace".into() }).await.expect("opens");
            }
        }
    })
    .await;
    let theirs = allocations_per_op(ops, |ops| {
        let raw = &raw;
        async move {
            for _ in 0..ops {
                raw.open(format!("Account-{}", Uuid::now_v7()), "Ada Lovelace");
            }
        }
    })
    .await;
    Row::new(
        "6a",
        "in memory: command round trip, new aggregate",
        "commands/s",
        Entry::new("Orchestrix in-memory", rates[0].per_second),
        Entry::new(RAW, rates[1].per_second),
    )
    .goal("to_baseline", 0.8)
    .method(format!(
        "{rounds} rounds of {ops} commands; heap allocations per command (counting allocator): \
         Orchestrix {ours:.1}, {RAW} {theirs:.1}"
    ))
    .announce()
}

async fn rehydrate(size: Size) -> Row {
    let loads = size.pick(20, 5);
    let rounds = size.pick(9, 3);
    let orchestrix = app();
    let raw = RawStore::default();
    let id = Uuid::now_v7();
    let stream = format!("Account-{id}");
    orchestrix.execute(id, ledger::Open { owner: "Ada Lovelace".into() }).await.expect("opens");
    raw.open(stream.clone(), "Ada Lovelace");
    for version in 1..HISTORY {
        orchestrix.execute(id, ledger::Deposit { amount: version }).await.expect("deposits");
        raw.deposit(stream.clone(), version, version);
    }
    let repository = orchestrix.repository::<Account>();
    let rates = race(
        rounds,
        loads,
        &mut [
            round(|loads| {
                let repository = &repository;
                async move {
                    for _ in 0..loads {
                        let loaded = repository.load(&id).await.expect("loads");
                        assert_eq!(loaded.state.deposits, HISTORY - 1);
                    }
                }
            }),
            round(|loads| {
                let (raw, stream) = (&raw, &stream);
                async move {
                    for _ in 0..loads {
                        assert_eq!(raw.rehydrate(stream).deposits, HISTORY - 1);
                    }
                }
            }),
        ],
    )
    .await;
    #[allow(clippy::cast_precision_loss)]
    let events = |rate: f64| rate * HISTORY as f64;
    // Allocations per rehydrated event, on one more (untimed) load of each.
    #[allow(clippy::cast_precision_loss)]
    let history = HISTORY as f64;
    let ours = allocations_per_op(1, |_| async {
        repository.load(&id).await.expect("loads");
    })
    .await
        / history;
    let theirs = allocations_per_op(1, |_| async {
        raw.rehydrate(&stream);
    })
    .await
        / history;
    Row::new(
        "6b",
        "in memory: rehydrate an aggregate of 10,000 events",
        "events/s",
        Entry::new("Orchestrix repository load", events(rates[0].per_second)),
        Entry::new(RAW, events(rates[1].per_second)),
    )
    .goal("to_baseline", 0.8)
    .method(format!(
        "{rounds} rounds of {loads} loads; heap allocations per event (counting allocator): \
         Orchestrix {ours:.3}, {RAW} {theirs:.3}"
    ))
    .announce()
}

async fn heap(size: Size) -> Row {
    let streams = size.pick(1_000, 200);
    let per_stream = 100;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ours.push(orchestrix_bytes_per_event(streams, per_stream).await);
        theirs.push(raw_bytes_per_event(streams, per_stream));
    }
    Row::new(
        "6c",
        "in memory: heap per stored event",
        "bytes/event",
        Entry::new("InMemoryEventStore", median(ours)),
        Entry::new(RAW, median(theirs)),
    )
    .lower_is_better()
    .method(format!(
        "live heap bytes (counting allocator) after {} one-event appends ({streams} streams of {per_stream}) \
                 minus before, / events; median of 3",
        streams * per_stream
    ))
    .announce()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[allow(clippy::cast_precision_loss)]
fn per_event(before: i128, after: i128, events: u64) -> f64 {
    (after - before) as f64 / events as f64
}

/// Heap bytes per event of an in-memory store holding `streams` streams of
/// `per_stream` events, each appended alone, as commands append them.
async fn orchestrix_bytes_per_event(streams: u64, per_stream: u64) -> f64 {
    let store = InMemoryEventStore::new();
    let before = live_heap_bytes();
    for _ in 0..streams {
        let stream = StreamId::new(ledger::CATEGORY, Uuid::now_v7().to_string()).expect("a valid stream");
        for version in 0..per_stream {
            let event = if version == 0 {
                AccountEvent::Opened { owner: "Ada Lovelace".into() }
            } else {
                AccountEvent::Deposited { amount: version }
            };
            let new = NewEvent::encode(&event, ledger::command_metadata()).expect("encodes");
            let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
            store.append(&stream, expected, vec![new]).await.expect("appends");
        }
    }
    let after = live_heap_bytes();
    let bytes = per_event(before, after, streams * per_stream);
    drop(store);
    bytes
}

fn raw_bytes_per_event(streams: u64, per_stream: u64) -> f64 {
    let raw = RawStore::default();
    let before = live_heap_bytes();
    for _ in 0..streams {
        let stream = format!("Account-{}", Uuid::now_v7());
        raw.open(stream.clone(), "Ada Lovelace");
        for version in 1..per_stream {
            raw.deposit(stream.clone(), version, version);
        }
    }
    let after = live_heap_bytes();
    let bytes = per_event(before, after, streams * per_stream);
    drop(raw);
    bytes
}
