//! Scenario 3 of issue 23 (ADR 0049): PostgreSQL crashes under group
//! commit. A cluster of the test's own (initdb in a temporary folder, a
//! loopback port of its own); sixteen writers append through one store
//! with group commit on (ADR 0024); a side connection terminates random
//! backends every 200 to 400 ms, and the server is stopped with
//! `pg_ctl stop -m immediate` and started again twice. A catch-up
//! subscription of a second store (another process's view) runs
//! throughout.
//!
//! Promises checked: every acknowledged append is stored, at the version
//! it was acknowledged at; no event twice; no append stored in part or
//! split in the global log; no version gap; the subscription ends with the
//! whole log, in order, each event once.
//!
//! Short by default (about 12 s of writes); `ORCHESTRIX_FAULTS=full` writes
//! for 60 s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore};
use orchestrix::StreamId;
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_faults::audit::Audit;
use orchestrix_faults::postgres::{self, binaries_or_skip, Cluster, Target, Terminator};
use orchestrix_faults::process::{full, scaled};
use orchestrix_faults::report::{self, Figures};
use uuid::Uuid;

const WRITERS: usize = 16;

/// The log as the store reads it now, retried while the server is still
/// coming back.
async fn whole_log(store: &PgStore) -> Vec<Arc<orchestrix::envelope::RecordedEvent>> {
    for attempt in 0..50 {
        let log: Result<Vec<_>, _> =
            store.read_all(0, &EventFilter::all()).collect::<Vec<_>>().await.into_iter().collect();
        match log {
            Ok(log) => return log,
            Err(error) if attempt < 49 => {
                eprintln!("reading the log: {error}; again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the log cannot be read: {error}"),
        }
    }
    unreachable!("the loop returns or panics")
}

#[cfg_attr(
    not(orchestrix_pg_binaries),
    ignore = "needs PostgreSQL's initdb and pg_ctl (apt-get install postgresql, or set ORCHESTRIX_PG_BINDIR)"
)]
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashes_under_group_commit_lose_no_acknowledged_append() {
    let Some(bin) = binaries_or_skip() else { return };
    // Flushes on: a backend terminated while its commit flushes dies after
    // the commit and before the answer, the case a retry by event ids
    // answers with the stored events (ADR 0027).
    let mut cluster = Cluster::init(&bin, "fsync = on").expect("initdb");
    cluster.start().expect("the cluster starts");
    let url = cluster.url("postgres");
    let config = PgConfig::new("faults").unwrap().with_max_connections(8).with_group_commit(2);
    let store = PgStore::connect(&url, config.clone()).await.expect("connect");
    store.migrate().await.expect("migrate");
    // The subscriber's store: another process's view (its own pools,
    // LISTEN connection and no in-process wake-ups from the writers).
    let reader = PgStore::connect(&url, config.clone().with_poll_interval(Duration::from_millis(100)))
        .await
        .expect("connect the reader");

    // The catch-up subscription, from the start of the log, throughout.
    let seen: Arc<Mutex<Vec<(u64, Uuid)>>> = Arc::default();
    let stop_subscription = Arc::new(tokio::sync::Notify::new());
    let subscription = {
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop_subscription));
        tokio::spawn(async move {
            let mut events = reader.subscribe(0, EventFilter::all());
            let stopped = stop.notified();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => return Ok(()),
                    next = events.next() => match next {
                        Some(Ok(event)) => seen.lock().unwrap().push((event.global_position, event.id)),
                        Some(Err(error)) => return Err(error.to_string()),
                        None => return Err("the subscription ended".to_owned()),
                    },
                }
            }
        })
    };

    let writing = scaled(Duration::from_secs(12), Duration::from_mins(1));
    let started = Instant::now();
    let until = started + writing;
    let give_up = until + Duration::from_secs(30);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let stream = StreamId::new("Crash", format!("w{w}")).unwrap();
            tokio::spawn(async move { postgres::write(Target::Store(&store), stream, until, give_up).await })
        })
        .collect();

    // Backends terminated every 200 to 400 ms, a fifth of them each time.
    let terminating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let terminator = {
        let (url, terminating) = (url.clone(), Arc::clone(&terminating));
        tokio::spawn(async move {
            let mut terminator = Terminator::new(url);
            let (mut rounds, mut terminated) = (0_u64, 0_u64);
            while terminating.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(200..=400))).await;
                let n = terminator.terminate(0.2).await;
                if n > 0 {
                    rounds += 1;
                    terminated += n;
                }
            }
            (rounds, terminated)
        })
    };

    // Two immediate shutdowns, at a third and two thirds of the run.
    let mut restarts = 0_u64;
    let mut down = Duration::ZERO;
    for at in [writing / 3, writing * 2 / 3] {
        tokio::time::sleep_until((started + at).into()).await;
        let stopped = Instant::now();
        tokio::task::block_in_place(|| cluster.stop_immediate()).expect("pg_ctl stop -m immediate");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| cluster.start())
            .unwrap_or_else(|e| panic!("the cluster starts again: {e}\n{}", cluster.log_tail(30)));
        down += stopped.elapsed();
        restarts += 1;
    }

    let mut appends = Vec::new();
    let mut retries = 0;
    let mut answered_from_store = 0;
    let mut acknowledged_at = Vec::new();
    let mut last_errors = Vec::new();
    for writer in writers {
        let written = writer.await.expect("a writer panicked").unwrap_or_else(|e| panic!("a writer failed: {e}"));
        appends.extend(written.appends);
        retries += written.retries;
        answered_from_store += written.answered_from_store;
        acknowledged_at.extend(written.acknowledged_at);
        last_errors.extend(written.last_error);
    }
    terminating.store(false, std::sync::atomic::Ordering::Relaxed);
    let (termination_rounds, terminated) = terminator.await.unwrap();
    acknowledged_at.sort();
    let longest_gap = acknowledged_at.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();

    let log = whole_log(&store).await;
    let audit = Audit::of(&log, &appends);

    // The subscription catches up with the whole log (bounded wait).
    let head = log.last().map_or(0, |event| event.global_position);
    let deadline = Instant::now() + Duration::from_mins(1);
    while seen.lock().unwrap().last().map_or(0, |(position, _)| *position) < head && Instant::now() < deadline {
        if subscription.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_subscription.notify_one();
    let ended = subscription.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let expected: Vec<(u64, Uuid)> = log.iter().map(|event| (event.global_position, event.id)).collect();
    let mut subscriber_ids: Vec<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    subscriber_ids.sort_unstable();
    let distinct = {
        let mut ids = subscriber_ids.clone();
        ids.dedup();
        ids.len()
    };
    let subscriber_duplicates = seen.len() - distinct;

    println!(
        "{audit}\n{WRITERS} writers, {retries} appends retried ({answered_from_store} answered with what an earlier attempt stored), {terminated} backends terminated in \
         {termination_rounds} rounds, {restarts} immediate restarts ({} ms down), longest time without an \
         acknowledgment {} ms, subscriber saw {} events ({subscriber_duplicates} twice); last errors: {:?}",
        down.as_millis(),
        longest_gap.as_millis(),
        seen.len(),
        last_errors.iter().take(3).collect::<Vec<_>>()
    );
    let mut extra = serde_json::Map::new();
    extra.insert("build".into(), if cfg!(debug_assertions) { "debug" } else { "release" }.into());
    extra.insert("writers".into(), WRITERS.into());
    extra.insert("backends_terminated".into(), terminated.into());
    extra.insert("immediate_restarts".into(), restarts.into());
    extra.insert("appends_retried".into(), retries.into());
    extra.insert("retries_answered_from_store".into(), answered_from_store.into());
    extra.insert("partial_or_split_appends".into(), (audit.partial + audit.split).into());
    extra.insert("version_gaps".into(), audit.version_gaps.into());
    extra.insert("subscriber_events".into(), seen.len().into());
    extra.insert("longest_without_ack_ms".into(), u64::try_from(longest_gap.as_millis()).unwrap_or(u64::MAX).into());
    let figures = Figures {
        scenario: "pg-crash".into(),
        version: if full() { "full" } else { "short" }.into(),
        faults: termination_rounds + restarts,
        acknowledged: audit.acknowledged,
        lost: audit.lost,
        duplicated: audit.duplicated + u64::try_from(subscriber_duplicates).unwrap_or(u64::MAX),
        extra,
    };
    report::record(&figures).expect("the figures are recorded");

    assert!(audit.holds(), "{audit}");
    assert_eq!(audit.lost, 0);
    assert!(audit.acknowledged > 0, "nothing was acknowledged");
    assert_eq!(restarts, 2);
    assert!(terminated > 0, "no backend was terminated");
    assert!(retries > 0, "the faults never reached a writer");
    ended.unwrap_or_else(|e| panic!("the subscription failed: {e}"));
    assert_eq!(subscriber_duplicates, 0, "the subscriber saw an event twice");
    assert!(seen.windows(2).all(|pair| pair[0].0 < pair[1].0), "the subscriber saw the log out of order");
    assert_eq!(seen, expected, "the subscriber ends with the whole log, in order");
    drop(cluster);
}
