//! Every page and action of the console over HTTP (`tower::ServiceExt::oneshot`),
//! mounted at `/orchestrix` as an application nests it.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use orchestrix::store::{DeadLetterStore, EventStore};
use orchestrix::Metadata;
use orchestrix_console::Console;
use support::*;
use tower::ServiceExt;

#[tokio::test]
async fn the_streams_page_lists_and_searches_the_log() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let all = get(&app, "/orchestrix").await;
    assert_eq!(all.status, StatusCode::OK);
    for stream in ["Account/1", "Audit/1", "Account/3"] {
        assert!(all.body.contains(&format!(">{stream}<")), "{stream} missing");
    }
    assert!(all.body.contains("href=\"/orchestrix/stream?id=Account%2F1\""), "links carry the mount point");
    let audit = get(&app, "/orchestrix?prefix=Audit").await;
    assert!(audit.body.contains(">Audit/1<") && !audit.body.contains(">Account/1<"));
    let accounts = get(&app, "/orchestrix?type=Account").await;
    assert!(accounts.body.contains(">Account/1<") && !accounts.body.contains(">Audit/1<"));
    let deposits = get(&app, "/orchestrix?event=MoneyDeposited").await;
    assert!(deposits.body.contains(">Account/1<") && !deposits.body.contains(">Account/3<"));
    let none = get(&app, "/orchestrix?prefix=Nothing").await;
    assert!(none.body.contains("id=\"no-streams\""));
}

#[tokio::test]
async fn a_streams_page_shows_its_events_with_metadata_and_pretty_json() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let page = get(&app, "/orchestrix/stream?id=Account/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("AccountOpened") && page.body.contains("MoneyDeposited"));
    assert!(page.body.contains("&quot;amount&quot;: 10"), "pretty JSON: {}", page.body);
    assert!(page.body.contains(&fixture.deposited.metadata.correlation_id.unwrap().to_string()));
    assert!(
        page.body.contains(&format!("href=\"/orchestrix/events/{}\"", fixture.opened.id)),
        "the causation links to its event"
    );
    assert!(page.body.contains("teller"), "an ordinary header shows");
    assert!(!page.body.contains("do-not-show-me"), "an authorization header never shows");
    let missing = get(&app, "/orchestrix/stream?id=Account/404").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = get(&app, "/orchestrix/stream?id=no-slash").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_events_page_follows_causality_across_streams() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let noted = get(&app, &format!("/orchestrix/events/{}", fixture.noted.id)).await;
    assert_eq!(noted.status, StatusCode::OK);
    let chain = &noted.body[noted.body.find("id=\"caused-by\"").unwrap()..noted.body.find("id=\"caused\"").unwrap()];
    let (opened, deposited) = (chain.find("AccountOpened").unwrap(), chain.find("MoneyDeposited").unwrap());
    assert!(opened < deposited, "the chain reads from the origin: {chain}");
    assert!(chain.contains(&format!("/orchestrix/events/{}", fixture.opened.id)));
    let deposited = get(&app, &format!("/orchestrix/events/{}", fixture.deposited.id)).await;
    let caused = &deposited.body[deposited.body.find("id=\"caused\"").unwrap()..];
    assert!(caused.contains("DepositNoted") && caused.contains(">Audit/1<"), "what it caused, in another stream");
    assert!(deposited.body.contains("id=\"correlated\""));
    let unknown = get(&app, &format!("/orchestrix/events/{}", orchestrix::Uuid::now_v7())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = get(&app, "/orchestrix/events/not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_stream_ids_and_data_are_escaped() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let pages = [
        "/orchestrix".to_owned(),
        format!("/orchestrix/stream?id=Account/{}", percent(HOSTILE)),
        format!("/orchestrix/events/{}", fixture.hostile.id),
        "/orchestrix/tail?prefix=%3Cscript%3E".to_owned(),
    ];
    for uri in pages {
        let page = get(&app, &uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(!page.body.contains("<script>alert"), "{uri} has a raw script");
        assert!(!page.body.to_lowercase().contains("<script>"), "{uri}");
    }
    let stream = get(&app, &format!("/orchestrix/stream?id=Account/{}", percent(HOSTILE))).await;
    assert!(stream.body.contains("&lt;script&gt;"), "escaped, still readable");
}

#[tokio::test]
async fn every_answer_carries_a_strict_content_security_policy() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    for uri in ["/orchestrix", "/orchestrix/assets/console.css", "/orchestrix/dead-letters"] {
        let answer = get(&app, uri).await;
        let policy = answer.headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{uri}");
        assert_eq!(answer.headers.get("x-content-type-options").unwrap(), "nosniff");
    }
    let script = get(&app, "/orchestrix/assets/console.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/javascript"));
}

