//! Observability: spans and their fields, one trace from a request to the
//! read model and through a saga (asserted with the OpenTelemetry SDK's
//! in-memory exporter), and a Prometheus exposition that `promtool`
//! accepts.

use std::sync::Arc;
use std::time::Duration;

use bank::{Account, Balances, BankError, Deposit, OpenAccount, RequestTransfer, Transfer, TransferSaga, Withdraw};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore};
use orchestrix::projection::{PoisonPolicy, ProjectionEngine, ProjectionOptions};
use orchestrix::saga::SagaManager;
use orchestrix::{telemetry, CommandError, Orchestrix, Uuid};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Installs the OpenTelemetry propagator once for this test binary.
fn install_propagator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| orchestrix::trace::install(orchestrix::trace::OpenTelemetryPropagator::new()).unwrap());
}

/// A subscriber that exports every span to memory, for this thread.
fn capture() -> (InMemorySpanExporter, SdkTracerProvider, tracing::subscriber::DefaultGuard) {
    install_propagator();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("observability-test"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, provider, guard)
}

fn app() -> Orchestrix {
    Orchestrix::builder().in_memory().aggregate::<Account>().aggregate::<Transfer>().build().unwrap()
}

fn engine(app: &Orchestrix) -> ProjectionEngine {
    ProjectionEngine::new(Arc::clone(app.event_store()), InMemoryCheckpointStore::new())
        .with_dead_letters(InMemoryDeadLetterStore::new())
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key).map(Value::to_string).unwrap_or_default()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn by_id(spans: &[SpanData], id: SpanId) -> Option<&SpanData> {
    spans.iter().find(|s| s.span_context.span_id() == id)
}

/// The chain of span names from `span` up to the root.
fn ancestry(spans: &[SpanData], span: &SpanData) -> Vec<String> {
    let mut names = vec![span.name.to_string()];
    let mut parent = span.parent_span_id;
    while let Some(next) = by_id(spans, parent) {
        names.push(next.name.to_string());
        parent = next.parent_span_id;
    }
    names
}

#[tokio::test]
async fn one_trace_runs_from_the_request_to_the_read_model() {
    let (exporter, _provider, _guard) = capture();
    let app = app();
    let id = Uuid::now_v7();
    let request = tracing::info_span!("http.request", route = "/accounts/{id}/deposits");
    let outcome = async {
        app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
        app.execute(id, Deposit { amount: 70 }).await.unwrap()
    }
    .instrument(request)
    .await;

    let balances = Balances::default();
    let mut handle = engine(&app).spawn(balances.clone(), ProjectionOptions::default());
    handle.wait_for_position(outcome.events[0].global_position, Duration::from_secs(30)).await.unwrap();
    handle.stop().await.unwrap();
    assert_eq!(balances.get(&id).unwrap().balance, 70);

    let spans = exporter.get_finished_spans().unwrap();
    let root = named(&spans, "http.request")[0];
    let trace_id = root.span_context.trace_id();
    let commands = named(&spans, "orchestrix.command");
    assert_eq!(commands.len(), 2);
    for command in &commands {
        assert_eq!(command.span_context.trace_id(), trace_id, "the command joins the request's trace");
        assert_eq!(command.parent_span_id, root.span_context.span_id(), "the command is a child of the request");
        assert_eq!(text(command, "trace_id"), trace_id.to_string());
    }
    // The events carry the context of the command that recorded them.
    let deposit = commands.iter().find(|c| text(c, "command") == "Deposit").unwrap();
    let traceparent = outcome.events[0].metadata.traceparent.clone().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", trace_id, deposit.span_context.span_id()),
        "traceparent recorded in the metadata"
    );
    // Each projection handling is a child of the command whose event it handles.
    let handled = named(&spans, "orchestrix.projection.handle");
    assert_eq!(handled.len(), 2);
    for span in &handled {
        assert_eq!(span.span_context.trace_id(), trace_id, "the read-model update joins the request's trace");
        assert!(span.parent_span_is_remote, "the parent comes from the event's metadata");
        let parent = by_id(&spans, span.parent_span_id).unwrap();
        assert_eq!(parent.name, "orchestrix.command");
        assert_eq!(text(span, "projection"), "balances");
        assert_eq!(text(span, "stream"), format!("Account/{id}"));
    }
    let last = handled.iter().find(|s| text(s, "event_type") == "AccountDeposited").unwrap();
    assert_eq!(last.parent_span_id, deposit.span_context.span_id());
    assert_eq!(text(last, "global_position"), outcome.events[0].global_position.to_string());
    assert_eq!(ancestry(&spans, last), ["orchestrix.projection.handle", "orchestrix.command", "http.request"]);
}

