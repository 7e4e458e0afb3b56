//! `forget SUBJECT` and the key checks of `verify` (ADR 0051), as
//! processes on SQLite and PostgreSQL, and embedded with the user's types.

mod support;

use futures_util::StreamExt as _;
use orchestrix::crypto::CryptoStore;
use orchestrix::envelope::NewEvent;
use orchestrix::prelude::*;
use orchestrix::store::{DeadLetter, DeadLetterStore, EventStore, ExpectedVersion, KeyStore, Snapshot, SnapshotStore};
use orchestrix::Uuid;
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use support::{orchestrix, sqlite, stream};

/// A customer's events; the e-mail is personal data of the customer.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    /// Registered.
    Registered {
        /// The data subject.
        customer_id: String,
        /// Personal.
        #[event(personal(subject = customer_id))]
        email: Option<String>,
    },
}

fn registered(customer: &str) -> NewEvent {
    let event =
        CustomerEvent::Registered { customer_id: customer.into(), email: Some(format!("{customer}@example.com")) };
    NewEvent::encode(&event, Metadata::default()).expect("encodes")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime")
}

/// A store that is its own event, key, snapshot and dead-letter store.
trait Whole: EventStore + KeyStore + SnapshotStore + DeadLetterStore + Clone {}
impl<S: EventStore + KeyStore + SnapshotStore + DeadLetterStore + Clone> Whole for S {}

/// Customers `c-1` and `c-2` registered through a `CryptoStore`, a
/// snapshot of each stream, and a dead letter of `c-1`'s event parked in
/// clear (as a dead-letter store without sealing holds it).
async fn seed<S: Whole>(store: &S) {
    let crypto = CryptoStore::new(store.clone(), store.clone()).register::<CustomerEvent>();
    for customer in ["c-1", "c-2"] {
        let name = stream(&format!("Customer/{customer}"));
        crypto.append(&name, ExpectedVersion::NoStream, vec![registered(customer)]).await.expect("append");
        let state = serde_json::value::to_raw_value(&serde_json::json!({"email": customer})).unwrap();
        store.save(Snapshot::new(name, 1, 1, state, chrono::Utc::now())).await.expect("snapshot");
    }
    let clear = crypto.read_stream(&stream("Customer/c-1"), 1).next().await.unwrap().expect("read");
    assert!(clear.data.get().contains("c-1@example.com"));
    let letter =
        DeadLetter::new(Uuid::now_v7(), "mailing", (*clear).clone(), "bad c-1@example.com", 3, chrono::Utc::now());
    store.park(letter).await.expect("park");
}

/// The e-mail of `customer` read back through a `CryptoStore`.
async fn email<S: Whole>(store: &S, customer: &str) -> Option<String> {
    let crypto = CryptoStore::new(store.clone(), store.clone()).register::<CustomerEvent>();
    let event = crypto.read_stream(&stream(&format!("Customer/{customer}")), 1).next().await.unwrap().expect("read");
    match event.decode::<CustomerEvent>().expect("decodes") {
        CustomerEvent::Registered { email, .. } => email,
    }
}

