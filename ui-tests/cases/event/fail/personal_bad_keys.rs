use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum CustomerEvent {
    Registered {
        customer_id: String,
        #[event(secret)]
        email: Option<String>,
        #[event(personal(owner = customer_id))]
        phone: Option<String>,
    },
    Tupled(#[event(personal(subject = x))] Option<String>),
}

fn main() {}
