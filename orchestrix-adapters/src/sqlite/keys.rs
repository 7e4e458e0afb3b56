//! The SQLite [`KeyStore`](orchestrix::store::KeyStore): data subjects'
//! keys in `<prefix>data_keys`, forgotten subjects in
//! `<prefix>forgotten_subjects`, and the streams that hold each subject's
//! personal data in `<prefix>subject_streams`; the logic is the shared
//! one of [`crate::common::keys`].
//!
//! SQLite may keep the deleted bytes of a forgotten key in free pages until
//! they are reused: run with `PRAGMA secure_delete = ON` (or `VACUUM`)
//! where that matters, and mind backups.

use orchestrix::{StoreError, StreamId};

use super::ports::SqliteDialect;
use super::SqliteStore;
use crate::common::keys::{impl_key_store, KeySql};
use crate::common::map_err;

/// The key store's statements for the table prefix `p`.
pub(super) fn key_sql(p: &str) -> KeySql {
    let (keys, forgotten, streams) =
        (format!("{p}data_keys"), format!("{p}forgotten_subjects"), format!("{p}subject_streams"));
    KeySql {
        key: format!(
            "SELECT key_id, material FROM {keys} WHERE subject = ?1 \
             AND NOT EXISTS (SELECT 1 FROM {forgotten} WHERE subject = ?1)"
        ),
        create: format!(
            "INSERT INTO {keys} (subject, key_id, material, created_at) \
             SELECT ?1, ?2, ?3, CAST(strftime('%s', 'now') AS INTEGER) \
             WHERE NOT EXISTS (SELECT 1 FROM {forgotten} WHERE subject = ?1) \
             ON CONFLICT (subject) DO NOTHING"
        ),
        forget: format!(
            "INSERT INTO {forgotten} (subject, forgotten_at) \
             VALUES (?1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)) \
             ON CONFLICT (subject) DO NOTHING"
        ),
        delete_key: format!("DELETE FROM {keys} WHERE subject = ?1"),
        readmit: format!("DELETE FROM {forgotten} WHERE subject = ?1"),
        is_forgotten: format!("SELECT 1 FROM {forgotten} WHERE subject = ?1"),
        erasure_mark: format!("SELECT count(*), coalesce(max(forgotten_at), 0) FROM {forgotten}"),
        streams_of: format!(
            "SELECT category, aggregate_id FROM {streams} WHERE subject = ?1 ORDER BY category, aggregate_id"
        ),
        record_stream: format!(
            "INSERT INTO {streams} (subject, category, aggregate_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
        ),
    }
}

impl SqliteStore {
    /// Records `streams` of `subject`, one statement each (SQLite has no
    /// arrays to bind).
    async fn record_subject_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        for stream in streams {
            sqlx::query(&self.inner.sql.keys.record_stream)
                .bind(subject)
                .bind(stream.category())
                .bind(stream.id())
                .execute(&self.inner.pool)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }
}

impl_key_store!(SqliteStore, SqliteDialect);
