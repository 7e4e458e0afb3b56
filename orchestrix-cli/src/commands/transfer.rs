//! `export`, `import` and `copy` (ADR 0041): streaming, in atomic batches
//! that keep the source's global order, resumable by the ids the events
//! keep, and verified by counts and a digest.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, ExpectedVersion, StreamAppend, StreamListing};
use orchestrix::{StreamId, Uuid};
use orchestrix_adapters::nats::cloudevent::{self, ContentMode};
use serde_json::json;

use super::digest::Digest;
use super::{up_to_head, Options, Selection};
use crate::connect::Store;
use crate::error::Failure;
use crate::output::{confirm, print_json, progress};

/// Every event: a `static`, so that reads can borrow it.
static ALL: EventFilter = EventFilter::all();

/// The key of the last line of an export: `{"orchestrix_export": {..}}`.
const TRAILER: &str = "orchestrix_export";

/// Events read from a source, each pass anew.
type Events<'a> = Pin<Box<dyn Stream<Item = Result<Arc<RecordedEvent>, Failure>> + Send + 'a>>;

pub(super) async fn export(
    store: &Store,
    out: Option<&Path>,
    selection: &Selection,
    cloudevents: bool,
) -> Result<(), Failure> {
    let head = store.events.head_position().await?.unwrap_or(0);
    let partial = out.map(|path| {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        std::path::PathBuf::from(name)
    });
    let mut writer: Box<dyn std::io::Write + Send> = match &partial {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout())),
    };
    let filter = selection.filter();
    let bar = progress(None, "exporting");
    let mut digest = Digest::default();
    let mut events = std::pin::pin!(up_to_head(store, &filter, head));
    while let Some(event) = events.next().await {
        let event = event?;
        if !selection.admits(&event) {
            continue;
        }
        if cloudevents {
            let encoded = cloudevent::encode(&event, "orchestrix://export", ContentMode::Structured);
            writer.write_all(&encoded.payload)?;
        } else {
            serde_json::to_writer(&mut writer, &*event).map_err(|e| Failure::Store(e.to_string()))?;
        }
        writer.write_all(b"\n")?;
        digest.add(&event);
        bar.inc(1);
    }
    if !cloudevents {
        let trailer = json!({ TRAILER: {"format": 1, "events": digest.events, "digest": digest.hex()} });
        writeln!(writer, "{trailer}")?;
    }
    writer.flush()?;
    drop(writer);
    bar.finish_and_clear();
    if let (Some(partial), Some(out)) = (partial, out) {
        std::fs::rename(&partial, out)?;
        eprintln!("exported {} events to {} (digest {})", digest.events, out.display(), digest.hex());
    }
    Ok(())
}

/// Whether the export at `path` is CloudEvents (`export --cloudevents`):
/// its first line is a JSON object with `specversion`.
fn is_cloudevents(path: &Path) -> Result<bool, Failure> {
    let file =
        std::fs::File::open(path).map_err(|e| Failure::NotFound(format!("cannot read `{}`: {e}", path.display())))?;
    let first = BufReader::new(file).lines().map_while(Result::ok).find(|line| !line.trim().is_empty());
    Ok(first.is_some_and(|line| {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line)
            .is_ok_and(|object| object.contains_key("specversion"))
    }))
}

/// The events of a CloudEvents export, one structured CloudEvent per line,
/// decoded by the relay's mapping (its one home). Such a file has no
/// trailer: a cut inside a line is an error, a cut between lines is not
/// detectable (ADR 0051).
fn cloudevent_events(path: &Path) -> Result<Events<'static>, Failure> {
    let file =
        std::fs::File::open(path).map_err(|e| Failure::NotFound(format!("cannot read `{}`: {e}", path.display())))?;
    let shown = path.display().to_string();
    let lines = BufReader::new(file).lines().enumerate();
    let iter = lines.filter_map(move |(number, line)| {
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(Failure::Store(format!("`{shown}` line {}: {e}", number + 1)))),
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(cloudevent::decode_structured(line.as_bytes()).map(Arc::new).map_err(|e| {
            Failure::Store(format!(
                "`{shown}` line {}: not a CloudEvent of `orchestrix export --cloudevents`: {e}",
                number + 1
            ))
        }))
    });
    Ok(Box::pin(futures_util::stream::iter(iter)))
}

