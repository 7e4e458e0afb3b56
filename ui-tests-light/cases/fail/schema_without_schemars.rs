// `#[event(schema)]` without the `schemars` feature.
use orchestrix::prelude::*;

#[event(schema)]
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    Incremented { by: u32 },
}

fn main() {}
