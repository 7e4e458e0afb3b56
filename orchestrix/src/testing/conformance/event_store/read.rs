//! Reads: of a stream from a version, of the global log with a filter,
//! versions and head, exact stream ids, long streams.

use super::super::support::{append, data_of, head, read_all, read_stream, version};
use super::super::support::{
    batch, expect_eq, expect_increasing, json, jsons, numbered, positions, unique_stream, versions,
};
use crate::store::{EventFilter, EventStore, ExpectedVersion};
use crate::stream::StreamId;
use uuid::Uuid;

/// `read_stream` starts at the given version (inclusive); 0 reads from the
/// start and a version past the end reads nothing.
pub async fn read_stream_from_a_version<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_stream_from_a_version";
    let stream = unique_stream("Account");
    let other = unique_stream("Account");
    append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 2)).await;
    append(CHECK, &store, &other, ExpectedVersion::NoStream, batch("Opened", 100, 2)).await;
    append(CHECK, &store, &stream, ExpectedVersion::Exact(2), batch("Deposited", 3, 3)).await;
    expect_eq(CHECK, "versions read from 3", &versions(&read_stream(CHECK, &store, &stream, 3).await), &vec![3, 4, 5]);
    expect_eq(
        CHECK,
        "data read from 3",
        &data_of(&read_stream(CHECK, &store, &stream, 3).await),
        &jsons(&[r#"{"n":3}"#, r#"{"n":4}"#, r#"{"n":5}"#]),
    );
    expect_eq(
        CHECK,
        "versions read from 0",
        &versions(&read_stream(CHECK, &store, &stream, 0).await),
        &vec![1, 2, 3, 4, 5],
    );
    expect_eq(CHECK, "versions read from 5", &versions(&read_stream(CHECK, &store, &stream, 5).await), &vec![5]);
    expect_eq(CHECK, "events read from 6", &read_stream(CHECK, &store, &stream, 6).await.len(), &0);
    expect_eq(CHECK, "events read from u64::MAX", &read_stream(CHECK, &store, &stream, u64::MAX).await.len(), &0);
}

/// Reading a stream that does not exist yields nothing (not an error).
pub async fn read_missing_stream_is_empty<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_missing_stream_is_empty";
    append(CHECK, &store, &unique_stream("Account"), ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    let missing = unique_stream("Account");
    expect_eq(CHECK, "events of a missing stream", &read_stream(CHECK, &store, &missing, 1).await.len(), &0);
    expect_eq(CHECK, "version of a missing stream", &version(CHECK, &store, &missing).await, &None);
}

/// `stream_version` and `head_position` are `None` on an empty store and
/// follow the appends.
pub async fn stream_version_and_head_position<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::stream_version_and_head_position";
    let (a, b) = (unique_stream("Account"), unique_stream("Order"));
    expect_eq(CHECK, "head of an empty store", &head(CHECK, &store).await, &None);
    expect_eq(CHECK, "version of a stream of an empty store", &version(CHECK, &store, &a).await, &None);
    let first = append(CHECK, &store, &a, ExpectedVersion::NoStream, batch("Opened", 1, 3)).await;
    expect_eq(CHECK, "head after the first append", &head(CHECK, &store).await, &Some(first[2].global_position));
    let second = append(CHECK, &store, &b, ExpectedVersion::NoStream, batch("Placed", 1, 2)).await;
    expect_eq(CHECK, "head after the second append", &head(CHECK, &store).await, &Some(second[1].global_position));
    expect_eq(CHECK, "version of the first stream", &version(CHECK, &store, &a).await, &Some(3));
    expect_eq(CHECK, "version of the second stream", &version(CHECK, &store, &b).await, &Some(2));
}

/// `read_all` reads the global log from a position (inclusive), with and
/// without a type filter, in position order.
pub async fn read_all_from_a_position_with_a_filter<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::read_all_from_a_position_with_a_filter";
    let (a, b) = (unique_stream("Account"), unique_stream("Order"));
    let mut recorded =
        append(CHECK, &store, &a, ExpectedVersion::NoStream, vec![numbered("Opened", 1), numbered("Deposited", 2)])
            .await;
    recorded.extend(
        append(CHECK, &store, &b, ExpectedVersion::NoStream, vec![numbered("Placed", 3), numbered("Shipped", 4)]).await,
    );
    recorded.extend(
        append(CHECK, &store, &a, ExpectedVersion::Exact(2), vec![numbered("Deposited", 5), numbered("Closed", 6)])
            .await,
    );

    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_eq(CHECK, "positions read from 0", &positions(&all), &positions(&recorded));
    let all = read_all(CHECK, &store, 1, &EventFilter::all()).await;
    expect_eq(CHECK, "positions read from 1", &positions(&all), &positions(&recorded));
    let from = recorded[2].global_position;
    let tail = read_all(CHECK, &store, from, &EventFilter::all()).await;
    expect_eq(CHECK, &format!("positions read from {from}"), &positions(&tail), &positions(&recorded[2..]));

    let filter = EventFilter::types(["Deposited", "Shipped"]);
    let filtered = read_all(CHECK, &store, 0, &filter).await;
    let expected: Vec<u64> = [1, 3, 4].iter().map(|&i| recorded[i].global_position).collect();
    expect_eq(CHECK, "positions read with a filter", &positions(&filtered), &expected);
    let filtered = read_all(CHECK, &store, recorded[3].global_position, &filter).await;
    expect_eq(CHECK, "positions read from a position with a filter", &positions(&filtered), &expected[1..].to_vec());
    let none = read_all(CHECK, &store, 0, &EventFilter::types(["NoSuchType"])).await;
    expect_eq(CHECK, "events of a type never stored", &none.len(), &0);
    let past = read_all(CHECK, &store, recorded[5].global_position + 1, &EventFilter::all()).await;
    expect_eq(CHECK, "events read past the head", &past.len(), &0);
}

