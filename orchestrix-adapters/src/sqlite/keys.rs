//! The SQLite [`KeyStore`]: data subjects' keys in `<prefix>data_keys`.

use async_trait::async_trait;
use orchestrix::crypto::DataKey;
use orchestrix::store::KeyStore;
use orchestrix::StoreError;
use uuid::Uuid;

use super::SqliteStore;
use crate::common::{map_err, validate_key};

impl SqliteStore {
    fn keys_table(&self) -> String {
        format!("{}data_keys", self.inner.config.prefix)
    }
}

/// Keys are rows `(subject, key_id, material)`; deleting a key deletes its
/// row. SQLite may keep the deleted bytes in free pages until they are
/// reused: run with `PRAGMA secure_delete = ON` (or `VACUUM`) where that
/// matters, and mind backups.
#[async_trait]
impl KeyStore for SqliteStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        validate_key("subject", subject)?;
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as(&format!("SELECT key_id, material FROM {} WHERE subject = ?1", self.keys_table()))
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
            "INSERT INTO {} (subject, key_id, material, created_at) VALUES (?1, ?2, ?3, CAST(strftime('%s', 'now') AS INTEGER)) \
             ON CONFLICT (subject) DO NOTHING",
            self.keys_table()
        ))
        .bind(subject)
        .bind(key.id().to_string())
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
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE subject = ?1", self.keys_table()))
            .bind(subject)
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        Ok(deleted > 0)
    }
}
