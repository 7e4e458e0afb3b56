//! Re-tagging ([`orchestrix::retag`]): the tags in a stored event's
//! metadata rewritten in place, under the writer lock, in one transaction.

use async_trait::async_trait;
use orchestrix::retag::{normalize_tag_changes, Retag, TagChange};
use orchestrix::StoreError;

use super::SqliteStore;
use crate::common::{map_err, to_i64};

#[async_trait]
impl Retag for SqliteStore {
    async fn replace_tags(&self, mut changes: Vec<TagChange>) -> Result<(), StoreError> {
        normalize_tag_changes(&mut changes)?;
        let p = &self.inner.config.prefix;
        let set = format!(
            "UPDATE {p}events SET metadata = json_set(metadata, '$.tags', json(?2)) WHERE global_position = ?1"
        );
        let remove =
            format!("UPDATE {p}events SET metadata = json_remove(metadata, '$.tags') WHERE global_position = ?1");
        let _writer = self.inner.writer.lock().await;
        let mut tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        for change in &changes {
            let query = if change.tags.is_empty() {
                sqlx::query(&remove).bind(to_i64(change.position))
            } else {
                let tags = serde_json::to_string(&change.tags).map_err(StoreError::backend)?;
                sqlx::query(&set).bind(to_i64(change.position)).bind(tags)
            };
            if query.execute(&mut *tx).await.map_err(map_err)?.rows_affected() != 1 {
                return Err(StoreError::InvalidInput(format!(
                    "no event at global position {} to re-tag",
                    change.position
                )));
            }
        }
        tx.commit().await.map_err(map_err)
    }
}
