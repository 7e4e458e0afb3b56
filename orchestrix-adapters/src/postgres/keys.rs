//! The PostgreSQL [`KeyStore`]: data subjects' keys in `<schema>.data_keys`
//! (migration 2), forgotten subjects in `<schema>.forgotten_subjects` and
//! the streams that hold each subject's personal data in
//! `<schema>.subject_streams` (migration 4).

use async_trait::async_trait;
use orchestrix::personal::DataKey;
use orchestrix::store::KeyStore;
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::PgStore;
use crate::common::{map_err, validate_key};

impl PgStore {
    fn keys_table(&self) -> String {
        format!("\"{}\".data_keys", self.inner.config.schema)
    }

    fn forgotten_table(&self) -> String {
        format!("\"{}\".forgotten_subjects", self.inner.config.schema)
    }

    fn subject_streams_table(&self) -> String {
        format!("\"{}\".subject_streams", self.inner.config.schema)
    }
}

/// Keys are rows `(subject, key_id, material)`; forgetting a subject
/// records it in `forgotten_subjects` (no key material) and deletes its
/// key row, in one transaction. A key is only ever read for a subject that
/// is not forgotten, so a create that raced with a forget opens nothing.
/// PostgreSQL keeps a deleted row's bytes until `VACUUM` reclaims the page,
/// and in WAL archives and backups until they expire: plan retention
/// accordingly.
#[async_trait]
impl KeyStore for PgStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        validate_key("subject", subject)?;
        let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT key_id, material FROM {} WHERE subject = $1 \
             AND NOT EXISTS (SELECT 1 FROM {} WHERE subject = $1)",
            self.keys_table(),
            self.forgotten_table()
        ))
        .bind(subject)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(map_err)?;
        row.map(|(id, material)| DataKey::from_parts(id, &material)).transpose()
    }

    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError> {
        validate_key("subject", subject)?;
        let key = DataKey::generate();
        // A racing creator's INSERT waits for the first one's commit, then
        // does nothing; the SELECT (a new statement) sees the winner's key,
        // unless the subject was forgotten meanwhile.
        sqlx::query(&format!(
            "INSERT INTO {} (subject, key_id, material) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM {} WHERE subject = $1) \
             ON CONFLICT (subject) DO NOTHING",
            self.keys_table(),
            self.forgotten_table()
        ))
        .bind(subject)
        .bind(key.id())
        .bind(key.material().as_slice())
        .execute(&self.inner.pool)
        .await
        .map_err(map_err)?;
        match self.key(subject).await? {
            Some(key) => Ok(key),
            None if self.is_forgotten(subject).await? => {
                Err(StoreError::SubjectForgotten { subject: subject.to_owned() })
            }
            None => Err(StoreError::Backend("the key of a subject vanished right after it was created".into())),
        }
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        validate_key("subject", subject)?;
        let mut tx = self.inner.pool.begin().await.map_err(map_err)?;
        sqlx::query(&format!(
            "INSERT INTO {} (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING",
            self.forgotten_table()
        ))
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE subject = $1", self.keys_table()))
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(deleted > 0)
    }

    /// Also deletes a key that a create racing with the forget left
    /// behind, so the re-admitted subject starts with a new one.
    async fn readmit(&self, subject: &str) -> Result<bool, StoreError> {
        validate_key("subject", subject)?;
        let mut tx = self.inner.pool.begin().await.map_err(map_err)?;
        sqlx::query(&format!("DELETE FROM {} WHERE subject = $1", self.keys_table()))
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let readmitted = sqlx::query(&format!("DELETE FROM {} WHERE subject = $1", self.forgotten_table()))
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(readmitted > 0)
    }

    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError> {
        validate_key("subject", subject)?;
        let row: Option<(i32,)> =
            sqlx::query_as(&format!("SELECT 1 FROM {} WHERE subject = $1", self.forgotten_table()))
                .bind(subject)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(map_err)?;
        Ok(row.is_some())
    }

    /// One statement for all of `streams`.
    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        validate_key("subject", subject)?;
        if streams.is_empty() {
            return Ok(());
        }
        let categories: Vec<&str> = streams.iter().map(StreamId::category).collect();
        let ids: Vec<&str> = streams.iter().map(StreamId::id).collect();
        sqlx::query(&format!(
            "INSERT INTO {} (subject, category, aggregate_id) \
             SELECT $1, c, i FROM unnest($2::text[], $3::text[]) AS t(c, i) ON CONFLICT DO NOTHING",
            self.subject_streams_table()
        ))
        .bind(subject)
        .bind(&categories)
        .bind(&ids)
        .execute(&self.inner.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// The count of forgotten subjects and the latest forget (in
    /// microseconds), folded into one number.
    async fn erasure_mark(&self) -> Result<u64, StoreError> {
        let (count, latest): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*), coalesce((extract(epoch FROM max(forgotten_at)) * 1000000)::bigint, 0) FROM {}",
            self.forgotten_table()
        ))
        .fetch_one(&self.inner.pool)
        .await
        .map_err(map_err)?;
        Ok(crate::common::fold_mark(count, latest))
    }

    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        validate_key("subject", subject)?;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT category, aggregate_id FROM {} WHERE subject = $1 ORDER BY category, aggregate_id",
            self.subject_streams_table()
        ))
        .bind(subject)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(map_err)?;
        rows.into_iter()
            .map(|(category, id)| {
                StreamId::new(category, id)
                    .map_err(|e| StoreError::Backend(format!("a recorded stream of a subject is invalid: {e}").into()))
            })
            .collect()
    }
}
