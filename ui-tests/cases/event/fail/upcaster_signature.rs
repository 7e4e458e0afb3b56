use orchestrix::prelude::*;
use serde_json::Value;

fn v1_to_v2(data: Value) -> Value {
    data
}

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(version = 2, upcast = [v1_to_v2])]
    Opened { owner: String },
}

fn main() {}