/// The global log keeps the order of appends across streams.
pub async fn global_order_across_streams<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::global_order_across_streams";
    let streams: Vec<StreamId> = (0..3).map(|_| unique_stream("Account")).collect();
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for (index, stream) in streams.iter().enumerate() {
            let n = usize::try_from(round).expect("small") * 10 + index;
            let recorded =
                append(CHECK, &store, stream, ExpectedVersion::Exact(round), vec![numbered("Step", n)]).await;
            expected.push((stream.clone(), round + 1, json(recorded[0].data.get())));
        }
    }
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_increasing(CHECK, "global positions", &positions(&all));
    let found: Vec<(StreamId, u64, serde_json::Value)> =
        all.iter().map(|event| (event.stream.clone(), event.stream_version, json(event.data.get()))).collect();
    expect_eq(CHECK, "(stream, version, data) in global order", &found, &expected);
}

/// Streams are told apart exactly: by case, by trailing space, by leading
/// zero, by category.
pub async fn stream_ids_are_exact<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::stream_ids_are_exact";
    let suffix = Uuid::now_v7().to_string();
    let ids = [
        ("Account", suffix.clone()),
        ("account", suffix.clone()),
        ("ACCOUNT", suffix.clone()),
        ("Accounts", suffix.clone()),
        ("Account", format!("{suffix} ")),
        ("Account", format!("0{suffix}")),
        ("Account", suffix.to_uppercase()),
    ];
    for (category, id) in &ids {
        let stream = StreamId::new(*category, id.as_str()).expect("a valid stream id");
        append(CHECK, &store, &stream, ExpectedVersion::NoStream, batch("Opened", 1, 1)).await;
    }
    for (category, id) in &ids {
        let stream = StreamId::new(*category, id.as_str()).expect("a valid stream id");
        expect_eq(CHECK, &format!("version of `{stream}`"), &version(CHECK, &store, &stream).await, &Some(1));
        let read = read_stream(CHECK, &store, &stream, 1).await;
        expect_eq(CHECK, &format!("events of `{stream}`"), &read.len(), &1);
        expect_eq(CHECK, "stream of the event read back", &read[0].stream, &stream);
    }
}

/// Long streams read back whole and in order across the store's internal
/// page boundaries, from the start and from the middle.
pub async fn long_streams_read_back_in_order<S: EventStore>(store: S) {
    const CHECK: &str = "event_store::long_streams_read_back_in_order";
    let (a, b) = (unique_stream("Account"), unique_stream("Account"));
    for round in 0..6 {
        let v = u64::try_from(round * 100).expect("small");
        append(CHECK, &store, &a, ExpectedVersion::Exact(v), batch("Deposited", round * 100 + 1, 100)).await;
        append(CHECK, &store, &b, ExpectedVersion::Exact(v), batch("Withdrawn", round * 100 + 1, 100)).await;
    }
    let read = read_stream(CHECK, &store, &a, 1).await;
    expect_eq(CHECK, "versions of a 600-event stream", &versions(&read), &(1..=600).collect::<Vec<u64>>());
    let expected_data: Vec<String> = (1..=600).map(|n| format!("{{\"n\":{n}}}")).collect();
    expect_eq(CHECK, "data of a 600-event stream", &data_of(&read), &jsons(&expected_data));
    let read = read_stream(CHECK, &store, &a, 257).await;
    expect_eq(CHECK, "versions read from 257", &versions(&read), &(257..=600).collect::<Vec<u64>>());
    let all = read_all(CHECK, &store, 0, &EventFilter::all()).await;
    expect_eq(CHECK, "events in the global log", &all.len(), &1200);
    expect_increasing(CHECK, "global positions", &positions(&all));
    let withdrawn = read_all(CHECK, &store, all[300].global_position, &EventFilter::types(["Withdrawn"])).await;
    let expected: Vec<u64> =
        all[300..].iter().filter(|event| event.event_type == "Withdrawn").map(|event| event.global_position).collect();
    expect_eq(CHECK, "positions of a filtered read from the middle", &positions(&withdrawn), &expected);
}
