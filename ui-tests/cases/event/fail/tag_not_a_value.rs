use orchestrix::prelude::*;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Seat {
    row: u32,
}

#[event]
#[derive(Debug)]
pub enum CourseEvent {
    Booked {
        #[event(tag)]
        seat: Seat,
        #[event(tag = "students")]
        students: Vec<String>,
    },
}

fn main() {}
