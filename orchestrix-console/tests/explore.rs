//! The search through the store's stream listing and the log, an
//! aggregate's state at any version (time travel), and the saga pages
//! (ADR 0052), over HTTP on the in-memory store.

mod support;

use axum::http::StatusCode;
use orchestrix::event::Event as _;
use orchestrix::memory::InMemoryEventStore;
use orchestrix::Metadata;
use orchestrix_console::Console;
use support::*;

use support::book::{Book, Ledger};

fn rows(body: &str) -> usize {
    body.matches("class=\"stream\"").count()
}

/// The href of the page's "Next page" link, unescaped.
fn next(body: &str) -> Option<String> {
    let at = body.find("id=\"next\" href=\"")? + "id=\"next\" href=\"".len();
    Some(body[at..].split('"').next()?.replace("&amp;", "&"))
}

async fn items(count: usize) -> InMemoryEventStore {
    let events = InMemoryEventStore::new();
    for n in 0..count {
        append(&events, &format!("Item/{n:03}"), new_event("Added", serde_json::json!({"n": n}), Metadata::default()))
            .await;
    }
    append(&events, "Other/1", new_event("Added", serde_json::json!({}), Metadata::default())).await;
    events
}

#[tokio::test]
async fn the_search_lists_streams_by_type_and_prefix_a_page_at_a_time() {
    let app = mounted(Console::new(items(250).await));
    let first = get(&app, "/orchestrix?type=Item").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(rows(&first.body), 100);
    assert!(
        first.body.contains(">Item/000<") && first.body.contains(">Item/099<") && !first.body.contains(">Other/1<")
    );
    let second = get(&app, &next(&first.body).expect("a next page")).await;
    assert_eq!(rows(&second.body), 100);
    assert!(second.body.contains(">Item/100<") && second.body.contains(">Item/199<"), "continues after the last");
    let third = get(&app, &next(&second.body).expect("a third page")).await;
    assert_eq!(rows(&third.body), 50);
    assert!(next(&third.body).is_none(), "the last page has no next link");

    let typed = get(&app, "/orchestrix?prefix=Ite").await;
    assert_eq!(rows(&typed.body), 100, "a prefix without `/` is a prefix of the type");
    let by_id = get(&app, "/orchestrix?prefix=Item/1").await;
    assert_eq!(rows(&by_id.body), 100);
    assert!(
        by_id.body.contains(">Item/100<") && by_id.body.contains(">Item/199<") && !by_id.body.contains(">Item/099<")
    );
    let by_id_next = get(&app, &next(&by_id.body).expect("a full page links to the next")).await;
    assert!(by_id_next.body.contains("id=\"no-streams\"") && next(&by_id_next.body).is_none());
    let other = get(&app, "/orchestrix?prefix=Oth").await;
    assert_eq!(rows(&other.body), 1);
    let crossed = get(&app, "/orchestrix?prefix=Item/1&type=Other").await;
    assert!(crossed.body.contains("id=\"no-streams\""), "a prefix of another type than asked for matches nothing");
}

#[tokio::test]
async fn the_search_by_event_type_and_time_reads_the_log_in_pages() {
    let events = items(250).await;
    let before = chrono::Utc::now();
    append(&events, "Late/1", new_event("Removed", serde_json::json!({}), Metadata::default())).await;
    let app = mounted(Console::new(events));
    let added = get(&app, "/orchestrix?event=Added&type=Item").await;
    assert_eq!(rows(&added.body), 100);
    let second = get(&app, &next(&added.body).expect("a next page")).await;
    assert_eq!(rows(&second.body), 100);
    assert!(second.body.contains(">Item/100<") && !second.body.contains(">Item/099<"), "from where the first ended");
    let third = get(&app, &next(&second.body).expect("a third page")).await;
    assert_eq!(rows(&third.body), 50);
    assert!(next(&third.body).is_none());

    let removed = get(&app, "/orchestrix?event=Removed").await;
    assert_eq!(rows(&removed.body), 1);
    assert!(removed.body.contains(">Late/1<"));
    let since = percent(&before.to_rfc3339());
    let late = get(&app, &format!("/orchestrix?since={since}")).await;
    assert_eq!(rows(&late.body), 1, "only what was recorded since: {}", late.body);
    assert!(late.body.contains(">Late/1<"));
    let early = get(&app, &format!("/orchestrix?until={since}&type=Item")).await;
    assert_eq!(rows(&early.body), 100, "recorded until");
    assert!(!early.body.contains(">Late/1<"));
    let future = get(&app, "/orchestrix?since=2999-01-01T00:00").await;
    assert!(future.body.contains("id=\"no-streams\""));
}

