//! Consistency by query, the classic way: `cargo run -p courses`.
//!
//! Runs on SQLite in memory, or on PostgreSQL with `--postgres URL` (a
//! fresh schema `courses_example_<pid>`, dropped at the end). Twenty
//! students race for a course of five places, each also trying more courses
//! than allowed; the invariants hold however the races fall.

use std::sync::Arc;
use std::time::Duration;

use courses::{define_course, subscribe, Course, CourseError, Student, MAX_COURSES_PER_STUDENT};
use orchestrix::{retry::RetryPolicy, store::EventStore, CommandError, Orchestrix};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_adapters::sqlite::SqliteStore;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result {
    let mut args = std::env::args().skip(1);
    let (store, pg): (Arc<dyn EventStore>, Option<PgStore>) = match (args.next().as_deref(), args.next()) {
        (Some("--postgres"), Some(url)) => {
            let config = PgConfig::new(format!("courses_example_{}", std::process::id()))?;
            let store = PgStore::connect(&url, config).await?;
            store.migrate().await?;
            (Arc::new(store.clone()), Some(store))
        }
        (None, _) => (Arc::new(SqliteStore::in_memory().await?), None),
        _ => return Err("usage: courses [--postgres URL]".into()),
    };
    // Every racer for a course conflicts with the others: allow enough
    // attempts (each round of a race has a winner).
    let retry = RetryPolicy::exponential(200, Duration::from_millis(1)).with_max_delay(Duration::from_millis(10));
    // The aggregates are written only through decisions; registering them
    // documents the domain.
    let app =
        Orchestrix::builder().event_store(store).aggregate::<Course>().aggregate::<Student>().retry(retry).build()?;
    for course in ["rust", "sql", "math", "art"] {
        define_course(&app, course, 5).await?;
    }
    // Twenty students race for five places in `rust`, and then try every
    // course: at most three each.
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let student = format!("student-{n}");
                let mut taken = Vec::new();
                for course in ["rust", "sql", "math", "art"] {
                    match subscribe(&app, course, &student).await {
                        Ok(()) => taken.push(course),
                        Err(CommandError::Rejected(CourseError::CourseFull(_) | CourseError::TooManyCourses(_))) => {}
                        Err(error) => return Err(error.to_string()),
                    }
                }
                Ok((student, taken))
            })
        })
        .collect();
    let mut per_course = std::collections::BTreeMap::<&str, usize>::new();
    for task in tasks {
        let (student, taken) = task.await??;
        assert!(taken.len() <= MAX_COURSES_PER_STUDENT);
        for course in &taken {
            *per_course.entry(course).or_default() += 1;
        }
        println!("{student:>10}: {}", taken.join(", "));
    }
    println!("\nstudents per course (capacity 5): {per_course:?}");
    assert!(per_course.values().all(|&n| n <= 5));
    if let Some(pg) = pg {
        pg.drop_schema().await?;
    }
    Ok(())
}
