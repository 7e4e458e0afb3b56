//! Reads and subscriptions: streams, the global log below the watermark,
//! events by id, and live subscriptions that stream segments of the log.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use orchestrix::envelope::RecordedEvent;
use orchestrix::retry::RetryPolicy;
use orchestrix::store::{EventFilter, EventStream};
use orchestrix::{StoreError, StreamId};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use tokio::sync::watch;

use super::schema::Sql;
use super::{Inner, PgStore};
use crate::common::{decode_chunk, map_err, next_cursor, outage_pause, paged, to_i64, EventRow, CHUNK};
#[cfg(doc)]
use orchestrix::store::EventStore;

/// How many rows one read of the global log fetches: large enough that the
/// round trip is a small part of a catch-up, small enough to bound memory.
pub(super) const GLOBAL_CHUNK: i64 = 2048;

/// How many events one query of a subscription streams at most: its rows
/// are delivered as they arrive, so memory does not grow with it; the
/// limit bounds how long one query (its snapshot, its connection) lasts.
const SEGMENT: i64 = 65_536;

/// How long a subscription keeps one query (and so a connection of the
/// subscription pool) while its consumer keeps taking events and other
/// subscriptions wait for a connection: after this, it gives the
/// connection back before the next event and queries again from there, so
/// that subscriptions beyond the pool's size take turns instead of waiting
/// for a slow one's whole segment. Without waiters a query runs to its
/// end (a cut discards the rest of its rows, which a catch-up would pay
/// for).
const SEGMENT_HOLD: Duration = Duration::from_secs(1);

impl PgStore {
    /// [`EventStore::read_all`]: pages of the global log below a bound
    /// taken once at the start.
    pub(super) fn read_all_from<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a> {
        let inner = &*self.inner;
        let start = stream::once(async move { read_all_bound(inner).await });
        start
            .flat_map(move |bound| match bound {
                Err(error) => stream::once(async move { Err(error) }).boxed(),
                Ok(None) => stream::empty().boxed(),
                Ok(Some(upper)) => paged(from_position, move |from| async move {
                    match inner.read_range_chunk(from, upper, filter).await {
                        Err(error) => (Vec::new(), Err(error)),
                        Ok((events, Some(error))) => (events, Err(error)),
                        Ok((events, None)) => {
                            let next = next_cursor(&events, GLOBAL_CHUNK, |event| event.global_position);
                            (events, Ok(next))
                        }
                    }
                }),
            })
            .boxed()
    }

    /// [`EventStore::subscribe`]: a live subscription woken by appends and
    /// notifications.
    pub(super) fn subscribe_from(&self, from_position: u64, filter: EventFilter) -> EventStream<'static> {
        self.ensure_listener();
        let state = Subscription {
            inner: Arc::clone(&self.inner),
            wake: self.inner.wake.subscribe(),
            filter,
            next: from_position.max(1),
            rows: None,
            segment_started: tokio::time::Instant::now(),
            segment_events: 0,
            failed: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_item().await?;
            Some((item, state))
        })
        .boxed()
    }

    pub(super) async fn fetch_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(&self.inner.sql.stream_version)
            .bind(stream.category())
            .bind(stream.id())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }

    pub(super) async fn read_stream_chunk(
        &self,
        stream: &StreamId,
        from: u64,
    ) -> (Vec<Arc<RecordedEvent>>, Result<Option<u64>, StoreError>) {
        let rows = sqlx::query(&self.inner.sql.read_stream)
            .bind(stream.category())
            .bind(stream.id())
            .bind(to_i64(from))
            .bind(CHUNK)
            .fetch_all(&self.inner.pool)
            .await;
        // Every row is of `stream`: its id is shared, not rebuilt per row.
        decode_chunk(
            rows,
            CHUNK,
            |row| event_row(row)?.into_record_after(&mut Some(stream.clone())),
            |event| event.stream_version,
        )
    }
}

