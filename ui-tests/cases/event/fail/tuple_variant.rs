use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    Opened { owner: String },
    Moved(u64, String),
}

fn main() {}
