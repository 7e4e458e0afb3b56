//! The stored type name of an enum variant: the enum's name without a
//! trailing `Event`, then the variant's, unless `#[event(name = "...")]`
//! sets it; checked at runtime.
#![deny(warnings)]

use orchestrix::prelude::*;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum LoanRequestEvent {
    Requested { amount: u64 },
    #[event(name = "LoanApproved")]
    Approved,
}

fn main() {
    let requested = LoanRequestEvent::Requested { amount: 5 };
    assert_eq!(requested.event_type(), "LoanRequestRequested");
    assert_eq!(LoanRequestEvent::Approved.event_type(), "LoanApproved");
    let names: Vec<&str> = LoanRequestEvent::event_types().iter().map(|t| t.name).collect();
    assert_eq!(names, ["LoanRequestRequested", "LoanApproved"]);
    let data = serde_json::value::RawValue::from_string("{}".into()).unwrap();
    assert_eq!(LoanRequestEvent::decode("LoanApproved", 1, &data).unwrap(), LoanRequestEvent::Approved);
    assert!(LoanRequestEvent::decode("LoanRequestApproved", 1, &data).is_err(), "the default name is replaced");
}
