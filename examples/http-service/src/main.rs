//! Serves the bank over HTTP. Listens on `--addr HOST:PORT`, else on
//! `0.0.0.0:$PORT` (default 8080). Keeps the events in memory, or in
//! PostgreSQL when `DATABASE_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`), in the schema
//! `$DATABASE_SCHEMA` (default `http_service`), created on first start. Logs are JSON lines on stderr, with the
//! fields of the enclosing spans (correlation and trace ids). Traces go to
//! an OTLP/HTTP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (the other `OTEL_*`
//! variables of the specification apply, such as `OTEL_SERVICE_NAME`).
//! Stops gracefully on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn address() -> Result<SocketAddr, BoxError> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if let Some(addr) = arg.strip_prefix("--addr=") {
            return Ok(addr.parse()?);
        }
        if arg == "--addr" {
            return Ok(args.next().ok_or("--addr needs HOST:PORT")?.parse()?);
        }
    }
    let port: u16 = std::env::var("PORT").ok().map(|p| p.parse()).transpose()?.unwrap_or(8080);
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Traces always get OpenTelemetry ids (so logs and events carry them and
/// incoming `traceparent`s are honoured); they are exported only when an
/// OTLP endpoint is configured.
fn telemetry() -> Result<SdkTracerProvider, BoxError> {
    let resource = Resource::builder().with_service_name("orchestrix-http-service").build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if configured {
        // Reads the endpoint, headers and timeout from the OTEL_* variables.
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("orchestrix-http-service"))
        .with_filter(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(LevelFilter::INFO);
    tracing_subscriber::registry().with(otel).with(logs).try_init()?;
    orchestrix::trace::install(orchestrix::trace::OpenTelemetryPropagator::new())?;
    if configured {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Ok(provider)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let provider = telemetry()?;
    let addr = address()?;
    let service = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = std::env::var("DATABASE_SCHEMA").unwrap_or_else(|_| "http_service".to_owned());
            let config = orchestrix_adapters::postgres::PgConfig::new(schema)?;
            let service = http_service::service_on_postgres(&url, config).await?;
            tracing::info!("events in PostgreSQL");
            service
        }
        _ => {
            tracing::info!("events in memory (set DATABASE_URL to keep them in PostgreSQL)");
            http_service::service()
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, service.router).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("shutting down");
    service.projection.stop().await?;
    provider.shutdown()?;
    Ok(())
}
