//! Runs the Orchestrix stand-in EventSourcingDB server on its own.
//!
//! ```text
//! esdb-test-server [--port 3000] [--token secret] [--v1-only | --v2-only | --both]
//! ```
//!
//! It offers API v1 only unless told otherwise. The token can also come
//! from `ORCHESTRIX_ESDB_TOKEN`.

use std::net::SocketAddr;

use orchestrix_esdb_test_server::{TestServer, TestServerOptions};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut options = TestServerOptions::default();
    if let Ok(token) = std::env::var("ORCHESTRIX_ESDB_TOKEN") {
        options.token = token;
    }
    let mut port = 3000_u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--token" => options.token = args.next().unwrap_or_default(),
            "--v1-only" => (options.offer_v1, options.offer_v2) = (true, false),
            "--v2-only" => (options.offer_v1, options.offer_v2) = (false, true),
            "--both" => (options.offer_v1, options.offer_v2) = (true, true),
            _ => {
                eprintln!("usage: esdb-test-server [--port PORT] [--token TOKEN] [--v1-only | --v2-only | --both]");
                std::process::exit(2);
            }
        }
    }
    let server = TestServer::bind(SocketAddr::from(([127, 0, 0, 1], port)), options).await?;
    println!("EventSourcingDB test server listening on {}", server.url());
    server.wait().await;
    Ok(())
}
