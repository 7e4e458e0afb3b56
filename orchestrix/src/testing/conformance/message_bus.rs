//! Checks of [`MessageBus`] implementations.
//!
//! Each function runs one check on the bus it is given, which must be used
//! by nothing else while the check runs. [`super::message_bus()`] runs them
//! all. A subscription must be active when `subscribe` returns.

use std::collections::BTreeMap;

use futures_util::StreamExt;

use super::support::{expect_eq, fail, ok, within, QUIET, TIMEOUT};
use crate::store::{Message, MessageBus, MessageStream};

async fn publish<B: MessageBus>(check: &str, bus: &B, message: Message) {
    ok(check, "publish", within(check, "publish", bus.publish(message)).await);
}

async fn subscribe<B: MessageBus>(check: &str, bus: &B, pattern: &str) -> MessageStream {
    ok(check, &format!("subscribe({pattern:?})"), within(check, "subscribe", bus.subscribe(pattern)).await)
}

async fn next(check: &str, what: &str, subscription: &mut MessageStream) -> Message {
    match tokio::time::timeout(TIMEOUT, subscription.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(Some(Err(error))) => fail(check, format_args!("{what}: the subscription yielded an error: {error}")),
        Ok(None) => fail(check, format_args!("{what}: the subscription ended")),
        Err(_) => fail(check, format_args!("{what}: no message arrived within {TIMEOUT:?}")),
    }
}

async fn next_subjects(check: &str, what: &str, subscription: &mut MessageStream, count: usize) -> Vec<String> {
    let mut subjects = Vec::with_capacity(count);
    for _ in 0..count {
        subjects.push(next(check, what, subscription).await.subject);
    }
    subjects
}

async fn expect_quiet(check: &str, what: &str, subscription: &mut MessageStream) {
    if let Ok(Some(item)) = tokio::time::timeout(QUIET, subscription.next()).await {
        fail(check, format_args!("{what}: unexpected delivery {item:?}"));
    }
}

/// Exact subjects, `*` (one token) and a final `>` (one or more tokens)
/// select the right messages.
pub async fn pattern_matching<B: MessageBus>(bus: B) {
    const CHECK: &str = "message_bus::pattern_matching";
    let mut exact = subscribe(CHECK, &bus, "events.account.opened").await;
    let mut star = subscribe(CHECK, &bus, "events.*.opened").await;
    let mut tail = subscribe(CHECK, &bus, "events.>").await;
    let mut account = subscribe(CHECK, &bus, "events.account.>").await;
    for subject in [
        "events.account.opened",
        "events.order.opened",
        "events.account.closed",
        "events.account.x.y",
        "events",
        "other.account.opened",
    ] {
        publish(CHECK, &bus, Message::new(subject, subject.as_bytes().to_vec())).await;
    }
    expect_eq(
        CHECK,
        "subjects received by `events.account.opened`",
        &next_subjects(CHECK, "exact", &mut exact, 1).await,
        &vec!["events.account.opened".to_owned()],
    );
    expect_eq(
        CHECK,
        "subjects received by `events.*.opened`",
        &next_subjects(CHECK, "star", &mut star, 2).await,
        &vec!["events.account.opened".to_owned(), "events.order.opened".to_owned()],
    );
    expect_eq(
        CHECK,
        "subjects received by `events.>`",
        &next_subjects(CHECK, "tail", &mut tail, 4).await,
        &["events.account.opened", "events.order.opened", "events.account.closed", "events.account.x.y"]
            .map(String::from)
            .to_vec(),
    );
    expect_eq(
        CHECK,
        "subjects received by `events.account.>`",
        &next_subjects(CHECK, "account", &mut account, 3).await,
        &["events.account.opened", "events.account.closed", "events.account.x.y"].map(String::from).to_vec(),
    );
    expect_quiet(CHECK, "`events.account.opened` after its match", &mut exact).await;
    expect_quiet(CHECK, "`events.*.opened` after its matches", &mut star).await;
    expect_quiet(CHECK, "`events.>` after its matches", &mut tail).await;
    expect_quiet(CHECK, "`events.account.>` after its matches", &mut account).await;
}

/// A subscriber receives messages in the order they were published, with
/// payload and headers intact.
pub async fn order_and_content_per_subscriber<B: MessageBus>(bus: B) {
    const CHECK: &str = "message_bus::order_and_content_per_subscriber";
    let mut subscription = subscribe(CHECK, &bus, "orders.>").await;
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let mut headers = BTreeMap::new();
        headers.insert("seq".to_owned(), i.to_string());
        headers.insert("ünïcødé 🦀".to_owned(), "'; --".to_owned());
        let payload: Vec<u8> = i.to_be_bytes().iter().copied().chain([0, 255]).collect();
        let message = Message { subject: format!("orders.{}", i % 3), payload: payload.into(), headers };
        publish(CHECK, &bus, message.clone()).await;
        sent.push(message);
    }
    for (i, expected) in sent.iter().enumerate() {
        let found = next(CHECK, "ordered delivery", &mut subscription).await;
        expect_eq(CHECK, &format!("message #{i}"), &found, expected);
    }
    expect_quiet(CHECK, "after every message", &mut subscription).await;
}

/// Every matching subscriber receives every message.
pub async fn multiple_subscribers<B: MessageBus>(bus: B) {
    const CHECK: &str = "message_bus::multiple_subscribers";
    let mut first = subscribe(CHECK, &bus, "a.b").await;
    let mut second = subscribe(CHECK, &bus, "a.b").await;
    let mut third = subscribe(CHECK, &bus, "a.*").await;
    for i in 0..5 {
        publish(CHECK, &bus, Message::new("a.b", vec![i])).await;
    }
    for (name, subscription) in [("first", &mut first), ("second", &mut second), ("third", &mut third)] {
        let mut payloads = Vec::new();
        for _ in 0..5 {
            payloads.push(next(CHECK, name, subscription).await.payload.to_vec());
        }
        expect_eq(
            CHECK,
            &format!("payloads received by the {name} subscriber"),
            &payloads,
            &(0..5).map(|i| vec![i]).collect::<Vec<_>>(),
        );
    }
    drop(second);
    publish(CHECK, &bus, Message::new("a.b", vec![9])).await;
    expect_eq(
        CHECK,
        "payload after another subscriber left",
        &next(CHECK, "first", &mut first).await.payload.to_vec(),
        &vec![9],
    );
}

/// A subscriber receives nothing published before it subscribed.
pub async fn no_delivery_before_subscribe<B: MessageBus>(bus: B) {
    const CHECK: &str = "message_bus::no_delivery_before_subscribe";
    publish(CHECK, &bus, Message::new("early.bird", "before")).await;
    let mut subscription = subscribe(CHECK, &bus, "early.>").await;
    publish(CHECK, &bus, Message::new("early.bird", "after")).await;
    let message = next(CHECK, "the first delivery", &mut subscription).await;
    expect_eq(CHECK, "payload of the first delivery", &message.payload.as_ref(), &b"after".as_ref());
    expect_quiet(CHECK, "after the only message published since subscribing", &mut subscription).await;
}