impl Inner {
    /// A connection of the subscription pool, counted as waiting while it
    /// is awaited (so that a subscription holding one knows to give it
    /// back, see [`SEGMENT_HOLD`]).
    async fn acquire_for_subscription(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, sqlx::Error> {
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.subscription_waiters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _waiting = Waiting(&self.subscription_waiters);
        self.subscriptions.acquire().await
    }

    /// A page of the global log from `from` below `upper` (a bound at or
    /// below a watermark), decoded as the rows arrive; a row that cannot be
    /// decoded cuts the page short with its error, after the events before
    /// it.
    async fn read_range_chunk(
        &self,
        from: u64,
        upper: u64,
        filter: &EventFilter,
    ) -> Result<(Vec<Arc<RecordedEvent>>, Option<StoreError>), StoreError> {
        let mut rows = range_query(&self.sql, from, upper, filter, GLOBAL_CHUNK).fetch(&self.pool);
        let mut events = Vec::new();
        let mut stream = None;
        while let Some(row) = rows.try_next().await.map_err(map_err)? {
            match event_row(&row).and_then(|row| row.into_record_after(&mut stream)) {
                Ok(event) => events.push(event),
                Err(error) => return Ok((events, Some(error))),
            }
        }
        Ok((events, None))
    }
}

/// Reads an event row.
///
/// The columns are `COLUMNS` (in `schema.rs`) of the adapter's own statements,
/// whose types the SQL fixes (`data::text`, ...), so the per-row type
/// check of `try_get` is skipped: it cost about a tenth of a catch-up's
/// client time. A NULL or undecodable value is still an error.
pub(super) fn event_row(row: &PgRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        global_position: row.try_get_unchecked(0).map_err(map_err)?,
        event_id: row.try_get_unchecked(1).map_err(map_err)?,
        category: row.try_get_unchecked(2).map_err(map_err)?,
        aggregate_id: row.try_get_unchecked(3).map_err(map_err)?,
        stream_version: row.try_get_unchecked(4).map_err(map_err)?,
        event_type: row.try_get_unchecked(5).map_err(map_err)?,
        schema_version: row.try_get_unchecked(6).map_err(map_err)?,
        data: row.try_get_unchecked(7).map_err(map_err)?,
        metadata: row.try_get_unchecked(8).map_err(map_err)?,
        recorded_at: row.try_get_unchecked(9).map_err(map_err)?,
    })
}

/// How long a reader waits, the `waits`-th time in a row, for transactions
/// in flight below the head to finish (the watermark to pass them): 1 ms,
/// doubling up to 50 ms, without jitter.
fn watermark_pause(waits: u32) -> Duration {
    const MAX: Duration = Duration::from_millis(50);
    RetryPolicy::exponential(u32::MAX, Duration::from_millis(1))
        .with_max_delay(MAX)
        .with_jitter(0.0)
        .delay_after(waits)
        .unwrap_or(MAX)
}

/// The exclusive upper bound of a finite read of the global log: one past
/// the head once the watermark has passed it (every transaction up to the
/// head has finished), or the watermark if in-flight transactions keep it
/// below the head longer than the configured wait. `None`: the log is empty.
pub(super) async fn read_all_bound(inner: &Inner) -> Result<Option<u64>, StoreError> {
    let deadline = tokio::time::Instant::now() + inner.config.read_wait;
    let mut waits = 0;
    let mut target = None;
    loop {
        let (head, watermark): (Option<i64>, i64) =
            sqlx::query_as(&inner.sql.head_and_watermark).fetch_one(&inner.pool).await.map_err(map_err)?;
        let watermark = u64::try_from(watermark).unwrap_or(0);
        let Some(head) = target.or(head.and_then(|h| u64::try_from(h).ok())) else { return Ok(None) };
        target = Some(head);
        if watermark > head || tokio::time::Instant::now() >= deadline {
            return Ok(Some(watermark.min(head + 1)));
        }
        waits += 1;
        tokio::time::sleep(watermark_pause(waits)).await;
    }
}

/// The state of a live subscription.
struct Subscription {
    inner: Arc<Inner>,
    wake: watch::Receiver<u64>,
    filter: EventFilter,
    /// The next position to read from: everything below it was delivered
    /// or filtered out, and is final.
    next: u64,
    /// The query being read, if one is.
    rows: Option<SegmentRows>,
    /// When the query being read started, and how many events it
    /// delivered: one that has delivered some and is older than
    /// [`SEGMENT_HOLD`] gives its connection back.
    segment_started: tokio::time::Instant,
    segment_events: u64,
    failed: bool,
}

/// What a segment query yields: its events as their rows arrive, then
/// what the query saw of the log.
enum SegmentItem {
    Event(Arc<RecordedEvent>),
    End {
        /// Every position below this was final for the query.
        watermark: u64,
        /// Whether committed rows waited at or above the watermark.
        pending: bool,
        /// How many events the query returned.
        count: i64,
    },
}

type SegmentRows = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<SegmentItem, StoreError>> + Send>>;

