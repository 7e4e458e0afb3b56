//! The snapshot, checkpoint, key-value and dead-letter ports of both SQL
//! adapters, written once.
//!
//! The two stores run the same statements in the same order and decode
//! the same columns; they differ only in how a column holds a time and an
//! id (a [`Dialect`]) and in the SQL text itself, which each adapter's
//! `schema.rs` builds. [`impl_sql_ports!`] writes the four port impls (and
//! the grouped stream listing, and the read of a snapshot with its tail)
//! for a store from its dialect; it expects `self.inner.pool`, the
//! statements in `self.inner.sql` and the adapter's `read::event_row`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What the SQL adapters store differently: a time and an id in their
/// columns, and text the database refuses.
pub(crate) trait Dialect {
    /// A time as its column holds it.
    type Time: Copy + std::fmt::Debug;
    /// A UUID as its column holds it.
    type Id: std::fmt::Display;

    /// `time` as its column holds it.
    fn time_to_sql(time: DateTime<Utc>) -> Self::Time;
    /// The time a column holds; `None`: out of range (a corrupt row).
    fn time_from_sql(time: Self::Time) -> Option<DateTime<Utc>>;
    /// `id` as its column holds it.
    fn id_to_sql(id: Uuid) -> Self::Id;
    /// The UUID a column holds, or why it is not one.
    fn id_from_sql(id: &Self::Id) -> Result<Uuid, String>;
    /// `text` as a text column can hold it (PostgreSQL refuses NUL).
    fn text_to_sql(text: &str) -> String;
}

/// The statements of the consumers' control records (ADR 0050), in each
/// adapter's SQL.
#[derive(Debug)]
pub(crate) struct ControlSql {
    /// A consumer's record: requested, by, position, at.
    pub(crate) load: String,
    /// Sets the pause request; a change clears the acknowledgement.
    pub(crate) request: String,
    /// Records a runner's acknowledgement, only while a pause is requested.
    pub(crate) ack: String,
    /// Clears the acknowledgement.
    pub(crate) clear: String,
}

