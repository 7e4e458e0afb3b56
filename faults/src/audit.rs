//! What the writers of a scenario tried and were told, checked against the
//! log the store holds at the end: the promises of ADR 0049 as counts.
//!
//! A writer notes every append it sends ([`Append`]) before sending it, and
//! marks it acknowledged when the store answered with the recorded events.
//! An append whose outcome stayed unknown (a crash, a kill) may be stored
//! or not, but only whole.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use orchestrix::envelope::RecordedEvent;
use orchestrix::StreamId;
use uuid::Uuid;

/// One append a writer sent: its stream, the version its first event
/// takes, its event ids, and whether the store acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The stream appended to.
    pub stream: StreamId,
    /// The version of the append's first event (the expected version + 1).
    pub first_version: u64,
    /// The ids of its events, in order.
    pub ids: Vec<Uuid>,
    /// Whether the store answered it with the recorded events.
    pub acknowledged: bool,
}

/// The log checked against the appends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Events of acknowledged appends.
    pub acknowledged: u64,
    /// Events of acknowledged appends missing from the log, or stored
    /// under another stream or version (goal 0).
    pub lost: u64,
    /// Event ids stored more than once (goal 0).
    pub duplicated: u64,
    /// Appends stored in part (goal 0): an append is atomic.
    pub partial: u64,
    /// Appends whose events are not adjacent in the global log (goal 0):
    /// one append is one transaction, and nothing commits between its rows.
    pub split: u64,
    /// Streams whose versions are not 1, 2, ... without a hole (goal 0).
    pub version_gaps: u64,
    /// Events in the log that no writer sent (goal 0).
    pub foreign: u64,
    /// Appends whose outcome the writer never learned, found stored whole:
    /// allowed (the commit happened, the answer was lost).
    pub unacknowledged_stored: u64,
    /// Appends whose outcome the writer never learned, found absent:
    /// allowed.
    pub unacknowledged_absent: u64,
    /// Events in the log.
    pub events: u64,
}

impl Audit {
    /// Checks `log` (the whole global log, in order) against `appends`.
    pub fn of(log: &[impl AsRef<RecordedEvent>], appends: &[Append]) -> Self {
        let mut audit = Self { events: count(log.len()), ..Self::default() };
        // Where each id is stored: its index in the log.
        let mut at: HashMap<Uuid, usize> = HashMap::with_capacity(log.len());
        for (index, event) in log.iter().enumerate() {
            if at.insert(event.as_ref().id, index).is_some() {
                audit.duplicated += 1;
            }
        }
        let mut sent: HashSet<Uuid> = HashSet::new();
        for append in appends {
            sent.extend(append.ids.iter().copied());
            let stored: Vec<usize> = append.ids.iter().filter_map(|id| at.get(id).copied()).collect();
            if append.acknowledged {
                audit.acknowledged += count(append.ids.len());
                let placed = append.ids.iter().zip(append.first_version..).filter(|(id, version)| {
                    at.get(*id).is_some_and(|&i| {
                        let event = log[i].as_ref();
                        event.stream == append.stream && event.stream_version == *version
                    })
                });
                audit.lost += count(append.ids.len() - placed.count());
            } else if stored.len() == append.ids.len() {
                audit.unacknowledged_stored += 1;
            } else if stored.is_empty() {
                audit.unacknowledged_absent += 1;
            }
            if !stored.is_empty() && stored.len() < append.ids.len() {
                audit.partial += 1;
            }
            if stored.len() == append.ids.len() && stored.windows(2).any(|pair| pair[1] != pair[0] + 1) {
                audit.split += 1;
            }
        }
        audit.foreign = count(log.iter().filter(|event| !sent.contains(&event.as_ref().id)).count());
        let mut versions: BTreeMap<&StreamId, Vec<u64>> = BTreeMap::new();
        for event in log {
            let event = event.as_ref();
            versions.entry(&event.stream).or_default().push(event.stream_version);
        }
        audit.version_gaps = count(
            versions
                .values_mut()
                .filter(|v| v.iter().zip(1_u64..).any(|(version, expected)| *version != expected))
                .count(),
        );
        audit
    }

    /// Whether every promise held: nothing lost, duplicated, partial,
    /// split, out of version order or foreign.
    pub fn holds(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.partial == 0
            && self.split == 0
            && self.version_gaps == 0
            && self.foreign == 0
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events in the log, {} acknowledged: {} lost, {} duplicated, {} partial appends, {} split appends, \
             {} streams with a version gap, {} foreign events; unknown outcomes: {} stored, {} absent",
            self.events,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.partial,
            self.split,
            self.version_gaps,
            self.foreign,
            self.unacknowledged_stored,
            self.unacknowledged_absent
        )
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use orchestrix::envelope::NewEvent;
    use orchestrix::Metadata;
    use serde_json::value::RawValue;

    use super::*;

    fn recorded(stream: &StreamId, version: u64, position: u64, id: Uuid) -> Arc<RecordedEvent> {
        let event =
            NewEvent::from_parts(id, "E".into(), 1, RawValue::from_string("{}".into()).unwrap(), Metadata::default());
        Arc::new(RecordedEvent::new(event, stream.clone(), version, position, chrono::Utc::now()))
    }

    #[test]
    fn every_broken_promise_is_counted() {
        let a = StreamId::new("A", "1").unwrap();
        let b = StreamId::new("B", "1").unwrap();
        let ids: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
        let appends = vec![
            Append { stream: a.clone(), first_version: 1, ids: vec![ids[0], ids[1]], acknowledged: true },
            // acknowledged, never stored: lost
            Append { stream: a.clone(), first_version: 3, ids: vec![ids[2]], acknowledged: true },
            // unknown outcome, stored in part: partial
            Append { stream: b.clone(), first_version: 1, ids: vec![ids[3], ids[4]], acknowledged: false },
            // unknown outcome, absent: allowed
            Append { stream: b.clone(), first_version: 2, ids: vec![ids[5]], acknowledged: false },
        ];
        let log = vec![
            recorded(&a, 1, 10, ids[0]),
            recorded(&b, 1, 11, ids[3]),
            recorded(&a, 2, 12, ids[1]), // not adjacent to ids[0]: split
            recorded(&b, 3, 13, ids[7]), // nobody sent it; b has no version 2: gap
        ];
        let audit = Audit::of(&log, &appends);
        assert_eq!(audit.acknowledged, 3);
        assert_eq!(audit.lost, 1);
        assert_eq!(audit.partial, 1);
        assert_eq!(audit.split, 1);
        assert_eq!(audit.foreign, 1);
        assert_eq!(audit.version_gaps, 1);
        assert_eq!(audit.unacknowledged_absent, 1);
        assert_eq!(audit.duplicated, 0);
        assert!(!audit.holds());

        let clean = Audit::of(&log[..1], &appends[..0]);
        assert_eq!(clean.foreign, 1);
        let fine = Audit::of(&[recorded(&a, 1, 1, ids[0]), recorded(&a, 2, 2, ids[1])], &appends[..1]);
        assert!(fine.holds(), "{fine}");
        assert_eq!(fine.acknowledged, 2);
    }
}