/// One query over the global log from `from`, below the watermark, at most
/// [`SEGMENT`] events, streamed: each row is decoded and yielded as it
/// arrives, so the server sends while the consumer works, as a hand-written
/// streaming `SELECT` does (reading whole chunks before delivering them
/// left the two taking turns). A row that cannot be decoded is yielded as
/// its error and ends the segment.
fn segment(inner: Arc<Inner>, from: u64, filter: EventFilter) -> SegmentRows {
    Box::pin(async_stream::stream! {
        // The watermark first: every position below it was final when it
        // was taken, so a later snapshot sees all of them, and the rows
        // come back without it (a join that repeated it on every row cost
        // the server a fifth more per row).
        let mut connection = match inner.acquire_for_subscription().await {
            Ok(connection) => connection,
            Err(error) => {
                yield Err(map_err(error));
                return;
            }
        };
        let (watermark, pending) = match sqlx::query_as::<_, (i64, bool)>(&inner.sql.watermark).fetch_one(&mut *connection).await {
            Ok((mark, pending)) => (u64::try_from(mark).unwrap_or(0), pending),
            Err(error) => {
                yield Err(map_err(error));
                return;
            }
        };
        let mut rows = range_query(&inner.sql, from, watermark, &filter, SEGMENT).fetch(&mut *connection);
        let mut count = 0;
        let mut stream = None;
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    yield Err(map_err(error));
                    return;
                }
            };
            count += 1;
            match event_row(&row).and_then(|row| row.into_record_after(&mut stream)) {
                Ok(event) => yield Ok(SegmentItem::Event(event)),
                Err(error) => {
                    yield Err(error);
                    return;
                }
            }
        }
        yield Ok(SegmentItem::End { watermark, pending, count });
    })
}

impl Subscription {
    async fn next_item(&mut self) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        if self.failed {
            return None;
        }
        let mut pending_waits = 0;
        let mut outages = 0;
        loop {
            let Some(rows) = &mut self.rows else {
                // Mark wake-ups as seen before reading, so that an append
                // that lands after the read still wakes the wait below.
                self.wake.borrow_and_update();
                self.rows = Some(segment(Arc::clone(&self.inner), self.next, self.filter.clone()));
                self.segment_started = tokio::time::Instant::now();
                self.segment_events = 0;
                continue;
            };
            if self.segment_events > 0
                && self.segment_started.elapsed() >= SEGMENT_HOLD
                && self.inner.subscription_waiters.load(std::sync::atomic::Ordering::Relaxed) > 0
            {
                // Long enough on one connection while others wait for one:
                // give it back (the rest of the query is discarded) and
                // query again from the next position, behind them.
                self.rows = None;
                continue;
            }
            match rows.next().await {
                Some(Ok(SegmentItem::Event(event))) => {
                    self.next = event.global_position + 1;
                    self.segment_events += 1;
                    return Some(Ok(event));
                }
                Some(Ok(SegmentItem::End { watermark, pending, count })) => {
                    self.rows = None;
                    outages = 0;
                    if count >= SEGMENT {
                        continue; // catching up: the next segment at once
                    }
                    // Everything below the watermark has been seen.
                    self.next = self.next.max(watermark);
                    if count > 0 {
                        continue;
                    }
                    if pending {
                        // Committed events wait for older transactions to
                        // finish: look again soon.
                        pending_waits += 1;
                        tokio::time::sleep(watermark_pause(pending_waits)).await;
                        continue;
                    }
                    pending_waits = 0;
                    // A timeout or a closed channel both mean: poll.
                    let _ = tokio::time::timeout(self.inner.config.poll_interval, self.wake.changed()).await;
                }
                Some(Err(StoreError::Unavailable(error))) => {
                    self.rows = None;
                    tracing::warn!(
                        %error,
                        position = self.next,
                        "orchestrix: subscription cannot reach the database or get a connection of its pool; retrying"
                    );
                    outages += 1;
                    tokio::time::sleep(outage_pause(outages)).await;
                }
                Some(Err(error)) => {
                    self.rows = None;
                    self.failed = true;
                    return Some(Err(error));
                }
                None => self.rows = None,
            }
        }
    }
}

/// The read of the global log from `from` below `upper` through `filter`,
/// at most `limit` events: the types and the tags in the statement, the
/// tags (when there are any) in an unprepared one, planned for them
/// (ADR 0036).
fn range_query<'q>(
    sql: &'q Sql,
    from: u64,
    upper: u64,
    filter: &'q EventFilter,
    limit: i64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let tagged = !filter.tags().is_empty();
    let statement = if tagged { &sql.read_range_tagged } else { &sql.read_range };
    let query = sqlx::query(statement)
        .persistent(!tagged)
        .bind(to_i64(from))
        .bind(to_i64(upper))
        .bind(filter.event_types())
        .bind(limit);
    if tagged {
        query.bind(filter.tags())
    } else {
        query
    }
}
