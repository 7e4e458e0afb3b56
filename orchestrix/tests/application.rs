//! The application layer's conventions (ADR 0030): one multi-stream
//! builder, one way to ask whether a race was lost, ids owned or
//! borrowed, shared stores taken as they are, every command option
//! settable.

use std::sync::Arc;

use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::query::{Query, QueryItem};
use orchestrix::{
    app::CommandOptions,
    decision::Decision,
    envelope::Envelope,
    retry::RetryPolicy,
    store::{EventStore, ExpectedVersion},
    StoreError,
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

/// Never raised: a bin has no commands.
#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// An aggregate without commands: written only through decisions.
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

#[tokio::test]
async fn the_builder_keeps_a_shared_store_as_it_is() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let app = Orchestrix::builder().event_store(Arc::clone(&store)).build().unwrap();
    assert!(Arc::ptr_eq(app.event_store(), &store), "an Arc<dyn EventStore> is not wrapped again");
    let concrete = InMemoryEventStore::new();
    let app = Orchestrix::builder().event_store(concrete.clone()).build().unwrap();
    let decision = Decision::new().append::<Bin>("a".to_owned(), ExpectedVersion::Any, [filled("a", 1)]);
    app.append_many(decision, CommandOptions::default()).await.unwrap();
    assert_eq!(concrete.head_position().await.unwrap(), Some(1));
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

/// An aggregate with a command, to count the cache's hits.
#[aggregate(event = BinEvent, error = Refused, id = String)]
#[derive(Debug, Default)]
pub struct Hopper {
    level: u32,
}

impl Hopper {
    fn apply(&mut self, event: &BinEvent) {
        let BinEvent::Filled { amount, .. } = event;
        self.level += amount;
    }
}

/// Puts something in a hopper.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The hopper.
    pub hopper: String,
}

#[command_handler]
impl Hopper {
    #[command(requires = any)]
    fn fill(&self, cmd: Fill) -> Result<BinEvent, Refused> {
        Ok(BinEvent::Filled { bin: cmd.hopper, amount: 1 })
    }
}

#[tokio::test]
async fn the_cache_reports_hits_misses_and_evictions() {
    let app = Orchestrix::builder().in_memory().aggregate::<Hopper>().cache_capacity(2).build().unwrap();
    assert_eq!(app.cache_stats::<Bin>(), None, "not registered");
    let fill = |hopper: &str| Fill { hopper: hopper.to_owned() };
    for hopper in ["a", "a", "b", "a", "c", "a", "b"] {
        app.execute(hopper.to_owned(), fill(hopper)).await.unwrap();
    }
    // a: miss, hit; b: miss; a: hit; c: miss (evicts b, the least recently
    // used); a: hit; b: miss (evicts c).
    let stats = app.cache_stats::<Hopper>().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.evictions), (3, 4, 2));
    assert_eq!(stats.hit_rate(), Some(3.0 / 7.0));
    assert_eq!(app.load::<Hopper>("a".to_owned()).await.unwrap().state.level, 4);
}
