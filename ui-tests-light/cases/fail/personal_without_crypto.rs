// Personal data without the `crypto` feature: stored in clear and never
// forgettable, so it does not compile, and the error says what to enable.
use orchestrix::prelude::*;

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    Registered {
        customer_id: String,
        #[event(personal(subject = customer_id))]
        email: Option<String>,
    },
    Closed,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct Referred {
    pub referrer: String,
    #[event(personal(subject = referrer))]
    pub referrer_name: Option<String>,
}

fn main() {}