#[tokio::test]
async fn a_console_without_a_token_has_no_route_that_changes_state() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let letter = fixture.dead_letters.list(None).await.unwrap().remove(0);
    for uri in [
        format!("/orchestrix/dead-letters/{}/retry", letter.id),
        format!("/orchestrix/dead-letters/{}/drop", letter.id),
        "/orchestrix/session".to_owned(),
    ] {
        let answer = post_form(&app, &uri, Some("http://console.test"), None, &format!("token={TOKEN}")).await;
        assert!(
            matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED),
            "{uri}: {}",
            answer.status
        );
        // Not even with the bearer token the console does not know.
        let bearer = send(
            &app,
            Request::post(&uri).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap(),
        )
        .await;
        assert!(matches!(bearer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED), "{uri}");
    }
    let page = get(&app, "/orchestrix/dead-letters").await;
    assert!(page.body.contains("read-only") && !page.body.contains("method=\"post\""));
    assert_eq!(fixture.dead_letters.list(None).await.unwrap().len(), 1, "nothing changed");
}

#[tokio::test]
async fn the_dead_letter_pages_show_the_error_and_the_event_without_credentials() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let letter = fixture.dead_letters.list(None).await.unwrap().remove(0);
    let list = get(&app, "/orchestrix/dead-letters").await;
    assert!(list.body.contains("balances") && list.body.contains("Poison") && list.body.contains("went negative"));
    let page = get(&app, &format!("/orchestrix/dead-letters/{}", letter.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"letter-error\"") && page.body.contains("&quot;amount&quot;: -5"));
    for body in [&list.body, &page.body] {
        assert!(!body.contains("hunter2"), "a password in an error never shows");
    }
    let unknown = get(&app, &format!("/orchestrix/dead-letters/{}", orchestrix::Uuid::now_v7())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_projections_page_shows_state_position_and_lag() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let page = get(&app, "/orchestrix/projections").await;
    assert!(page.body.contains(">balances<") && page.body.contains("live"), "{}", page.body);
    let head = fixture.events.head_position().await.unwrap().unwrap();
    assert!(page.body.contains(&format!("<td>{head}</td>")), "its position is the head");
    let empty = mounted(Console::new(fixture.events.clone()));
    assert!(get(&empty, "/orchestrix/projections").await.body.contains("id=\"no-projections\""));
}

#[tokio::test]
async fn the_projections_page_shows_throughput_from_its_second_view() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let first = get(&app, "/orchestrix/projections").await;
    assert!(first.body.contains("<td class=\"throughput\">—</td>"), "no rate on the first view: {}", first.body);
    let before = fixture.applied.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..5 {
        let deposit = new_event("MoneyDeposited", serde_json::json!({"amount": i + 1}), Metadata::default());
        append(&fixture.events, "Account/1", deposit).await;
    }
    // The projection handles them; the second view comes a second or more
    // after the first (the shortest span a rate is measured over).
    for _ in 0..200 {
        if fixture.applied.load(std::sync::atomic::Ordering::SeqCst) >= before + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = get(&app, "/orchestrix/projections").await;
    let cell = second.body.split("<td class=\"throughput\">").nth(1).and_then(|rest| rest.split("</td>").next());
    let rate = cell.and_then(|text| text.strip_suffix("/s")).map(|number| number.replace(',', ""));
    let rate: f64 = rate.and_then(|number| number.parse().ok()).unwrap_or_else(|| panic!("a rate: {cell:?}"));
    assert!(rate > 0.0, "five events handled between the views: {rate}/s");
}

