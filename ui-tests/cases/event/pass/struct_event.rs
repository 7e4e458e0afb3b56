//! Struct events: default and explicit names, versions, upcasters, unit
//! structs; checked at runtime.
#![deny(warnings)]

use orchestrix::prelude::*;
// The enum named `Event` below shadows the prelude's trait of that name.
use orchestrix::Event as _;
use serde_json::{json, value::RawValue, Value};

mod upcasts {
    use super::*;

    pub fn add_currency(mut data: Value) -> Result<Value, UpcastError> {
        data["currency"] = json!("EUR");
        Ok(data)
    }
}

#[event(name = "payments.PaymentReceived", version = 2, upcast = [upcasts::add_currency])]
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceived {
    pub amount: u64,
    pub currency: String,
}

#[event]
#[derive(Debug, PartialEq)]
pub struct LedgerClosed;

#[event]
#[derive(Debug, PartialEq)]
pub struct Noted {
    #[serde(rename = "text")]
    pub note: String,
}

#[event]
#[derive(Debug)]
pub enum Event {
    Happened,
    Empty {},
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn main() {
    let paid = PaymentReceived { amount: 3, currency: "USD".into() };
    assert_eq!(paid.event_type(), "payments.PaymentReceived");
    assert_eq!(paid.schema_version(), 2);
    assert_eq!(PaymentReceived::type_names(), ["payments.PaymentReceived"]);
    assert_eq!(paid.encode().unwrap().get(), r#"{"amount":3,"currency":"USD"}"#);
    let v1 = PaymentReceived::decode("payments.PaymentReceived", 1, &raw(r#"{"amount":3}"#)).unwrap();
    assert_eq!(v1, PaymentReceived { amount: 3, currency: "EUR".into() });
    assert!(matches!(
        PaymentReceived::decode("PaymentReceived", 2, &raw("{}")),
        Err(orchestrix::error::DecodeErrorKind::UnknownType)
    ));

    assert_eq!(LedgerClosed.event_type(), "LedgerClosed");
    assert_eq!(LedgerClosed.encode().unwrap().get(), "{}");
    assert_eq!(LedgerClosed::decode("LedgerClosed", 1, &raw(r#"{"ignored":true}"#)).unwrap(), LedgerClosed);

    let noted = Noted { note: "hi".into() };
    assert_eq!(noted.encode().unwrap().get(), r#"{"text":"hi"}"#);
    assert_eq!(Noted::decode("Noted", 1, &noted.encode().unwrap()).unwrap(), noted);

    // An enum named just `Event`: the variant's name alone.
    assert_eq!(Event::type_names(), ["Happened", "Empty"]);
    assert_eq!(Event::Empty {}.encode().unwrap().get(), "{}");
    assert!(matches!(Event::decode("Empty", 1, &raw("{}")), Ok(Event::Empty {})));
}
