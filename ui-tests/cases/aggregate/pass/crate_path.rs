//! `crate = "..."`: the generated code names the runtime by the given path.
#![deny(warnings)]

extern crate orchestrix as orx;

use orx::{aggregate, command_handler, event, Aggregate, AggregateCommand, Event};

#[event(crate = "::orx")]
#[derive(Debug)]
pub enum LightEvent {
    Switched { on: bool },
}

#[event(crate = "orx", name = "Dimmed")]
#[derive(Debug)]
pub struct Dimmed {
    pub level: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("broken")]
pub struct Broken;

#[aggregate(crate = "::orx", event = LightEvent, error = Broken, name = "light", id = String)]
#[derive(Debug, Default)]
pub struct Light {
    on: bool,
}

impl Light {
    fn apply(&mut self, event: &LightEvent) {
        let LightEvent::Switched { on } = event;
        self.on = *on;
    }
}

pub struct Switch(pub bool);

#[command_handler(crate = "::orx")]
impl Light {
    fn switch(&self, Switch(on): Switch) -> Result<Option<LightEvent>, Broken> {
        Ok((on != self.on).then_some(LightEvent::Switched { on }))
    }
}

fn main() {
    assert_eq!(Light::NAME, "light");
    assert_eq!(<Switch as AggregateCommand>::NAME, "Switch");
    assert_eq!(LightEvent::type_names(), ["LightSwitched"]);
    assert_eq!(Dimmed { level: 1 }.event_type(), "Dimmed");
}
