use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(nmae = "Opened", version = 1)]
    Opened { owner: String },
}

fn main() {}
