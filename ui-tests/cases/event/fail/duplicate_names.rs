use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    Opened { owner: String },
    #[event(name = "AccountOpened")]
    Reopened { owner: String },
}

fn main() {}
