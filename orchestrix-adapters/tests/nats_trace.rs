//! One trace across the NATS hop: command span -> `orchestrix.publish`
//! (the relay) -> `orchestrix.projection.handle` (the worker), the last
//! joined through the message's `traceparent` header, asserted with the
//! OpenTelemetry SDK's in-memory exporter.

mod nats_support;

use nats_support::{client, counted, Ledger, Place};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore};
use orchestrix::{
    store::{EventStore, ExpectedVersion},
    StreamId,
};
use orchestrix_adapters::nats::{ProjectionWorker, Relay, RelayOptions, SoleWorker, WorkerOptions};
use tracing_subscriber::layer::SubscriberExt;

#[cfg_attr(
    not(orchestrix_nats),
    ignore = "needs ORCHESTRIX_NATS_URL (a NATS server with JetStream), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_span_is_a_child_of_the_publish_span() {
    let Some(client) = client().await else { return };
    orchestrix::trace::install(orchestrix::trace::OpenTelemetryPropagator::new()).unwrap();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("nats-trace-test"));
    // Global, so that the relay's and the worker's tasks are traced too.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    let place = Place::new(client, 2);
    let store = InMemoryEventStore::new();
    let stream = StreamId::new("Tally", "traced").unwrap();
    let request = tracing::info_span!("http.request");
    let mut event = counted(5);
    request.in_scope(|| orchestrix::trace::inject_into(&mut event.metadata));
    assert!(event.metadata.traceparent.is_some());
    let recorded = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
    drop(request);

    let mut relay = Relay::new(
        place.client.clone(),
        store,
        InMemoryCheckpointStore::new(),
        place.subjects.clone(),
        place.stream.clone(),
        RelayOptions::default(),
    )
    .spawn();
    relay.wait_for_position(recorded[0].global_position).await;
    let ledger = Ledger::named("traced");
    let worker = ProjectionWorker::new(place.client.clone(), place.subjects.clone(), place.stream.clone(), SoleWorker);
    let mut handle = worker.spawn(ledger.clone(), WorkerOptions::default());
    handle.wait_for(|s| s.handled >= 1).await;
    handle.stop().await.unwrap();
    relay.stop().await.unwrap();
    place.delete().await;

    let spans = exporter.get_finished_spans().unwrap();
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no `{name}` span"));
    let root = find("http.request");
    let publish = find("orchestrix.publish");
    let handled = find("orchestrix.projection.handle");
    let trace_id = root.span_context.trace_id();
    assert_eq!(publish.span_context.trace_id(), trace_id, "the publish joins the request's trace");
    assert_eq!(publish.parent_span_id, root.span_context.span_id(), "through the event's metadata");
    assert_eq!(handled.span_context.trace_id(), trace_id, "the consumer joins it too");
    assert_eq!(handled.parent_span_id, publish.span_context.span_id(), "the consumer's parent is the publish span");
    assert!(handled.parent_span_is_remote);
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute(publish, "subject"), Some(place.subjects.subject_of(&recorded[0])));
    assert_eq!(attribute(handled, "stream").as_deref(), Some("Tally/traced"));
}
