//! `orders api` and `orders worker`: the two processes of the order
//! fulfilment example (see the crate docs and README section
//! "examples/orders").
//!
//! Both read the same PostgreSQL schema and JetStream stream. The api
//! prints `listening on HOST:PORT` on stdout once it serves. Traces go to
//! an OTLP/HTTP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! picks `http/protobuf` (default) or `http/json`. Both stop gracefully on
//! Ctrl-C or SIGTERM, flushing the exporter.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use orchestrix::saga::SagaManager;
use orchestrix::Orchestrix;
use orchestrix_adapters::nats::{
    connect, EventStreamConfig, ProjectionWorker, Relay, RelayOptions, Subjects, WorkerOptions,
};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orders::{Fulfilment, Order, Payment, PgOrderViews, Services, Shipment};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to start before the api and the worker, printed when no role is
/// given and when a service is unreachable.
const SERVICES: &str = "\
orders needs PostgreSQL (127.0.0.1:5432, database `test`) and NATS with
JetStream (127.0.0.1:4222). On the project's machines they run as local
services (CONTRIBUTING.md); if one is down, start it again with:
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
Elsewhere: install PostgreSQL and nats-server from your distribution and
start them (nats-server needs -js).
then run the two roles (--pg-url and --nats-url name other servers):
  cargo run -p orders -- api --addr 127.0.0.1:8080
  cargo run -p orders -- worker";

#[derive(Debug, Parser)]
#[command(name = "orders", about = "Order fulfilment across processes", after_help = SERVICES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The HTTP API, with the relay from the event store to JetStream.
    Api {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
    /// The read model and the fulfilment saga, on JetStream consumers.
    Worker {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The PostgreSQL server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// The PostgreSQL schema of the event store and the read model.
    #[arg(long, default_value = "orders")]
    schema: String,
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The subject prefix of the events.
    #[arg(long, default_value = "orders.events")]
    prefix: String,
    /// The JetStream stream.
    #[arg(long, default_value = "ORDERS_EVENTS")]
    stream: String,
    /// How many partitions the subjects have.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
}

struct Setup {
    store: PgStore,
    client: orchestrix_adapters::nats::async_nats::Client,
    subjects: Subjects,
    stream: EventStreamConfig,
}

impl Common {
    async fn setup(&self) -> Result<Setup, BoxError> {
        let config = PgConfig::new(self.schema.clone())?.with_max_connections(8);
        let store = PgStore::connect(&self.pg_url, config)
            .await
            .map_err(|error| format!("PostgreSQL at {} is unreachable ({error}).\n{SERVICES}", self.pg_url))?;
        store.migrate().await?;
        orders::migrate(store.pool(), &self.schema).await?;
        let unreachable =
            |error: &dyn std::fmt::Display| format!("NATS at {} is unreachable ({error}).\n{SERVICES}", self.nats_url);
        let client = tokio::time::timeout(Duration::from_secs(10), connect(&self.nats_url))
            .await
            .map_err(|elapsed| unreachable(&elapsed))?
            .map_err(|error| unreachable(&error))?;
        let subjects = Subjects::new(self.prefix.clone(), self.partitions)?;
        let stream = EventStreamConfig::new(self.stream.clone())?;
        Ok(Setup { store, client, subjects, stream })
    }
}

/// Spans always get OpenTelemetry ids (so event metadata carries them and
/// incoming `traceparent`s are honoured); they are exported only when an
/// OTLP endpoint is configured.
fn telemetry(service: &'static str) -> Result<SdkTracerProvider, BoxError> {
    let resource = Resource::builder().with_service_name(service).build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if configured {
        let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            Ok("http/json") => Protocol::HttpJson,
            Ok("http/protobuf" | "") | Err(_) => Protocol::HttpBinary,
            Ok(other) => {
                return Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL `{other}`: use http/protobuf or http/json").into())
            }
        };
        // The endpoint, headers and timeout come from the OTEL_* variables.
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(protocol).build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service)).with_filter(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry().with(otel).with(logs).try_init()?;
    orchestrix::trace::install(orchestrix::trace::OpenTelemetryPropagator::new())?;
    Ok(provider)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn api(addr: SocketAddr, common: &Common) -> Result<(), BoxError> {
    let Setup { store, client, subjects, stream } = common.setup().await?;
    let views = PgOrderViews::new(store.pool().clone(), &common.schema);
    let app = Orchestrix::builder().event_store(store.clone()).aggregate::<Order>().build()?;
    let relay = Relay::new(client, store.clone(), store, subjects, stream, RelayOptions::default()).spawn();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "listening");
    println!("listening on {local}");
    std::io::stdout().flush()?;
    axum::serve(listener, orders::router(orders::AppState { app, views }))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    relay.stop().await?;
    Ok(())
}

async fn worker(common: &Common) -> Result<(), BoxError> {
    let Setup { store, client, subjects, stream } = common.setup().await?;
    let services = Services::new(store.pool().clone(), &common.schema);
    let app = Orchestrix::builder()
        .event_store(store.clone())
        .aggregate::<Order>()
        .aggregate::<Payment>()
        .aggregate::<Shipment>()
        .service(services)
        .build()?;
    let saga = SagaManager::new(app, Fulfilment);
    let views = PgOrderViews::new(store.pool().clone(), &common.schema);
    let options = WorkerOptions { lease_interval: Duration::from_millis(500), ..WorkerOptions::default() };
    let view_worker = ProjectionWorker::new(client.clone(), subjects.clone(), stream.clone(), store.clone())
        .spawn(views, options.clone());
    let saga_worker = ProjectionWorker::new(client, subjects, stream, store).spawn(saga, options);
    tracing::info!("worker running");
    println!("worker running");
    std::io::stdout().flush()?;
    // Reports the partitions held (on stdout, one line per change) until
    // asked to stop, or until a projection fails.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                let (views, saga) = (view_worker.status(), saga_worker.status());
                if let Some(failed) = views.failed.or(saga.failed) {
                    tracing::error!(%failed, "a projection stopped");
                    break;
                }
                let held = (views.partitions, saga.partitions);
                if last.as_ref() != Some(&held) {
                    println!("partitions order-views={:?} saga-Fulfilment={:?}", held.0, held.1);
                    std::io::stdout().flush()?;
                    last = Some(held);
                }
            }
        }
    }
    tracing::info!("shutting down");
    let views = view_worker.stop().await;
    let saga = saga_worker.stop().await;
    views?;
    saga?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Some(command) = Cli::parse().command else {
        eprintln!("orders: say which role to run, `api` or `worker`.\n{SERVICES}");
        return std::process::ExitCode::from(2);
    };
    let service = match command {
        Command::Api { .. } => "orders-api",
        Command::Worker { .. } => "orders-worker",
    };
    let provider = match telemetry(service) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("orders: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match &command {
        Command::Api { addr, common } => api(*addr, common).await,
        Command::Worker { common } => worker(common).await,
    };
    // Flushes the spans still batched.
    let flushed = provider.shutdown();
    match (result, flushed) {
        (Ok(()), Ok(())) => std::process::ExitCode::SUCCESS,
        (Err(error), _) => {
            eprintln!("orders {service}: {error}");
            std::process::ExitCode::FAILURE
        }
        (Ok(()), Err(error)) => {
            eprintln!("orders {service}: flushing traces failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
