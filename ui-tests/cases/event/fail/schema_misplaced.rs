use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(schema)]
    Opened { owner: String },
}

#[event(schema = true)]
#[derive(Debug)]
pub struct Closed {
    pub reason: String,
}

#[event(schema, schema)]
#[derive(Debug)]
pub struct Reopened {
    pub reason: String,
}

fn main() {}
