use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum CourseEvent {
    Defined(#[event(tag)] String),
}

fn main() {}
