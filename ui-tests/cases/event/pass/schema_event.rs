//! `#[event(schema)]`: one JSON schema per stored type, derived from the
//! data each variant (or struct) writes, honouring `#[serde]` attributes.
#![deny(warnings)]

use orchestrix::prelude::*;
use orchestrix::{event::{EventSchemas, EventType}};
use serde_json::json;

/// The inner type of a newtype variant derives `JsonSchema` itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, orchestrix::schemars::JsonSchema)]
#[schemars(crate = "orchestrix::schemars")]
pub struct Address {
    pub street: String,
    pub zip: Option<String>,
}

fn no_upcast(data: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(data)
}

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    Registered {
        name: String,
        #[serde(rename = "yearOfBirth")]
        year_of_birth: u16,
        #[serde(default)]
        nickname: Option<String>,
    },
    #[event(name = "customers.Moved", version = 2, upcast = [no_upcast])]
    Moved(Address),
    Deleted,
    Emptied {},
}

#[event(schema, name = "ledger.Closed")]
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerClosed {
    #[serde(rename = "closedBy")]
    pub closed_by: String,
}

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
pub struct Ping;

fn main() {
    let schemas = CustomerEvent::event_schemas();
    let types: Vec<EventType> =
        schemas.iter().map(|s| EventType::new(s.name, s.version)).collect();
    assert_eq!(types, CustomerEvent::event_types(), "one schema per stored type, in order");

    let registered = &schemas[0].schema;
    assert_eq!(registered["title"], "CustomerRegistered");
    assert_eq!(registered["type"], "object");
    assert_eq!(registered["properties"]["name"]["type"], "string");
    assert_eq!(registered["properties"]["yearOfBirth"]["type"], "integer");
    assert!(registered["properties"].get("year_of_birth").is_none(), "serde renames are honoured");
    assert_eq!(registered["required"], json!(["name", "yearOfBirth"]));

    let moved = &schemas[1];
    assert_eq!((moved.name, moved.version), ("customers.Moved", 2));
    assert_eq!(moved.schema["properties"]["street"]["type"], "string");
    assert_eq!(moved.schema["required"], json!(["street"]));

    for empty in &schemas[2..] {
        assert_eq!(empty.schema["type"], "object");
        assert!(empty.schema.get("required").is_none());
    }

    let closed = LedgerClosed::event_schemas();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].name, closed[0].version), ("ledger.Closed", 1));
    assert_eq!(closed[0].schema["required"], json!(["closedBy"]));
    // The struct itself is untouched: it still encodes as before.
    let event = LedgerClosed { closed_by: "Ada".into() };
    assert_eq!(event.encode().unwrap().get(), r#"{"closedBy":"Ada"}"#);

    assert_eq!(Ping::event_schemas()[0].schema["type"], "object");
}
