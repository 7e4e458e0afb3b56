//! Consistency by query on PostgreSQL (ADR 0023): the cost of a
//! conditional append against a plain stream append, side by side in one
//! run, on a store of 1,000,000 events (100,000 with `--quick`).
//!
//! ```text
//! ORCHESTRIX_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p orchestrix-benches --bench dcb [-- --quick]
//! ```
//!
//! The store is filled with one `INSERT ... SELECT generate_series` (events
//! tagged with one of 10,000 courses and one of 50,000 students), then
//! analyzed. Each round runs, in turns that alternate their order:
//!
//! - **plain**: one event appended to a student's stream at its exact
//!   version (what an aggregate's command does);
//! - **conditional**: the same event through `append_if`, its condition
//!   being the course's and the student's events after the last one read;
//! - **decide**: `read_by_query` of those events, then the conditional
//!   append (the whole read-decide-append of a DCB command).
//!
//! It prints the plans of the check and of the read (both must use an
//! index, not scan the table), medians, p99 and the ratios.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use orchestrix::query::{AppendCondition, Query, QueryItem};
use orchestrix::store::StreamAppend;
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion},
    Metadata, StreamId,
};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde_json::value::RawValue;

const COURSES: u64 = 10_000;
const STUDENTS: u64 = 50_000;

fn event(course: u64, student: u64) -> NewEvent {
    NewEvent::new(
        "CourseStudentSubscribed",
        1,
        RawValue::from_string(format!(r#"{{"course_id":"{course}","student_id":"{student}"}}"#)).expect("valid JSON"),
    )
    .with_metadata(Metadata::default().with_tag(format!("course:{course}")).with_tag(format!("student:{student}")))
}

fn query(course: u64, student: u64) -> Query {
    Query::new([
        QueryItem::any().tag("course", &course),
        QueryItem::types(["CourseStudentSubscribed"]).tag("student", &student),
    ])
}

/// The median and the 99th percentile, in milliseconds.
fn stats(mut xs: Vec<Duration>) -> (f64, f64) {
    xs.sort_unstable();
    let at = |permille: usize| xs[(xs.len() - 1) * permille / 1000].as_secs_f64() * 1e3;
    (at(500), at(990))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let Ok(url) = std::env::var("ORCHESTRIX_PG_URL") else {
        return Err("set ORCHESTRIX_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test)".into());
    };
    let (total, rounds): (u64, usize) = if quick { (100_000, 200) } else { (1_000_000, 1_000) };
    let store = PgStore::connect(&url, PgConfig::new(format!("bench_dcb_{}", std::process::id()))?).await?;
    store.migrate().await?;
    let result = run(&store, total, rounds).await;
    store.drop_schema().await?;
    result
}

async fn run(store: &PgStore, total: u64, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let schema = store.config().schema().to_owned();
    let start = Instant::now();
    // Event i: course i % COURSES, student i % STUDENTS, in the student's
    // stream at version i / STUDENTS + 1. Positions 1..=total lie below
    // every real transaction's (xid8 << 20), so they read as committed.
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".events (global_position, event_id, category, aggregate_id, stream_version, \
         event_type, schema_version, data, metadata, recorded_at) \
         SELECT i, gen_random_uuid(), 'Student', (i % {STUDENTS})::text, i / {STUDENTS} + 1, \
         'CourseStudentSubscribed', 1, \
         jsonb_build_object('course_id', (i % {COURSES})::text, 'student_id', (i % {STUDENTS})::text), \
         jsonb_build_object('tags', jsonb_build_array('course:' || (i % {COURSES}), 'student:' || (i % {STUDENTS}))), \
         now() FROM generate_series(1::bigint, $1::bigint) i"
    ))
    .bind(i64::try_from(total)?)
    .execute(store.pool())
    .await?;
    sqlx::query(&format!("ANALYZE \"{schema}\".events")).execute(store.pool()).await?;
    println!("consistency by query on PostgreSQL: {total} events stored in {:.1?}\n", start.elapsed());

    // The plans, for one course and student with events in the store.
    let after = store.head_position().await?.unwrap_or(0);
    for (what, sql) in [
        (
            "check (position > after AND matches)",
            format!(
                "EXPLAIN SELECT e.global_position FROM \"{schema}\".events e WHERE e.global_position > {after} \
                 AND ((e.tags @> ARRAY['course:42']) OR (e.event_type = ANY(ARRAY['CourseStudentSubscribed']) \
                 AND e.tags @> ARRAY['student:42'])) ORDER BY e.global_position LIMIT 1"
            ),
        ),
        (
            "read (matches, from 0)",
            format!(
                "EXPLAIN SELECT e.global_position FROM \"{schema}\".events e WHERE e.global_position >= 0 \
                 AND ((e.tags @> ARRAY['course:42']) OR (e.event_type = ANY(ARRAY['CourseStudentSubscribed']) \
                 AND e.tags @> ARRAY['student:42'])) ORDER BY e.global_position LIMIT 2048"
            ),
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&sql).fetch_all(store.pool()).await?;
        println!("plan of the {what}:\n  {}\n", plan.join("\n  "));
    }

    let (mut plain, mut conditional, mut decide) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let n = round as u64;
        let (course, student) = ((n * 7919) % COURSES, (n * 104_729) % STUDENTS);
        // Each round appends to fresh streams of its own, so that the
        // plain append's exact version is known without a read.
        let plain_stream = StreamId::new("Plain", round.to_string())?;
        let dcb_stream = StreamId::new("Dcb", round.to_string())?;
        let turns: [u8; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for turn in turns {
            match turn {
                0 => {
                    let start = Instant::now();
                    store.append(&plain_stream, ExpectedVersion::NoStream, vec![event(course, student)]).await?;
                    plain.push(start.elapsed());
                }
                1 => {
                    // The condition as a read just before would give it.
                    let last = store.head_position().await?;
                    let condition = AppendCondition::new(query(course, student), last);
                    let part =
                        StreamAppend::new(dcb_stream.clone(), ExpectedVersion::Any, vec![event(course, student)]);
                    let start = Instant::now();
                    store.append_if(condition, vec![part]).await?;
                    conditional.push(start.elapsed());
                }
                _ => {
                    let start = Instant::now();
                    let q = query(course, student);
                    let read: Vec<_> = store.read_by_query(&q, 0).try_collect().await?;
                    let condition = AppendCondition::new(q, read.last().map(|e| e.global_position));
                    let part =
                        StreamAppend::new(dcb_stream.clone(), ExpectedVersion::Any, vec![event(course, student)]);
                    store.append_if(condition, vec![part]).await?;
                    decide.push(start.elapsed());
                }
            }
        }
    }
    let (plain_median, plain_p99) = stats(plain);
    let (cond_median, cond_p99) = stats(conditional);
    let (decide_median, decide_p99) = stats(decide);
    println!("{rounds} rounds, turns alternating, synchronous_commit as configured; milliseconds:\n");
    println!("                                           median      p99   ratio (median)");
    println!("plain append (exact version)             {plain_median:>8.3} {plain_p99:>8.3}   1.00");
    println!(
        "conditional append (append_if)           {cond_median:>8.3} {cond_p99:>8.3}   {:.2}",
        cond_median / plain_median
    );
    println!(
        "read_by_query + append_if (a decision)   {decide_median:>8.3} {decide_p99:>8.3}   {:.2}",
        decide_median / plain_median
    );
    Ok(())
}
