//! `forget SUBJECT`: crypto-shredding from the command line (ADR 0051):
//! look first, confirm, then `CryptoStore::forget` over the store's own
//! key, snapshot and dead-letter stores.

use orchestrix::crypto::CryptoStore;
use orchestrix::store::EventStore as _;
use serde_json::json;

use super::Options;
use crate::connect::Store;
use crate::error::Failure;
use crate::output::{confirm, print_json};
use crate::Cli;

/// At most this many streams are named in the text report.
const NAMED: usize = 10;

pub(super) async fn forget(cli: &Cli, store: &Store, subject: &str, options: Options) -> Result<(), Failure> {
    if subject.trim().is_empty() {
        return Err(Failure::Usage("the subject is empty: give the data subject's id".to_owned()));
    }
    let keys = store.keys()?;
    let has_key = keys.key(subject).await?.is_some();
    let already = keys.is_forgotten(subject).await?;
    let streams = keys.streams_of(subject).await?;
    if !has_key && !already && streams.is_empty() {
        return Err(Failure::NotFound(format!(
            "`{}` knows no data subject `{subject}` (no key, not forgotten, no stream recorded): nothing was \
             changed; check the id",
            store.shown
        )));
    }
    let question = if already {
        format!(
            "`{subject}` is forgotten already. Erase again what its {} streams' snapshots and the dead letters hold?",
            streams.len()
        )
    } else {
        format!(
            "Forget data subject `{subject}`? Its key is deleted for good: its personal data in {} streams becomes \
             unreadable, their snapshots are deleted and the dead letters erased.",
            streams.len()
        )
    };
    confirm(options.yes, &question)?;

    let mut crypto = CryptoStore::new(store.events.clone(), keys.clone());
    for data in &cli.personal {
        crypto.declare_personal_data(data);
    }
    if let Some(snapshots) = &store.snapshots {
        crypto = crypto.erase_snapshots_in(snapshots.clone());
    }
    if let Some(dead_letters) = &store.dead_letters {
        crypto = crypto.erase_dead_letters_in(dead_letters.clone());
    }
    let report = crypto.forget(subject).await?;
    let types: usize = cli.personal.iter().map(|data| data.len()).sum();
    let names = |streams: &[orchestrix::StreamId]| streams.iter().map(ToString::to_string).collect::<Vec<_>>();
    if options.json {
        return print_json(&json!({
            "store": store.shown,
            "subject": report.subject,
            "key_deleted": report.key_deleted,
            "already_forgotten": already,
            "streams": names(&report.streams),
            "snapshots_deleted": names(&report.snapshots_deleted),
            "dead_letters_erased": report.dead_letters_erased,
            "personal_event_types": types,
        }));
    }
    println!("subject       {subject}");
    println!(
        "key           {}",
        match (report.key_deleted, already) {
            (true, _) => "deleted: its personal data is unreadable from now on",
            (false, true) => "forgotten already: nothing to delete",
            (false, false) => "none found: the subject is recorded as forgotten now",
        }
    );
    let mut shown = names(&report.streams);
    let more = shown.len().saturating_sub(NAMED);
    shown.truncate(NAMED);
    println!(
        "streams       {} hold its personal data{}{}",
        report.streams.len(),
        if shown.is_empty() { String::new() } else { format!(": {}", shown.join(", ")) },
        if more > 0 { format!(" … and {more} more") } else { String::new() }
    );
    println!("snapshots     {} deleted", report.snapshots_deleted.len());
    if types == 0 {
        println!(
            "dead letters  {} erased (sealed ones need nothing; letters parked in clear are found only by a binary \
             that registers its event types, Cli::events::<E>())",
            report.dead_letters_erased.len()
        );
    } else {
        println!("dead letters  {} erased ({types} personal event types registered)", report.dead_letters_erased.len());
    }
    println!(
        "not reached   your read models (their ErasureHooks run in your services), backups and old database pages; \
         running services drop cached state within about a second"
    );
    println!("forgotten: `{subject}`");
    Ok(())
}
