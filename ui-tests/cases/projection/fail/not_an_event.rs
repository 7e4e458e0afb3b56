use orchestrix::prelude::*;

pub struct NotAnEvent;

#[derive(Debug, thiserror::Error)]
#[error("view error")]
pub struct ViewError;

#[derive(Default)]
pub struct View;

#[projection]
impl View {
    fn on(&mut self, _event: NotAnEvent) -> Result<(), ViewError> {
        Ok(())
    }
}

fn main() {}
