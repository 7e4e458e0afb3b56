//! The fulfilment saga and the order read model, both run by the worker
//! process on JetStream consumers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use orchestrix::error::BoxError;
use orchestrix::projection::Projection;
use orchestrix::saga::{Saga, Step};
use orchestrix::{envelope::RecordedEvent, store::EventFilter, Uuid};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{
    AcceptOrder, CancelOrder, CompleteOrder, OrderEvent, PaymentEvent, RefundPayment, ReservePayment, ShipOrder,
    ShipmentEvent, Status,
};

/// The reason a failed fulfilment gives when it cancels the order.
pub const FULFILMENT_FAILED: &str = "fulfilment failed";

/// What a fulfilment carries from step to step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentData {
    /// The order (and its payment's and shipment's id).
    pub order: Uuid,
    /// In cents.
    pub amount: u64,
}

/// Accept the order, reserve the payment, ship, complete. A refused
/// payment cancels the order; a failed shipment refunds the payment, then
/// cancels the order. One instance per order, whose id is the order's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fulfilment;

impl Saga for Fulfilment {
    const NAME: &'static str = "Fulfilment";
    type Data = FulfilmentData;

    fn start_event_types(&self) -> Vec<String> {
        vec!["OrderPlaced".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<FulfilmentData>, BoxError> {
        match event.decode::<OrderEvent>()? {
            OrderEvent::Placed { amount, .. } => Ok(Some(FulfilmentData { order: event.stream.id().parse()?, amount })),
            _ => Ok(None),
        }
    }

    fn saga_id(&self, _: &RecordedEvent, data: &FulfilmentData) -> Uuid {
        data.order
    }

    fn steps(&self) -> Vec<Step<FulfilmentData>> {
        vec![
            Step::command("accept", |d: &FulfilmentData| (d.order, AcceptOrder))
                .compensate_with(|d: &FulfilmentData| (d.order, CancelOrder { reason: FULFILMENT_FAILED.into() })),
            Step::command("reserve_payment", |d: &FulfilmentData| {
                (d.order, ReservePayment { order: d.order, amount: d.amount })
            })
            .compensate_with(|d: &FulfilmentData| (d.order, RefundPayment { order: d.order })),
            Step::command("ship", |d: &FulfilmentData| (d.order, ShipOrder { order: d.order, amount: d.amount })),
            Step::command("complete", |d: &FulfilmentData| (d.order, CompleteOrder)),
        ]
    }
}

/// Where an order's payment is, in the read model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Nothing charged.
    #[default]
    None,
    /// Charged.
    Reserved,
    /// Charged and refunded.
    Refunded,
}

/// One order in the read model. Three streams feed it (the order's, its
/// payment's, its shipment's), which arrive in no particular order
/// relative to each other, so each keeps the version it last applied and
/// owns its own fields: the row is the same whatever the interleaving.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Who ordered.
    pub customer: String,
    /// In cents.
    pub amount: u64,
    /// Where the order is.
    pub status: Status,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// Where its payment is.
    pub payment: PaymentState,
    /// The shipment's tracking number, once shipped.
    pub tracking: Option<String>,
    /// The last version applied of the order's stream.
    pub order_version: u64,
    /// The last version applied of the payment's stream.
    pub payment_version: u64,
    /// The last version applied of the shipment's stream.
    pub shipment_version: u64,
}

/// The event types the read model reads.
pub fn view_filter() -> EventFilter {
    EventFilter::types([
        "OrderPlaced",
        "OrderAccepted",
        "OrderCompleted",
        "OrderCancelled",
        "PaymentReserved",
        "PaymentRefunded",
        "ShipmentShipped",
    ])
}

/// The order an event concerns, if the read model reads it.
pub fn order_of(event: &RecordedEvent) -> Option<Uuid> {
    match event.stream.category() {
        "Order" | "Payment" | "Shipment" if view_filter().matches(&event.event_type) => event.stream.id().parse().ok(),
        _ => None,
    }
}

