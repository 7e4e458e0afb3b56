//! The api and two worker processes; the second gets half the partitions
//! from the first; 2,000 orders; the first is SIGKILLed while sagas are
//! in flight; the survivor takes its partitions over and finishes. Then: the read model equals a replay of the
//! log, every saga ended as its order's amount says, and every payment
//! and shipping effect was applied once. Needs `ORCHESTRIX_PG_URL` and
//! `ORCHESTRIX_NATS_URL`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::{
    envelope::RecordedEvent,
    store::{EventFilter, EventStore},
    Uuid,
};
use orders::{planned_outcome, OrderView, Outcome, PaymentState, PgOrderViews, Status};
use support::{poll, Place, Process};

const ORDERS: u64 = 2_000;
/// Kill once this many orders have reached their end.
const KILL_AFTER: usize = 300;
const ALL_PARTITIONS: &str = "{0, 1, 2, 3, 4, 5, 6, 7}";
/// What the first worker gives up when the second arrives: its highest
/// half.
const UPPER_HALF: &str = "{4, 5, 6, 7}";

async fn all_events(place: &Place) -> Vec<RecordedEvent> {
    let filter = EventFilter::all();
    let mut stream = place.store.read_all(1, &filter);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(std::sync::Arc::unwrap_or_clone(event.expect("the log reads")));
    }
    events
}

/// Sagas with a start and no end in the log (informational: whether the
/// kill landed inside a saga).
async fn sagas_in_flight(place: &Place) -> usize {
    let filter = EventFilter::types(["SagaStarted", "SagaCompleted", "SagaFailed"]);
    let mut stream = place.store.read_all(1, &filter);
    let mut open = BTreeSet::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("the log reads");
        if event.event_type == "SagaStarted" {
            open.insert(event.stream.id().to_owned());
        } else {
            open.remove(event.stream.id());
        }
    }
    open.len()
}

async fn ended(views: &PgOrderViews) -> usize {
    views.all().await.unwrap().values().filter(|v| matches!(v.status, Status::Completed | Status::Cancelled)).count()
}

async fn effects(place: &Place) -> BTreeMap<(Uuid, String), (i64, i32)> {
    let sql = format!("SELECT order_id, effect, amount, calls FROM \"{}\".effects", place.schema);
    let rows: Vec<(Uuid, String, i64, i32)> = sqlx::query_as(&sql).fetch_all(place.store.pool()).await.unwrap();
    rows.into_iter().map(|(order, effect, amount, calls)| ((order, effect), (amount, calls))).collect()
}

#[cfg_attr(
    not(all(orchestrix_pg, orchestrix_nats)),
    ignore = "needs ORCHESTRIX_PG_URL and ORCHESTRIX_NATS_URL (PostgreSQL and NATS servers), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_and_repeats_nothing() {
    let Some(place) = Place::new().await else { return };
    let args = place.args();
    let mut api_args = vec!["--addr".to_owned(), "127.0.0.1:0".to_owned()];
    api_args.extend(args.iter().cloned());
    let mut api = Process::spawn("api", &api_args, &[]);
    let addr =
        api.wait_for_line(Duration::from_mins(1), |line| line.strip_prefix("listening on ").map(str::to_owned)).await;
    // Alone, the first worker takes every partition; when the second
    // arrives it gives up the upper half, which the second takes.
    let mut first = Process::spawn("worker", &args, &[]);
    first
        .wait_for_line(Duration::from_mins(1), |line| {
            (support::parse_partitions(line)? == (ALL_PARTITIONS.to_owned(), ALL_PARTITIONS.to_owned())).then_some(())
        })
        .await;
    let mut second = Process::spawn("worker", &args, &[]);
    second
        .wait_for_line(Duration::from_mins(1), |line| {
            (support::parse_partitions(line)? == (UPPER_HALF.to_owned(), UPPER_HALF.to_owned())).then_some(())
        })
        .await;

    // Amounts 100..2100: a tenth end in 7 (payment declined), a tenth in
    // 9 (shipping fails), the rest complete.
    let http = reqwest::Client::new();
    let mut placed: BTreeMap<Uuid, u64> = BTreeMap::new();
    let mut requests = futures_util::stream::iter(100..100 + ORDERS)
        .map(|amount| {
            let http = http.clone();
            let url = format!("http://{addr}/orders");
            async move {
                let response = http
                    .post(url)
                    .json(&serde_json::json!({"customer": format!("c{amount}"), "amount": amount}))
                    .send()
                    .await
                    .expect("the api answers");
                assert_eq!(response.status(), reqwest::StatusCode::CREATED);
                let body: orders::Accepted = response.json().await.unwrap();
                (body.id, amount)
            }
        })
        .buffer_unordered(16);
    while let Some((id, amount)) = requests.next().await {
        placed.insert(id, amount);
    }
    assert_eq!(placed.len() as u64, ORDERS);

    let views = PgOrderViews::new(place.store.pool().clone(), &place.schema);
    let done_before_kill = poll(Duration::from_mins(8), || async {
        let done = ended(&views).await;
        (done >= KILL_AFTER).then_some(done)
    })
    .await
    .expect("the first worker makes progress");
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let in_flight = sagas_in_flight(&place).await;
    eprintln!("killed the first worker after {done_before_kill} of {ORDERS} orders ended; {in_flight} sagas started and not ended");
    assert!((done_before_kill as u64) < ORDERS, "the kill must come while work is in flight");

    second
        .wait_for_line(Duration::from_mins(1), |line| {
            (support::parse_partitions(line)? == (ALL_PARTITIONS.to_owned(), ALL_PARTITIONS.to_owned())).then_some(())
        })
        .await;

    // Done: every order ended, every saga recorded its end, and the read
    // model caught up with the log.
    let settled = poll(Duration::from_mins(10), || async {
        if ended(&views).await < placed.len() {
            return None;
        }
        let events = all_events(&place).await;
        let sagas_ended = events
            .iter()
            .filter(|e| {
                e.stream.category() == "saga-Fulfilment"
                    && matches!(e.event_type.as_str(), "SagaCompleted" | "SagaFailed")
            })
            .count();
        let replayed = orders::replay(&events).unwrap();
        (sagas_ended == placed.len() && replayed == views.all().await.unwrap()).then_some(events)
    })
    .await;
    let Some(events) = settled else {
        let events = all_events(&place).await;
        let replayed = orders::replay(&events).unwrap();
        let stored = views.all().await.unwrap();
        let differ: Vec<_> = replayed.iter().filter(|(id, v)| stored.get(id) != Some(v)).take(3).collect();
        panic!(
            "not settled within 10 minutes: {} ended; rows differing from the replay: {differ:?}",
            ended(&views).await
        );
    };

    // The read model is the replay of the log.
    let replayed = orders::replay(&events).unwrap();
    assert_eq!(replayed, views.all().await.unwrap(), "the read model equals a full replay");
    assert_eq!(replayed.keys().copied().collect::<BTreeSet<_>>(), placed.keys().copied().collect());

    check_outcomes(&placed, &events, &replayed, &effects(&place).await);

    second.terminate().await;
    api.terminate().await;
    place.delete().await;
}

