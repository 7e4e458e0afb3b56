//! Multi-stream appends through the application (`Decision`,
//! `append_many`, `decide`): an aggregate written only by decisions, a
//! stream named twice, empty and guard-only decisions, a conflict in one
//! part, a bad id, the command options on every event, retries answered by
//! the command id (ADR 0027), lost races (ADR 0030), a `decide` that loses
//! a race once and then wins, and tenants (ADR 0019).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::query::{Query, QueryItem};
use orchestrix::tenant::TenantStore;
use orchestrix::{
    app::CommandOptions,
    decision::Decision,
    envelope::Envelope,
    retry::RetryPolicy,
    store::{EventFilter, EventStore, ExpectedVersion},
    StoreError, Uuid,
};

/// What happens to a bin.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum BinEvent {
    /// Something was put in.
    Filled {
        /// The bin.
        #[event(tag = "bin")]
        bin: String,
        /// How much.
        amount: u32,
    },
}

/// Never raised.
#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// A bin, written only through decisions.
#[aggregate(event = BinEvent, error = Refused, id = String)]
#[derive(Debug, Default)]
pub struct Bin {
    level: u32,
}

impl Bin {
    fn apply(&mut self, event: &BinEvent) {
        let BinEvent::Filled { amount, .. } = event;
        self.level += amount;
    }
}

fn filled(bin: &str, amount: u32) -> BinEvent {
    BinEvent::Filled { bin: bin.to_owned(), amount }
}

fn fill(bin: &str, expected: ExpectedVersion, amount: u32) -> Decision {
    Decision::new().append::<Bin>(bin.to_owned(), expected, [filled(bin, amount)])
}

fn bin_query(bin: &str) -> Query {
    Query::new([QueryItem::of::<BinEvent>().tag("bin", bin)])
}

async fn version(app: &Orchestrix, bin: &str) -> u64 {
    app.load::<Bin>(bin.to_owned()).await.unwrap().version
}

#[tokio::test]
async fn an_empty_decision_succeeds_and_writes_nothing() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let decision = Decision::new();
    assert!(decision.is_empty());
    assert!(app.append_many(decision, CommandOptions::default()).await.unwrap().is_empty());
    let calls = AtomicU32::new(0);
    let decided = app
        .decide(bin_query("a"), CommandOptions::default(), |_: &[Envelope<BinEvent>]| -> Result<_, Refused> {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Decision::new())
        })
        .await
        .unwrap();
    assert!(decided.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "an empty decision is not retried");
    assert_eq!(app.event_store().head_position().await.unwrap(), None);
}

#[tokio::test]
async fn a_guard_only_decision_checks_its_streams_and_writes_nothing() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    app.append_many(fill("a", ExpectedVersion::NoStream, 1), CommandOptions::default()).await.unwrap();
    let holds = Decision::new().guard::<Bin>("a".to_owned(), ExpectedVersion::Exact(1));
    let recorded = app.append_many(holds, CommandOptions::default()).await.unwrap();
    assert!(recorded.iter().all(Vec::is_empty), "{recorded:?}");
    let stale = Decision::new().guard::<Bin>("a".to_owned(), ExpectedVersion::NoStream);
    let error = app.append_many(stale, CommandOptions::default()).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert_eq!(app.event_store().head_position().await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_conflict_in_one_part_writes_no_part() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    app.append_many(fill("a", ExpectedVersion::NoStream, 1), CommandOptions::default()).await.unwrap();
    let decision = Decision::new()
        .append::<Bin>("b".to_owned(), ExpectedVersion::NoStream, [filled("b", 1)])
        .append::<Bin>("a".to_owned(), ExpectedVersion::Exact(7), [filled("a", 1)])
        .append::<Bin>("c".to_owned(), ExpectedVersion::Any, [filled("c", 1)]);
    let error = app.append_many(decision, CommandOptions::default()).await.unwrap_err();
    let orchestrix::Error::Store(StoreError::WrongExpectedVersion { stream, expected, actual }) = &error else {
        panic!("{error:?}")
    };
    assert_eq!((stream.to_string(), *expected, *actual), ("Bin/a".to_owned(), ExpectedVersion::Exact(7), Some(1)));
    assert_eq!((version(&app, "a").await, version(&app, "b").await, version(&app, "c").await), (1, 0, 0));
}

