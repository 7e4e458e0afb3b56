use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub struct Noted {
    pub note: String,
}

#[derive(Default)]
pub struct View;

#[projection]
impl View {
    fn on(&mut self, _event: Noted) {}
}

fn main() {}