/// The events of an export file, parsed line by line; the trailer line
/// is checked against what came before it, and a file without one is
/// truncated.
fn file_events(path: &Path) -> Result<Events<'static>, Failure> {
    let file =
        std::fs::File::open(path).map_err(|e| Failure::NotFound(format!("cannot read `{}`: {e}", path.display())))?;
    let shown = path.display().to_string();
    let mut lines = BufReader::new(file).lines().enumerate();
    let mut digest = Digest::default();
    let mut ended = false;
    let iter = std::iter::from_fn(move || loop {
        if ended {
            return None;
        }
        let Some((number, line)) = lines.next() else {
            ended = true;
            return Some(Err(Failure::Store(format!(
                "`{shown}` is truncated: it ends without the export's last line (was the export interrupted?)"
            ))));
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(Failure::Store(format!("`{shown}` line {}: {e}", number + 1)))),
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(&format!("{{\"{TRAILER}\"")) {
            ended = true;
            let trailer: serde_json::Value = match serde_json::from_str(&line) {
                Ok(value) => value,
                Err(e) => {
                    return Some(Err(Failure::Store(format!(
                        "`{shown}` line {}: a corrupt last line: {e}",
                        number + 1
                    ))))
                }
            };
            let (events, hex) = (&trailer[TRAILER]["events"], &trailer[TRAILER]["digest"]);
            if events.as_u64() != Some(digest.events) || hex.as_str() != Some(digest.hex().as_str()) {
                return Some(Err(Failure::Store(format!(
                    "`{shown}` is corrupt: its last line promises {events} events with digest {hex}, \
                     the file holds {} events with digest {}",
                    digest.events,
                    digest.hex()
                ))));
            }
            if let Some((extra, _)) = lines.by_ref().find(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty())) {
                return Some(Err(Failure::Store(format!(
                    "`{shown}` line {}: data after the export's last line",
                    extra + 1
                ))));
            }
            return None;
        }
        return Some(match serde_json::from_str::<RecordedEvent>(&line) {
            Ok(event) => {
                digest.add(&event);
                Ok(Arc::new(event))
            }
            Err(e) => Err(Failure::Store(format!(
                "`{shown}` line {}: not an exported event ({e}); `import` reads what `orchestrix export` \
                 writes",
                number + 1
            ))),
        });
    });
    Ok(Box::pin(futures_util::stream::iter(iter)))
}

pub(super) async fn import(store: &Store, file: &Path, batch: usize, options: Options) -> Result<(), Failure> {
    let what = file.display().to_string();
    if is_cloudevents(file)? {
        transfer(&mut || cloudevent_events(file), &what, store, batch, options).await
    } else {
        transfer(&mut || file_events(file), &what, store, batch, options).await
    }
}

pub(super) async fn copy(source: &Store, target: &Store, batch: usize, options: Options) -> Result<(), Failure> {
    let head = source.events.head_position().await?.unwrap_or(0);
    let mut events = || -> Result<Events<'_>, Failure> { Ok(Box::pin(up_to_head(source, &ALL, head))) };
    transfer(&mut events, &source.shown, target, batch, options).await
}

/// What the source holds of one stream.
#[derive(Debug)]
struct Plan {
    first_id: Uuid,
    last_version: u64,
}