/// Applies one event to its order's row; an event at or below the
/// version the row has of its stream is a redelivery and changes nothing.
/// Returns whether the row changed.
pub fn apply(view: &mut OrderView, event: &RecordedEvent) -> Result<bool, BoxError> {
    let version = event.stream_version;
    match event.stream.category() {
        "Order" => {
            if version <= view.order_version {
                return Ok(false);
            }
            view.order_version = version;
            match event.decode::<OrderEvent>()? {
                OrderEvent::Placed { customer, amount } => {
                    view.customer = customer;
                    view.amount = amount;
                    view.status = Status::Placed;
                }
                OrderEvent::Accepted => view.status = Status::Accepted,
                OrderEvent::Completed => view.status = Status::Completed,
                OrderEvent::Cancelled { reason } => {
                    view.status = Status::Cancelled;
                    view.reason = Some(reason);
                }
            }
        }
        "Payment" => {
            if version <= view.payment_version {
                return Ok(false);
            }
            view.payment_version = version;
            view.payment = match event.decode::<PaymentEvent>()? {
                PaymentEvent::Reserved { .. } => PaymentState::Reserved,
                PaymentEvent::Refunded { .. } => PaymentState::Refunded,
            };
        }
        "Shipment" => {
            if version <= view.shipment_version {
                return Ok(false);
            }
            view.shipment_version = version;
            let ShipmentEvent::Shipped { tracking } = event.decode::<ShipmentEvent>()?;
            view.tracking = Some(tracking);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Folds events into read-model rows in memory: what a full replay of
/// the log gives, to compare with [`PgOrderViews`].
pub fn replay<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Result<BTreeMap<Uuid, OrderView>, BoxError> {
    let mut rows = BTreeMap::new();
    for event in events {
        if let Some(order) = order_of(event) {
            apply(rows.entry(order).or_default(), event)?;
        }
    }
    Ok(rows)
}

/// The read model in PostgreSQL: `<schema>.order_views (order_id, doc)`,
/// one JSON document per order, updated under a row lock so that two
/// workers holding different partitions (an order's stream in one, its
/// payment's in another) do not lose each other's updates.
#[derive(Debug, Clone)]
pub struct PgOrderViews {
    pool: PgPool,
    table: String,
}

impl PgOrderViews {
    /// The read model in `schema`.
    pub fn new(pool: PgPool, schema: &str) -> Self {
        Self { pool, table: format!("\"{schema}\".order_views") }
    }

    /// One order's row.
    pub async fn get(&self, order: Uuid) -> Result<Option<OrderView>, BoxError> {
        let sql = format!("SELECT doc FROM {} WHERE order_id = $1", self.table);
        let doc: Option<sqlx::types::Json<OrderView>> =
            sqlx::query_scalar(&sql).bind(order).fetch_optional(&self.pool).await?;
        Ok(doc.map(|d| d.0))
    }

    /// Every row.
    pub async fn all(&self) -> Result<BTreeMap<Uuid, OrderView>, BoxError> {
        let sql = format!("SELECT order_id, doc FROM {}", self.table);
        let rows: Vec<(Uuid, sqlx::types::Json<OrderView>)> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(id, doc)| (id, doc.0)).collect())
    }
}

#[orchestrix::async_trait]
impl Projection for PgOrderViews {
    fn name(&self) -> Cow<'static, str> {
        "order-views".into()
    }

    fn filter(&self) -> EventFilter {
        view_filter()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let Some(order) = order_of(event) else { return Ok(()) };
        let mut tx = self.pool.begin().await?;
        let insert =
            format!("INSERT INTO {} (order_id, doc) VALUES ($1, $2) ON CONFLICT (order_id) DO NOTHING", self.table);
        sqlx::query(&insert).bind(order).bind(sqlx::types::Json(OrderView::default())).execute(&mut *tx).await?;
        let select = format!("SELECT doc FROM {} WHERE order_id = $1 FOR UPDATE", self.table);
        let sqlx::types::Json(mut view): sqlx::types::Json<OrderView> =
            sqlx::query_scalar(&select).bind(order).fetch_one(&mut *tx).await?;
        if apply(&mut view, event)? {
            let update = format!("UPDATE {} SET doc = $2 WHERE order_id = $1", self.table);
            sqlx::query(&update).bind(order).bind(sqlx::types::Json(view)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Creates the example's own tables (the read model and the simulated
/// services' effects) in `schema`, which the event store's migrations
/// created. Safe to run from several processes at once.
pub async fn migrate(pool: &PgPool, schema: &str) -> Result<(), BoxError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("orders-example-migrate:{schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".order_views (order_id uuid PRIMARY KEY, doc jsonb NOT NULL);
         CREATE TABLE IF NOT EXISTS \"{schema}\".effects (
             order_id uuid NOT NULL, effect text NOT NULL, amount bigint NOT NULL, calls integer NOT NULL,
             PRIMARY KEY (order_id, effect));"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Order, OrderError};
    use orchestrix::envelope::NewEvent;
    use orchestrix::testing::AggregateFixture;
    use orchestrix::{Event, StreamId};

    fn recorded<E: Event>(category: &str, order: Uuid, version: u64, event: &E) -> RecordedEvent {
        let new = NewEvent::new(event.event_type(), event.schema_version(), event.encode().unwrap());
        RecordedEvent::new(new, StreamId::new(category, order.to_string()).unwrap(), version, 0, chrono::Utc::now())
    }

    fn refunded_order(order: Uuid) -> Vec<RecordedEvent> {
        vec![
            recorded("Order", order, 1, &OrderEvent::Placed { customer: "ada".into(), amount: 109 }),
            recorded("Order", order, 2, &OrderEvent::Accepted),
            recorded("Payment", order, 1, &PaymentEvent::Reserved { amount: 109 }),
            recorded("Payment", order, 2, &PaymentEvent::Refunded { amount: 109 }),
            recorded("Order", order, 3, &OrderEvent::Cancelled { reason: FULFILMENT_FAILED.into() }),
        ]
    }

    #[test]
    fn the_row_does_not_depend_on_how_streams_interleave_or_on_redeliveries() {
        let order = Uuid::now_v7();
        let events = refunded_order(order);
        let in_order = replay(&events).unwrap();
        // The payment's stream first, then the order's, each in its own order,
        // with redeliveries of both.
        let shuffled = [&events[2], &events[3], &events[0], &events[2], &events[1], &events[4], &events[1]];
        let other = replay(shuffled).unwrap();
        assert_eq!(in_order, other);
        let row = &in_order[&order];
        assert_eq!((row.status, row.payment, row.amount), (Status::Cancelled, PaymentState::Refunded, 109));
        assert_eq!(row.reason.as_deref(), Some(FULFILMENT_FAILED));
    }

    #[test]
    fn events_outside_the_read_model_are_ignored() {
        let mut saga = recorded("Order", Uuid::now_v7(), 1, &OrderEvent::Completed);
        saga.stream = StreamId::new("saga-Fulfilment", Uuid::now_v7().to_string()).unwrap();
        saga.event_type = "SagaCompleted".into();
        assert!(replay([&saga]).unwrap().is_empty());
    }

    #[test]
    fn the_amount_decides_the_simulated_outcome() {
        use crate::domain::{planned_outcome, Outcome};
        assert_eq!(planned_outcome(1200), Outcome::Completed);
        assert_eq!(planned_outcome(107), Outcome::PaymentDeclined);
        assert_eq!(planned_outcome(109), Outcome::ShippingFailed);
    }

    #[tokio::test]
    async fn a_completed_order_cannot_be_cancelled_and_a_cancelled_one_cancels_once() {
        let placed = OrderEvent::Placed { customer: "ada".into(), amount: 5 };
        AggregateFixture::<Order>::given([placed.clone(), OrderEvent::Accepted, OrderEvent::Completed])
            .when(crate::domain::CancelOrder { reason: "late".into() })
            .await
            .then_expect_rejection(OrderError::Completed);
        AggregateFixture::<Order>::given([placed, OrderEvent::Cancelled { reason: "no".into() }])
            .when(crate::domain::CancelOrder { reason: "again".into() })
            .await
            .then_expect_events([]);
        AggregateFixture::<Order>::given_no_previous_events()
            .when(crate::domain::PlaceOrder { customer: "ada".into(), amount: 0 })
            .await
            .then_expect_rejection(OrderError::ZeroAmount);
    }
}
