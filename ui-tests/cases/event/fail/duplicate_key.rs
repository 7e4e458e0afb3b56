use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(name = "Opened", name = "AccountOpened")]
    Opened { owner: String },
}

fn main() {}
