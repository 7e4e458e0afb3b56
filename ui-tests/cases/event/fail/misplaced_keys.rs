use orchestrix::prelude::*;

#[event(version = 2)]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(crate = "orchestrix", name = "bad name")]
    Opened { owner: String },
}

#[event]
#[derive(Debug)]
pub struct Moved(u64);

fn main() {}