/// The whole story on one store, with the binary as a process.
fn forget_as_a_process<S: Whole>(rt: &tokio::runtime::Runtime, store: &S, url: &str) {
    rt.block_on(seed(store));
    let run = orchestrix(&["--store", url, "--json", "verify"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["sealed_values"]["readable"], 2, "{run:?}");

    // Not confirmed (no terminal): refused, nothing changed.
    let run = orchestrix(&["--store", url, "forget", "c-1"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(rt.block_on(email(store, "c-1")).as_deref(), Some("c-1@example.com"));

    // A subject nobody knows: not recorded as forgotten.
    let run = orchestrix(&["--store", url, "--yes", "forget", "c-404"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(!rt.block_on(store.is_forgotten("c-404")).unwrap(), "a typo is not recorded as forgotten");

    let run = orchestrix(&["--store", url, "--yes", "--json", "forget", "c-1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        (&report["key_deleted"], &report["already_forgotten"], &report["streams"], &report["snapshots_deleted"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(false),
            &serde_json::json!(["Customer/c-1"]),
            &serde_json::json!(["Customer/c-1"])
        )
    );
    assert_eq!(report["dead_letters_erased"], serde_json::json!([]), "the stock binary knows no types");
    assert_eq!(rt.block_on(email(store, "c-1")), None, "forgotten");
    assert_eq!(rt.block_on(email(store, "c-2")).as_deref(), Some("c-2@example.com"), "the other customer stays");
    assert!(rt.block_on(store.load(&stream("Customer/c-1"), None)).unwrap().is_none(), "its snapshot is gone");
    assert!(rt.block_on(store.load(&stream("Customer/c-2"), None)).unwrap().is_some(), "the other's stays");

    // Again: idempotent, said so.
    let run = orchestrix(&["--store", url, "--yes", "forget", "c-1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("forgotten already"), "{}", run.stdout);

    // verify: the forgotten value is erased, not a violation.
    let run = orchestrix(&["--store", url, "--json", "verify"]);
    assert_eq!(run.code, 0, "{run:?}");
    let sealed = &run.json()["sealed_values"];
    assert_eq!((&sealed["readable"], &sealed["erased"], &sealed["missing_key"]), (&1.into(), &1.into(), &0.into()));

    // Re-admitted: the new key exists at once, the old value stays erased.
    rt.block_on(store.readmit("c-1")).unwrap();
    let run = orchestrix(&["--store", url, "--json", "verify"]);
    assert_eq!((run.code, &run.json()["sealed_values"]["erased"]), (0, &1.into()), "{run:?}");
}

#[test]
fn forget_on_sqlite_and_keys_checked_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "customers.db"));
    forget_as_a_process(&rt, &store, &url);

    // Events sealed with keys kept in another database: no key here and
    // not forgotten, so verify reports each value.
    let (elsewhere, _) = rt.block_on(sqlite(dir.path(), "keys.db"));
    let (events, events_url) = rt.block_on(sqlite(dir.path(), "events.db"));
    rt.block_on(async {
        let crypto = CryptoStore::new(events.clone(), elsewhere).register::<CustomerEvent>();
        crypto.append(&stream("Customer/c-9"), ExpectedVersion::NoStream, vec![registered("c-9")]).await.unwrap();
    });
    let run = orchestrix(&["--store", &events_url, "verify"]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stdout.contains("subject `c-9`") && run.stdout.contains("not forgotten"), "{}", run.stdout);
}

#[test]
fn an_embedding_binary_erases_dead_letters_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (store, url) = rt.block_on(sqlite(dir.path(), "customers.db"));
    rt.block_on(seed(&store));
    let cli = orchestrix_cli::Cli::new().events::<CustomerEvent>();
    assert_eq!(cli.run_from(["orchestrix", "--store", &url, "--yes", "forget", "c-1"]), 0);
    let letters = rt.block_on(store.list(None)).unwrap();
    assert_eq!(letters.len(), 1);
    assert!(!letters[0].event.data.get().contains("c-1@example.com"), "{}", letters[0].event.data.get());
    assert!(!letters[0].error.contains("c-1@example.com"), "{}", letters[0].error);
}

#[test]
fn eventsourcingdb_keeps_no_keys_and_an_empty_subject_is_refused() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start(TestServerOptions::default())).expect("the test server");
    let esdb = format!("esdb+{}", server.url());
    let run = orchestrix(&["--store", &esdb, "--token", server.token(), "--yes", "forget", "c-1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("keeps no keys"), "{}", run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let (_store, url) = rt.block_on(sqlite(dir.path(), "empty.db"));
    let run = orchestrix(&["--store", &url, "--yes", "forget", " "]);
    assert_eq!(run.code, 2, "{run:?}");
}

/// `ORCHESTRIX_PG_URL`, or `None` outside CI (the test then skips).
fn pg_url() -> Option<String> {
    match std::env::var("ORCHESTRIX_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("ORCHESTRIX_PG_URL must be set under CI"),
        _ => None,
    }
}

#[test]
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
fn forget_on_postgres() {
    let Some(base) = pg_url() else { return };
    let rt = runtime();
    let schema = format!("cli_{}", Uuid::now_v7().simple());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    assert_eq!(orchestrix(&["--store", &url, "migrate"]).code, 0);
    let config = orchestrix_adapters::postgres::PgConfig::new(schema).unwrap();
    let store = rt.block_on(orchestrix_adapters::postgres::PgStore::connect(&base, config)).expect("connect");
    forget_as_a_process(&rt, &store, &url);
}
