//! Unit tests of [`Delivery`] with a scripted [`Target`]: retries, poison
//! (stop or park), parking behind a parked stream, redelivery of a parked
//! event, release of a stream whose letters are gone, interruptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Delivered, Delivery, DeliveryError, Failure, Interval, Target};
use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::memory::{InMemoryDeadLetterStore, InMemoryEventStore};
use crate::projection::{PoisonPolicy, ProjectionError};
use crate::retry::RetryPolicy;
use crate::store::{DeadLetterQuery, DeadLetterStore, EventStore, ExpectedVersion};
use crate::stream::StreamId;

/// Fails each event as often as scripted (by id), then applies it;
/// `u32::MAX` failures interrupt instead.
#[derive(Default)]
struct Scripted {
    failures: HashMap<uuid::Uuid, u32>,
    tries: HashMap<uuid::Uuid, u32>,
    applied: Vec<u64>,
}

const INTERRUPT: u32 = u32::MAX;

impl Target for Scripted {
    type Interrupt = &'static str;

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), Failure<&'static str>> {
        let tries = self.tries.entry(event.id).or_default();
        *tries += 1;
        match self.failures.get(&event.id).copied().unwrap_or(0) {
            INTERRUPT => Err(Failure::Interrupted("outage")),
            failures if *tries <= failures => Err(Failure::Handler(format!("try {tries} fails").into())),
            _ => {
                self.applied.push(event.global_position);
                Ok(())
            }
        }
    }
}

impl Scripted {
    fn tries(&self, event: &RecordedEvent) -> u32 {
        self.tries.get(&event.id).copied().unwrap_or(0)
    }
}

/// Appends `count` events to each of the streams `A/1` and `B/1`,
/// alternating, and returns them in position order.
async fn events(count: usize) -> Vec<Arc<RecordedEvent>> {
    let store = InMemoryEventStore::new();
    let mut all = Vec::new();
    for _ in 0..count {
        for stream in ["A", "B"] {
            let event = NewEvent {
                id: uuid::Uuid::now_v7(),
                event_type: "Noted".into(),
                schema_version: 1,
                data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
                metadata: Metadata::default(),
            };
            let stream = StreamId::new(stream, "1").unwrap();
            all.extend(store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap());
        }
    }
    all
}

fn delivery(retries: u32, poison: PoisonPolicy, letters: Option<&InMemoryDeadLetterStore>) -> Delivery {
    let store = letters.map(|store| Arc::new(store.clone()) as Arc<dyn DeadLetterStore>);
    Delivery::new("unit", RetryPolicy::fixed(retries, Duration::ZERO), poison, store)
}

async fn deliver(delivery: &mut Delivery, target: &mut Scripted, event: &RecordedEvent) -> Delivered {
    match delivery.deliver(target, event, &tracing::Span::none()).await {
        Ok(delivered) => delivered,
        Err(DeliveryError::Projection(error)) => panic!("the delivery failed: {error}"),
        Err(DeliveryError::Interrupted(why)) => panic!("the delivery was interrupted: {why}"),
    }
}

#[tokio::test]
async fn a_failing_event_is_retried_until_it_succeeds() {
    let events = events(1).await;
    let mut target = Scripted::default();
    target.failures.insert(events[0].id, 2);
    let mut delivery = delivery(3, PoisonPolicy::Stop, None);
    assert_eq!(deliver(&mut delivery, &mut target, &events[0]).await, Delivered::Handled);
    assert_eq!(target.tries(&events[0]), 3);
    assert_eq!(target.applied, [events[0].global_position]);
}

#[tokio::test]
async fn poison_under_stop_ends_the_projection_with_the_event() {
    let events = events(1).await;
    let mut target = Scripted::default();
    target.failures.insert(events[0].id, 10);
    let mut delivery = delivery(2, PoisonPolicy::Stop, None);
    let Err(DeliveryError::Projection(ProjectionError::Poison(poison))) =
        delivery.deliver(&mut target, &events[0], &tracing::Span::none()).await
    else {
        panic!("not poison")
    };
    assert_eq!((poison.position, poison.attempts), (events[0].global_position, 2));
    assert!(poison.error.contains("try 2 fails"), "{}", poison.error);
    assert!(target.applied.is_empty());
}

#[tokio::test]
async fn parking_needs_a_dead_letter_store() {
    let events = events(1).await;
    let mut target = Scripted::default();
    target.failures.insert(events[0].id, 10);
    let mut delivery = delivery(1, PoisonPolicy::Park, None);
    let result = delivery.deliver(&mut target, &events[0], &tracing::Span::none()).await;
    assert!(
        matches!(result, Err(DeliveryError::Projection(ProjectionError::NoDeadLetterStore(_)))),
        "{:?}",
        result.map_err(|e| match e {
            DeliveryError::Projection(e) => e.to_string(),
            DeliveryError::Interrupted(i) => i.to_owned(),
        })
    );
}

