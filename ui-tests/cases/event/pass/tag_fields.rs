use orchestrix::prelude::*;
use orchestrix::query::TagValue;

/// A newtype id, usable as a tag value through its own impl.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CourseId(u32);

impl TagValue for CourseId {
    fn tag_value(&self) -> std::string::String {
        self.0.tag_value()
    }
}

// Hygiene: tags still expand where `Vec`, `String` and `Result` mean
// something else.
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
type Result = ();

#[event]
#[derive(Debug)]
pub enum CourseEvent {
    Defined {
        #[event(tag = "course")]
        course_id: CourseId,
        capacity: u32,
    },
    Subscribed {
        #[event(tag = "course")]
        course_id: CourseId,
        #[event(tag)]
        student: orchestrix::Uuid,
    },
    Renamed { name: std::string::String },
}

#[event]
#[derive(Debug)]
pub struct StudentRegistered {
    #[event(tag)]
    student: u64,
    #[event(tag = "email")]
    email: std::string::String,
}

fn main() {
    let student = orchestrix::Uuid::nil();
    let event = CourseEvent::Subscribed { course_id: CourseId(4), student };
    assert_eq!(event.tags(), ["course:4".to_owned(), format!("student:{student}")]);
    assert!(CourseEvent::Renamed { name: "x".into() }.tags().is_empty());
    let registered = StudentRegistered { student: 9, email: "a@b".into() };
    assert_eq!(registered.tags(), ["email:a@b", "student:9"]);
    let _ = CourseEvent::Defined { course_id: CourseId(1), capacity: 3 };
}
