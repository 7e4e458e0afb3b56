use orchestrix::prelude::*;

// A personal field without a subject, one that is its own subject, and one
// whose subject is itself personal: three errors, reported together.
#[event]
#[derive(Debug)]
pub struct Registered {
    #[event(personal)]
    pub customer_id: Option<String>,
    #[event(personal(subject = email))]
    pub email: Option<String>,
    #[event(personal(subject = customer_id))]
    pub phone: Option<String>,
}

fn main() {}
