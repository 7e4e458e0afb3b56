use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub struct Noted {
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
#[error("view error")]
pub struct ViewError;

#[derive(Default)]
pub struct View;

#[projection(name = "view", filter = "all")]
impl View {
    fn on(&mut self, _event: Noted) -> Result<(), ViewError> {
        Ok(())
    }
}

fn main() {}
