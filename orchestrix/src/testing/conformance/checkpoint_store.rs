//! Checks of [`CheckpointStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs.
//! [`super::checkpoint_store()`] runs them all.

use super::support::{expect_eq, ok, within};
use crate::store::{CheckpointStore, ConsumerControl, PauseAck};

async fn load<S: CheckpointStore>(check: &str, store: &S, consumer: &str) -> Option<u64> {
    ok(check, "load", within(check, "load", store.load(consumer)).await)
}

async fn save<S: CheckpointStore>(check: &str, store: &S, consumer: &str, position: u64) {
    ok(check, "save", within(check, "save", store.save(consumer, position)).await);
}

/// A consumer that never saved has no checkpoint.
pub async fn missing_is_none<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::missing_is_none";
    expect_eq(CHECK, "checkpoint of an unknown consumer", &load(CHECK, &store, "never-saved").await, &None);
}

/// A save is read back, a later save overwrites it (even with a lower
/// position), and a delete forgets it.
pub async fn save_overwrite_delete<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::save_overwrite_delete";
    save(CHECK, &store, "projection", 0).await;
    expect_eq(CHECK, "checkpoint saved at 0", &load(CHECK, &store, "projection").await, &Some(0));
    save(CHECK, &store, "projection", 42).await;
    expect_eq(CHECK, "checkpoint after the first save", &load(CHECK, &store, "projection").await, &Some(42));
    save(CHECK, &store, "projection", u64::MAX).await;
    expect_eq(CHECK, "checkpoint at u64::MAX", &load(CHECK, &store, "projection").await, &Some(u64::MAX));
    save(CHECK, &store, "projection", 7).await;
    expect_eq(CHECK, "checkpoint after a lower save", &load(CHECK, &store, "projection").await, &Some(7));
    ok(CHECK, "delete", within(CHECK, "delete", store.delete("projection")).await);
    expect_eq(CHECK, "checkpoint after delete", &load(CHECK, &store, "projection").await, &None);
    ok(CHECK, "delete of an unknown consumer", within(CHECK, "delete", store.delete("never-saved")).await);
}

/// Many consumers, including ones with hostile or look-alike names, keep
/// independent checkpoints.
pub async fn consumers_are_independent<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::consumers_are_independent";
    let mut consumers: Vec<String> = (0..50).map(|i| format!("projection-{i}")).collect();
    consumers.extend(
        ["Projection-1", "projection-1 ", "'; DROP TABLE checkpoints; --", "ünïcødé 🦀", "a%", "a_"].map(String::from),
    );
    for (i, consumer) in consumers.iter().enumerate() {
        save(CHECK, &store, consumer, u64::try_from(i).expect("small") * 10).await;
    }
    ok(CHECK, "delete", within(CHECK, "delete", store.delete("projection-3")).await);
    for (i, consumer) in consumers.iter().enumerate() {
        let expected = (consumer != "projection-3").then(|| u64::try_from(i).expect("small") * 10);
        expect_eq(CHECK, &format!("checkpoint of {consumer:?}"), &load(CHECK, &store, consumer).await, &expected);
    }
}

async fn control<S: CheckpointStore>(check: &str, store: &S, consumer: &str) -> Option<ConsumerControl> {
    ok(check, "load_control", within(check, "load_control", store.load_control(consumer)).await)
}

async fn request<S: CheckpointStore>(check: &str, store: &S, consumer: &str, pause: bool) {
    ok(check, "request_pause", within(check, "request_pause", store.request_pause(consumer, pause)).await);
}

async fn acknowledge<S: CheckpointStore>(check: &str, store: &S, consumer: &str, ack: Option<PauseAck>) -> bool {
    ok(check, "acknowledge_pause", within(check, "acknowledge_pause", store.acknowledge_pause(consumer, ack)).await)
}

/// A time every backend keeps exactly (whole microseconds).
fn ack_at(position: u64) -> PauseAck {
    let at = chrono::DateTime::from_timestamp_micros(1_767_323_045_123_456).expect("a valid time");
    PauseAck::new("pid 7 runner-a", position, at)
}

