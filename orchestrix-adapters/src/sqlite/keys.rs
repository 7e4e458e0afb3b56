//! The SQLite [`KeyStore`]: data subjects' keys in `<prefix>data_keys`,
//! forgotten subjects in `<prefix>forgotten_subjects`, and the streams
//! that hold each subject's personal data in `<prefix>subject_streams`.

use async_trait::async_trait;
use orchestrix::personal::DataKey;
use orchestrix::store::KeyStore;
use orchestrix::{StoreError, StreamId};
use uuid::Uuid;

use super::SqliteStore;
use crate::common::{map_err, validate_key};

impl SqliteStore {
    fn keys_table(&self) -> String {
        format!("{}data_keys", self.inner.config.prefix)
    }

    fn forgotten_table(&self) -> String {
        format!("{}forgotten_subjects", self.inner.config.prefix)
    }

    fn subject_streams_table(&self) -> String {
        format!("{}subject_streams", self.inner.config.prefix)
    }
}

/// Keys are rows `(subject, key_id, material)`; forgetting a subject
/// deletes its row and records the subject (no key material) in
/// `forgotten_subjects`, in one transaction. A key is only ever read for
/// a subject that is not forgotten, so a create that raced with a forget
/// opens nothing. SQLite may keep the deleted bytes in free pages until
/// they are reused: run with `PRAGMA secure_delete = ON` (or `VACUUM`)
/// where that matters, and mind backups.
#[async_trait]
impl KeyStore for SqliteStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        validate_key("subject", subject)?;
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT key_id, material FROM {} WHERE subject = ?1 \
             AND NOT EXISTS (SELECT 1 FROM {} WHERE subject = ?1)",
            self.keys_table(),
            self.forgotten_table()
        ))
        .bind(subject)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(map_err)?;
        row.map(|(id, material)| {
            let id =
                Uuid::parse_str(&id).map_err(|e| StoreError::Backend(format!("a key id is not a UUID: {e}").into()))?;
            DataKey::from_parts(id, &material)
        })
        .transpose()
    }

    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError> {
        validate_key("subject", subject)?;
        let key = DataKey::generate();
        sqlx::query(&format!(
            "INSERT INTO {} (subject, key_id, material, created_at) \
             SELECT ?1, ?2, ?3, CAST(strftime('%s', 'now') AS INTEGER) \
             WHERE NOT EXISTS (SELECT 1 FROM {} WHERE subject = ?1) \
             ON CONFLICT (subject) DO NOTHING",
            self.keys_table(),
            self.forgotten_table()
        ))
        .bind(subject)
        .bind(key.id().to_string())
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
            "INSERT INTO {} (subject, forgotten_at) VALUES (?1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) \
             ON CONFLICT (subject) DO NOTHING",
            self.forgotten_table()
        ))
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE subject = ?1", self.keys_table()))
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
        sqlx::query(&format!("DELETE FROM {} WHERE subject = ?1", self.keys_table()))
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let readmitted = sqlx::query(&format!("DELETE FROM {} WHERE subject = ?1", self.forgotten_table()))
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
        let row: Option<(i64,)> =
            sqlx::query_as(&format!("SELECT 1 FROM {} WHERE subject = ?1", self.forgotten_table()))
                .bind(subject)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(map_err)?;
        Ok(row.is_some())
    }

    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        validate_key("subject", subject)?;
        let sql = format!(
            "INSERT INTO {} (subject, category, aggregate_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            self.subject_streams_table()
        );
        for stream in streams {
            sqlx::query(&sql)
                .bind(subject)
                .bind(stream.category())
                .bind(stream.id())
                .execute(&self.inner.pool)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    /// The count of forgotten subjects and the latest forget (in
    /// microseconds), folded into one number.
    async fn erasure_mark(&self) -> Result<u64, StoreError> {
        let (count, latest): (i64, i64) =
            sqlx::query_as(&format!("SELECT count(*), coalesce(max(forgotten_at), 0) FROM {}", self.forgotten_table()))
                .fetch_one(&self.inner.pool)
                .await
                .map_err(map_err)?;
        Ok(crate::common::fold_mark(count, latest))
    }

    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        validate_key("subject", subject)?;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT category, aggregate_id FROM {} WHERE subject = ?1 ORDER BY category, aggregate_id",
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