#[tokio::test]
async fn hostile_and_malformed_searches_are_escaped_or_refused_with_a_reason() {
    let events = items(3).await;
    append(&events, &format!("Account/{HOSTILE}"), new_event("Added", serde_json::json!({}), Metadata::default()))
        .await;
    let app = mounted(Console::new(events));
    for query in [
        format!("prefix={}", percent(HOSTILE)),
        format!("prefix=Account/{}", percent("<script>")),
        format!("type={}", percent(HOSTILE)),
        format!("event={}", percent(HOSTILE)),
        format!("prefix={}", percent("%")),
        format!("prefix={}", percent("Item/_")),
        format!("prefix={}", percent("'; DROP TABLE events; --")),
        format!("type={}&prefix={}", percent("\u{10FFFF}"), percent("é")),
        format!("after={}", percent(&format!("Account/{HOSTILE}"))),
    ] {
        let page = get(&app, &format!("/orchestrix?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        assert!(!page.body.to_lowercase().contains("<script>"), "{query} has a raw script");
    }
    let hostile = get(&app, &format!("/orchestrix?prefix=Account/{}", percent("<scr"))).await;
    assert_eq!(rows(&hostile.body), 1, "the hostile stream is found by its prefix");
    assert!(hostile.body.contains("&lt;script&gt;"));
    let wildcard = get(&app, &format!("/orchestrix?prefix={}", percent("Item/%"))).await;
    assert!(wildcard.body.contains("id=\"no-streams\""), "`%` is a character, not a wildcard");
    for (query, reason) in [
        (format!("prefix={}", percent("a\u{0}b")), "control character"),
        (format!("prefix={}", "x".repeat(600)), "longer than"),
        ("after=no-slash".to_owned(), "`after`"),
        ("from=minus-one&event=Added".to_owned(), "`from`"),
        ("since=yesterday".to_owned(), "`since`"),
        ("since=2026-12-08&until=2026-12-07".to_owned(), "after `until`"),
    ] {
        let page = get(&app, &format!("/orchestrix?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.body.contains(reason), "{query}: {}", page.body);
    }
}

async fn books() -> InMemoryEventStore {
    let events = InMemoryEventStore::new();
    let opened = Ledger::Opened { customer_id: "c-1".into(), owner: Some("Ada".into()) };
    append(&events, "Book/1", encoded(&opened)).await;
    append(&events, "Book/1", encoded(&Ledger::Deposited { amount: 10 })).await;
    append(&events, "Book/1", encoded(&Ledger::Deposited { amount: 5 })).await;
    let opened_type = Ledger::event_types().iter().find(|kind| kind.name.contains("Opened")).unwrap().name;
    let sealed = serde_json::json!({"customer_id": "c-2", "owner": {"$orchestrix.encrypted":
        {"key": "k", "subject": "c-2", "nonce": "bm9uY2U=", "data": "Q0lQSEVSVEVYVA=="}}});
    append(&events, "Book/2", new_event(opened_type, sealed, Metadata::default())).await;
    append(&events, "Book/3", encoded(&Ledger::Deposited { amount: 1 })).await;
    append(&events, "Book/3", new_event("Poison", serde_json::json!({}), Metadata::default())).await;
    append(&events, "Book/042", encoded(&Ledger::Deposited { amount: 1 })).await;
    append(&events, "Account/1", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    events
}

fn state(body: &str) -> &str {
    let Some(at) = body.find("id=\"state\"") else { return "" };
    let end = body[at..].find("</section>").map_or(body.len(), |end| at + end);
    &body[at..end]
}

#[tokio::test]
async fn a_registered_aggregate_shows_its_state_at_any_version() {
    let app = mounted(Console::new(books().await).aggregate::<Book>());
    let head = get(&app, "/orchestrix/stream?id=Book/1").await;
    assert_eq!(head.status, StatusCode::OK);
    let panel = state(&head.body);
    assert!(panel.contains("&quot;balance&quot;: 15") && panel.contains("version 3 of 3"), "{panel}");
    assert!(panel.contains("&quot;owner&quot;: &quot;Ada&quot;"), "no personal data declared: shown");
    let first = get(&app, "/orchestrix/stream?id=Book/1&at=1").await;
    let panel = state(&first.body);
    assert!(panel.contains("&quot;balance&quot;: 0") && panel.contains("&quot;deposits&quot;: 0"), "{panel}");
    assert!(panel.contains("version 1 of 3") && panel.contains("name=\"at\""), "a version selector");
    let second = get(&app, "/orchestrix/stream?id=Book/1&at=2").await;
    assert!(state(&second.body).contains("&quot;balance&quot;: 10"));

    let past = get(&app, "/orchestrix/stream?id=Book/1&at=9").await;
    assert_eq!(past.status, StatusCode::OK, "the events still show");
    let panel = state(&past.body);
    assert!(panel.contains("id=\"state-error\"") && panel.contains("past the end") && panel.contains("is 3"));
    assert!(!panel.contains("state-json"));
    for (at, reason) in [("0", "start at 1"), ("abc", "a number from 1 to 3"), (&percent(HOSTILE) as &str, "a number")]
    {
        let page = get(&app, &format!("/orchestrix/stream?id=Book/1&at={at}")).await;
        assert!(state(&page.body).contains(reason), "{at}: {}", state(&page.body));
        assert!(!page.body.to_lowercase().contains("<script>"));
    }
    let unknown = get(&app, "/orchestrix/stream?id=Account/1").await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert!(!unknown.body.contains("id=\"state\""), "an unregistered type has no state panel");
    let poisoned = get(&app, "/orchestrix/stream?id=Book/3").await;
    assert_eq!(poisoned.status, StatusCode::OK);
    assert!(state(&poisoned.body).contains("id=\"state-error\""), "an event that does not decode: a reason");
    let renamed = get(&app, "/orchestrix/stream?id=Book/042").await;
    assert!(state(&renamed.body).contains("another one"), "{}", state(&renamed.body));
}

#[tokio::test]
async fn personal_data_in_a_state_shows_erased_unless_revealed() {
    let events = books().await;
    let sealed = mounted(Console::new(events.clone()).aggregate::<Book>());
    let page = get(&sealed, "/orchestrix/stream?id=Book/2").await;
    let panel = state(&page.body);
    assert!(panel.contains("&quot;owner&quot;: null"), "an encrypted value is erased: {panel}");
    assert!(!page.body.contains("Q0lQSEVSVEVYVA"), "never the ciphertext");
    let hidden = mounted(Console::new(events.clone()).aggregate::<Book>().personal_data(Ledger::personal_data()));
    let panel = get(&hidden, "/orchestrix/stream?id=Book/1").await.body;
    assert!(state(&panel).contains("&quot;owner&quot;: null") && !panel.contains("Ada"), "declared: hidden");
    assert!(state(&panel).contains("so do declared personal fields"));
    let revealed =
        mounted(Console::new(events).aggregate::<Book>().personal_data(Ledger::personal_data()).reveal_personal_data());
    assert!(state(&get(&revealed, "/orchestrix/stream?id=Book/1").await.body).contains("&quot;Ada&quot;"));
    let page = get(&revealed, "/orchestrix/stream?id=Book/2").await;
    assert!(state(&page.body).contains("&quot;owner&quot;: null") && !page.body.contains("Q0lQSEVSVEVYVA"));
}

#[tokio::test]
async fn the_saga_pages_show_instances_by_status_with_pending_steps_and_compensations() {
    let events = InMemoryEventStore::new();
    sagas(&events).await;
    append(&events, "saga-Bad/not-a-uuid", new_event("Whatever", serde_json::json!({}), Metadata::default())).await;
    append(&events, "Account/1", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    let app = mounted(Console::new(events));
    let all = get(&app, "/orchestrix/sagas").await;
    assert_eq!(all.status, StatusCode::OK);
    for id in [RUNNING, WAITING, COMPENSATING, COMPLETED, FAILED] {
        assert!(all.body.contains(id), "{id} listed");
    }
    assert!(all.body.contains("data-status=\"unreadable\""), "a stream that is no instance says so");
    assert!(!all.body.contains("hunter2"), "no credentials in errors");
    for (status, id) in [
        ("running", RUNNING),
        ("waiting", WAITING),
        ("compensating", COMPENSATING),
        ("completed", COMPLETED),
        ("failed", FAILED),
    ] {
        let page = get(&app, &format!("/orchestrix/sagas?status={status}")).await;
        assert_eq!(page.body.matches("<tr class=\"saga\"").count(), 1, "{status}: {}", page.body);
        assert!(page.body.contains(id) && page.body.contains(&format!("data-status=\"{status}\"")), "{status}");
        let instance = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{id}")).await;
        assert_eq!(instance.status, StatusCode::OK, "{status}");
        assert!(instance.body.contains(&format!("id=\"saga-status\" data-status=\"{status}\"")), "{status}");
        assert!(!instance.body.to_lowercase().contains("<script>") && instance.body.contains("&lt;script&gt;"));
        assert!(!instance.body.contains("hunter2"));
    }
    assert!(get(&app, "/orchestrix/sagas?kind=Other").await.body.contains("id=\"no-sagas\""));
    assert_eq!(get(&app, "/orchestrix/sagas?kind=Transfer").await.body.matches("<tr class=\"saga\"").count(), 5);

    let waiting = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{WAITING}")).await.body;
    let pending = &waiting[waiting.find("id=\"pending\"").unwrap()..];
    assert!(pending.contains("credit") && pending.contains("deadline") && pending.contains("2030-01-02 03:04:05 UTC"));
    assert!(waiting.contains("id=\"no-compensations\""));
    let compensating = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{COMPENSATING}")).await.body;
    let compensations = &compensating[compensating.find("id=\"compensations\"").unwrap()..];
    assert!(compensations.contains("debit — compensating"), "{compensations}");
    assert!(compensating.contains("id=\"saga-error\"") && compensating.contains("postgres://***@db"));
    let failed = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{FAILED}")).await.body;
    assert!(failed.contains("debit — compensated") && failed.contains("id=\"no-pending\""));
    let completed = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{COMPLETED}")).await.body;
    assert!(completed.contains("id=\"no-pending\"") && completed.contains("id=\"no-compensations\""));
    let running = get(&app, &format!("/orchestrix/saga?id=saga-Transfer/{RUNNING}")).await.body;
    assert!(running.contains("debit — started") && running.contains("credit — pending"));

    let missing = get(&app, "/orchestrix/saga?id=saga-Transfer/00000000-0000-7000-8000-0000000000ff").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for bad in ["Account/1", "saga-Bad/not-a-uuid", "no-slash", &percent(&format!("saga-X/{HOSTILE}"))] {
        let page = get(&app, &format!("/orchestrix/saga?id={bad}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!page.body.to_lowercase().contains("<script>"));
    }
    assert_eq!(get(&app, "/orchestrix/sagas?status=bogus").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_tenants_view_lists_only_its_own_sagas() {
    let events = InMemoryEventStore::new();
    sagas(&tenant(&events, "acme")).await;
    let app = mounted(Console::new(events).tenants(["acme", "globex"]).unwrap());
    let acme = get(&app, "/orchestrix/t/acme/sagas").await;
    assert_eq!(acme.body.matches("<tr class=\"saga\"").count(), 5, "{}", acme.body);
    assert!(acme.body.contains(&format!("/orchestrix/t/acme/saga?id=saga-Transfer%2F{WAITING}")));
    let globex = get(&app, "/orchestrix/t/globex/sagas").await;
    assert!(globex.body.contains("id=\"no-sagas\""), "{}", globex.body);
    let theirs = get(&app, &format!("/orchestrix/t/globex/saga?id=saga-Transfer/{WAITING}")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_console_given_a_decrypting_store_shows_clear_personal_data_in_a_state() {
    use orchestrix::crypto::CryptoStore;
    use orchestrix::memory::InMemoryKeyStore;
    let raw = InMemoryEventStore::new();
    let crypto = CryptoStore::new(raw.clone(), InMemoryKeyStore::new()).register::<Ledger>();
    let opened = Ledger::Opened { customer_id: "c-9".into(), owner: Some("Grace".into()) };
    append(&crypto, "Book/9", encoded(&opened)).await;
    let sealed = get(&mounted(Console::new(raw).aggregate::<Book>()), "/orchestrix/stream?id=Book/9").await;
    assert!(state(&sealed.body).contains("&quot;owner&quot;: null") && !sealed.body.contains("Grace"));
    assert!(sealed.body.contains("encrypted (subject c-9)"), "stored encrypted: {}", sealed.body);
    let clear = get(&mounted(Console::new(crypto).aggregate::<Book>()), "/orchestrix/stream?id=Book/9").await;
    assert!(state(&clear.body).contains("&quot;owner&quot;: &quot;Grace&quot;"), "decryption given explicitly");
}