#[tokio::test]
async fn an_action_needs_the_token_a_same_origin_page_and_the_form_token() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console().write_token(TOKEN));
    let letter = fixture.dead_letters.list(None).await.unwrap().remove(0);
    let retry = format!("/orchestrix/dead-letters/{}/retry", letter.id);
    let origin = Some("http://console.test");

    // Nobody signed in: refused, and the page offers only the sign-in.
    assert_eq!(post_form(&app, &retry, origin, None, "csrf=x").await.status, StatusCode::FORBIDDEN);
    let anonymous = get(&app, "/orchestrix/dead-letters").await;
    assert!(anonymous.body.contains("id=\"sign-in\"") && anonymous.csrf().is_none());
    // A wrong token does not sign in; the right one from another site neither.
    let wrong = post_form(&app, "/orchestrix/session", origin, None, "token=guess").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.cookie().is_none());
    let cross =
        post_form(&app, "/orchestrix/session", Some("https://evil.example"), None, &format!("token={TOKEN}")).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);

    let cookie = sign_in(&app).await;
    let opened = post_form(&app, "/orchestrix/session", origin, None, &format!("token={TOKEN}")).await;
    let attributes = opened.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(
        attributes.contains("HttpOnly")
            && attributes.contains("SameSite=Strict")
            && attributes.contains("Path=/orchestrix")
    );
    assert!(!attributes.contains(TOKEN), "the cookie holds a session id, not the token");
    let page = get_with_cookie(&app, "/orchestrix/dead-letters", &cookie).await;
    let csrf = page.csrf().expect("the signed-in page has the form token");
    assert!(!page.body.contains(TOKEN), "the write token never reaches a page");
    // The session without the form token, with a wrong one, or from another site: refused.
    assert_eq!(post_form(&app, &retry, origin, Some(&cookie), "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(post_form(&app, &retry, origin, Some(&cookie), "csrf=forged").await.status, StatusCode::FORBIDDEN);
    let form = format!("csrf={csrf}");
    assert_eq!(
        post_form(&app, &retry, Some("https://evil.example"), Some(&cookie), &form).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_form(&app, &retry, None, Some(&cookie), &form).await.status,
        StatusCode::FORBIDDEN,
        "no Origin, no Referer"
    );
    assert_eq!(fixture.dead_letters.list(None).await.unwrap().len(), 1, "nothing changed yet");

    // Healed, the retry from the page applies the event and the letter is gone.
    fixture.healed.store(true, Ordering::SeqCst);
    let before = fixture.applied.load(Ordering::SeqCst);
    let done = post_form(&app, &retry, origin, Some(&cookie), &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers.get("location").unwrap(), "/orchestrix/dead-letters?done=retried");
    assert_eq!(fixture.applied.load(Ordering::SeqCst), before + 1, "the event was applied");
    assert!(fixture.dead_letters.list(None).await.unwrap().is_empty());
    let after = get_with_cookie(&app, "/orchestrix/dead-letters?done=retried", &cookie).await;
    assert!(after.body.contains("id=\"no-letters\"") && after.body.contains("Retried."));
}

#[tokio::test]
async fn a_script_may_act_with_the_token_as_a_bearer_token_and_drop_a_letter() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console().write_token(TOKEN));
    let letter = fixture.dead_letters.list(None).await.unwrap().remove(0);
    let drop = format!("/orchestrix/dead-letters/{}/drop", letter.id);
    let wrong =
        send(&app, Request::post(&drop).header("authorization", "Bearer nope").body(Body::empty()).unwrap()).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let right = send(
        &app,
        Request::post(&drop).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    assert!(fixture.dead_letters.list(None).await.unwrap().is_empty());
    assert_eq!(fixture.applied.load(Ordering::SeqCst), 4, "a dropped letter is not applied");
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console().write_token(TOKEN));
    let cookie = sign_in(&app).await;
    let csrf = get_with_cookie(&app, "/orchestrix", &cookie).await.csrf().unwrap();
    let out =
        post_form(&app, "/orchestrix/session/end", Some("http://console.test"), Some(&cookie), &format!("csrf={csrf}"))
            .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(get_with_cookie(&app, "/orchestrix", &cookie).await.csrf().is_none());
}

#[tokio::test]
async fn the_tail_streams_a_new_event_as_it_is_appended() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let page = get(&app, "/orchestrix/tail?type=Account").await;
    assert!(page.body.contains("data-source=\"/orchestrix/tail/events?prefix=&amp;type=Account&amp;event=\""));
    let response = app
        .clone()
        .oneshot(Request::get("/orchestrix/tail/events?type=Account").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers().get("content-type").unwrap(), "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    // Filtered out (another aggregate type), then one that passes.
    append(&fixture.events, "Audit/9", new_event("DepositNoted", serde_json::json!({}), Metadata::default())).await;
    let appended =
        append(&fixture.events, "Account/9", new_event("AccountOpened", serde_json::json!({}), Metadata::default()))
            .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event within two seconds")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: append"), "{seen}");
    assert!(seen.contains(&format!("id: {}", appended.global_position)));
    assert!(seen.contains("\"stream\":\"Account/9\"") && !seen.contains("Audit/9"), "{seen}");
}

