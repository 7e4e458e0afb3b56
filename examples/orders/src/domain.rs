//! The order, its payment and its shipment: three aggregates that share
//! the order's id, and the simulated services the payment and the
//! shipment call.

use orchestrix::prelude::*;
use orchestrix::Uuid;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What happens to an order.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// A customer placed the order (stored as `OrderPlaced`).
    Placed {
        /// Who ordered.
        customer: String,
        /// The total, in cents. Decides the simulated outcome: see [`planned_outcome`].
        amount: u64,
    },
    /// Fulfilment started.
    Accepted,
    /// Paid and shipped.
    Completed,
    /// Cancelled by the customer or by a failed fulfilment.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// What happens to an order's payment.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEvent {
    /// The amount was charged.
    Reserved {
        /// In cents.
        amount: u64,
    },
    /// The charge was paid back.
    Refunded {
        /// In cents.
        amount: u64,
    },
}

/// What happens to an order's shipment.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum ShipmentEvent {
    /// The parcel left.
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// An order of nothing.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// An order without a customer.
    #[error("the customer must not be empty")]
    NoCustomer,
    /// The order is cancelled.
    #[error("the order is cancelled")]
    Cancelled,
    /// The order is completed.
    #[error("the order is completed already")]
    Completed,
    /// The simulated payment service declined the charge.
    #[error("payment declined")]
    Declined,
    /// The simulated shipping service could not ship.
    #[error("shipping failed")]
    ShippingFailed,
    /// A simulated service could not record its effect.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

/// How the simulated services treat an order of `amount` cents: the last
/// digit decides, so tests choose the path by the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Paid, shipped, completed.
    Completed,
    /// Ends in 7: the payment is declined; the order is cancelled.
    PaymentDeclined,
    /// Ends in 9: shipping fails; the payment is refunded and the order cancelled.
    ShippingFailed,
}

/// The outcome the simulated services produce for an amount.
pub fn planned_outcome(amount: u64) -> Outcome {
    match amount % 10 {
        7 => Outcome::PaymentDeclined,
        9 => Outcome::ShippingFailed,
        _ => Outcome::Completed,
    }
}

/// Where an order is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not placed.
    #[default]
    None,
    /// Placed, not yet in fulfilment.
    Placed,
    /// In fulfilment.
    Accepted,
    /// Done.
    Completed,
    /// Cancelled.
    Cancelled,
}

/// An order.
#[aggregate(event = OrderEvent, error = OrderError)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it is.
    pub status: Status,
    /// The total, in cents.
    pub amount: u64,
}

impl Order {
    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { amount, .. } => {
                self.status = Status::Placed;
                self.amount = *amount;
            }
            OrderEvent::Accepted => self.status = Status::Accepted,
            OrderEvent::Completed => self.status = Status::Completed,
            OrderEvent::Cancelled { .. } => self.status = Status::Cancelled,
        }
    }

    fn ensure_open(&self) -> Result<(), OrderError> {
        match self.status {
            Status::Cancelled => Err(OrderError::Cancelled),
            Status::Completed => Err(OrderError::Completed),
            _ => Ok(()),
        }
    }
}

/// Places an order.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer: String,
    /// The total, in cents.
    pub amount: u64,
}

/// Starts fulfilment (the saga's first step).
#[derive(Debug, Clone)]
pub struct AcceptOrder;

/// Marks the order done (the saga's last step).
#[derive(Debug, Clone)]
pub struct CompleteOrder;

/// Cancels the order; cancelling a cancelled order changes nothing.
#[derive(Debug, Clone)]
pub struct CancelOrder {
    /// Why.
    pub reason: String,
}

#[command_handler]
impl Order {
    fn place(cmd: PlaceOrder) -> Result<OrderEvent, OrderError> {
        if cmd.amount == 0 {
            return Err(OrderError::ZeroAmount);
        }
        if cmd.customer.trim().is_empty() {
            return Err(OrderError::NoCustomer);
        }
        Ok(OrderEvent::Placed { customer: cmd.customer, amount: cmd.amount })
    }

    fn accept(&self, _: AcceptOrder) -> Result<Option<OrderEvent>, OrderError> {
        self.ensure_open()?;
        Ok((self.status == Status::Placed).then_some(OrderEvent::Accepted))
    }

    fn complete(&self, _: CompleteOrder) -> Result<OrderEvent, OrderError> {
        self.ensure_open()?;
        Ok(OrderEvent::Completed)
    }

