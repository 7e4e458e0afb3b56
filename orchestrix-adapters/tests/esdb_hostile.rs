//! A hostile or broken server cannot stall or exhaust the adapter (ADR
//! 0028): a server written here, on loopback, that sends a huge line, a
//! huge error body or a line that drips in byte by byte. Each test is
//! bounded in time and in what the server may send. Also: the adapter uses
//! an HTTP client the user built, with its proxy and its timeout.

#![cfg(feature = "eventsourcingdb")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestrix::store::EventFilter;
use orchestrix::{store::EventStore, StoreError, StreamId};
use orchestrix_adapters::eventsourcingdb::{reqwest, ApiVersion, EsdbConfig, EsdbError, EsdbStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server written here answers to every request.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with one line of `len` bytes of `x`, then `\n`.
    Line { len: usize },
    /// 400 with a body of `len` bytes.
    ErrorBody { len: usize },
    /// 200 with a line that arrives one byte every `every`, for at most 20 s.
    Drip { every: Duration },
    /// 200 with an empty v1 stream.
    Empty,
}

/// What the server saw and sent.
#[derive(Default)]
struct Seen {
    heads: Mutex<Vec<String>>,
    sent: AtomicUsize,
}

/// Starts the server; it serves until the test's runtime ends.
async fn hostile(answer: Answer) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, answer, Arc::clone(&shared)));
        }
    });
    (url, seen)
}

async fn serve(mut socket: TcpStream, answer: Answer, seen: Arc<Seen>) {
    // The request: its head, then as many body bytes as it announces.
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    seen.heads.lock().unwrap().push(head);
    let status = match answer {
        Answer::ErrorBody { .. } => "400 Bad Request",
        _ => "200 OK",
    };
    // No length, no chunks: the body ends when the connection closes.
    let response = format!(
        "HTTP/1.1 {status}\r\nServer: EventSourcingDB/hostile\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
    );
    if socket.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    match answer {
        Answer::Line { len } | Answer::ErrorBody { len } => send_bulk(&mut socket, len, &seen).await,
        Answer::Drip { every } => {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if socket.write_all(b"x").await.is_err() {
                    return;
                }
                seen.sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        }
        Answer::Empty => {}
    }
}

/// `len` bytes of `x` then `\n`, until the client goes away.
async fn send_bulk(socket: &mut TcpStream, len: usize, seen: &Seen) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        if socket.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        seen.sent.fetch_add(n, Ordering::Relaxed);
        left -= n;
    }
    let _ = socket.write_all(b"\n").await;
}

fn store(url: &str, config: impl FnOnce(EsdbConfig) -> EsdbConfig) -> EsdbStore {
    EsdbStore::unchecked(config(EsdbConfig::new(url, "secret")), ApiVersion::V1).unwrap()
}

/// The first item of a global read.
async fn first_read_item(store: &EsdbStore) -> Result<(), StoreError> {
    let filter = EventFilter::all();
    let mut read = store.read_all(0, &filter);
    match tokio::time::timeout(Duration::from_secs(30), read.next()).await.expect("the read is bounded in time") {
        Some(item) => item.map(drop),
        None => Ok(()),
    }
}

