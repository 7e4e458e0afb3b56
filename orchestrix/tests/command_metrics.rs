//! The command path's metrics, whose keys are built at compile time
//! (`telemetry::Labels`): a recorder sees the same names, labels and
//! values as through the `metrics` macros.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use orchestrix::prelude::*;
use orchestrix::Orchestrix;
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Opened,
    Bumped { by: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[aggregate(event = CounterEvent, error = Refused)]
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    total: u64,
}

impl Tally {
    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Bumped { by } = event {
            self.total += by;
        }
    }
}

#[derive(Debug, Clone)]
struct Open;

#[derive(Debug, Clone)]
struct Bump {
    by: u64,
}

#[command_handler]
impl Tally {
    fn open(_: Open) -> Result<CounterEvent, Refused> {
        Ok(CounterEvent::Opened)
    }

    fn bump(&self, cmd: Bump) -> Result<CounterEvent, Refused> {
        if cmd.by == 0 {
            return Err(Refused);
        }
        Ok(CounterEvent::Bumped { by: cmd.by })
    }
}

/// Every registration, as `name{label=value,...}`, with what was added.
#[derive(Default)]
struct Seen {
    counters: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    histograms: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

struct Adds(Arc<AtomicU64>);

impl CounterFn for Adds {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, _: u64) {}
}

impl HistogramFn for Adds {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn name(key: &Key) -> String {
    let labels: Vec<String> = key.labels().map(|label| format!("{}={}", label.key(), label.value())).collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Seen {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let added = Arc::new(AtomicU64::new(0));
        self.counters.lock().unwrap().push((name(key), Arc::clone(&added)));
        Counter::from_arc(Arc::new(Adds(added)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let added = Arc::new(AtomicU64::new(0));
        self.histograms.lock().unwrap().push((name(key), Arc::clone(&added)));
        Histogram::from_arc(Arc::new(Adds(added)))
    }
}

fn total(seen: &Mutex<Vec<(String, Arc<AtomicU64>)>>, key: &str) -> u64 {
    seen.lock().unwrap().iter().filter(|(name, _)| name == key).map(|(_, n)| n.load(Ordering::Relaxed)).sum()
}

#[test]
fn commands_report_their_outcome_duration_events_and_cache_lookups() {
    let seen = Seen::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _recorder = metrics::set_default_local_recorder(&seen);
    runtime.block_on(async {
        let app = Orchestrix::builder().in_memory().aggregate::<Tally>().build().unwrap();
        let id = orchestrix::Uuid::now_v7();
        app.execute(id, Open).await.unwrap();
        app.execute(id, Bump { by: 2 }).await.unwrap();
        assert!(app.execute(id, Bump { by: 0 }).await.is_err());
    });
    let counters = &seen.counters;
    assert_eq!(total(counters, "orchestrix_commands_total{command=Open,aggregate=Tally,outcome=ok}"), 1);
    assert_eq!(total(counters, "orchestrix_commands_total{command=Bump,aggregate=Tally,outcome=ok}"), 1);
    assert_eq!(total(counters, "orchestrix_commands_total{command=Bump,aggregate=Tally,outcome=rejected}"), 1);
    assert_eq!(total(counters, "orchestrix_events_appended_total{aggregate=Tally}"), 2);
    assert_eq!(total(counters, "orchestrix_aggregate_cache_lookups_total{aggregate=Tally,outcome=miss}"), 1);
    assert_eq!(total(counters, "orchestrix_aggregate_cache_lookups_total{aggregate=Tally,outcome=hit}"), 2);
    assert_eq!(total(&seen.histograms, "orchestrix_command_duration_seconds{command=Open,aggregate=Tally}"), 1);
    assert_eq!(total(&seen.histograms, "orchestrix_command_duration_seconds{command=Bump,aggregate=Tally}"), 2);
}
