//! Re-tagging ([`orchestrix::retag`]): the tags in stored events' metadata
//! rewritten in place by one statement; the generated `tags` column and
//! its GIN index (ADR 0023) follow.

use async_trait::async_trait;
use orchestrix::retag::{normalize_tag_changes, Retag, TagChange};
use orchestrix::StoreError;

use super::PgStore;
use crate::common::{map_err, to_i64};

#[async_trait]
impl Retag for PgStore {
    async fn replace_tags(&self, mut changes: Vec<TagChange>) -> Result<(), StoreError> {
        normalize_tag_changes(&mut changes)?;
        if changes.is_empty() {
            return Ok(());
        }
        let positions: Vec<i64> = changes.iter().map(|change| to_i64(change.position)).collect();
        let tags = changes
            .iter()
            .map(|change| serde_json::to_string(&change.tags))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::backend)?;
        let sql = format!(
            "UPDATE \"{}\".events e SET metadata = CASE WHEN c.tags = '[]'::jsonb THEN e.metadata - 'tags' \
             ELSE jsonb_set(e.metadata, '{{tags}}', c.tags) END \
             FROM unnest($1::int8[], $2::text[]::jsonb[]) AS c(pos, tags) WHERE e.global_position = c.pos",
            self.inner.config.schema()
        );
        let mut tx = self.inner.pool.begin().await.map_err(map_err)?;
        let updated = sqlx::query(&sql).bind(&positions).bind(&tags).execute(&mut *tx).await.map_err(map_err)?;
        if updated.rows_affected() != changes.len() as u64 {
            let mut found: Vec<i64> = sqlx::query_scalar(&format!(
                "SELECT global_position FROM \"{}\".events WHERE global_position = ANY($1::int8[])",
                self.inner.config.schema()
            ))
            .bind(&positions)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
            found.sort_unstable();
            let missing = changes.iter().find(|change| found.binary_search(&to_i64(change.position)).is_err());
            let position = missing.map_or(0, |change| change.position);
            return Err(StoreError::InvalidInput(format!("no event at global position {position} to re-tag")));
        }
        tx.commit().await.map_err(map_err)
    }
}