/// A caller that lost the answer retries with the same command id: it gets
/// the events the first call stored, with the same ids, and nothing is
/// written twice, even though the decision expected a new stream.
#[tokio::test]
async fn a_retried_append_many_is_answered_by_its_command_id() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let options = CommandOptions::default().command_id(Uuid::now_v7());
    let decision = || {
        Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::NoStream, [filled("a", 1)]).append::<Bin>(
            "b".to_owned(),
            ExpectedVersion::NoStream,
            [filled("b", 2), filled("b", 3)],
        )
    };
    let first = app.append_many(decision(), options.clone()).await.unwrap();
    let again = app.append_many(decision(), options).await.unwrap();
    let ids = |parts: &[Vec<std::sync::Arc<orchestrix::envelope::RecordedEvent>>]| {
        parts.iter().map(|part| part.iter().map(|r| (r.id, r.global_position)).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(app.event_store().head_position().await.unwrap(), Some(3));
    // Another command id is another command: its decision conflicts.
    let other = app.append_many(decision(), CommandOptions::default().command_id(Uuid::now_v7())).await.unwrap_err();
    assert!(other.is_conflict(), "{other:?}");
}

#[tokio::test]
async fn a_retried_decide_is_answered_without_deciding_again() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let options = CommandOptions::default().command_id(Uuid::now_v7());
    let calls = AtomicU32::new(0);
    let decide = |_: &[Envelope<BinEvent>]| -> Result<_, Refused> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(fill("a", ExpectedVersion::Any, 1))
    };
    let first = app.decide(bin_query("a"), options.clone(), decide).await.unwrap();
    let again = app.decide(bin_query("a"), options, decide).await.unwrap();
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), first.iter().map(|r| r.id).collect::<Vec<_>>());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry did not decide again");
    assert_eq!(version(&app, "a").await, 1);
}

/// `decide` reads, decides and appends under the condition that nothing
/// matching its query arrived meanwhile: a rival write between the read
/// and the append fails the first attempt; the second reads the rival's
/// event and wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_loses_a_race_once_then_decides_on_the_new_state() {
    let store = InMemoryEventStore::new();
    let app = Orchestrix::builder()
        .event_store(store.clone())
        .retry(RetryPolicy::fixed(3, Duration::from_millis(1)))
        .build()
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let recorded = app
        .decide(bin_query("a"), CommandOptions::default(), |events: &[Envelope<BinEvent>]| -> Result<_, Refused> {
            let mut seen = seen.lock().unwrap();
            seen.push(events.len());
            if seen.len() == 1 {
                let parts = fill("a", ExpectedVersion::Any, 5).into_parts().unwrap();
                tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(store.append_many(parts)))
                    .unwrap();
            }
            let level: u32 = events
                .iter()
                .map(|e| match &e.event {
                    BinEvent::Filled { amount, .. } => amount,
                })
                .sum();
            Ok(fill("a", ExpectedVersion::Any, level + 1))
        })
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1], "the second attempt saw the rival's event");
    assert_eq!(recorded.len(), 1);
    assert_eq!(app.load::<Bin>("a".to_owned()).await.unwrap().state.level, 5 + 6);
}

/// Applications over tenant views of one store: each tenant's decisions
/// land in its own streams, its `decide` sees only its own events, and a
/// decision's expectations are checked against its own streams.
#[tokio::test]
async fn tenants_decide_and_append_in_their_own_streams() {
    let shared = InMemoryEventStore::new();
    let tenant = |name: &str| {
        Orchestrix::builder().event_store(TenantStore::new(shared.clone(), name).unwrap()).build().unwrap()
    };
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    acme.append_many(fill("a", ExpectedVersion::NoStream, 1), CommandOptions::default()).await.unwrap();
    // The same stream name is new for the other tenant.
    globex.append_many(fill("a", ExpectedVersion::NoStream, 2), CommandOptions::default()).await.unwrap();
    let seen = globex
        .decide(bin_query("a"), CommandOptions::default(), |events: &[Envelope<BinEvent>]| -> Result<_, Refused> {
            assert_eq!(events.len(), 1, "only globex's event");
            Ok(fill("b", ExpectedVersion::NoStream, 3))
        })
        .await
        .unwrap();
    assert_eq!(seen[0].stream.to_string(), "Bin/b");
    assert_eq!(acme.load::<Bin>("a".to_owned()).await.unwrap().state.level, 1);
    assert_eq!(globex.load::<Bin>("a".to_owned()).await.unwrap().state.level, 2);
    assert_eq!(version(&acme, "b").await, 0, "acme has no bin b");
    let all: Vec<_> =
        futures_util::TryStreamExt::try_collect::<Vec<_>>(shared.read_all(0, &EventFilter::all())).await.unwrap();
    let streams: Vec<String> = all.iter().map(|r| r.stream.to_string()).collect();
    assert_eq!(streams, ["Bin/acme/a", "Bin/globex/a", "Bin/globex/b"]);
}

