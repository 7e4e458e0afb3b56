//! The demo's figures: tenants apart, money conserved under racing
//! transfers, a forgotten customer's name gone and her account intact.

use futures_util::StreamExt;
use orchestrix::store::{EventFilter, EventStore};
use orchestrix_adapters::sqlite::SqliteStore;

const EXPECTED: [&str; 4] = [
    "acme:   alice 70 bob 30 (4 events)",
    "globex: alice 7 bob 0 (2 events)",
    "racing transfers: 7 done, 3 refused; acme alice 0 bob 100, total 100",
    "acme forgot c-alice: owner None, balance 0, version 9; globex's alice: owner Some(\"Alice\")",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_on_sqlite() {
    let store = SqliteStore::in_memory().await.unwrap();
    let lines = ledger::demo(store.clone()).await.unwrap();
    assert_eq!(lines, EXPECTED);
    // In the database itself: every tenant's streams, and no name in clear.
    let filter = EventFilter::all();
    let stored: Vec<String> = store.read_all(0, &filter).map(|e| e.unwrap().data.get().to_owned()).collect().await;
    assert_eq!(stored.len(), 4 + 7 * 2 + 2);
    assert!(stored.iter().all(|data| !data.contains("Alice") && !data.contains("Bob")), "{stored:?}");
}

#[tokio::test]
async fn a_transfer_the_receiver_cannot_hold_is_refused_and_moves_nothing() {
    use ledger::{balance, tenant, transfer, LedgerError, Open};
    use orchestrix::Uuid;

    let store = SqliteStore::in_memory().await.unwrap();
    let acme = tenant(&store, "acme").unwrap();
    let (rich, payer) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let open = |deposit| Open { customer_id: "c".into(), owner: "O".into(), deposit };
    acme.app.execute(rich, open(u64::MAX)).await.unwrap();
    acme.app.execute(payer, open(5)).await.unwrap();
    let refused = transfer(&acme.app, payer, rich, 1).await;
    assert!(matches!(refused, Err(LedgerError::BalanceOverflow { balance: u64::MAX, requested: 1 })), "{refused:?}");
    assert_eq!(balance(&acme.app, rich).await.unwrap(), u64::MAX);
    assert_eq!(balance(&acme.app, payer).await.unwrap(), 5);
    // The other way round is fine.
    transfer(&acme.app, rich, payer, 1).await.unwrap();
    assert_eq!(balance(&acme.app, payer).await.unwrap(), 6);
}
