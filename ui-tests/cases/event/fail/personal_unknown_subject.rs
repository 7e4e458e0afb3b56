use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum CustomerEvent {
    Registered {
        customer_id: String,
        #[event(personal(subject = customer))]
        email: Option<String>,
    },
}

fn main() {}