#[tokio::test]
async fn an_aggregate_without_commands_registers_and_is_written_by_decisions() {
    let app = Orchestrix::builder().in_memory().aggregate::<Bin>().build().unwrap();
    let decision = Decision::new()
        .append::<Bin>("a".to_owned(), ExpectedVersion::NoStream, [filled("a", 2)])
        .append::<Bin>("b".to_owned(), ExpectedVersion::NoStream, &[filled("b", 1), filled("b", 1)]);
    let recorded = app.append_many(decision, CommandOptions::default()).await.unwrap();
    assert_eq!(recorded.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(recorded[0][0].stream.to_string(), "Bin/a", "the stream is named by the aggregate type");
    assert_eq!(recorded[0][0].tags(), ["bin:a"], "tags are computed when the event is encoded");
    // Ids owned or borrowed, everywhere.
    let b = "b".to_owned();
    assert_eq!(app.load::<Bin>(&b).await.unwrap().state.level, 2);
    assert_eq!(app.load::<Bin>(b).await.unwrap().state.level, 2);
    assert_eq!(app.repository::<Bin>().load("a".to_owned()).await.unwrap().version, 1);
}

#[tokio::test]
async fn a_stream_named_twice_is_one_part_and_conflicting_expectations_are_refused() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let twice = Decision::new()
        .append::<Bin>("a".to_owned(), ExpectedVersion::NoStream, [filled("a", 1)])
        .append::<Bin>("a".to_owned(), ExpectedVersion::Any, [filled("a", 2)]);
    assert_eq!(twice.len(), 1);
    let recorded = app.append_many(twice, CommandOptions::default()).await.unwrap();
    assert_eq!(recorded[0].iter().map(|r| r.stream_version).collect::<Vec<_>>(), [1, 2]);

    let contradictory = Decision::new().guard::<Bin>("a".to_owned(), ExpectedVersion::Exact(2)).append::<Bin>(
        "a".to_owned(),
        ExpectedVersion::Exact(1),
        [filled("a", 1)],
    );
    let error = app.append_many(contradictory, CommandOptions::default()).await.unwrap_err();
    assert!(matches!(error, orchestrix::Error::Store(StoreError::InvalidInput(_))), "{error:?}");
    assert!(!error.is_conflict());
    assert_eq!(app.load::<Bin>("a".to_owned()).await.unwrap().version, 2, "nothing was written");
}

#[tokio::test]
async fn a_bad_id_fails_the_append_not_the_builder() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let query = Query::new([QueryItem::of::<BinEvent>().tag("bin", "x")]);
    // No `map_err` inside the closure: the decision keeps the problem and
    // `decide` returns it, without retrying and without writing.
    let error = app
        .decide(query, CommandOptions::default(), |_: &[Envelope<BinEvent>]| -> Result<_, Refused> {
            Ok(Decision::new().append::<Bin>("x".to_owned(), ExpectedVersion::Any, [filled("x", 1)]).append::<Bin>(
                "bad\0id".to_owned(),
                ExpectedVersion::Any,
                [filled("x", 1)],
            ))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::Framework(orchestrix::Error::Store(StoreError::InvalidInput(_)))),
        "{error:?}"
    );
    assert_eq!(app.event_store().head_position().await.unwrap(), None);
}

#[tokio::test]
async fn decisions_carry_the_command_options() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let id = orchestrix::Uuid::now_v7();
    let options = CommandOptions::default()
        .command_id(id)
        .tenant("acme")
        .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .tracestate("vendor=1")
        .header("source", "test");
    let decision = Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::Any, [filled("a", 1)]);
    let recorded = app.append_many(decision, options).await.unwrap();
    let metadata = &recorded[0][0].metadata;
    assert_eq!((metadata.correlation_id, metadata.causation_id), (Some(id), Some(id)));
    assert_eq!(metadata.tenant.as_deref(), Some("acme"));
    assert_eq!(metadata.traceparent.as_deref(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_eq!(metadata.tracestate.as_deref(), Some("vendor=1"));
    assert_eq!(metadata.headers["source"], "test");
    assert_eq!(metadata.tags, ["bin:a"], "the options' metadata keeps the event's tags");
}

/// The first of the three shapes of a lost race: `append_many` on a stale
/// state.
#[tokio::test]
async fn a_lost_race_of_append_many_is_a_conflict() {
    let app = Orchestrix::builder().in_memory().build().unwrap();
    let first = || Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::NoStream, [filled("a", 1)]);
    app.append_many(first(), CommandOptions::default()).await.unwrap();
    let error = app.append_many(first(), CommandOptions::default()).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert!(matches!(&error, orchestrix::Error::Store(e) if e.is_conflict()));
}

/// The second: `decide`, whose condition keeps failing until its attempts
/// are used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_of_decide_is_a_conflict() {
    let store = InMemoryEventStore::new();
    let app = Orchestrix::builder().event_store(store.clone()).retry(RetryPolicy::none()).build().unwrap();
    let query = Query::new([QueryItem::of::<BinEvent>().tag("bin", "a")]);
    let error = app
        .decide(query, CommandOptions::default(), |_: &[Envelope<BinEvent>]| -> Result<_, Refused> {
            // Someone else fills the bin between the read and the append.
            let rival = Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::Any, [filled("a", 5)]);
            let parts = rival.into_parts().unwrap();
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(store.append_many(parts)))
                .unwrap();
            Ok(Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::Any, [filled("a", 1)]))
        })
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert!(
        matches!(error, CommandError::Framework(orchestrix::Error::Store(StoreError::ConditionFailed { .. }))),
        "{error:?}"
    );
}
