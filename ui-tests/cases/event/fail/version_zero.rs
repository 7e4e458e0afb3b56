use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(version = 0)]
    Opened { owner: String },
}

fn main() {}
