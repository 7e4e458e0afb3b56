//! The demo's figures: tenants apart, money conserved under racing
//! transfers.

use orchestrix_adapters::sqlite::SqliteStore;

const EXPECTED: [&str; 3] = [
    "acme:   alice 70 bob 30 (4 events)",
    "globex: alice 7 bob 0 (2 events)",
    "racing transfers: 7 done, 3 refused; acme alice 0 bob 100, total 100",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_sqlite() {
    let lines = ledger::demo(SqliteStore::in_memory().await.unwrap()).await.unwrap();
    assert_eq!(lines, EXPECTED);
}
