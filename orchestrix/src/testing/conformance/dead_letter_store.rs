//! Checks of [`DeadLetterStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs.
//! [`super::dead_letter_store()`] runs them all.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::support::{event_with, expect_eq, ok, unique_stream, within};
use crate::envelope::{Metadata, RecordedEvent};
use crate::store::{DeadLetter, DeadLetterQuery, DeadLetterStore};

/// A timestamp with whole microseconds, `offset` seconds from now.
fn micros(offset_seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros() + offset_seconds * 1_000_000)
        .expect("a valid timestamp")
}

fn letter(consumer: &str, parked_at: DateTime<Utc>) -> DeadLetter {
    let new = event_with("Deposited", r#"{"amount":30,"note":"🦀 '; --"}"#, Metadata::default().with_header("k", "v"));
    let event = RecordedEvent {
        id: Uuid::now_v7(),
        stream: unique_stream("Account"),
        stream_version: 3,
        global_position: 17,
        recorded_at: micros(-60),
        event_type: new.event_type,
        schema_version: new.schema_version,
        data: new.data,
        metadata: new.metadata,
    };
    DeadLetter {
        id: Uuid::now_v7(),
        consumer: consumer.to_owned(),
        event,
        error: "handler failed: division by zero\ncaused by: ünïcødé".to_owned(),
        attempts: 3,
        parked_at,
    }
}

/// The fields that must round-trip.
type Fields = (Uuid, String, Uuid, String, u64, u64, String, String, u32, DateTime<Utc>, DateTime<Utc>, Metadata);

fn fields(letter: &DeadLetter) -> Fields {
    (
        letter.id,
        letter.consumer.clone(),
        letter.event.id,
        letter.event.stream.to_string(),
        letter.event.stream_version,
        letter.event.global_position,
        letter.event.data.get().to_owned(),
        letter.error.clone(),
        letter.attempts,
        letter.parked_at,
        letter.event.recorded_at,
        letter.event.metadata.clone(),
    )
}

async fn park<D: DeadLetterStore>(check: &str, store: &D, letter: DeadLetter) {
    ok(check, "park", within(check, "park", store.park(letter)).await);
}

async fn list<D: DeadLetterStore>(check: &str, store: &D, consumer: Option<&str>) -> Vec<Uuid> {
    ok(check, "list", within(check, "list", store.list(consumer)).await).iter().map(|letter| letter.id).collect()
}

/// A parked letter reads back whole with `get`; `remove` says whether it
/// existed; parking the same id again replaces it.
pub async fn park_get_remove<D: DeadLetterStore>(store: D) {
    const CHECK: &str = "dead_letter_store::park_get_remove";
    let parked = letter("projection", micros(0));
    expect_eq(CHECK, "a letter never parked", &ok(CHECK, "get", store.get(parked.id).await).map(|l| fields(&l)), &None);
    park(CHECK, &store, parked.clone()).await;
    let found = ok(CHECK, "get", within(CHECK, "get", store.get(parked.id)).await);
    expect_eq(CHECK, "the parked letter", &found.as_ref().map(fields), &Some(fields(&parked)));
    let replaced = DeadLetter { attempts: 4, error: "again".to_owned(), ..parked.clone() };
    park(CHECK, &store, replaced.clone()).await;
    let found = ok(CHECK, "get", within(CHECK, "get", store.get(parked.id)).await);
    expect_eq(CHECK, "the letter parked again", &found.as_ref().map(fields), &Some(fields(&replaced)));
    expect_eq(CHECK, "letters after parking one id twice", &list(CHECK, &store, None).await, &vec![parked.id]);
    expect_eq(CHECK, "remove of a parked letter", &ok(CHECK, "remove", store.remove(parked.id).await), &true);
    expect_eq(CHECK, "get after remove", &ok(CHECK, "get", store.get(parked.id).await).map(|l| fields(&l)), &None);
    expect_eq(CHECK, "remove of a removed letter", &ok(CHECK, "remove", store.remove(parked.id).await), &false);
}

/// `list` filters by consumer and returns letters oldest first.
pub async fn list_by_consumer_oldest_first<D: DeadLetterStore>(store: D) {
    const CHECK: &str = "dead_letter_store::list_by_consumer_oldest_first";
    let letters = [
        letter("projection-a", micros(-10)),
        letter("projection-b", micros(-30)),
        letter("projection-a", micros(-20)),
        letter("saga", micros(-5)),
        letter("projection-a", micros(-1)),
    ];
    for letter in &letters {
        park(CHECK, &store, letter.clone()).await;
    }
    let ids = |indexes: &[usize]| indexes.iter().map(|&i| letters[i].id).collect::<Vec<_>>();
    expect_eq(
        CHECK,
        "letters of projection-a, oldest first",
        &list(CHECK, &store, Some("projection-a")).await,
        &ids(&[2, 0, 4]),
    );
    expect_eq(CHECK, "letters of projection-b", &list(CHECK, &store, Some("projection-b")).await, &ids(&[1]));
    expect_eq(CHECK, "letters of an unknown consumer", &list(CHECK, &store, Some("projection")).await, &Vec::new());
    expect_eq(CHECK, "every letter, oldest first", &list(CHECK, &store, None).await, &ids(&[1, 2, 0, 3, 4]));
}

/// `query`, `count` and `purge` select by consumer, stream, text in the
/// error and age, in the order of `list`; a letter parked again keeps its
/// place.
pub async fn query_count_purge<D: DeadLetterStore>(store: D) {
    const CHECK: &str = "dead_letter_store::query_count_purge";
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    let with = |consumer: &str, stream: &crate::stream::StreamId, offset: i64, error: &str| {
        let mut letter = letter(consumer, micros(offset));
        letter.event.stream = stream.clone();
        error.clone_into(&mut letter.error);
        letter
    };
    let letters = [
        with("projection", &a, -50, "timeout talking to the mail server"),
        with("projection", &a, -40, "parked behind dead letter x"),
        with("projection", &b, -30, "division by zero"),
        with("saga", &a, -20, "timeout again"),
        with("projection", &b, -10, "parked behind dead letter y"),
    ];
    for letter in &letters {
        park(CHECK, &store, letter.clone()).await;
    }
    park(CHECK, &store, DeadLetter { attempts: 9, ..letters[0].clone() }).await;
    let ids = |indexes: &[usize]| indexes.iter().map(|&i| letters[i].id).collect::<Vec<_>>();
    let query = |q: DeadLetterQuery| {
        let store = &store;
        async move {
            ok(CHECK, "query", within(CHECK, "query", store.query(&q)).await).iter().map(|l| l.id).collect::<Vec<_>>()
        }
    };
    let mine = DeadLetterQuery::consumer("projection");
    expect_eq(CHECK, "by consumer, the one parked again in its place", &query(mine.clone()).await, &ids(&[0, 1, 2, 4]));
    expect_eq(CHECK, "by consumer and stream", &query(mine.clone().stream(a.clone())).await, &ids(&[0, 1]));
    expect_eq(CHECK, "by stream", &query(DeadLetterQuery::all().stream(a.clone())).await, &ids(&[0, 1, 3]));
    expect_eq(CHECK, "by reason", &query(DeadLetterQuery::all().reason("timeout")).await, &ids(&[0, 3]));
    expect_eq(CHECK, "by age", &query(DeadLetterQuery::all().parked_before(micros(-35))).await, &ids(&[0, 1]));
    let count = |q: DeadLetterQuery| {
        let store = &store;
        async move { ok(CHECK, "count", within(CHECK, "count", store.count(&q)).await) }
    };
    expect_eq(CHECK, "count by consumer and reason", &count(mine.clone().reason("parked behind")).await, &2);
    expect_eq(CHECK, "count of an unknown consumer", &count(DeadLetterQuery::consumer("nobody")).await, &0);
    let purged =
        ok(CHECK, "purge", within(CHECK, "purge", store.purge(&mine.clone().parked_before(micros(-35)))).await);
    expect_eq(CHECK, "letters purged", &purged, &2);
    expect_eq(CHECK, "letters left after the purge", &list(CHECK, &store, None).await, &ids(&[2, 3, 4]));
    let purged = ok(CHECK, "purge", within(CHECK, "purge", store.purge(&DeadLetterQuery::all().stream(b))).await);
    expect_eq(CHECK, "letters purged by stream", &purged, &2);
    expect_eq(CHECK, "letters left", &list(CHECK, &store, None).await, &ids(&[3]));
}