#[tokio::test]
async fn a_saga_continues_the_trace_of_the_event_that_started_it() {
    let (exporter, _provider, _guard) = capture();
    let app = app();
    let (from, to) = (Uuid::now_v7(), Uuid::now_v7());
    app.execute(from, OpenAccount { owner: "Ada".into() }).await.unwrap();
    app.execute(from, Deposit { amount: 100 }).await.unwrap();
    app.execute(to, OpenAccount { owner: "Bob".into() }).await.unwrap();
    let request = tracing::info_span!("http.transfer");
    let requested = app
        .execute(Uuid::now_v7(), RequestTransfer { from, to, amount: 30 })
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let manager = SagaManager::new(app.clone(), TransferSaga);
    let mut handle = manager.spawn(&engine(&app), ProjectionOptions::default()).await.unwrap();
    handle.wait_for_position(requested.events[0].global_position, Duration::from_secs(30)).await.unwrap();
    handle.stop().await.unwrap();
    assert_eq!(app.load::<Account>(&to).await.unwrap().state.balance, 30);

    let spans = exporter.get_finished_spans().unwrap();
    let root = named(&spans, "http.transfer")[0];
    let trace_id: TraceId = root.span_context.trace_id();
    let steps = named(&spans, "orchestrix.saga.step");
    assert_eq!(steps.len(), 2, "debit and credit");
    for step in &steps {
        assert_eq!(step.span_context.trace_id(), trace_id, "saga steps join the request's trace");
        assert_eq!(text(step, "outcome"), "applied");
        assert_eq!(
            ancestry(&spans, step),
            [
                "orchestrix.saga.step",
                "orchestrix.saga",
                "orchestrix.projection.handle",
                "orchestrix.command",
                "http.transfer"
            ]
        );
    }
    let step_commands: Vec<_> = named(&spans, "orchestrix.command")
        .into_iter()
        .filter(|c| by_id(&spans, c.parent_span_id).is_some_and(|p| p.name == "orchestrix.saga.step"))
        .collect();
    assert_eq!(step_commands.len(), 2, "each step's command is a child of its step");
    assert!(step_commands.iter().all(|c| c.span_context.trace_id() == trace_id));
}

#[tokio::test]
async fn spans_carry_stable_fields_and_record_errors() {
    let (exporter, _provider, _guard) = capture();
    let app = app();
    let id = Uuid::now_v7();
    app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    let refused = app.execute(id, Withdraw { amount: 5, reason: "rent".into() }).await.unwrap_err();
    assert!(matches!(refused, CommandError::Rejected(BankError::InsufficientFunds { .. })));
    let missing = app.execute(Uuid::now_v7(), Deposit { amount: 5 }).await.unwrap_err();
    assert!(matches!(missing, CommandError::AggregateNotFound { .. }));

    let spans = exporter.get_finished_spans().unwrap();
    let commands = named(&spans, "orchestrix.command");
    let open = commands.iter().find(|c| text(c, "command") == "OpenAccount").unwrap();
    assert_eq!(text(open, "aggregate"), "Account");
    assert_eq!(text(open, "aggregate_id"), id.to_string());
    assert_eq!(text(open, "outcome"), "ok");
    assert_eq!(text(open, "version"), "1");
    assert_eq!(text(open, "attempts"), "1");
    assert!(!text(open, "command_id").is_empty() && !text(open, "correlation_id").is_empty());
    let withdraw = commands.iter().find(|c| text(c, "command") == "Withdraw").unwrap();
    assert_eq!(text(withdraw, "outcome"), "rejected");
    assert!(text(withdraw, "error").contains("insufficient funds"), "the error is recorded on the span");
    let deposit = commands.iter().find(|c| text(c, "command") == "Deposit").unwrap();
    assert_eq!(text(deposit, "outcome"), "not_found");

    let append = named(&spans, "orchestrix.append")[0];
    assert_eq!(text(append, "aggregate"), "Account");
    assert_eq!(text(append, "aggregate_id"), id.to_string());
    assert_eq!(text(append, "event_type"), "AccountOpened");
    assert_eq!(text(append, "event_count"), "1");
    assert_eq!(text(append, "version"), "1");
    assert_eq!(text(append, "global_position"), "1");
    assert_eq!(append.parent_span_id, open.span_context.span_id(), "the append is a child of its command");
    let load = named(&spans, "orchestrix.load");
    assert!(!load.is_empty());
    assert!(load.iter().all(|l| text(l, "aggregate") == "Account"));
}

#[tokio::test]
async fn an_explicit_traceparent_wins_and_parents_a_command_outside_any_trace() {
    let (exporter, _provider, _guard) = capture();
    let app = app();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let options = orchestrix::app::CommandOptions::default().traceparent(parent).tracestate("vendor=1");
    let done = app.execute_with(Uuid::now_v7(), OpenAccount { owner: "Ada".into() }, options).await.unwrap();
    assert_eq!(done.events[0].metadata.traceparent.as_deref(), Some(parent));
    assert_eq!(done.events[0].metadata.tracestate.as_deref(), Some("vendor=1"));
    let spans = exporter.get_finished_spans().unwrap();
    let command = named(&spans, "orchestrix.command")[0];
    assert_eq!(command.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(command.parent_span_id.to_string(), "00f067aa0ba902b7");
}

/// The recorder of this test binary (metrics has one global recorder).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(telemetry::COMMAND_DURATION_SECONDS.into()),
                telemetry::DURATION_BUCKETS,
            )
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        telemetry::describe();
        handle
    })
}

