//! The classic example of consistency by query (a *dynamic consistency
//! boundary*, ADR 0023): a course takes at most `capacity` students, and a
//! student takes at most [`MAX_COURSES_PER_STUDENT`] courses.
//!
//! A subscription touches two "entities" at once. With aggregates, one of
//! the two invariants would need a saga or a stream per (course, student)
//! pair; here a subscription reads the events tagged with the course *or*
//! the student, decides, and is appended only if none of those events
//! arrived meanwhile ([`Orchestrix::decide`]). Each event still lives in a
//! stream: a course's events in its `Course` stream, subscriptions in the
//! student's `Student` stream.

use orchestrix::prelude::*;
use orchestrix::query::{Query, QueryItem};
use orchestrix::{app::CommandOptions, decision::Decision, envelope::Envelope, store::ExpectedVersion};

/// How many courses one student may take.
pub const MAX_COURSES_PER_STUDENT: usize = 3;

/// The events of courses and subscriptions. The fields marked
/// `#[event(tag = ...)]` become the tags `course:<id>` and `student:<id>`.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CourseEvent {
    /// A course was offered with a capacity.
    Defined {
        /// The course.
        #[event(tag = "course")]
        course_id: String,
        /// How many students it takes.
        capacity: u32,
    },
    /// A student subscribed to a course.
    StudentSubscribed {
        /// The course.
        #[event(tag = "course")]
        course_id: String,
        /// The student.
        #[event(tag = "student")]
        student_id: String,
    },
}

/// A course's stream, `Course/<id>`: written only through decisions, so
/// it has no commands (`#[aggregate]` lets the builder register it all
/// the same).
#[aggregate(event = CourseEvent, error = CourseError, id = String)]
#[derive(Debug, Default)]
pub struct Course {
    /// How many students it takes.
    pub capacity: u32,
}

impl Course {
    fn apply(&mut self, event: &CourseEvent) {
        if let CourseEvent::Defined { capacity, .. } = event {
            self.capacity = *capacity;
        }
    }
}

/// A student's stream, `Student/<id>`, holding their subscriptions.
#[aggregate(event = CourseEvent, error = CourseError, id = String)]
#[derive(Debug, Default)]
pub struct Student {
    /// How many courses the student takes.
    pub courses: usize,
}

impl Student {
    fn apply(&mut self, event: &CourseEvent) {
        if let CourseEvent::StudentSubscribed { .. } = event {
            self.courses += 1;
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CourseError {
    /// The course was defined before.
    #[error("course `{0}` already exists")]
    AlreadyDefined(String),
    /// No such course.
    #[error("course `{0}` does not exist")]
    NoSuchCourse(String),
    /// The course has no free place.
    #[error("course `{0}` is full")]
    CourseFull(String),
    /// The student takes as many courses as allowed.
    #[error("student `{0}` already takes {MAX_COURSES_PER_STUDENT} courses")]
    TooManyCourses(String),
    /// The student takes the course already.
    #[error("student `{0}` already takes course `{1}`")]
    AlreadySubscribed(String, String),
}

/// Offers a course: decided on the course's own events.
pub async fn define_course(app: &Orchestrix, course_id: &str, capacity: u32) -> Result<(), CommandError<CourseError>> {
    let query = Query::new([QueryItem::types(["CourseDefined"]).tag("course", course_id)]);
    app.decide(query, CommandOptions::default(), |events: &[Envelope<CourseEvent>]| {
        if !events.is_empty() {
            return Err(CourseError::AlreadyDefined(course_id.to_owned()));
        }
        let event = CourseEvent::Defined { course_id: course_id.to_owned(), capacity };
        // The query's condition guards the decision, not the stream's version.
        Ok(Decision::new().append::<Course>(course_id.to_owned(), ExpectedVersion::Any, [event]))
    })
    .await
    .map(drop)
}

/// Subscribes a student to a course, if the course has a free place and the
/// student may take another course.
pub async fn subscribe(app: &Orchestrix, course_id: &str, student_id: &str) -> Result<(), CommandError<CourseError>> {
    // The decision model: the course's definition and subscriptions, and
    // the student's subscriptions.
    let query = Query::new([
        QueryItem::of::<CourseEvent>().tag("course", course_id),
        QueryItem::types(["CourseStudentSubscribed"]).tag("student", student_id),
    ]);
    app.decide(query, CommandOptions::default(), |events: &[Envelope<CourseEvent>]| {
        let mut capacity = None;
        let (mut in_course, mut of_student) = (0_usize, 0_usize);
        for envelope in events {
            match &envelope.event {
                CourseEvent::Defined { capacity: c, .. } => capacity = Some(*c),
                CourseEvent::StudentSubscribed { course_id: c, student_id: s } => {
                    if c == course_id && s == student_id {
                        return Err(CourseError::AlreadySubscribed(student_id.to_owned(), course_id.to_owned()));
                    }
                    in_course += usize::from(c == course_id);
                    of_student += usize::from(s == student_id);
                }
            }
        }
        let capacity = capacity.ok_or_else(|| CourseError::NoSuchCourse(course_id.to_owned()))?;
        if in_course >= usize::try_from(capacity).unwrap_or(usize::MAX) {
            return Err(CourseError::CourseFull(course_id.to_owned()));
        }
        if of_student >= MAX_COURSES_PER_STUDENT {
            return Err(CourseError::TooManyCourses(student_id.to_owned()));
        }
        let event =
            CourseEvent::StudentSubscribed { course_id: course_id.to_owned(), student_id: student_id.to_owned() };
        Ok(Decision::new().append::<Student>(student_id.to_owned(), ExpectedVersion::Any, [event]))
    })
    .await
    .map(drop)
}
