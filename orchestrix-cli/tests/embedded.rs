//! The CLI as a library: a binary of the user's registers its event types
//! and projections, and `verify` decodes with them.

mod support;

use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::prelude::*;
use orchestrix::store::{CheckpointStore, EventStore, ExpectedVersion};
use support::{event, sqlite, stream};

/// The user's events; version 2 of `Deposited` added `currency`.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// Opened.
    Opened {
        /// Who.
        owner: String,
    },
    /// Money in.
    #[event(version = 2, upcast = [deposited_v1_to_v2])]
    Deposited {
        /// How much.
        amount: u64,
        /// In what.
        currency: String,
    },
}

/// A projection whose model the test can see after the CLI rebuilt it.
#[derive(Debug, Clone, Default)]
pub struct Deposits {
    total: std::sync::Arc<std::sync::Mutex<u64>>,
}

#[projection(name = "deposits")]
impl Deposits {
    fn on_account(&mut self, event: AccountEvent, _record: &RecordedEvent) -> Result<(), std::convert::Infallible> {
        if let AccountEvent::Deposited { amount, .. } = event {
            *self.total.lock().unwrap() += amount;
        }
        Ok(())
    }

    #[reset]
    fn clear(&mut self) {
        *self.total.lock().unwrap() = 0;
    }
}

fn deposited_v1_to_v2(mut data: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    data.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?.insert("currency".into(), "EUR".into());
    Ok(data)
}

#[test]
fn verify_decodes_with_the_registered_types() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (store, url) = rt.block_on(sqlite(dir.path(), "app.db"));
    let opened = NewEvent::encode(&AccountEvent::Opened { owner: "Ada".into() }, Metadata::default()).unwrap();
    // A version 1 deposit: upcast, so it decodes.
    let mut old = event("AccountDeposited", serde_json::json!({"amount": 5}));
    old.schema_version = 1;
    rt.block_on(store.append(&stream("Account/1"), ExpectedVersion::NoStream, vec![opened, old])).unwrap();
    rt.block_on(CheckpointStore::save(&store, "balances", 1)).unwrap();
    let cli = || orchestrix_cli::Cli::new().events::<AccountEvent>().projection("balances");

    assert_eq!(cli().run_from(["my-admin", "--store", &url, "verify"]), 0);
    assert_eq!(cli().run_from(["my-admin", "--store", &url, "projections"]), 0, "the registered projection is listed");

    // Rebuild a registered projection: replayed to the head, checkpoint saved.
    let deposits = Deposits::default();
    *deposits.total.lock().unwrap() = 999;
    let admin = || cli().rebuildable(deposits.clone());
    assert_eq!(admin().run_from(["my-admin", "--store", &url, "projections", "rebuild", "deposits"]), 5, "asks first");
    // No process runs it: without `--no-runner` the command would wait
    // for a runner to acknowledge its pause (ADR 0050).
    let rebuild = ["my-admin", "--store", &url, "--yes", "projections", "rebuild", "deposits"];
    assert_eq!(admin().run_from(rebuild.iter().copied().chain(["--timeout", "0"])), 7, "no runner acknowledged");
    assert_eq!(*deposits.total.lock().unwrap(), 999, "nothing was done");
    assert_eq!(admin().run_from(rebuild.iter().copied().chain(["--no-runner"])), 0);
    assert_eq!(*deposits.total.lock().unwrap(), 5, "reset, then the one deposit replayed");
    assert_eq!(
        rt.block_on(CheckpointStore::load(&store, "deposits")).unwrap(),
        rt.block_on(store.head_position()).unwrap()
    );
    assert_eq!(admin().run_from(["my-admin", "--store", &url, "--yes", "projections", "rebuild", "nope"]), 4);
    assert_eq!(
        cli().run_from(["my-admin", "--store", &url, "--yes", "projections", "rebuild", "deposits"]),
        4,
        "not registered"
    );

    // A deposit without an amount does not decode: a violation.
    let broken = event("AccountDeposited", serde_json::json!({"currency": "EUR"}));
    rt.block_on(store.append(&stream("Account/1"), ExpectedVersion::Exact(2), vec![broken])).unwrap();
    assert_eq!(cli().run_from(["my-admin", "--store", &url, "verify"]), 6);
    // The stock binary knows no types: the same store verifies.
    assert_eq!(orchestrix_cli::Cli::new().run_from(["orchestrix", "--store", &url, "verify"]), 0);
    assert_eq!(orchestrix_cli::Cli::new().run_from(["orchestrix", "--bogus"]), 2);
}
