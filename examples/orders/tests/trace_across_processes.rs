//! One trace from an HTTP request to the read-model update and the saga
//! in another process: the api and a worker run as child processes that
//! export OTLP/HTTP JSON to a receiver in this test (configured only by
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL`, flushed
//! on SIGTERM); one request with a known `traceparent`; then every link of
//! the chain is checked by span and parent span id. Needs
//! `ORCHESTRIX_PG_URL` and `ORCHESTRIX_NATS_URL`.

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use futures_util::StreamExt;
use orchestrix::{store::EventStore, StreamId, Uuid};
use serde_json::Value;
use support::{poll, Place, Process};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const ALL_PARTITIONS: &str = "{0, 1, 2, 3, 4, 5, 6, 7}";

/// A span as exported, with the service that exported it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

type Received = Arc<Mutex<Vec<Span>>>;

fn text(value: &Value) -> String {
    match value {
        Value::Object(map) => map.values().next().map(text).unwrap_or_default(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Takes an OTLP/JSON `ExportTraceServiceRequest`.
async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    let request: Value = serde_json::from_slice(&body).expect("the exporter sends OTLP JSON");
    let mut spans = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|kv| kv["key"] == "service.name")
            .map(|kv| text(&kv["value"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let field = |key: &str| span[key].as_str().unwrap_or_default().to_lowercase();
                spans.push(Span {
                    service: service.clone(),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    trace_id: field("traceId"),
                    id: field("spanId"),
                    parent: field("parentSpanId"),
                    attributes: span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), text(&kv["value"])))
                        .collect(),
                });
            }
        }
    }
    received.lock().unwrap_or_else(PoisonError::into_inner).extend(spans);
    "{}"
}

/// The one span of the trace that `pick` accepts.
fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE_ID && pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} in the trace; found {found:#?}");
    found[0]
}

fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        child.parent, parent.id,
        "`{}` ({}) must be a child of `{}` ({})",
        child.name, child.service, parent.name, parent.service
    );
}

#[cfg_attr(
    not(all(orchestrix_pg, orchestrix_nats)),
    ignore = "needs ORCHESTRIX_PG_URL and ORCHESTRIX_NATS_URL (PostgreSQL and NATS servers), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_request_to_the_worker() {
    let Some(place) = Place::new().await else { return };
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/v1/traces", post(receive)).with_state(Arc::clone(&received));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
    ];

    let args = place.args();
    let mut api_args = vec!["--addr".to_owned(), "127.0.0.1:0".to_owned()];
    api_args.extend(args.iter().cloned());
    let mut api = Process::spawn("api", &api_args, &env);
    let addr =
        api.wait_for_line(Duration::from_mins(1), |line| line.strip_prefix("listening on ").map(str::to_owned)).await;
    let mut worker = Process::spawn("worker", &args, &env);
    worker
        .wait_for_line(Duration::from_mins(1), |line| {
            (support::parse_partitions(line)? == (ALL_PARTITIONS.to_owned(), ALL_PARTITIONS.to_owned())).then_some(())
        })
        .await;

    let response = reqwest::Client::new()
        .post(format!("http://{addr}/orders"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&serde_json::json!({"customer": "ada", "amount": 1200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let id = response.json::<orders::Accepted>().await.unwrap().id;

    // The saga has ended (its last event is stored) and the read model
    // shows the completed order.
    let saga = StreamId::new("saga-Fulfilment", id.to_string()).unwrap();
    let views = orders::PgOrderViews::new(place.store.pool().clone(), &place.schema);
    let done = poll(Duration::from_mins(1), || async {
        let mut events = place.store.read_stream(&saga, 1);
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event.unwrap().event_type.clone());
        }
        let view = views.get(id).await.unwrap();
        (last.as_deref() == Some("SagaCompleted") && view.is_some_and(|v| v.status == orders::Status::Completed))
            .then_some(())
    })
    .await;
    assert!(done.is_some(), "the order is fulfilled within a minute");
    // SIGTERM: both processes stop gracefully and flush their exporters.
    worker.terminate().await;
    api.terminate().await;

    let spans = received.lock().unwrap_or_else(PoisonError::into_inner).clone();
    check_chain(&spans, id);
    place.delete().await;
}

fn check_chain(spans: &[Span], id: Uuid) {
    let in_api = |s: &Span| s.service == "orders-api";
    let in_worker = |s: &Span| s.service == "orders-worker";
    // The api: request -> command -> append; the relay's publish is a
    // child of the command whose event it publishes.
    let request = one(spans, "request span", |s| in_api(s) && s.name == "POST /orders");
    assert_eq!(request.parent, CALLER_SPAN, "the request span continues the caller's traceparent");
    let place = one(spans, "PlaceOrder command", |s| {
        in_api(s) && s.name == "orchestrix.command" && s.attribute("command") == Some("PlaceOrder")
    });
    assert_child(place, request);
    let append = one(spans, "append of the order", |s| {
        in_api(s) && s.name == "orchestrix.append" && s.attribute("aggregate") == Some("Order")
    });
    assert_child(append, place);
    let publish = one(spans, "publish of OrderPlaced", |s| {
        in_api(s) && s.name == "orchestrix.publish" && s.attribute("event_type") == Some("OrderPlaced")
    });
    assert_child(publish, place);
    assert_eq!(publish.attribute("stream"), Some(format!("Order/{id}").as_str()));

    // The worker, another process: the read model's and the saga's
    // handling of OrderPlaced are children of the publish.
    let handled = |projection: &'static str| {
        one(spans, projection, move |s| {
            in_worker(s)
                && s.name == "orchestrix.projection.handle"
                && s.attribute("projection") == Some(projection)
                && s.attribute("event_type") == Some("OrderPlaced")
        })
    };
    let view = handled("order-views");
    assert_child(view, publish);
    let saga_handle = handled("saga-Fulfilment");
    assert_child(saga_handle, publish);
    let saga = one(spans, "saga run", |s| in_worker(s) && s.name == "orchestrix.saga");
    assert_child(saga, saga_handle);
    let accept = one(spans, "accept step", |s| {
        in_worker(s) && s.name == "orchestrix.saga.step" && s.attribute("step") == Some("accept")
    });
    assert_child(accept, saga);
    let accept_command = one(spans, "AcceptOrder command", |s| {
        in_worker(s) && s.name == "orchestrix.command" && s.attribute("command") == Some("AcceptOrder")
    });
    assert_child(accept_command, accept);
    // And back: the api's relay publishes the saga's OrderAccepted in the
    // same trace. Its parent is the PlaceOrder command, not the worker's
    // AcceptOrder command: a saga passes the traceparent of its starting
    // event to the metadata of every command it sends (orchestrix::saga).
    let published_back = one(spans, "publish of OrderAccepted", |s| {
        in_api(s) && s.name == "orchestrix.publish" && s.attribute("event_type") == Some("OrderAccepted")
    });
    assert_child(published_back, place);
    for step in ["reserve_payment", "ship", "complete"] {
        let span =
            one(spans, step, |s| in_worker(s) && s.name == "orchestrix.saga.step" && s.attribute("step") == Some(step));
        assert_child(span, saga);
    }
}
