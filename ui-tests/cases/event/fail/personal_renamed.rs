use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum CustomerEvent {
    Registered {
        customer_id: String,
        #[event(personal(subject = customer_id))]
        #[serde(rename = "mail")]
        email: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Moved {
        customer_id: String,
        #[event(personal(subject = customer_id))]
        new_address: Option<String>,
    },
}

fn main() {}