fn esdb_error(error: &StoreError) -> &EsdbError {
    match error {
        StoreError::Backend(source) | StoreError::Unavailable(source) => source.downcast_ref().expect("an EsdbError"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_16_mib_line_is_read_in_linear_time_within_the_line_timeout() {
    let (url, seen) = hostile(Answer::Line { len: 16 << 20 }).await;
    let store = store(&url, |c| c.with_request_timeout(Duration::from_secs(2)));
    let started = Instant::now();
    let error = first_read_item(&store).await.unwrap_err();
    // Read whole (then refused as not JSON), not cut off by the timeout.
    assert!(matches!(esdb_error(&error), EsdbError::Malformed { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(seen.sent.load(Ordering::Relaxed), 16 << 20);
}

#[tokio::test]
async fn a_line_over_the_limit_is_refused_without_reading_the_rest() {
    let (url, seen) = hostile(Answer::Line { len: 400 << 20 }).await;
    let store = store(&url, |c| c.with_max_line_bytes(1 << 20));
    let started = Instant::now();
    let error = first_read_item(&store).await.unwrap_err();
    assert!(
        matches!(esdb_error(&error), EsdbError::TooLarge { what: "line", limit, .. } if *limit == 1 << 20),
        "{error:?}"
    );
    assert!(!error_is_transient(&error), "a line over the limit is not retried");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = seen.sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "the client stopped reading early, the server got {sent} bytes out");
}

fn error_is_transient(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(_))
}

#[tokio::test]
async fn a_huge_error_body_is_not_read_whole() {
    let (url, seen) = hostile(Answer::ErrorBody { len: 400 << 20 }).await;
    let store = store(&url, |c| c);
    let stream = StreamId::new("Account", "1").unwrap();
    let started = Instant::now();
    let error =
        tokio::time::timeout(Duration::from_secs(30), store.stream_version(&stream)).await.unwrap().unwrap_err();
    // A 400 is a refusal of input, with the start of the body as the explanation.
    let StoreError::InvalidInput(message) = &error else { panic!("{error:?}") };
    assert!(message.len() < 1000, "the explanation is cut: {} bytes", message.len());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = seen.sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "the client stopped reading early, the server got {sent} bytes out");
}

#[tokio::test]
async fn a_line_that_drips_in_is_cut_off_at_the_line_timeout() {
    let (url, seen) = hostile(Answer::Drip { every: Duration::from_millis(20) }).await;
    let store = store(&url, |c| c.with_request_timeout(Duration::from_secs(1)));
    let started = Instant::now();
    let error = first_read_item(&store).await.unwrap_err();
    assert!(matches!(esdb_error(&error), EsdbError::Timeout { .. }), "{error:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(seen.sent.load(Ordering::Relaxed) > 10, "bytes kept arriving, yet the line timed out");
}

#[tokio::test]
async fn the_adapter_uses_the_http_client_it_is_given() {
    let (url, seen) = hostile(Answer::Empty).await;
    let client = reqwest::Client::builder().user_agent("orchestrix-test/1").build().unwrap();
    let store = store(&url, |c| c.with_http_client(client));
    let stream = StreamId::new("Account", "1").unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), None);
    let heads = seen.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(heads[0].contains("user-agent: orchestrix-test/1"), "{}", heads[0]);
    assert!(heads[0].contains("authorization: bearer secret"), "the adapter still adds the token");
}

/// A proxy set on the user's client carries the adapter's requests: the
/// store's URL names a host that does not resolve (`.invalid`), and the
/// request arrives at the proxy in absolute form, token included.
#[tokio::test]
async fn the_adapter_goes_through_the_proxy_of_the_client_it_is_given() {
    let (proxy, seen) = hostile(Answer::Empty).await;
    let client = reqwest::Client::builder().proxy(reqwest::Proxy::http(&proxy).unwrap()).build().unwrap();
    let store = store("http://esdb.invalid:3000", |c| c.with_http_client(client));
    let stream = StreamId::new("Account", "1").unwrap();
    let version = tokio::time::timeout(Duration::from_secs(30), store.stream_version(&stream)).await.unwrap();
    assert_eq!(version.unwrap(), None);
    let heads = seen.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(heads[0].starts_with("post http://esdb.invalid:3000/api/v1/"), "{}", heads[0]);
    assert!(heads[0].contains("authorization: bearer secret"), "the adapter still adds the token");
}

/// The user's client's own timeout applies (here shorter than the
/// adapter's request timeout): a server that never finishes its line is
/// cut off at the client's deadline.
#[tokio::test]
async fn the_timeout_of_the_client_it_is_given_applies() {
    let (url, _seen) = hostile(Answer::Drip { every: Duration::from_millis(50) }).await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let store = store(&url, |c| c.with_http_client(client).with_request_timeout(Duration::from_secs(20)));
    let started = Instant::now();
    let error = first_read_item(&store).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "the client's 500 ms timeout did not apply: {elapsed:?} ({error:?})");
}

#[cfg(feature = "eventsourcingdb-tls")]
#[tokio::test]
async fn root_certificates_and_a_client_of_ones_own_are_refused_together() {
    let config = EsdbConfig::new("https://127.0.0.1:1", "secret")
        .with_http_client(reqwest::Client::new())
        .with_root_certificate_pem("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    let error = EsdbStore::connect(config).await.unwrap_err();
    assert!(matches!(&error, StoreError::InvalidInput(m) if m.contains("add_root_certificate")), "{error:?}");
}