/// Writes `SnapshotStore`, `CheckpointStore`, `KeyValueStore` and
/// `DeadLetterStore` for `$store` (a SQL store over the sqlx database
/// `$db`, storing with the [`Dialect`] `$dialect`), and the module's
/// `park_query` (the statement that parks a letter, to run on the pool or
/// in a transaction) with the helpers it needs.
macro_rules! impl_sql_ports {
    ($store:ty, $db:ty, $dialect:ty) => {
        impl $store {
            /// [`orchestrix::store::EventStore::list_streams`]: one grouped
            /// query (ADR 0041).
            pub(crate) async fn stream_page(
                &self,
                listing: &orchestrix::store::StreamListing,
            ) -> Result<Vec<orchestrix::store::StreamSummary>, orchestrix::StoreError> {
                let (category, prefix, after_category, after_id, limit) = $crate::common::listing_params(listing);
                let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(&self.inner.sql.list_streams)
                    .bind(category)
                    .bind(prefix)
                    .bind(after_category)
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                rows.into_iter().map($crate::common::stream_summary).collect()
            }

            /// Whether `snapshots` is this store or a clone of it (as it
            /// is, or in an `Arc`): its snapshots lie beside this store's
            /// events, where one query reads both.
            fn keeps_snapshots_of(&self, snapshots: &dyn orchestrix::store::SnapshotStore) -> bool {
                let any: &dyn std::any::Any = snapshots;
                let same = any
                    .downcast_ref::<$store>()
                    .or_else(|| any.downcast_ref::<std::sync::Arc<$store>>().map(|shared| &**shared));
                same.is_some_and(|other| std::sync::Arc::ptr_eq(&self.inner, &other.inner))
            }

            /// [`orchestrix::store::EventStore::read_from_snapshot`]: one
            /// query when `snapshots` is this store ([`Self::keeps_snapshots_of`]),
            /// else the two calls (ADR 0054).
            pub(crate) fn snapshot_and_tail<'a>(
                &'a self,
                stream: &'a orchestrix::StreamId,
                at_or_before: Option<u64>,
                snapshots: &'a dyn orchestrix::store::SnapshotStore,
            ) -> orchestrix::store::BoxFuture<'a, Result<orchestrix::store::SnapshotAndTail<'a>, orchestrix::StoreError>>
            {
                if self.keeps_snapshots_of(snapshots) {
                    Box::pin(self.snapshot_and_tail_in_one_query(stream, at_or_before))
                } else {
                    Box::pin(orchestrix::store::snapshot_then_tail(self, stream, at_or_before, snapshots))
                }
            }

            /// The latest snapshot of `stream` (at or before
            /// `at_or_before`) and the first page of its events from the
            /// snapshot's version (from 1 without one), in one query: a
            /// row of the snapshot, marked by global position 0, then the
            /// event rows. A full page goes on with
            /// [`orchestrix::store::EventStore::read_stream`] after it.
            async fn snapshot_and_tail_in_one_query<'a>(
                &'a self,
                stream: &'a orchestrix::StreamId,
                at_or_before: Option<u64>,
            ) -> Result<orchestrix::store::SnapshotAndTail<'a>, orchestrix::StoreError> {
                use futures_util::StreamExt as _;
                use orchestrix::store::EventStore as _;
                use sqlx::Row as _;
                let rows = sqlx::query(&self.inner.sql.snapshot_and_tail)
                    .bind(stream.category())
                    .bind(stream.id())
                    .bind(at_or_before.map_or(i64::MAX, $crate::common::to_i64))
                    .bind($crate::common::CHUNK)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                let mut snapshot = None;
                let mut events = Vec::with_capacity(rows.len());
                let mut failed = None;
                // Every row is of `stream`: its id is shared, not rebuilt.
                let mut previous = Some(stream.clone());
                for row in &rows {
                    let position: i64 = row.try_get(0).map_err($crate::common::map_err)?;
                    if position == 0 {
                        snapshot = Some(snapshot_of(
                            stream,
                            row.try_get(4).map_err($crate::common::map_err)?,
                            row.try_get(6).map_err($crate::common::map_err)?,
                            row.try_get(7).map_err($crate::common::map_err)?,
                            row.try_get(9).map_err($crate::common::map_err)?,
                        )?);
                        continue;
                    }
                    match super::read::event_row(row).and_then(|row| row.into_record_after(&mut previous)) {
                        Ok(event) => events.push(event),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
                // The branches of the statement's UNION ALL come in their
                // order in practice; SQL does not promise it.
                if !events.is_sorted_by_key(|event| event.stream_version) {
                    events.sort_unstable_by_key(|event| event.stream_version);
                }
                let full = failed.is_none() && i64::try_from(events.len()).unwrap_or(i64::MAX) >= $crate::common::CHUNK;
                let next = events.last().filter(|_| full).map(|last| last.stream_version + 1);
                let page = futures_util::stream::iter(events.into_iter().map(Ok).chain(failed.map(Err)));
                let tail = match next {
                    Some(from) => page.chain(self.read_stream(stream, from)).boxed(),
                    None => page.boxed(),
                };
                Ok((snapshot, tail))
            }
        }

        /// A snapshot row's columns as a [`orchestrix::store::Snapshot`];
        /// a time out of range or a bad row is
        /// [`orchestrix::StoreError::Corrupt`].
        fn snapshot_of(
            stream: &orchestrix::StreamId,
            version: i64,
            schema_version: i64,
            state: String,
            raw_time: <$dialect as $crate::common::ports::Dialect>::Time,
        ) -> Result<orchestrix::store::Snapshot, orchestrix::StoreError> {
            let Some(taken_at) = <$dialect as $crate::common::ports::Dialect>::time_from_sql(raw_time) else {
                return Err(orchestrix::StoreError::Corrupt {
                    stream: stream.clone(),
                    version: u64::try_from(version).unwrap_or(0),
                    reason: format!("snapshot: time {raw_time:?} is out of range"),
                });
            };
            $crate::common::snapshot_from_row(stream, version, schema_version, state, taken_at)
        }

        #[async_trait::async_trait]
        impl orchestrix::store::SnapshotStore for $store {
            async fn save(&self, snapshot: orchestrix::store::Snapshot) -> Result<(), orchestrix::StoreError> {
                sqlx::query(&self.inner.sql.snapshot_save)
                    .bind(snapshot.stream.category())
                    .bind(snapshot.stream.id())
                    .bind($crate::common::to_i64(snapshot.version))
                    .bind(i64::from(snapshot.schema_version))
                    .bind(snapshot.state.get())
                    .bind(<$dialect as $crate::common::ports::Dialect>::time_to_sql(snapshot.taken_at))
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn load(
                &self,
                stream: &orchestrix::StreamId,
                at_or_before: Option<u64>,
            ) -> Result<Option<orchestrix::store::Snapshot>, orchestrix::StoreError> {
                let row: Option<(i64, i64, String, <$dialect as $crate::common::ports::Dialect>::Time)> =
                    sqlx::query_as(&self.inner.sql.snapshot_load)
                        .bind(stream.category())
                        .bind(stream.id())
                        .bind(at_or_before.map_or(i64::MAX, $crate::common::to_i64))
                        .fetch_optional(&self.inner.pool)
                        .await
                        .map_err($crate::common::map_err)?;
                let Some((version, schema_version, state, raw_time)) = row else { return Ok(None) };
                snapshot_of(stream, version, schema_version, state, raw_time).map(Some)
            }

            async fn delete(&self, stream: &orchestrix::StreamId) -> Result<(), orchestrix::StoreError> {
                sqlx::query(&self.inner.sql.snapshot_delete)
                    .bind(stream.category())
                    .bind(stream.id())
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl orchestrix::store::CheckpointStore for $store {
            async fn load(&self, consumer: &str) -> Result<Option<u64>, orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                let position: Option<i64> = sqlx::query_scalar(&self.inner.sql.checkpoint_load)
                    .bind(consumer)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(position.map($crate::common::checkpoint_from_sql))
            }

            async fn save(&self, consumer: &str, position: u64) -> Result<(), orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                sqlx::query(&self.inner.sql.checkpoint_save)
                    .bind(consumer)
                    .bind($crate::common::checkpoint_to_sql(position))
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn delete(&self, consumer: &str) -> Result<(), orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                sqlx::query(&self.inner.sql.checkpoint_delete)
                    .bind(consumer)
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn load_control(
                &self,
                consumer: &str,
            ) -> Result<Option<orchestrix::store::ConsumerControl>, orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                let row: Option<(
                    bool,
                    Option<String>,
                    Option<i64>,
                    Option<<$dialect as $crate::common::ports::Dialect>::Time>,
                )> = sqlx::query_as(&self.inner.sql.control.load)
                    .bind(consumer)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                let Some((requested, by, position, at)) = row else { return Ok(None) };
                let paused = match (by, position, at) {
                    (Some(by), Some(position), Some(at)) => {
                        let at = <$dialect as $crate::common::ports::Dialect>::time_from_sql(at).ok_or_else(|| {
                            orchestrix::StoreError::Backend(
                                format!("the pause of `{consumer}`: time {at:?} is out of range").into(),
                            )
                        })?;
                        Some(orchestrix::store::PauseAck::new(by, $crate::common::checkpoint_from_sql(position), at))
                    }
                    _ => None,
                };
                Ok(Some(orchestrix::store::ConsumerControl::new(requested, paused)))
            }

            async fn request_pause(&self, consumer: &str, pause: bool) -> Result<(), orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                sqlx::query(&self.inner.sql.control.request)
                    .bind(consumer)
                    .bind(pause)
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn acknowledge_pause(
                &self,
                consumer: &str,
                ack: Option<orchestrix::store::PauseAck>,
            ) -> Result<bool, orchestrix::StoreError> {
                $crate::common::validate_key("consumer name", consumer)?;
                let Some(ack) = ack else {
                    sqlx::query(&self.inner.sql.control.clear)
                        .bind(consumer)
                        .execute(&self.inner.pool)
                        .await
                        .map_err($crate::common::map_err)?;
                    return Ok(true);
                };
                let done = sqlx::query(&self.inner.sql.control.ack)
                    .bind(consumer)
                    .bind(<$dialect as $crate::common::ports::Dialect>::text_to_sql(&ack.runner))
                    .bind($crate::common::checkpoint_to_sql(ack.position))
                    .bind(<$dialect as $crate::common::ports::Dialect>::time_to_sql(ack.at))
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait::async_trait]
        impl orchestrix::store::KeyValueStore for $store {
            async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, orchestrix::StoreError> {
                $crate::common::validate_key("key", key)?;
                let value: Option<Vec<u8>> = sqlx::query_scalar(&self.inner.sql.kv_get)
                    .bind(key)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(value.map(bytes::Bytes::from))
            }

            async fn put(&self, key: &str, value: bytes::Bytes) -> Result<(), orchestrix::StoreError> {
                $crate::common::validate_key("key", key)?;
                sqlx::query(&self.inner.sql.kv_put)
                    .bind(key)
                    .bind(value.as_ref())
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn delete(&self, key: &str) -> Result<bool, orchestrix::StoreError> {
                $crate::common::validate_key("key", key)?;
                let done = sqlx::query(&self.inner.sql.kv_delete)
                    .bind(key)
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn keys(&self, prefix: &str) -> Result<Vec<String>, orchestrix::StoreError> {
                $crate::common::validate_key("key prefix", prefix)?;
                sqlx::query_scalar(&self.inner.sql.kv_keys)
                    .bind(prefix)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)
            }
        }

        #[async_trait::async_trait]
        impl orchestrix::store::DeadLetterStore for $store {
            async fn park(&self, letter: orchestrix::store::DeadLetter) -> Result<(), orchestrix::StoreError> {
                park_query(&self.inner.sql.dl_park, &letter)?
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(())
            }

            async fn list(
                &self,
                consumer: Option<&str>,
            ) -> Result<Vec<orchestrix::store::DeadLetter>, orchestrix::StoreError> {
                let rows = sqlx::query(&self.inner.sql.dl_list)
                    .bind(consumer)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                rows.iter().map(letter_from_row).collect()
            }

            async fn get(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<orchestrix::store::DeadLetter>, orchestrix::StoreError> {
                let row = sqlx::query(&self.inner.sql.dl_get)
                    .bind(<$dialect as $crate::common::ports::Dialect>::id_to_sql(id))
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                row.as_ref().map(letter_from_row).transpose()
            }

            async fn remove(&self, id: uuid::Uuid) -> Result<bool, orchestrix::StoreError> {
                let done = sqlx::query(&self.inner.sql.dl_remove)
                    .bind(<$dialect as $crate::common::ports::Dialect>::id_to_sql(id))
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn query(
                &self,
                query: &orchestrix::store::DeadLetterQuery,
            ) -> Result<Vec<orchestrix::store::DeadLetter>, orchestrix::StoreError> {
                let rows = bind_query(&self.inner.sql.dl_query, query)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                rows.iter().map(letter_from_row).collect()
            }

            async fn count(&self, query: &orchestrix::store::DeadLetterQuery) -> Result<u64, orchestrix::StoreError> {
                use sqlx::Row as _;
                let row = bind_query(&self.inner.sql.dl_count, query)
                    .fetch_one(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                let count: i64 = row.try_get(0).map_err($crate::common::map_err)?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            async fn purge(&self, query: &orchestrix::store::DeadLetterQuery) -> Result<u64, orchestrix::StoreError> {
                let done = bind_query(&self.inner.sql.dl_purge, query)
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(done.rows_affected())
            }
        }

        /// `sql` (a dead-letter query's statement) with the query's
        /// conditions bound.
        fn bind_query<'q>(
            sql: &'q str,
            query: &orchestrix::store::DeadLetterQuery,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            sqlx::query(sql)
                .bind(query.consumer.clone())
                .bind(query.stream.as_ref().map(|stream| stream.category().to_owned()))
                .bind(query.stream.as_ref().map(|stream| stream.id().to_owned()))
                .bind(query.reason.as_deref().map(<$dialect as $crate::common::ports::Dialect>::text_to_sql))
                .bind(query.parked_before.map(<$dialect as $crate::common::ports::Dialect>::time_to_sql))
        }

        /// The statement that parks `letter` (replacing one with the same
        /// id), ready to run on the pool or inside a transaction.
        pub(super) fn park_query<'q>(
            sql: &'q str,
            letter: &orchestrix::store::DeadLetter,
        ) -> Result<sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>, orchestrix::StoreError> {
            $crate::common::validate_key("consumer name", &letter.consumer)?;
            let event = serde_json::to_string(&letter.event).map_err(|error| {
                orchestrix::StoreError::InvalidInput(format!("the dead letter's event cannot be serialized: {error}"))
            })?;
            Ok(sqlx::query(sql)
                .bind(<$dialect as $crate::common::ports::Dialect>::id_to_sql(letter.id))
                .bind(letter.consumer.clone())
                .bind(event)
                .bind(<$dialect as $crate::common::ports::Dialect>::text_to_sql(&letter.error))
                .bind(i64::from(letter.attempts))
                .bind(<$dialect as $crate::common::ports::Dialect>::time_to_sql(letter.parked_at)))
        }

        /// The dead letter a row of `id, consumer, event, error, attempts,
        /// parked_at` holds.
        fn letter_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<orchestrix::store::DeadLetter, orchestrix::StoreError> {
            use sqlx::Row as _;
            let id: <$dialect as $crate::common::ports::Dialect>::Id =
                row.try_get(0).map_err($crate::common::map_err)?;
            let event: String = row.try_get(2).map_err($crate::common::map_err)?;
            let attempts: i64 = row.try_get(4).map_err($crate::common::map_err)?;
            let parked_at: <$dialect as $crate::common::ports::Dialect>::Time =
                row.try_get(5).map_err($crate::common::map_err)?;
            let bad =
                |what: String| orchestrix::StoreError::Backend(format!("corrupt dead letter {id}: {what}").into());
            Ok(orchestrix::store::DeadLetter::new(
                <$dialect as $crate::common::ports::Dialect>::id_from_sql(&id)
                    .map_err(|error| bad(format!("id: {error}")))?,
                row.try_get::<String, _>(1).map_err($crate::common::map_err)?,
                serde_json::from_str(&event).map_err(|error| bad(format!("event: {error}")))?,
                row.try_get::<String, _>(3).map_err($crate::common::map_err)?,
                u32::try_from(attempts).map_err(|_| bad(format!("attempts {attempts} out of range")))?,
                <$dialect as $crate::common::ports::Dialect>::time_from_sql(parked_at)
                    .ok_or_else(|| bad(format!("time {parked_at:?} is out of range")))?,
            ))
        }
    };
}

pub(crate) use impl_sql_ports;
