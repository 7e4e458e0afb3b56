use orchestrix::prelude::*;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub street: String,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    Registered {
        customer_id: u64,
        #[event(personal(subject = customer_id))]
        email: Option<String>,
        #[event(personal(subject = customer_id,))]
        address: std::option::Option<Address>,
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

fn main() {
    let personal = CustomerEvent::personal_data();
    assert_eq!(personal.len(), 1);
    assert_eq!(personal[0].event_type, "CustomerRegistered");
    assert_eq!(personal[0].fields[1].name, "address");
    assert_eq!(Referred::personal_data()[0].fields[0].subject, "referrer");
}
