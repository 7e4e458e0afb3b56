//! The transactional read model the NATS scenarios consume into, the
//! writer that feeds them, and the verdict: what was lost, what applied
//! twice.
//!
//! The read model lives in PostgreSQL. Each event is applied in one
//! transaction that locks its stream's row, compares the stream's last
//! applied version with the event's and, if the event is the next one,
//! inserts it and moves the version: a redelivery is absorbed (nothing
//! written), and an event that arrives before its predecessor is refused
//! (the worker retries it, then stops on it). The `applied` table has no
//! unique key, so an event applied twice shows up as two rows.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::error::BoxError;
use orchestrix::projection::Projection;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::{StreamId, Uuid};
use serde_json::value::RawValue;
use sqlx::{PgPool, Row};

/// The read model: a PostgreSQL schema with the applied events and each
/// stream's last applied version.
#[derive(Debug, Clone)]
pub struct Tally {
    pool: PgPool,
    schema: String,
    worker: String,
    applied: Arc<AtomicU64>,
}

/// A schema name the read model can quote safely.
fn checked(schema: &str) -> Result<&str, sqlx::Error> {
    if !schema.is_empty()
        && schema.len() < 60
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(schema)
    } else {
        Err(sqlx::Error::Protocol(format!(
            "read-model schema `{schema}` must be lowercase ASCII letters, digits and `_`"
        )))
    }
}

impl Tally {
    /// Creates the read model's schema and tables (again: harmless).
    pub async fn create(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
        let s = checked(schema)?;
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\";\n\
             CREATE TABLE IF NOT EXISTS \"{s}\".applied (event_id uuid NOT NULL, stream text NOT NULL, \
             version bigint NOT NULL, position bigint NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT now());\n\
             CREATE TABLE IF NOT EXISTS \"{s}\".versions (stream text PRIMARY KEY, version bigint NOT NULL);"
        ))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Drops the read model's schema.
    pub async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
        let s = checked(schema)?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE")).execute(pool).await?;
        Ok(())
    }

    /// The read model in `schema`, applied by the worker named `worker`.
    pub fn new(pool: PgPool, schema: &str, worker: impl Into<String>) -> Result<Self, sqlx::Error> {
        Ok(Self { pool, schema: checked(schema)?.to_owned(), worker: worker.into(), applied: Arc::default() })
    }

    /// Events this instance (and its clones) applied for the first time.
    pub fn applied(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.applied)
    }

    /// Every applied event's id, and how many rows there are (more rows
    /// than ids: events applied twice).
    pub async fn contents(pool: &PgPool, schema: &str) -> Result<(HashSet<Uuid>, u64), sqlx::Error> {
        let s = checked(schema)?;
        let rows = sqlx::query(&format!("SELECT event_id FROM \"{s}\".applied")).fetch_all(pool).await?;
        let count = rows.len() as u64;
        let ids = rows.iter().map(|row| row.try_get::<Uuid, _>(0)).collect::<Result<HashSet<_>, _>>()?;
        Ok((ids, count))
    }

    /// How many rows the read model holds (a cheap progress probe).
    pub async fn rows(pool: &PgPool, schema: &str) -> Result<u64, sqlx::Error> {
        let s = checked(schema)?;
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{s}\".applied")).fetch_one(pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[orchestrix::async_trait]
impl Projection for Tally {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "tally".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::types(["Counted"])
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let s = &self.schema;
        let stream = event.stream.to_string();
        let version = i64::try_from(event.stream_version)?;
        let mut tx = self.pool.begin().await?;
        // Takes the stream's row lock: a second holder of the partition
        // (a worker cut off but still pulling) waits here, then sees the
        // version this one committed.
        let last: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO \"{s}\".versions (stream, version) VALUES ($1, 0) \
             ON CONFLICT (stream) DO UPDATE SET version = \"{s}\".versions.version RETURNING version"
        ))
        .bind(&stream)
        .fetch_one(&mut *tx)
        .await?;
        if version <= last {
            return Ok(()); // a redelivery: applied before (the rollback writes nothing)
        }
        if version != last + 1 {
            return Err(format!("{stream} version {version} arrived after {last}: out of order").into());
        }
        sqlx::query(&format!(
            "WITH moved AS (UPDATE \"{s}\".versions SET version = $3 WHERE stream = $2) \
             INSERT INTO \"{s}\".applied (event_id, stream, version, position, worker) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(event.id)
        .bind(&stream)
        .bind(version)
        .bind(i64::try_from(event.global_position)?)
        .bind(&self.worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The PostgreSQL URL from `ORCHESTRIX_PG_URL`, or `None` (with the
/// reason printed) when it is unset outside CI; under CI a missing
/// variable fails (ADR 0037).
pub fn pg_url_or_skip() -> Option<String> {
    match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "ORCHESTRIX_PG_URL is not set, but CI is: the NATS fault scenarios must run in CI"
            );
            eprintln!("skipped: ORCHESTRIX_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/faults)");
            None
        }
    }
}

/// A fresh schema name: `<prefix>_<pid>_<random>`.
pub fn unique_schema(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), fastrand::u32(..))
}