#[tokio::test]
async fn personal_data_shows_encrypted_or_hidden_unless_revealed() {
    #[orchestrix::event]
    #[derive(Debug, Clone)]
    enum Customer {
        Registered {
            customer_id: String,
            #[event(personal(subject = customer_id))]
            email: Option<String>,
        },
    }
    use orchestrix::event::Event as _;
    let registered = Customer::personal_data()[0].event_type;
    let fixture = Fixture::new().await;
    let sealed = append(
        &fixture.events,
        "Customer/1",
        new_event(
            registered,
            serde_json::json!({"customer_id": "c-1", "email": {"$orchestrix.encrypted": {"key": "k", "subject": "c-1", "nonce": "bm9uY2U=", "data": "Q0lQSEVSVEVYVA=="}}}),
            Metadata::default(),
        ),
    )
    .await;
    let clear = append(
        &fixture.events,
        "Customer/2",
        new_event(
            registered,
            serde_json::json!({"customer_id": "c-2", "email": "ada@example.com"}),
            Metadata::default(),
        ),
    )
    .await;
    let hidden = mounted(fixture.console().personal_data(Customer::personal_data()));
    let page = get(&hidden, &format!("/orchestrix/events/{}", sealed.id)).await;
    assert!(page.body.contains("encrypted (subject c-1)") && !page.body.contains("Q0lQSEVSVEVYVA"), "{}", page.body);
    let page = get(&hidden, &format!("/orchestrix/events/{}", clear.id)).await;
    assert!(!page.body.contains("ada@example.com") && page.body.contains("personal data hidden"));
    let revealed = mounted(fixture.console().personal_data(Customer::personal_data()).reveal_personal_data());
    assert!(get(&revealed, &format!("/orchestrix/events/{}", clear.id)).await.body.contains("ada@example.com"));
    let page = get(&revealed, &format!("/orchestrix/events/{}", sealed.id)).await;
    assert!(!page.body.contains("Q0lQSEVSVEVYVA"), "revealing never shows ciphertext");
}

#[tokio::test]
async fn a_tenants_view_never_lists_another_tenants_streams() {
    let fixture = Fixture::new().await;
    let acme = tenant(&fixture.events, "acme");
    let globex = tenant(&fixture.events, "globex");
    let mine =
        append(&acme, "Account/acme-only", new_event("AccountOpened", serde_json::json!({}), Metadata::default()))
            .await;
    let theirs =
        append(&globex, "Account/globex-only", new_event("AccountOpened", serde_json::json!({}), Metadata::default()))
            .await;
    let app = mounted(fixture.console().tenants(["acme", "globex"]).unwrap());

    let chooser = get(&app, "/orchestrix").await;
    assert!(
        chooser.body.contains("href=\"/orchestrix/t/acme\"") && chooser.body.contains("href=\"/orchestrix/t/globex\"")
    );
    assert!(!chooser.body.contains("Account/1"), "no view of the whole store");
    assert_eq!(get(&app, "/orchestrix/stream?id=Account/1").await.status, StatusCode::NOT_FOUND);

    let view = get(&app, "/orchestrix/t/acme").await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert!(view.body.contains(">Account/acme-only<"), "{}", view.body);
    assert!(!view.body.contains("globex-only") && !view.body.contains(">Account/1<"));
    assert!(view.body.contains("href=\"/orchestrix/t/acme/stream?id=Account%2Facme-only\""));
    // Another tenant's stream and event do not exist in this view.
    assert_eq!(get(&app, "/orchestrix/t/acme/stream?id=Account/globex-only").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, &format!("/orchestrix/t/acme/events/{}", theirs.id)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, &format!("/orchestrix/t/acme/events/{}", mine.id)).await.status, StatusCode::OK);
    let other = get(&app, "/orchestrix/t/globex?prefix=Account").await;
    assert!(other.body.contains("globex-only") && !other.body.contains("acme-only"));
    assert_eq!(get(&app, "/orchestrix/t/initech").await.status, StatusCode::NOT_FOUND, "an unknown tenant");
    // The whole store's dead letters are no tenant's.
    assert!(get(&app, "/orchestrix/t/acme/dead-letters").await.body.contains("id=\"no-letters\""));

    // The tail of one tenant does not deliver another's events.
    let response =
        app.clone().oneshot(Request::get("/orchestrix/t/acme/tail/events").body(Body::empty()).unwrap()).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    append(&globex, "Account/globex-2", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    append(&acme, "Account/acme-2", new_event("AccountOpened", serde_json::json!({}), Metadata::default())).await;
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("Account/acme-2") && !seen.contains("globex"), "{seen}");
}

