//! Given/when/then fixtures for projections.

use std::collections::HashMap;
use std::fmt;

use chrono::Utc;
use uuid::Uuid;

use crate::envelope::{Metadata, RecordedEvent};
use crate::error::BoxError;
use crate::event::Event;
use crate::projection::Projection;
use crate::stream::StreamId;

/// Feeds a projection events as the engine would (filter included) and
/// hands it back for assertions, without any store.
///
/// With [`ProjectionFixture::deliver_twice`], every event is delivered
/// twice in a row, as at-least-once delivery may after a crash: a correct
/// projection ends in the same state.
///
/// ```
/// use orchestrix::prelude::*;
/// use orchestrix::projection::Projection;
/// use orchestrix::testing::ProjectionFixture;
/// use orchestrix::{store::EventFilter, envelope::RecordedEvent, StreamId};
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub enum CounterEvent { Added { n: u64 } }
///
/// #[derive(Default)]
/// struct Total { sum: u64, last_position: u64 }
///
/// #[orchestrix::async_trait]
/// impl Projection for Total {
///     fn name(&self) -> std::borrow::Cow<'static, str> { "total".into() }
///     fn filter(&self) -> EventFilter { EventFilter::types(CounterEvent::type_names()) }
///     async fn handle(&mut self, record: &RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
///         if record.global_position <= self.last_position { return Ok(()) } // idempotent
///         let CounterEvent::Added { n } = record.decode()?;
///         self.sum += n;
///         self.last_position = record.global_position;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stream = StreamId::new("Counter", "1").unwrap();
/// let total = ProjectionFixture::new(Total::default())
///     .given(&stream, [CounterEvent::Added { n: 2 }])
///     .when(&stream, [CounterEvent::Added { n: 3 }])
///     .deliver_twice()
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(total.sum, 5);
/// # }
/// ```
pub struct ProjectionFixture<P> {
    projection: P,
    records: Vec<RecordedEvent>,
    versions: HashMap<StreamId, u64>,
    twice: bool,
    encoding_error: Option<String>,
}

impl<P> fmt::Debug for ProjectionFixture<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionFixture")
            .field("events", &self.records.len())
            .field("twice", &self.twice)
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionFixture<P> {
    /// A fixture around a projection in its initial state.
    pub fn new(projection: P) -> Self {
        Self { projection, records: Vec::new(), versions: HashMap::new(), twice: false, encoding_error: None }
    }

    /// Past events of `stream`, delivered first.
    pub fn given<E: Event>(self, stream: &StreamId, events: impl IntoIterator<Item = E>) -> Self {
        self.when(stream, events)
    }

    /// Events of `stream` delivered after the given ones; versions and
    /// global positions continue where the previous events left off.
    pub fn when<E: Event>(mut self, stream: &StreamId, events: impl IntoIterator<Item = E>) -> Self {
        for event in events {
            let data = match event.encode() {
                Ok(data) => data,
                Err(error) => {
                    self.encoding_error.get_or_insert_with(|| format!("event {event:?} does not serialize: {error}"));
                    continue;
                }
            };
            let version = self.versions.entry(stream.clone()).or_default();
            *version += 1;
            self.records.push(RecordedEvent {
                id: Uuid::now_v7(),
                stream: stream.clone(),
                stream_version: *version,
                global_position: self.records.len() as u64 + 1,
                recorded_at: Utc::now(),
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                data,
                metadata: Metadata::default(),
            });
        }
        self
    }

    /// Delivers every event twice in a row (at-least-once delivery).
    pub fn deliver_twice(mut self) -> Self {
        self.twice = true;
        self
    }

    /// Delivers the events the projection's filter passes, in order, and
    /// returns the projection; the first handler error ends the run.
    pub async fn run(mut self) -> Result<P, BoxError> {
        if let Some(error) = self.encoding_error {
            return Err(error.into());
        }
        let filter = self.projection.filter();
        for record in self.records.iter().filter(|r| filter.matches_event(r)) {
            self.projection.handle(record).await?;
            if self.twice {
                self.projection.handle(record).await?;
            }
        }
        Ok(self.projection)
    }
}
