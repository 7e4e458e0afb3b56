//! Helpers shared by the integration tests in `tests/`.

use std::sync::Arc;

use futures_util::TryStreamExt;
use orchestrix::{envelope::RecordedEvent, store::EventStore, StreamId};

/// Every event of `stream`, read from version 1.
pub async fn read_stream(store: &dyn EventStore, stream: &StreamId) -> Vec<Arc<RecordedEvent>> {
    store.read_stream(stream, 1).try_collect().await.expect("the stream reads")
}
