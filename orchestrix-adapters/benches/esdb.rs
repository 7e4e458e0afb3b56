//! Appends and reads through the EventSourcingDB adapter against the test
//! server, beside the same HTTP requests made with a bare `reqwest` client
//! in the same run, through API v1 and through API v2. Prints medians and
//! the adapter's overhead.
//!
//! `cargo bench -p orchestrix-adapters --features eventsourcingdb --bench esdb`

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use orchestrix::store::ExpectedVersion;
use orchestrix::{envelope::NewEvent, store::EventStore, StreamId};
use orchestrix_adapters::eventsourcingdb::{ApiVersion, EsdbConfig, EsdbStore};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use serde_json::value::RawValue;

const APPENDS: usize = 200;
const READ_EVENTS: usize = 500;
const READS: usize = 50;
const ROUNDS: usize = 7;

fn event(n: usize) -> NewEvent {
    NewEvent::new("Deposited", 1, RawValue::from_string(format!(r#"{{"amount":{n},"note":"bench"}}"#)).unwrap())
}

struct Bare {
    client: reqwest::Client,
    url: String,
    auth: String,
    version: ApiVersion,
}

impl Bare {
    /// Sends to `endpoint` (`read-events` or `write-events`) as `version`
    /// does: v1 POSTs to `/api/v1/<endpoint>`, v2 POSTs writes and QUERYs
    /// reads under `/api/v2/data/`.
    async fn post(&self, endpoint: &str, body: &serde_json::Value) -> bytes::Bytes {
        let (method, path) = match (self.version, endpoint) {
            (ApiVersion::V1, _) => (reqwest::Method::POST, format!("/api/v1/{endpoint}")),
            (_, "write-events") => (reqwest::Method::POST, format!("/api/v2/data/{endpoint}")),
            _ => (reqwest::Method::from_bytes(b"QUERY").unwrap(), format!("/api/v2/data/{endpoint}")),
        };
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("authorization", &self.auth)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap()
    }

    /// The same two requests the adapter makes for an append to a new
    /// stream: read the subject's latest event, write with a precondition.
    async fn append(&self, subject: &str, n: usize) {
        let read =
            serde_json::json!({"subject": subject, "options": {"recursive": false, "order": "antichronological"}});
        let _ = self.post("read-events", &read).await;
        let write = serde_json::json!({
            "events": [{"source": "https://orchestrix.invalid", "subject": subject, "type": "io.orchestrix.Deposited.v1",
                        "data": {"streamVersion": 1, "data": {"amount": n, "note": "bench"}}}],
            "preconditions": [{"type": "isSubjectPristine", "payload": {"subject": subject}}],
        });
        let answer = self.post("write-events", &write).await;
        if self.version == ApiVersion::V1 {
            let _: Vec<serde_json::Value> = serde_json::from_slice(&answer).unwrap();
        } else {
            assert_eq!(lines(&answer), 2, "the event, then `end`");
        }
    }

    async fn read(&self, subject: &str) -> usize {
        let read = serde_json::json!({"subject": subject, "options": {"recursive": false}});
        let answer = self.post("read-events", &read).await;
        let end = usize::from(self.version == ApiVersion::V2);
        lines(&answer) - end
    }
}

/// How many NDJSON lines an answer has, each parsed as JSON.
fn lines(answer: &[u8]) -> usize {
    answer
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .inspect(|l| drop(serde_json::from_slice::<serde_json::Value>(l).unwrap()))
        .count()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for (options, version) in
        [(TestServerOptions::default(), ApiVersion::V1), (TestServerOptions::v2_only(), ApiVersion::V2)]
    {
        runtime.block_on(run(options, version));
    }
}

async fn run(options: TestServerOptions, version: ApiVersion) {
    let server = TestServer::start(options).await.unwrap();
    let store = EsdbStore::connect(EsdbConfig::new(server.url(), server.token())).await.unwrap();
    assert_eq!(store.api_version(), version);
    let bare =
        Bare { client: reqwest::Client::new(), url: server.url(), auth: format!("Bearer {}", server.token()), version };

    let long = StreamId::new("Bench", "long").unwrap();
    store.append(&long, ExpectedVersion::NoStream, (0..READ_EVENTS).map(event).collect()).await.unwrap();

    let (mut adapter_appends, mut bare_appends, mut adapter_reads, mut bare_reads) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..APPENDS {
            let stream = StreamId::new("Bench", format!("a-{round}-{i}")).unwrap();
            store.append(&stream, ExpectedVersion::NoStream, vec![event(i)]).await.unwrap();
        }
        adapter_appends.push(start.elapsed() / u32::try_from(APPENDS).unwrap());

        let start = Instant::now();
        for i in 0..APPENDS {
            bare.append(&format!("/Bench/b-{round}-{i}"), i).await;
        }
        bare_appends.push(start.elapsed() / u32::try_from(APPENDS).unwrap());

        let start = Instant::now();
        for _ in 0..READS {
            let count = store.read_stream(&long, 1).count().await;
            assert_eq!(count, READ_EVENTS);
        }
        adapter_reads.push(start.elapsed() / u32::try_from(READS).unwrap());

        let start = Instant::now();
        for _ in 0..READS {
            assert_eq!(bare.read("/Bench/long").await, READ_EVENTS);
        }
        bare_reads.push(start.elapsed() / u32::try_from(READS).unwrap());
    }
    let report = |what: &str, adapter: Vec<Duration>, bare: Vec<Duration>| {
        let (a, b) = (median(adapter), median(bare));
        println!(
            "{what:<32} adapter {a:>10.1?}   bare client {b:>10.1?}   ratio {:.3}",
            a.as_secs_f64() / b.as_secs_f64()
        );
    };
    println!("API {version:?}: median of {ROUNDS} rounds, against the in-process test server");
    report("append (1 event, new stream)", adapter_appends, bare_appends);
    report(&format!("read_stream ({READ_EVENTS} events)"), adapter_reads, bare_reads);
}