/// `events` alternate between A and B: A's first event is poison; A's
/// later events wait behind it untried while B's are handled; delivered
/// again (a restart), the parked event is left alone; once its letter is
/// gone, A's next event is handled.
#[tokio::test]
async fn a_parked_stream_holds_its_later_events_and_is_released_without_letters() {
    let events = events(3).await;
    let (a, b): (Vec<_>, Vec<_>) = events.iter().partition(|event| event.stream.category() == "A");
    let letters = InMemoryDeadLetterStore::new();
    let mut target = Scripted::default();
    target.failures.insert(a[0].id, 10);
    let mut delivery = delivery(2, PoisonPolicy::Park, Some(&letters));

    assert_eq!(deliver(&mut delivery, &mut target, a[0]).await, Delivered::Parked);
    assert_eq!(deliver(&mut delivery, &mut target, b[0]).await, Delivered::Handled);
    assert_eq!(deliver(&mut delivery, &mut target, a[1]).await, Delivered::ParkedBehind);
    assert_eq!(deliver(&mut delivery, &mut target, b[1]).await, Delivered::Handled);
    assert_eq!(target.tries(a[1]), 0, "parked behind without being tried");
    assert!(delivery.may_be_parked(&a[0].stream) && !delivery.may_be_parked(&b[0].stream));

    let parked = letters.query(&DeadLetterQuery::consumer("unit")).await.unwrap();
    let attempts: Vec<(u64, u32)> = parked.iter().map(|l| (l.event.global_position, l.attempts)).collect();
    assert_eq!(attempts, [(a[0].global_position, 2), (a[1].global_position, 0)]);

    assert_eq!(deliver(&mut delivery, &mut target, a[1]).await, Delivered::AlreadyParked, "delivered again");
    assert_eq!(target.tries(a[0]), 2, "the poison event was not tried again");

    // A restarted runner reads the parked streams from the store.
    let mut restarted = self::delivery(2, PoisonPolicy::Park, Some(&letters));
    restarted.load_parked().await.unwrap();
    assert!(restarted.may_be_parked(&a[0].stream));

    // Letters dropped through the store release the stream.
    letters.purge(&DeadLetterQuery::consumer("unit")).await.unwrap();
    assert_eq!(deliver(&mut restarted, &mut target, a[2]).await, Delivered::Handled);
    assert!(!restarted.may_be_parked(&a[0].stream));
    assert_eq!(target.applied, [b[0].global_position, b[1].global_position, a[2].global_position]);
}

#[tokio::test]
async fn an_interruption_is_handed_back_untried_again() {
    let events = events(1).await;
    let mut target = Scripted::default();
    target.failures.insert(events[0].id, INTERRUPT);
    let letters = InMemoryDeadLetterStore::new();
    let mut delivery = delivery(5, PoisonPolicy::Park, Some(&letters));
    let result = delivery.deliver(&mut target, &events[0], &tracing::Span::none()).await;
    assert!(matches!(result, Err(DeliveryError::Interrupted("outage"))));
    assert_eq!(target.tries(&events[0]), 1, "an interruption is not retried");
    assert!(letters.list(None).await.unwrap().is_empty(), "nor parked");
}

/// The checkpoint interval's clock (ADR 0055): a steadily slow handler
/// has the interval noticed at the first event past it; fast events read
/// the clock once per stride of at most 64 events, and the interval is
/// noticed within one stride.
#[tokio::test(start_paused = true)]
async fn an_interval_is_noticed_at_once_when_slow_and_within_a_stride_when_fast() {
    let mut interval = Interval::new(Duration::from_millis(80));
    for n in 1..=8 {
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(interval.tick(), n == 8, "event {n} of 10 ms each");
    }
    interval.restart();
    // No time passes between these events: the stride grows to its cap.
    for _ in 0..1_000 {
        assert!(!interval.tick());
    }
    assert_eq!(interval.stride, Interval::MAX_STRIDE);
    tokio::time::advance(Duration::from_millis(80)).await;
    let mut before = 0;
    while !interval.tick() {
        before += 1;
    }
    assert!(before < Interval::MAX_STRIDE, "noticed after {before} more events");
    // After a restart, the first look at the clock is at the next event.
    interval.restart();
    tokio::time::advance(Duration::from_millis(80)).await;
    assert!(interval.tick());
}
