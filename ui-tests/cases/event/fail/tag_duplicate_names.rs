use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum CourseEvent {
    Subscribed {
        #[event(tag)]
        course: String,
        #[event(tag = "course")]
        course_id: String,
        #[event(tag, tag = "student")]
        student_id: u32,
    },
}

fn main() {}
