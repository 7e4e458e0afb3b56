// The smallest useful program (the one `just build-weight` measures):
// events, an aggregate, a command handler and the in-memory store, with
// the default features. No personal data, so `crypto` is not needed.
use orchestrix::prelude::*;

#[event]
#[derive(Debug, Clone)]
pub enum CounterEvent {
    Incremented { by: u32 },
}

#[derive(Debug)]
pub struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

#[aggregate(event = CounterEvent, error = Never)]
#[derive(Debug, Default)]
pub struct Counter {
    value: u32,
}

impl Counter {
    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented { by } => self.value += by,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Increment {
    by: u32,
}

#[command_handler]
impl Counter {
    #[command(requires = any)]
    fn increment(&self, cmd: Increment) -> Result<CounterEvent, Never> {
        Ok(CounterEvent::Incremented { by: cmd.by })
    }
}

fn main() {
    // Building the application needs no runtime; executing would.
    let app = Orchestrix::builder().in_memory().aggregate::<Counter>().build().unwrap();
    drop(app);
    // The key store port works without `crypto`: keys are only data.
    let key = orchestrix::personal::DataKey::generate();
    assert_eq!(key.material().len(), orchestrix::personal::KEY_LEN);
}