    fn cancel(&self, cmd: CancelOrder) -> Result<Option<OrderEvent>, OrderError> {
        match self.status {
            Status::Cancelled => Ok(None),
            Status::Completed => Err(OrderError::Completed),
            _ => Ok(Some(OrderEvent::Cancelled { reason: cmd.reason })),
        }
    }
}

/// The payment of an order (its id is the order's).
#[aggregate(event = PaymentEvent, error = OrderError)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// The amount charged and not refunded.
    pub held: u64,
    /// Whether the charge was refunded.
    pub refunded: bool,
}

impl Payment {
    fn apply(&mut self, event: &PaymentEvent) {
        match event {
            PaymentEvent::Reserved { amount } => self.held = *amount,
            PaymentEvent::Refunded { .. } => {
                self.held = 0;
                self.refunded = true;
            }
        }
    }
}

/// Charges an order's amount.
#[derive(Debug, Clone)]
pub struct ReservePayment {
    /// The order.
    pub order: Uuid,
    /// In cents.
    pub amount: u64,
}

/// Pays a charge back.
#[derive(Debug, Clone)]
pub struct RefundPayment {
    /// The order.
    pub order: Uuid,
}

#[command_handler]
impl Payment {
    #[command(requires = any)]
    async fn reserve(&self, cmd: ReservePayment, gateway: &Services) -> Result<Option<PaymentEvent>, OrderError> {
        if self.held > 0 || self.refunded {
            return Ok(None);
        }
        if planned_outcome(cmd.amount) == Outcome::PaymentDeclined {
            return Err(OrderError::Declined);
        }
        gateway.apply(cmd.order, Effect::Charge, cmd.amount).await?;
        Ok(Some(PaymentEvent::Reserved { amount: cmd.amount }))
    }

    async fn refund(&self, cmd: RefundPayment, gateway: &Services) -> Result<Option<PaymentEvent>, OrderError> {
        if self.held == 0 {
            return Ok(None);
        }
        gateway.apply(cmd.order, Effect::Refund, self.held).await?;
        Ok(Some(PaymentEvent::Refunded { amount: self.held }))
    }
}

/// The shipment of an order (its id is the order's).
#[aggregate(event = ShipmentEvent, error = OrderError)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// Whether the parcel left.
    pub shipped: bool,
}

impl Shipment {
    fn apply(&mut self, event: &ShipmentEvent) {
        let ShipmentEvent::Shipped { .. } = event;
        self.shipped = true;
    }
}

/// Ships an order.
#[derive(Debug, Clone)]
pub struct ShipOrder {
    /// The order.
    pub order: Uuid,
    /// Its amount (the simulated carrier's outcome depends on it).
    pub amount: u64,
}

#[command_handler]
impl Shipment {
    #[command(requires = any)]
    async fn ship(&self, cmd: ShipOrder, carrier: &Services) -> Result<Option<ShipmentEvent>, OrderError> {
        if self.shipped {
            return Ok(None);
        }
        if planned_outcome(cmd.amount) == Outcome::ShippingFailed {
            return Err(OrderError::ShippingFailed);
        }
        carrier.apply(cmd.order, Effect::Ship, cmd.amount).await?;
        Ok(Some(ShipmentEvent::Shipped { tracking: format!("TRK-{}", cmd.order.simple()) }))
    }
}

/// An external effect of the simulated services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Money taken from the customer.
    Charge,
    /// Money given back.
    Refund,
    /// A parcel sent.
    Ship,
}

impl Effect {
    /// The name stored in the effects table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Refund => "refund",
            Self::Ship => "ship",
        }
    }
}

/// The simulated payment and shipping services. They record their effects
/// in the `effects` table, keyed by (order, effect): a call repeated after
/// a crash (the worker died between the call and the append of its event)
/// is absorbed there, as a real provider absorbs a repeated idempotency
/// key; `calls` counts the attempts.
#[derive(Debug, Clone)]
pub struct Services {
    pool: PgPool,
    table: String,
}

impl Services {
    /// The services, recording into `<schema>.effects`.
    pub fn new(pool: PgPool, schema: &str) -> Self {
        Self { pool, table: format!("\"{schema}\".effects") }
    }

    async fn apply(&self, order: Uuid, effect: Effect, amount: u64) -> Result<(), OrderError> {
        let sql = format!(
            "INSERT INTO {} (order_id, effect, amount, calls) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (order_id, effect) DO UPDATE SET calls = {}.calls + 1",
            self.table, self.table
        );
        sqlx::query(&sql)
            .bind(order)
            .bind(effect.as_str())
            .bind(i64::try_from(amount).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| OrderError::Unavailable(e.to_string()))
    }
}
