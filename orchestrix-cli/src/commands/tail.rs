//! `tail`: follow the global log live.

use futures_util::StreamExt as _;
use serde_json::json;

use super::{Options, Selection};
use crate::connect::Store;
use crate::error::Failure;
use crate::output::print_line;

pub(super) async fn tail(
    store: &Store,
    selection: &Selection,
    from: Option<u64>,
    count: Option<u64>,
    options: Options,
) -> Result<(), Failure> {
    let from = match from {
        Some(from) => from,
        None => store.events.head_position().await?.map_or(0, |head| head + 1),
    };
    let mut events = store.events.subscribe(from, selection.filter());
    let mut seen = 0u64;
    if count == Some(0) {
        return Ok(());
    }
    while let Some(event) = events.next().await {
        let event = event?;
        if !selection.admits(&event) {
            continue;
        }
        let line = if options.json {
            json!({"position": event.global_position, "stream": event.stream.to_string(), "version": event.stream_version,
                   "type": event.event_type, "id": event.id, "recorded_at": event.recorded_at,
                   "data": serde_json::from_str::<serde_json::Value>(event.data.get()).unwrap_or_default(),
                   "metadata": event.metadata})
            .to_string()
        } else {
            format!(
                "{position}  {time}  {stream}#{version}  {kind}  {data}",
                position = event.global_position,
                time = event.recorded_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                stream = event.stream,
                version = event.stream_version,
                kind = event.event_type,
                data = event.data.get(),
            )
        };
        print_line(&line)?;
        seen += 1;
        if count.is_some_and(|count| seen >= count) {
            break;
        }
    }
    Ok(())
}
