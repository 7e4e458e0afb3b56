use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub struct CourseDefined {
    #[event(tag = 42)]
    course_id: String,
    #[event(tag = "course:id")]
    other_id: String,
    #[event(tag = "")]
    third_id: String,
    #[event = "tag"]
    capacity: u32,
    #[event(tags)]
    name: String,
}

fn main() {}
