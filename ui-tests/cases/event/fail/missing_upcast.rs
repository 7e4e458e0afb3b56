use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub struct Withdrawn {
    pub amount: u64,
}

#[event(version = 3)]
#[derive(Debug)]
pub struct Deposited {
    pub amount: u64,
}

fn main() {}