#[tokio::test]
async fn the_console_is_served_at_the_root_too_and_its_debug_hides_the_token() {
    let fixture = Fixture::new().await;
    let console = fixture.console().write_token(TOKEN);
    assert!(!format!("{console:?}").contains(TOKEN));
    let app = orchestrix_console::router(console);
    let page = get(&app, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("href=\"/assets/console.css\"") && page.body.contains("href=\"/stream?id=Account%2F1\"")
    );
    let response = app.oneshot(Request::get("/assets/console.css").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.into_body().collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test]
async fn a_tenant_acts_only_on_its_own_dead_letters() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    use orchestrix::memory::InMemoryCheckpointStore;
    use orchestrix::projection::{PoisonPolicy, ProjectionEngine, ProjectionOptions};
    use orchestrix::tenant::TenantStore;

    let fixture = Fixture::new().await;
    let globex = tenant(&fixture.events, "globex");
    append(&globex, "Account/g1", new_event("Poison", serde_json::json!({}), Metadata::default())).await;
    let globex_letters = TenantStore::new(fixture.dead_letters.clone(), "globex").unwrap();
    let engine =
        ProjectionEngine::new(globex.clone(), InMemoryCheckpointStore::new()).with_dead_letters(globex_letters.clone());
    let healed = Arc::new(AtomicBool::new(true));
    let options = ProjectionOptions::default().poison(PoisonPolicy::Park);
    // Parks the event while not healed, then is healed for the retry.
    healed.store(false, Ordering::SeqCst);
    let mut handle = engine.spawn(Balances { healed: healed.clone(), applied: Arc::new(AtomicU64::new(0)) }, options);
    handle.wait_caught_up(Duration::from_secs(10)).await.unwrap();
    let letter = globex_letters.list(None).await.unwrap().remove(0);
    healed.store(true, Ordering::SeqCst);
    let handle = Arc::new(handle);
    let app = mounted(
        fixture
            .console()
            .tenants(["acme", "globex"])
            .unwrap()
            .tenant_projection("globex", "balances", handle.clone())
            .write_token(TOKEN),
    );
    let bearer = |uri: String| {
        Request::post(uri).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()
    };

    // Not in acme's view, not in the list, not retried through it.
    assert!(get(&app, "/orchestrix/t/acme/dead-letters").await.body.contains("id=\"no-letters\""));
    assert_eq!(
        get(&app, &format!("/orchestrix/t/acme/dead-letters/{}", letter.id)).await.status,
        StatusCode::NOT_FOUND
    );
    let refused = send(&app, bearer(format!("/orchestrix/t/acme/dead-letters/{}/retry", letter.id))).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(globex_letters.list(None).await.unwrap().len(), 1);
    // The whole store's letter (the fixture's) is no tenant's either.
    let whole = fixture.dead_letters.list(None).await.unwrap();
    let fixtures = whole.iter().find(|l| l.consumer == "balances").unwrap();
    assert_eq!(
        send(&app, bearer(format!("/orchestrix/t/globex/dead-letters/{}/drop", fixtures.id))).await.status,
        StatusCode::NOT_FOUND
    );

    // In globex's view it is listed and retried through globex's projection.
    let listed = get(&app, "/orchestrix/t/globex/dead-letters").await;
    assert!(listed.body.contains(&letter.id.to_string()) && listed.body.contains("Poison"));
    let done = send(&app, bearer(format!("/orchestrix/t/globex/dead-letters/{}/retry", letter.id))).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers.get("location").unwrap(), "/orchestrix/t/globex/dead-letters?done=retried");
    assert!(globex_letters.list(None).await.unwrap().is_empty());
    assert_eq!(
        fixture.dead_letters.list(None).await.unwrap().len(),
        whole.len() - 1,
        "the whole store's letters are still there"
    );
}

#[tokio::test]
async fn a_reconnecting_tail_resumes_after_its_last_event_id() {
    let fixture = Fixture::new().await;
    let app = mounted(fixture.console());
    let request = Request::get("/orchestrix/tail/events")
        .header("last-event-id", fixture.opened.global_position.to_string())
        .body(Body::empty())
        .unwrap();
    let mut body = app.oneshot(request).await.unwrap().into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains(&format!("id: {}", fixture.deposited.global_position)),
        "the next event after the last seen: {seen}"
    );
}
