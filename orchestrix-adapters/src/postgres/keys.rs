//! The PostgreSQL [`KeyStore`](orchestrix::store::KeyStore): data subjects'
//! keys in `<schema>.data_keys` (migration 2), forgotten subjects in
//! `<schema>.forgotten_subjects` and the streams that hold each subject's
//! personal data in `<schema>.subject_streams` (migration 4); the logic is
//! the shared one of [`crate::common::keys`].
//!
//! PostgreSQL keeps a deleted key row's bytes until `VACUUM` reclaims the
//! page, and in WAL archives and backups until they expire: plan retention
//! accordingly.

use orchestrix::{StoreError, StreamId};

use super::ports::PgDialect;
use super::PgStore;
use crate::common::keys::{impl_key_store, KeySql};
use crate::common::map_err;

/// The key store's statements for the schema `s`.
pub(super) fn key_sql(s: &str) -> KeySql {
    let (keys, forgotten, streams) =
        (format!("\"{s}\".data_keys"), format!("\"{s}\".forgotten_subjects"), format!("\"{s}\".subject_streams"));
    KeySql {
        key: format!(
            "SELECT key_id, material FROM {keys} WHERE subject = $1 \
             AND NOT EXISTS (SELECT 1 FROM {forgotten} WHERE subject = $1)"
        ),
        create: format!(
            "INSERT INTO {keys} (subject, key_id, material) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM {forgotten} WHERE subject = $1) \
             ON CONFLICT (subject) DO NOTHING"
        ),
        forget: format!("INSERT INTO {forgotten} (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING"),
        delete_key: format!("DELETE FROM {keys} WHERE subject = $1"),
        readmit: format!("DELETE FROM {forgotten} WHERE subject = $1"),
        is_forgotten: format!("SELECT 1 FROM {forgotten} WHERE subject = $1"),
        erasure_mark: format!(
            "SELECT count(*), coalesce((extract(epoch FROM max(forgotten_at)) * 1000000)::bigint, 0) FROM {forgotten}"
        ),
        streams_of: format!(
            "SELECT category, aggregate_id FROM {streams} WHERE subject = $1 ORDER BY category, aggregate_id"
        ),
        record_stream: format!(
            "INSERT INTO {streams} (subject, category, aggregate_id) \
             SELECT $1, c, i FROM unnest($2::text[], $3::text[]) AS t(c, i) ON CONFLICT DO NOTHING"
        ),
    }
}

impl PgStore {
    /// Records `streams` of `subject` in one statement.
    async fn record_subject_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError> {
        let categories: Vec<&str> = streams.iter().map(StreamId::category).collect();
        let ids: Vec<&str> = streams.iter().map(StreamId::id).collect();
        sqlx::query(&self.inner.sql.keys.record_stream)
            .bind(subject)
            .bind(&categories)
            .bind(&ids)
            .execute(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

impl_key_store!(PgStore, PgDialect);
