//! The example's invariants, on the in-memory store, SQLite and PostgreSQL, under
//! concurrent subscriptions.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use orchestrix::query::{Query, QueryItem};
use orchestrix::retry::RetryPolicy;

use courses::{define_course, subscribe, CourseError, MAX_COURSES_PER_STUDENT};
use orchestrix::{store::EventStore, CommandError, Orchestrix};

async fn race(store: Arc<dyn EventStore>) {
    // Every racer conflicts with the others: allow enough attempts.
    let retry = RetryPolicy::exponential(200, Duration::from_millis(1)).with_max_delay(Duration::from_millis(10));
    let app = Orchestrix::builder().event_store(store).retry(retry).build().unwrap();
    define_course(&app, "rust", 3).await.unwrap();
    define_course(&app, "sql", 10).await.unwrap();
    define_course(&app, "math", 10).await.unwrap();
    define_course(&app, "art", 10).await.unwrap();
    assert!(matches!(
        define_course(&app, "rust", 9).await,
        Err(CommandError::Rejected(CourseError::AlreadyDefined(_)))
    ));
    assert!(matches!(subscribe(&app, "nope", "s").await, Err(CommandError::Rejected(CourseError::NoSuchCourse(_)))));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let student = format!("s{n}");
                let mut taken = 0;
                for course in ["rust", "sql", "math", "art"] {
                    match subscribe(&app, course, &student).await {
                        Ok(()) => taken += 1,
                        Err(CommandError::Rejected(CourseError::CourseFull(_) | CourseError::TooManyCourses(_))) => {}
                        Err(error) => panic!("{error}"),
                    }
                }
                taken
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        let taken = task.await.unwrap();
        assert!(taken <= MAX_COURSES_PER_STUDENT, "a student took {taken} courses");
        total += taken;
    }
    // Three places in `rust`, and every student gets three courses among
    // the 33 places of four courses.
    assert_eq!(total, 8 * MAX_COURSES_PER_STUDENT);
    let rust = Query::new([QueryItem::types(["CourseStudentSubscribed"]).tag("course", "rust")]);
    let in_rust: Vec<_> = app.event_store().read_by_query(&rust, 0).try_collect().await.unwrap();
    assert_eq!(in_rust.len(), 3);
    assert!(matches!(subscribe(&app, "rust", "late").await, Err(CommandError::Rejected(CourseError::CourseFull(_)))));
    assert!(matches!(
        subscribe(&app, "sql", "s0").await,
        Err(CommandError::Rejected(CourseError::AlreadySubscribed(..) | CourseError::TooManyCourses(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_in_memory() {
    race(Arc::new(orchestrix::memory::InMemoryEventStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_on_sqlite() {
    race(Arc::new(orchestrix_adapters::sqlite::SqliteStore::in_memory().await.unwrap())).await;
}

/// On PostgreSQL (`ORCHESTRIX_PG_URL`), in a schema of its own: the
/// advisory locks, not a writer lock, keep the invariants. Like the
/// adapter's tests, it fails under CI without a server and is skipped
/// (with a message) elsewhere.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_on_postgres() {
    use orchestrix_adapters::postgres::{PgConfig, PgStore};
    let Ok(url) = std::env::var("ORCHESTRIX_PG_URL") else {
        assert!(std::env::var_os("CI").is_none(), "ORCHESTRIX_PG_URL is not set, but CI is");
        eprintln!("skipped: ORCHESTRIX_PG_URL is not set");
        return;
    };
    let schema = format!("courses_test_{}", uuid_suffix());
    let store = PgStore::connect(&url, PgConfig::new(schema).unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    race(Arc::new(store.clone())).await;
    store.drop_schema().await.unwrap();
}

/// A short unique suffix for a schema name.
fn uuid_suffix() -> String {
    orchestrix::Uuid::now_v7().simple().to_string()[20..].to_owned()
}