/// Fails projection handling of every event, to make dead letters.
#[derive(Debug)]
struct Broken;

#[orchestrix::async_trait]
impl orchestrix::projection::Projection for Broken {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "broken".into()
    }
    fn filter(&self) -> orchestrix::store::EventFilter {
        orchestrix::store::EventFilter::all()
    }
    async fn handle(&mut self, _: &orchestrix::envelope::RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
        Err("always fails".into())
    }
}

#[tokio::test]
async fn the_prometheus_exposition_passes_promtool() {
    let handle = prometheus();
    let app = app();
    let id = Uuid::now_v7();
    app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    for _ in 0..6 {
        app.execute(id, Deposit { amount: 10 }).await.unwrap();
    }
    app.execute(id, Withdraw { amount: 1_000, reason: "too much".into() }).await.unwrap_err();
    // A load outside the command cache starts from the snapshot taken at 5.
    app.repository::<Account>().load(&id).await.unwrap();

    let engine = engine(&app);
    let balances = Balances::default();
    let mut running = engine.spawn(balances, ProjectionOptions::default());
    running.wait_for_position(7, Duration::from_secs(30)).await.unwrap();
    running.stop().await.unwrap();
    let options = ProjectionOptions::default()
        .poison(PoisonPolicy::Park)
        .retry(orchestrix::retry::RetryPolicy::fixed(1, Duration::from_millis(1)));
    let mut broken = engine.spawn(Broken, options);
    broken.wait_for_position(7, Duration::from_secs(30)).await.unwrap();
    broken.stop().await.unwrap();

    let text = handle.render();
    for name in [
        telemetry::COMMANDS_TOTAL,
        telemetry::COMMAND_DURATION_SECONDS,
        telemetry::EVENTS_APPENDED_TOTAL,
        telemetry::SNAPSHOT_LOADS_TOTAL,
        telemetry::PROJECTION_POSITION,
        telemetry::PROJECTION_LAG_EVENTS,
        telemetry::PROJECTION_LAG_SECONDS,
        telemetry::DEAD_LETTERS_TOTAL,
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} is missing from:\n{text}");
    }
    assert!(text.contains(r#"outcome="rejected""#));
    assert!(text.contains(&format!("{}_bucket", telemetry::COMMAND_DURATION_SECONDS)), "a histogram, not a summary");
    promtool_check(&text);
}

/// Runs `promtool check metrics` on the exposition. Without promtool the
/// check is skipped, except on CI (`CI` set), where that is a failure.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not on PATH and CI is set: install the Debian package `prometheus`"
            );
            eprintln!("skipping `promtool check metrics`: promtool is not on PATH (Debian package `prometheus`)");
            return;
        }
        Err(error) => panic!("could not run promtool: {error}"),
    };
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A writer that collects everything the JSON log layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Structured logs carry the correlation and trace ids of the command
/// they were written in.
#[tokio::test]
async fn log_lines_carry_correlation_and_trace_ids() {
    install_propagator();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("logs-test"));
    let captured = Captured::default();
    let writer = captured.clone();
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone());
    let subscriber =
        tracing_subscriber::registry().with(otel).with(json).with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = app();
    let id = Uuid::now_v7();
    let correlation = Uuid::now_v7();
    app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
    let options = orchestrix::app::CommandOptions::default().correlation_id(correlation);
    // A refused command logs why, inside its span.
    let refused = app.execute_with(id, Withdraw { amount: 5, reason: "rent".into() }, options).await;
    assert!(matches!(refused, Err(CommandError::Rejected(BankError::InsufficientFunds { .. }))));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|line| line["fields"]["message"] == "command failed")
        .unwrap_or_else(|| panic!("no `command failed` line in:\n{logs}"));
    let span = &line["span"];
    assert_eq!(span["name"], "orchestrix.command");
    assert_eq!(span["command"], "Withdraw");
    assert_eq!(span["correlation_id"], correlation.to_string(), "{line}");
    let trace_id = span["trace_id"].as_str().unwrap_or_else(|| panic!("no trace id in {line}"));
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");
    let spans = exporter.get_finished_spans().unwrap();
    let command = named(&spans, "orchestrix.command").into_iter().find(|s| text(s, "command") == "Withdraw").unwrap();
    assert_eq!(command.span_context.trace_id().to_string(), trace_id, "the log's trace id is the span's");
}