/// A `Counted { n }` event.
pub fn counted(n: u64) -> NewEvent {
    NewEvent::new("Counted", 1, RawValue::from_string(format!(r#"{{"n":{n}}}"#)).expect("valid JSON"))
}

/// What the writer appended and the store acknowledged, shared with the
/// scenario while it runs.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    ids: Arc<Mutex<Vec<Uuid>>>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Appended {
    /// Tells [`write()`] to stop after its current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// How many events the store acknowledged so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The acknowledged events' ids.
    pub fn ids(&self) -> Vec<Uuid> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Appends at most `total` events to `streams` streams, `batch` at a time
/// (each batch to the next stream, with the exact expected version), one
/// batch every `pace`, until [`Appended::stop`], and records what the
/// store acknowledged in `appended`.
pub async fn write(
    store: Arc<dyn EventStore>,
    streams: u64,
    batch: u64,
    total: u64,
    pace: Duration,
    appended: Appended,
) -> Result<(), orchestrix::StoreError> {
    let mut versions = vec![0_u64; usize::try_from(streams.max(1)).unwrap_or(1)];
    let mut next = Instant::now();
    let mut written = 0;
    let mut round = 0_u64;
    while written < total && !appended.stop.load(Ordering::Relaxed) {
        let s = usize::try_from(round % streams.max(1)).unwrap_or(0);
        let stream =
            StreamId::new("Tally", format!("s{s}")).map_err(|e| orchestrix::StoreError::InvalidInput(e.to_string()))?;
        let n = batch.min(total - written);
        let events: Vec<NewEvent> = (0..n).map(|i| counted(written + i)).collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        store.append(&stream, ExpectedVersion::Exact(versions[s]), events).await?;
        versions[s] += n;
        written += n;
        round += 1;
        appended.ids.lock().unwrap_or_else(PoisonError::into_inner).extend(ids);
        appended.count.fetch_add(n, Ordering::Relaxed);
        next += pace;
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(())
}

/// Lost and duplicated events: the acknowledged ids missing from the read
/// model, and the rows beyond one per applied event.
pub fn verdict<S: std::hash::BuildHasher>(acknowledged: &[Uuid], applied: &HashSet<Uuid, S>, rows: u64) -> (u64, u64) {
    let lost = acknowledged.iter().filter(|id| !applied.contains(id)).count() as u64;
    (lost, rows.saturating_sub(applied.len() as u64))
}

/// Progress sampled while a scenario runs: (since start, appended,
/// applied), or any other count downstream of the writer in place of
/// applied (the events the broker acknowledged, for example).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    points: Vec<(Duration, u64, u64)>,
}

impl Samples {
    /// Adds a sample.
    pub fn push(&mut self, at: Duration, appended: u64, applied: u64) {
        self.points.push((at, appended, applied));
    }

    /// The largest lag (appended − applied) from `from` to `until`: the
    /// normal lag of a healthy run.
    pub fn normal_lag(&self, from: Duration, until: Duration) -> u64 {
        self.points
            .iter()
            .filter(|(at, ..)| *at >= from && *at < until)
            .map(|(_, a, b)| a.saturating_sub(*b))
            .max()
            .unwrap_or(0)
    }

    /// How long after a fault at `from` the read model stayed behind the
    /// writer by more than `threshold` (0 if it never did), looking up to
    /// `to`: the time to recover full throughput.
    pub fn recovery(&self, from: Duration, to: Duration, threshold: u64) -> Duration {
        self.points
            .iter()
            .filter(|(at, ..)| *at >= from && *at < to)
            .filter(|(_, appended, applied)| appended.saturating_sub(*applied) > threshold)
            .map(|(at, ..)| at.saturating_sub(from))
            .max()
            .unwrap_or_default()
    }

    /// The longest time between `from` and `to` in which nothing was
    /// applied while events waited.
    pub fn longest_stall(&self, from: Duration, to: Duration) -> Duration {
        let mut longest = Duration::ZERO;
        let mut since: Option<(Duration, u64)> = None;
        for &(at, appended, applied) in self.points.iter().filter(|(at, ..)| *at >= from && *at < to) {
            match since {
                Some((start, was)) if applied == was && appended > applied => {
                    longest = longest.max(at.saturating_sub(start));
                }
                _ => since = Some((at, applied)),
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn recovery_is_the_end_of_the_last_lag_after_the_fault() {
        let mut samples = Samples::default();
        for (t, appended, applied) in
            [(0, 10, 8), (100, 20, 18), (200, 30, 20), (300, 40, 20), (400, 50, 45), (500, 60, 59)]
        {
            samples.push(ms(t), appended, applied);
        }
        assert_eq!(samples.normal_lag(ms(0), ms(150)), 2);
        assert_eq!(samples.recovery(ms(150), ms(600), 4), ms(250));
        assert_eq!(samples.recovery(ms(450), ms(600), 4), Duration::ZERO);
        assert_eq!(samples.longest_stall(ms(150), ms(600)), ms(100));
    }

    #[test]
    fn verdict_counts_missing_and_repeated_events() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let applied: HashSet<Uuid> = ids[..2].iter().copied().collect();
        assert_eq!(verdict(&ids, &applied, 3), (1, 1));
        assert!(checked("Bad-Name").is_err());
    }
}
