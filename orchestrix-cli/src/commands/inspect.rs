//! `streams`, `show` and `stats`.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use futures_util::StreamExt as _;
use orchestrix::envelope::RecordedEvent;
use orchestrix::store::{EventFilter, StreamListing};
use orchestrix::StreamId;
use serde_json::json;

use super::{parse_time, up_to_head, Options};
use crate::connect::Store;
use crate::error::Failure;
use crate::output::{print_json, progress, table};

/// How many streams one call of `list_streams` asks for.
const PAGE: usize = 500;

pub(super) async fn streams(
    store: &Store,
    category: Option<String>,
    id_prefix: Option<String>,
    limit: usize,
    options: Options,
) -> Result<(), Failure> {
    let base = |listing: StreamListing| {
        let listing = match &category {
            Some(c) => listing.with_category(c.clone()),
            None => listing,
        };
        match &id_prefix {
            Some(p) => listing.with_id_prefix(p.clone()),
            None => listing,
        }
    };
    let mut found = Vec::new();
    let mut listing = base(StreamListing::new(PAGE.min(limit.saturating_add(1))));
    loop {
        let page = store.events.list_streams(&listing).await?;
        let full = page.len() == listing.limit();
        let Some(last) = page.last().map(|s| s.stream.clone()) else { break };
        found.extend(page);
        if !full || found.len() > limit {
            break;
        }
        listing = base(StreamListing::new(PAGE.min(limit + 1 - found.len()))).after(last);
    }
    let more = found.len() > limit;
    found.truncate(limit);
    if options.json {
        let rows: Vec<_> = found
            .iter()
            .map(|s| {
                json!({"stream": s.stream.to_string(), "type": s.stream.category(), "id": s.stream.id(),
                       "version": s.version, "events": s.events, "last_position": s.last_position})
            })
            .collect();
        return print_json(&json!({"streams": rows, "truncated": more}));
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|s| vec![s.stream.to_string(), s.events.to_string(), s.version.to_string(), s.last_position.to_string()])
        .collect();
    print!("{}", table(&["STREAM", "EVENTS", "VERSION", "LAST POSITION"], &rows));
    if more {
        eprintln!("(only the first {limit} streams; pass --limit to see more)");
    }
    Ok(())
}

/// Where `show --at` stops.
enum At {
    Version(u64),
    Time(chrono::DateTime<Utc>),
}

impl At {
    fn parse(text: &str) -> Result<Self, Failure> {
        match text.parse::<u64>() {
            Ok(version) => Ok(Self::Version(version)),
            Err(_) => parse_time(text).map(Self::Time),
        }
    }

    fn includes(&self, event: &RecordedEvent) -> bool {
        match self {
            Self::Version(version) => event.stream_version <= *version,
            Self::Time(time) => event.recorded_at <= *time,
        }
    }
}

pub(super) async fn show(store: &Store, stream: &StreamId, at: Option<&str>, options: Options) -> Result<(), Failure> {
    let at = at.map(At::parse).transpose()?;
    let version = store.events.stream_version(stream).await?;
    if version.is_none() {
        return Err(Failure::NotFound(format!("stream `{stream}` has no events")));
    }
    let mut events = store.events.read_stream(stream, 1);
    let mut shown = Vec::new();
    while let Some(event) = events.next().await {
        let event = event?;
        if at.as_ref().is_some_and(|at| !at.includes(&event)) {
            break;
        }
        if options.json {
            shown.push(serde_json::to_value(&*event).map_err(|e| Failure::Store(e.to_string()))?);
        } else {
            print!("{}", describe(&event));
        }
    }
    if options.json {
        return print_json(&json!({"stream": stream.to_string(), "version": version, "events": shown}));
    }
    Ok(())
}

/// One event for people: a header line, then its metadata and data as
/// indented pretty JSON.
fn describe(event: &RecordedEvent) -> String {
    let pretty = |text: &str| {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.to_owned()));
        serde_json::to_string_pretty(&value).unwrap_or_default().replace('\n', "\n    ")
    };
    let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
    format!(
        "#{version} {kind} (schema v{schema})  position {position}  {time}  id {id}\n  metadata: {meta}\n  data:\n    {data}\n",
        version = event.stream_version,
        kind = event.event_type,
        schema = event.schema_version,
        position = event.global_position,
        time = event.recorded_at.to_rfc3339(),
        id = event.id,
        meta = pretty(&metadata),
        data = pretty(event.data.get()),
    )
}

pub(super) async fn stats(store: &Store, options: Options) -> Result<(), Failure> {
    let Some(head) = store.events.head_position().await? else {
        if options.json {
            return print_json(&json!({"events": 0, "streams": 0, "types": {}, "bytes": 0}));
        }
        println!("the store holds no events");
        return Ok(());
    };
    let now = Utc::now();
    let (minute, hour) = (now - Duration::minutes(1), now - Duration::hours(1));
    let (mut events, mut bytes, mut last_minute, mut last_hour) = (0u64, 0u64, 0u64, 0u64);
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut streams = std::collections::HashSet::new();
    let all = EventFilter::all();
    let bar = progress(None, "reading the log");
    let mut log = std::pin::pin!(up_to_head(store, &all, head));
    while let Some(event) = log.next().await {
        let event = event?;
        events += 1;
        bar.inc(1);
        bytes += u64::try_from(event.data.get().len()).unwrap_or(0);
        if event.recorded_at >= minute {
            last_minute += 1;
        }
        if event.recorded_at >= hour {
            last_hour += 1;
        }
        *types.entry(event.event_type.clone()).or_default() += 1;
        streams.insert(event.stream.clone());
    }
    bar.finish_and_clear();
    if options.json {
        return print_json(&json!({
            "events": events, "streams": streams.len(), "head_position": head, "types": types,
            "data_bytes": bytes, "events_last_minute": last_minute, "events_last_hour": last_hour,
        }));
    }
    println!("store           {}", store.shown);
    println!("events          {events}");
    println!("streams         {}", streams.len());
    println!("head position   {head}");
    println!("data size       {bytes} bytes");
    println!("recent rate     {last_minute} in the last minute, {last_hour} in the last hour");
    println!();
    let rows: Vec<Vec<String>> = types.into_iter().map(|(t, n)| vec![t, n.to_string()]).collect();
    print!("{}", table(&["TYPE", "EVENTS"], &rows));
    Ok(())
}