/// A pause request and its acknowledgement round-trip (ADR 0050): an
/// unknown consumer has no record; a repeated request keeps the
/// acknowledgement; withdrawing the request clears it; an acknowledgement
/// without a request is not recorded.
pub async fn pause_request_and_acknowledgement<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::pause_request_and_acknowledgement";
    expect_eq(CHECK, "control of an unknown consumer", &control(CHECK, &store, "projection").await, &None);
    request(CHECK, &store, "projection", true).await;
    expect_eq(
        CHECK,
        "control after a pause request",
        &control(CHECK, &store, "projection").await,
        &Some(ConsumerControl::new(true, None)),
    );
    expect_eq(
        CHECK,
        "acknowledged while requested",
        &acknowledge(CHECK, &store, "projection", Some(ack_at(42))).await,
        &true,
    );
    let paused = Some(ConsumerControl::new(true, Some(ack_at(42))));
    expect_eq(CHECK, "control after the acknowledgement", &control(CHECK, &store, "projection").await, &paused);
    request(CHECK, &store, "projection", true).await;
    expect_eq(CHECK, "control after a repeated request", &control(CHECK, &store, "projection").await, &paused);
    request(CHECK, &store, "projection", false).await;
    let resumed = Some(ConsumerControl::new(false, None));
    expect_eq(CHECK, "control after resume", &control(CHECK, &store, "projection").await, &resumed);
    expect_eq(
        CHECK,
        "an acknowledgement without a request",
        &acknowledge(CHECK, &store, "projection", Some(ack_at(43))).await,
        &false,
    );
    expect_eq(CHECK, "control after a refused acknowledgement", &control(CHECK, &store, "projection").await, &resumed);
    expect_eq(
        CHECK,
        "an acknowledgement without a request, unknown consumer",
        &acknowledge(CHECK, &store, "never-asked", Some(ack_at(1))).await,
        &false,
    );
    expect_eq(
        CHECK,
        "no record made by a refused acknowledgement",
        &control(CHECK, &store, "never-asked").await,
        &None,
    );
}

/// A request that changes the record clears the acknowledgement of the
/// earlier one, so no stale acknowledgement answers a new pause; a runner
/// clearing its own acknowledgement keeps the request.
pub async fn changed_request_clears_the_acknowledgement<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::changed_request_clears_the_acknowledgement";
    request(CHECK, &store, "projection", true).await;
    acknowledge(CHECK, &store, "projection", Some(ack_at(5))).await;
    request(CHECK, &store, "projection", false).await;
    request(CHECK, &store, "projection", true).await;
    expect_eq(
        CHECK,
        "a new pause request, not yet acknowledged",
        &control(CHECK, &store, "projection").await,
        &Some(ConsumerControl::new(true, None)),
    );
    acknowledge(CHECK, &store, "projection", Some(ack_at(6))).await;
    expect_eq(CHECK, "clearing an acknowledgement", &acknowledge(CHECK, &store, "projection", None).await, &true);
    expect_eq(
        CHECK,
        "control after the runner cleared its acknowledgement",
        &control(CHECK, &store, "projection").await,
        &Some(ConsumerControl::new(true, None)),
    );
}

/// Control records are per consumer (hostile names included), and a
/// checkpoint's delete (a rebuild) leaves its consumer's record alone.
pub async fn controls_are_independent_of_checkpoints<S: CheckpointStore>(store: S) {
    const CHECK: &str = "checkpoint_store::controls_are_independent_of_checkpoints";
    let names = ["projection-1", "Projection-1", "'; DROP TABLE consumer_controls; --", "ünïcødé 🦀", "a%"];
    for (i, name) in names.iter().enumerate() {
        save(CHECK, &store, name, 10).await;
        if i % 2 == 0 {
            request(CHECK, &store, name, true).await;
        }
    }
    ok(CHECK, "delete", within(CHECK, "delete", store.delete("projection-1")).await);
    for (i, name) in names.iter().enumerate() {
        let expected = (i % 2 == 0).then(|| ConsumerControl::new(true, None));
        expect_eq(CHECK, &format!("control of {name:?}"), &control(CHECK, &store, name).await, &expected);
    }
    expect_eq(CHECK, "checkpoint after delete", &load(CHECK, &store, "projection-1").await, &None);
}
