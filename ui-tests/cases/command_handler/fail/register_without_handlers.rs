// An aggregate without a `#[command_handler]` block registered with the
// builder: the error says how to register an aggregate without commands.
use orchestrix::prelude::*;

#[event]
#[derive(Debug, Clone)]
pub enum BinEvent {
    Filled { amount: u32 },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

#[aggregate(event = BinEvent, error = Refused)]
#[derive(Debug, Default)]
pub struct Bin {
    level: u32,
}

impl Bin {
    fn apply(&mut self, event: &BinEvent) {
        let BinEvent::Filled { amount } = event;
        self.level += amount;
    }
}

fn main() {
    let _ = Orchestrix::builder().in_memory().aggregate::<Bin>().build();
}
