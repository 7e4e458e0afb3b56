use orchestrix::prelude::*;
use serde_json::Value;

fn v1_to_v2(data: Value) -> Result<Value, UpcastError> {
    Ok(data)
}

#[event]
#[derive(Debug)]
pub enum AccountEvent {
    #[event(version = 3, upcast = [v1_to_v2])]
    Opened { owner: String },
    #[event(upcast = [v1_to_v2])]
    Closed,
}

fn main() {}
