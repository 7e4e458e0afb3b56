//! The key store (crypto-shredding) of both SQL adapters, written once.
//!
//! Keys are rows `(subject, key_id, material)`; forgetting a subject
//! records it among the forgotten subjects (no key material) and deletes
//! its key row, in one transaction. A key is only ever read for a subject
//! that is not forgotten, so a create that raced with a forget opens
//! nothing. Each adapter writes the SQL ([`KeySql`]) and how it records a
//! subject's streams; [`impl_key_store!`] writes the rest.

/// The statements of a SQL key store, for one schema or table prefix.
#[derive(Debug)]
pub(crate) struct KeySql {
    /// The key of subject `1` unless it is forgotten: `(key_id, material)`.
    pub(crate) key: String,
    /// Stores the key `(2, 3)` for subject `1` unless it has one or is
    /// forgotten.
    pub(crate) create: String,
    /// Records subject `1` as forgotten (nothing if it is already).
    pub(crate) forget: String,
    /// Deletes the key of subject `1`.
    pub(crate) delete_key: String,
    /// Deletes subject `1` from the forgotten subjects.
    pub(crate) readmit: String,
    /// A row if subject `1` is forgotten.
    pub(crate) is_forgotten: String,
    /// The count of forgotten subjects and the latest forget in
    /// microseconds (0 if none).
    pub(crate) erasure_mark: String,
    /// The streams `(category, aggregate_id)` of subject `1`, sorted.
    pub(crate) streams_of: String,
    /// Records streams of subject `1`: the adapter's own
    /// `record_subject_streams` binds the rest.
    pub(crate) record_stream: String,
}

/// Writes `KeyStore` for `$store` (a SQL store storing with the
/// [`Dialect`](super::ports::Dialect) `$dialect`) from the statements in
/// `self.inner.sql.keys` ([`KeySql`]); `record_streams` validates the
/// subject and calls the store's own `record_subject_streams(subject,
/// streams)`, since the adapters write a batch differently.
macro_rules! impl_key_store {
    ($store:ty, $dialect:ty) => {
        #[async_trait::async_trait]
        impl orchestrix::store::KeyStore for $store {
            async fn key(
                &self,
                subject: &str,
            ) -> Result<Option<orchestrix::personal::DataKey>, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let row: Option<(<$dialect as $crate::common::ports::Dialect>::Id, Vec<u8>)> =
                    sqlx::query_as(&self.inner.sql.keys.key)
                        .bind(subject)
                        .fetch_optional(&self.inner.pool)
                        .await
                        .map_err($crate::common::map_err)?;
                row.map(|(id, material)| {
                    let id = <$dialect as $crate::common::ports::Dialect>::id_from_sql(&id).map_err(|error| {
                        orchestrix::StoreError::Backend(format!("a key id is not a UUID: {error}").into())
                    })?;
                    orchestrix::personal::DataKey::from_parts(id, &material)
                })
                .transpose()
            }

            async fn key_or_create(
                &self,
                subject: &str,
            ) -> Result<orchestrix::personal::DataKey, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let key = orchestrix::personal::DataKey::generate();
                // A racing creator's INSERT waits for (PostgreSQL) or
                // follows (SQLite) the first one's commit, then does
                // nothing; the read below sees the winner's key, unless the
                // subject was forgotten meanwhile.
                sqlx::query(&self.inner.sql.keys.create)
                    .bind(subject)
                    .bind(<$dialect as $crate::common::ports::Dialect>::id_to_sql(key.id()))
                    .bind(key.material().as_slice())
                    .execute(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                match self.key(subject).await? {
                    Some(key) => Ok(key),
                    None if self.is_forgotten(subject).await? => {
                        Err(orchestrix::StoreError::SubjectForgotten { subject: subject.to_owned() })
                    }
                    None => Err(orchestrix::StoreError::Backend(
                        "the key of a subject vanished right after it was created".into(),
                    )),
                }
            }

            async fn delete_key(&self, subject: &str) -> Result<bool, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let deleted =
                    self.keys_transaction(subject, &self.inner.sql.keys.forget, &self.inner.sql.keys.delete_key);
                Ok(deleted.await? > 0)
            }

            /// In one transaction: lifts the forgotten mark; only if there
            /// was one, deletes a key that a create racing with the forget
            /// left behind and stores the subject's new key (ADR 0051). A
            /// subject that is not forgotten keeps its key.
            async fn readmit(&self, subject: &str) -> Result<bool, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let keys = &self.inner.sql.keys;
                let mut tx = self.inner.pool.begin().await.map_err($crate::common::map_err)?;
                let readmitted = sqlx::query(&keys.readmit)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::common::map_err)?
                    .rows_affected()
                    > 0;
                if readmitted {
                    sqlx::query(&keys.delete_key)
                        .bind(subject)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::common::map_err)?;
                    let key = orchestrix::personal::DataKey::generate();
                    sqlx::query(&keys.create)
                        .bind(subject)
                        .bind(<$dialect as $crate::common::ports::Dialect>::id_to_sql(key.id()))
                        .bind(key.material().as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::common::map_err)?;
                }
                tx.commit().await.map_err($crate::common::map_err)?;
                Ok(readmitted)
            }

            async fn is_forgotten(&self, subject: &str) -> Result<bool, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let row = sqlx::query(&self.inner.sql.keys.is_forgotten)
                    .bind(subject)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok(row.is_some())
            }

            async fn record_streams(
                &self,
                subject: &str,
                streams: &[orchestrix::StreamId],
            ) -> Result<(), orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                if streams.is_empty() {
                    return Ok(());
                }
                self.record_subject_streams(subject, streams).await
            }

            /// The count of forgotten subjects and the latest forget (in
            /// microseconds), folded into one number.
            async fn erasure_mark(&self) -> Result<u64, orchestrix::StoreError> {
                let (count, latest): (i64, i64) = sqlx::query_as(&self.inner.sql.keys.erasure_mark)
                    .fetch_one(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                Ok($crate::common::fold_mark(count, latest))
            }

            async fn streams_of(&self, subject: &str) -> Result<Vec<orchestrix::StreamId>, orchestrix::StoreError> {
                $crate::common::validate_key("subject", subject)?;
                let rows: Vec<(String, String)> = sqlx::query_as(&self.inner.sql.keys.streams_of)
                    .bind(subject)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err($crate::common::map_err)?;
                rows.into_iter()
                    .map(|(category, id)| {
                        orchestrix::StreamId::new(category, id).map_err(|e| {
                            orchestrix::StoreError::Backend(
                                format!("a recorded stream of a subject is invalid: {e}").into(),
                            )
                        })
                    })
                    .collect()
            }
        }

        impl $store {
            /// Runs `first` then `second` for `subject` in one transaction:
            /// the rows `second` affected.
            async fn keys_transaction(
                &self,
                subject: &str,
                first: &str,
                second: &str,
            ) -> Result<u64, orchestrix::StoreError> {
                let mut tx = self.inner.pool.begin().await.map_err($crate::common::map_err)?;
                sqlx::query(first).bind(subject).execute(&mut *tx).await.map_err($crate::common::map_err)?;
                let affected = sqlx::query(second)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::common::map_err)?
                    .rows_affected();
                tx.commit().await.map_err($crate::common::map_err)?;
                Ok(affected)
            }
        }
    };
}

pub(crate) use impl_key_store;
