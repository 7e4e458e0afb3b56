//! The hand-rolled in-memory event log the in-memory benchmarks compare
//! with (suite scenario 6, the `percommand` bench): a map of streams to
//! rows of serialized events behind one mutex, what storing and replaying
//! events costs with no framework at all.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use orchestrix::Uuid;
use serde::{Deserialize, Serialize};

use crate::ledger::{self, Account};

/// A stored row of the hand-rolled log: what an event store must keep.
#[allow(dead_code)] // kept to be measured, not read back
#[derive(Debug)]
struct RawRow {
    id: Uuid,
    stream_version: u64,
    global_position: u64,
    recorded_at: DateTime<Utc>,
    event_type: &'static str,
    data: String,
    metadata: String,
}

#[derive(Debug, Default)]
struct RawLog {
    events: Vec<RawRow>,
    streams: HashMap<String, Vec<usize>>,
}

/// The baseline: an append-only log of serialized events with a stream
/// index, checked against the expected version under one mutex.
#[derive(Debug, Default)]
pub struct RawStore {
    log: Mutex<RawLog>,
}

#[derive(Serialize)]
struct OpenedData<'a> {
    owner: &'a str,
}

#[derive(Serialize, Deserialize)]
struct DepositedData {
    amount: u64,
}

#[derive(Deserialize)]
struct OpenedOwned {
    owner: String,
}

impl RawStore {
    /// Appends one event to `stream` if its version is `expected`.
    pub fn append(&self, stream: String, expected: u64, event_type: &'static str, data: String) -> bool {
        let metadata = serde_json::to_string(&ledger::command_metadata()).expect("metadata serializes");
        let mut log = self.log.lock().expect("not poisoned");
        let log = &mut *log;
        let index = log.events.len();
        let versions = log.streams.entry(stream).or_default();
        if versions.len() as u64 != expected {
            return false;
        }
        versions.push(index);
        let stream_version = versions.len() as u64;
        log.events.push(RawRow {
            id: Uuid::now_v7(),
            stream_version,
            global_position: index as u64 + 1,
            recorded_at: Utc::now(),
            event_type,
            data,
            metadata,
        });
        true
    }

    /// Opens the account `stream` (its first event).
    ///
    /// # Panics
    /// If the stream exists.
    pub fn open(&self, stream: String, owner: &str) {
        let data = serde_json::to_string(&OpenedData { owner }).expect("serializes");
        assert!(self.append(stream, 0, "AccountOpened", data), "a new stream");
    }

    /// Deposits `amount` into `stream`, whose version is `version`.
    ///
    /// # Panics
    /// If the stream is not at `version`.
    pub fn deposit(&self, stream: String, version: u64, amount: u64) {
        let data = serde_json::to_string(&DepositedData { amount }).expect("serializes");
        assert!(self.append(stream, version, "AccountDeposited", data), "the expected version");
    }

    /// Replays `stream` into an account: decode every row, apply it.
    ///
    /// # Panics
    /// If the stream does not exist.
    pub fn rehydrate(&self, stream: &str) -> Account {
        let log = self.log.lock().expect("not poisoned");
        let mut account = Account::default();
        for &index in &log.streams[stream] {
            let row = &log.events[index];
            if row.event_type == "AccountOpened" {
                account.owner = serde_json::from_str::<OpenedOwned>(&row.data).expect("decodes").owner;
            } else {
                account.balance += serde_json::from_str::<DepositedData>(&row.data).expect("decodes").amount;
                account.deposits += 1;
            }
        }
        account
    }
}
