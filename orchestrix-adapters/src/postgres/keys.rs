//! The PostgreSQL [`KeyStore`]: data subjects' keys in `<schema>.data_keys`
//! (migration 2).

use async_trait::async_trait;
use orchestrix::crypto::DataKey;
use orchestrix::store::KeyStore;
use orchestrix::StoreError;
use uuid::Uuid;

use super::PgStore;
use crate::common::{map_err, validate_key};

impl PgStore {
    fn keys_table(&self) -> String {
        format!("\"{}\".data_keys", self.inner.config.schema)
    }
}

/// Keys are rows `(subject, key_id, material)`; deleting a key deletes its
/// row. PostgreSQL keeps a deleted row's bytes until `VACUUM` reclaims the
/// page, and in WAL archives and backups until they expire: plan retention
/// accordingly.
#[async_trait]
impl KeyStore for PgStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        validate_key("subject", subject)?;
        let row: Option<(Uuid, Vec<u8>)> =
            sqlx::query_as(&format!("SELECT key_id, material FROM {} WHERE subject = $1", self.keys_table()))
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
        // does nothing; the SELECT (a new statement) sees the winner's key.
        sqlx::query(&format!(
            "INSERT INTO {} (subject, key_id, material) VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING",
            self.keys_table()
        ))
        .bind(subject)
        .bind(key.id())
        .bind(key.material().as_slice())
        .execute(&self.inner.pool)
        .await
        .map_err(map_err)?;
        self.key(subject)
            .await?
            .ok_or_else(|| StoreError::Backend("the key of a subject vanished right after it was created".into()))
    }

    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError> {
        validate_key("subject", subject)?;
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE subject = $1", self.keys_table()))
            .bind(subject)
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(deleted > 0)
    }
}