/// Each saga ended as its order's amount says, each event of the order's
/// streams is recorded once, and each effect was applied once.
fn check_outcomes(
    placed: &BTreeMap<Uuid, u64>,
    events: &[RecordedEvent],
    replayed: &BTreeMap<Uuid, OrderView>,
    effects: &BTreeMap<(Uuid, String), (i64, i32)>,
) {
    // Each saga ended as its amount says; each effect is recorded once.
    let mut ends: BTreeMap<Uuid, Vec<&str>> = BTreeMap::new();
    let mut per_type: BTreeMap<(Uuid, &str), u32> = BTreeMap::new();
    for event in events {
        let Ok(id) = event.stream.id().parse::<Uuid>() else { continue };
        if event.stream.category() == "saga-Fulfilment" && event.event_type.starts_with("Saga") {
            if matches!(event.event_type.as_str(), "SagaCompleted" | "SagaFailed") {
                ends.entry(id).or_default().push(&event.event_type);
            }
        } else {
            *per_type.entry((id, event.event_type.as_str())).or_default() += 1;
        }
    }
    let mut expected_effects = BTreeMap::new();
    let (mut completed, mut declined, mut refunded) = (0, 0, 0);
    for (&id, &amount) in placed {
        let view: &OrderView = &replayed[&id];
        let outcome = planned_outcome(amount);
        let once = |t: &str| per_type.get(&(id, t)).copied().unwrap_or(0);
        assert_eq!(once("OrderPlaced"), 1, "{id}");
        assert_eq!(once("OrderAccepted"), 1, "{id}");
        let amount_i = i64::try_from(amount).unwrap();
        match outcome {
            Outcome::Completed => {
                completed += 1;
                assert_eq!(ends[&id], ["SagaCompleted"], "{id} ({amount})");
                assert_eq!(
                    (view.status, view.payment, view.tracking.is_some()),
                    (Status::Completed, PaymentState::Reserved, true)
                );
                assert_eq!(
                    (once("PaymentReserved"), once("ShipmentShipped"), once("OrderCompleted")),
                    (1, 1, 1),
                    "{id}"
                );
                assert_eq!((once("PaymentRefunded"), once("OrderCancelled")), (0, 0), "{id}");
                expected_effects.insert((id, "charge".to_owned()), amount_i);
                expected_effects.insert((id, "ship".to_owned()), amount_i);
            }
            Outcome::PaymentDeclined => {
                declined += 1;
                assert_eq!(ends[&id], ["SagaFailed"], "{id} ({amount})");
                assert_eq!((view.status, view.payment), (Status::Cancelled, PaymentState::None));
                assert_eq!(view.reason.as_deref(), Some(orders::FULFILMENT_FAILED));
                assert_eq!(
                    (once("OrderCancelled"), once("PaymentReserved"), once("ShipmentShipped")),
                    (1, 0, 0),
                    "{id}"
                );
            }
            Outcome::ShippingFailed => {
                refunded += 1;
                assert_eq!(ends[&id], ["SagaFailed"], "{id} ({amount})");
                assert_eq!(
                    (view.status, view.payment, view.tracking.as_deref()),
                    (Status::Cancelled, PaymentState::Refunded, None)
                );
                assert_eq!(
                    (once("PaymentReserved"), once("PaymentRefunded"), once("OrderCancelled"), once("ShipmentShipped")),
                    (1, 1, 1, 0),
                    "{id}"
                );
                expected_effects.insert((id, "charge".to_owned()), amount_i);
                expected_effects.insert((id, "refund".to_owned()), amount_i);
            }
        }
    }
    assert_eq!((completed, declined, refunded), (1_600, 200, 200));
    let applied: BTreeMap<(Uuid, String), i64> = effects.iter().map(|(k, (amount, _))| (k.clone(), *amount)).collect();
    assert_eq!(applied, expected_effects, "every effect applied, once, and nothing else");
    let repeated: i32 = effects.values().map(|(_, calls)| calls - 1).sum();
    eprintln!("{} effects; {repeated} repeated calls absorbed by the services' idempotency key", effects.len());
}
