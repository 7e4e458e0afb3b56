use orchestrix::prelude::*;

/// Serializable, but without `JsonSchema`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub cents: u64,
}

#[event(schema)]
#[derive(Debug)]
pub enum AccountEvent {
    Deposited { amount: Money },
    Charged(Money),
}

fn main() {}
