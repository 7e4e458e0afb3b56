//! A command retried after a version conflict keeps its place (ADR 0053):
//! commands to one aggregate in one process take turns in arrival order,
//! and a retry, backoff included, runs before the commands that arrived
//! after it instead of queueing behind them.
//!
//! The clock is tokio's paused test clock: the order of events is what is
//! checked, never how long anything took.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::memory::InMemoryEventStore;
use orchestrix::prelude::*;
use orchestrix::retry::RetryPolicy;
use orchestrix::store::EventStore;

#[event]
#[derive(Debug, Clone, PartialEq)]
enum TallyEvent {
    Started,
    Marked { by: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("never refused")]
struct Never;

#[aggregate(event = TallyEvent, error = Never, id = String)]
#[derive(Debug, Default)]
struct Tally {
    marks: Vec<String>,
}

impl Tally {
    fn apply(&mut self, event: &TallyEvent) {
        if let TallyEvent::Marked { by } = event {
            self.marks.push(by.clone());
        }
    }
}

#[derive(Debug, Clone)]
struct Start;

#[derive(Debug, Clone)]
struct Mark {
    by: String,
}

#[command_handler]
impl Tally {
    fn start(_: Start) -> Result<TallyEvent, Never> {
        Ok(TallyEvent::Started)
    }

    fn mark(&self, cmd: Mark) -> Result<TallyEvent, Never> {
        Ok(TallyEvent::Marked { by: cmd.by })
    }
}

fn app(events: &Arc<dyn EventStore>, retry: RetryPolicy) -> Orchestrix {
    Orchestrix::builder().event_store(Arc::clone(events)).aggregate::<Tally>().retry(retry).build().unwrap()
}

fn mark(by: &str) -> Mark {
    Mark { by: by.to_owned() }
}

#[tokio::test(start_paused = true)]
async fn a_retried_command_runs_before_commands_that_arrived_during_its_backoff() {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let here = app(&events, RetryPolicy::fixed(3, Duration::from_millis(50)));
    let elsewhere = app(&events, RetryPolicy::none());
    let id = "tally".to_owned();
    here.execute(&id, Start).await.unwrap();
    here.execute(&id, mark("warm")).await.unwrap(); // `here` caches version 2
    elsewhere.execute(&id, mark("other process")).await.unwrap(); // the store moves on behind its back

    // `first` conflicts on the stale cache, then waits 50 ms (paused clock)
    // before its retry; `second` arrives during that wait.
    let first = tokio::spawn({
        let (here, id) = (here.clone(), id.clone());
        async move { here.execute(&id, mark("first")).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = tokio::spawn({
        let (here, id) = (here.clone(), id.clone());
        async move { here.execute(&id, mark("second")).await }
    });
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());

    assert_eq!(first.attempts, 2, "the stale cache cost the first command one conflict");
    assert_eq!(second.attempts, 1, "the second waited for its turn and found fresh state");
    assert_eq!((first.version, second.version), (4, 5), "the retry kept its place");
    let tally = here.load::<Tally>(&id).await.unwrap().state;
    assert_eq!(tally.marks, ["warm", "other process", "first", "second"]);
}

#[tokio::test(start_paused = true)]
async fn commands_queued_together_are_written_in_arrival_order_despite_a_conflict() {
    let events: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
    let here = app(&events, RetryPolicy::fixed(5, Duration::from_millis(5)));
    let elsewhere = app(&events, RetryPolicy::none());
    let id = "tally".to_owned();
    here.execute(&id, Start).await.unwrap(); // `here` caches version 1
    elsewhere.execute(&id, mark("other process")).await.unwrap();
    // A single-threaded runtime starts the tasks in the order spawned: the
    // first takes the turn, conflicts on its stale state and backs off;
    // the others queue behind it meanwhile.
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let (here, id) = (here.clone(), id.clone());
            tokio::spawn(async move { here.execute(&id, mark(&format!("command {i}"))).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        outcomes.push((outcome.version, outcome.attempts));
    }
    assert_eq!(outcomes, [(3, 2), (4, 1), (5, 1), (6, 1), (7, 1)], "(version, attempts) per command, in arrival order");
    let tally = here.load::<Tally>(&id).await.unwrap().state;
    let expected: Vec<String> =
        std::iter::once("other process".to_owned()).chain((0..5).map(|i| format!("command {i}"))).collect();
    assert_eq!(tally.marks, expected);
}