/// Reads the source once: every event must parse, every stream must be
/// whole (versions 1, 2, … without a gap). Holds one entry per stream.
async fn survey(events: Events<'_>, what: &str) -> Result<(BTreeMap<StreamId, Plan>, Digest), Failure> {
    let mut plans: BTreeMap<StreamId, Plan> = BTreeMap::new();
    let mut digest = Digest::default();
    let bar = progress(None, "reading the source");
    let mut events = events;
    while let Some(event) = events.next().await {
        let event = event?;
        let expected = plans.get(&event.stream).map_or(1, |plan| plan.last_version + 1);
        if event.stream_version != expected {
            return Err(Failure::Store(format!(
                "{what}: stream `{}` goes to version {} where {expected} was due: only whole streams can be \
                 imported or copied (an export without --type)",
                event.stream, event.stream_version
            )));
        }
        plans
            .entry(event.stream.clone())
            .and_modify(|plan| plan.last_version = event.stream_version)
            .or_insert(Plan { first_id: event.id, last_version: event.stream_version });
        digest.add(&event);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((plans, digest))
}

/// The target's versions of the source's streams: a stream that holds the
/// source's first events (an interrupted run) is resumed after them; one
/// that holds other events is refused before anything is written. The
/// target's streams are listed in pages (one query each on SQL stores);
/// only those the source also has are read.
async fn resume_points(target: &Store, plans: &BTreeMap<StreamId, Plan>) -> Result<HashMap<StreamId, u64>, Failure> {
    let mut present = HashMap::new();
    let mut listing = StreamListing::new(LISTING_PAGE);
    loop {
        let page = target.events.list_streams(&listing).await?;
        for summary in &page {
            let Some(plan) = plans.get(&summary.stream) else { continue };
            let stream = &summary.stream;
            let first = target.events.read_stream(stream, 1).next().await.transpose()?;
            if first.map(|e| e.id) != Some(plan.first_id) || summary.version > plan.last_version {
                return Err(Failure::Refused(format!(
                    "`{}` already holds stream `{stream}` ({} events) with other events than the source's: \
                     nothing was written; import into a store without these streams",
                    target.shown, summary.events
                )));
            }
            present.insert(stream.clone(), summary.version);
        }
        match page.last() {
            Some(last) if page.len() == LISTING_PAGE => {
                listing = StreamListing::new(LISTING_PAGE).after(last.stream.clone());
            }
            _ => return Ok(present),
        }
    }
}

/// How many streams one page of the target's listing holds.
const LISTING_PAGE: usize = 1000;

/// The parts of one atomic append, in the source's order: a stream's
/// events join its part while it is the last part; a stream that comes
/// back after another ends the batch, so the global order is kept.
#[derive(Default)]
struct Batch {
    parts: Vec<StreamAppend>,
    events: usize,
}

impl Batch {
    /// Adds `event` if it keeps the order; `false` when the batch must be
    /// written first.
    fn try_push(&mut self, event: &RecordedEvent) -> bool {
        if let Some(last) = self.parts.last_mut() {
            if last.stream == event.stream {
                last.events.push(event.to_new_event());
                self.events += 1;
                return true;
            }
        }
        if self.parts.iter().any(|part| part.stream == event.stream) {
            return false;
        }
        let expected = ExpectedVersion::Exact(event.stream_version - 1);
        self.parts.push(StreamAppend::new(event.stream.clone(), expected, vec![event.to_new_event()]));
        self.events += 1;
        true
    }

    async fn write(&mut self, target: &Store) -> Result<(), Failure> {
        if self.parts.is_empty() {
            return Ok(());
        }
        let parts = std::mem::take(&mut self.parts);
        self.events = 0;
        target.events.append_many(parts).await.map_err(|e| {
            Failure::Store(format!("writing to `{}` failed: {e}; run the same command again to resume", target.shown))
        })?;
        Ok(())
    }
}

async fn transfer<'s>(
    source: &mut (dyn FnMut() -> Result<Events<'s>, Failure> + Send + 's),
    what: &str,
    target: &Store,
    batch_size: usize,
    options: Options,
) -> Result<(), Failure> {
    let batch_size = batch_size.max(1);
    let (plans, source_digest) = survey(source()?, what).await?;
    let present = resume_points(target, &plans).await?;
    if target.events.head_position().await?.is_some() {
        confirm(
            options.yes,
            &format!(
                "`{}` is not empty ({} of the source's {} streams are there already and will be resumed). Write into it?",
                target.shown,
                present.len(),
                plans.len()
            ),
        )?;
    }
    let bar = progress(Some(source_digest.events), "writing");
    let (mut batch, mut written, mut skipped) = (Batch::default(), 0u64, 0u64);
    let mut events = source()?;
    while let Some(event) = events.next().await {
        let event = event?;
        bar.inc(1);
        if present.get(&event.stream).is_some_and(|&there| event.stream_version <= there) {
            skipped += 1;
            continue;
        }
        if batch.events >= batch_size || !batch.try_push(&event) {
            batch.write(target).await?;
            batch.try_push(&event);
        }
        written += 1;
    }
    batch.write(target).await?;
    bar.finish_and_clear();

    // The target's log, read once, digesting the events of the source's
    // streams (one streaming read instead of a read per stream).
    let bar = progress(None, "verifying");
    let mut target_digest = Digest::default();
    let head = target.events.head_position().await?.unwrap_or(0);
    let mut log = std::pin::pin!(up_to_head(target, &ALL, head));
    while let Some(event) = log.next().await {
        let event = event?;
        if plans.contains_key(&event.stream) {
            target_digest.add(&event);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let verified = target_digest == source_digest;
    if options.json {
        print_json(&json!({
            "source": {"name": what, "events": source_digest.events, "streams": plans.len(), "digest": source_digest.hex()},
            "target": {"name": target.shown, "events": target_digest.events, "digest": target_digest.hex()},
            "written": written, "already_there": skipped, "verified": verified,
        }))?;
    } else {
        println!("wrote {written} events ({skipped} were there already) from {what} to {}", target.shown);
        println!("source  {} events in {} streams, digest {}", source_digest.events, plans.len(), source_digest.hex());
        println!("target  {} events, digest {}", target_digest.events, target_digest.hex());
        println!("{}", if verified { "verified: counts and digests are equal" } else { "NOT VERIFIED" });
    }
    if verified {
        Ok(())
    } else {
        Err(Failure::Verification(format!(
            "the target's events differ from the source's ({} events, digest {} against {} events, digest {})",
            target_digest.events,
            target_digest.hex(),
            source_digest.events,
            source_digest.hex()
        )))
    }
}
