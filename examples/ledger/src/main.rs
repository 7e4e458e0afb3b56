//! `cargo run -p ledger`: two tenants on one SQLite store, atomic
//! transfers, and a forgotten customer.

use orchestrix_adapters::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = SqliteStore::in_memory().await?;
    for line in ledger::demo(store).await? {
        println!("{line}");
    }
    Ok(())
}
