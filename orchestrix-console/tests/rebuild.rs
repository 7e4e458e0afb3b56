//! The rebuild button of the projections page (ADR 0050), protected like
//! every action (absent and unrouted without a write token, refused
//! without the session's form token or from another site) and confirmed
//! in the page: the read model is reset and catches up again.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrix::store::{DeadLetterQuery, DeadLetterStore, EventStore};
use support::*;

async fn letter_ids(fixture: &Fixture) -> Vec<orchestrix::Uuid> {
    let letters = fixture.dead_letters.query(&DeadLetterQuery::consumer("balances")).await.unwrap();
    letters.into_iter().map(|letter| letter.id).collect()
}

#[tokio::test]
async fn rebuild_needs_the_tokens_and_a_confirmation_and_catches_up_to_the_same_state() {
    let fixture = Fixture::new().await;
    let rebuild = "/orchestrix/projections/balances/rebuild";
    let origin = Some("http://console.test");
    let applied = fixture.applied.load(Ordering::SeqCst);
    assert_eq!(applied, 4, "everything but the poison event");
    let parked = letter_ids(&fixture).await;
    assert_eq!(parked.len(), 1, "the poison event is parked");

    // Read-only: no button, no route.
    let read_only = mounted(fixture.console());
    assert!(!get(&read_only, "/orchestrix/projections").await.body.contains("rebuild"));
    let bearer = Request::post(rebuild).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap();
    let answer = send(&read_only, bearer).await;
    assert!(matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED));

    let app = mounted(fixture.console().write_token(TOKEN));
    assert!(!get(&app, "/orchestrix/projections").await.body.contains("class=\"rebuild\""), "anonymous: no button");
    let anonymous = post_form(&app, rebuild, origin, None, "csrf=x&confirm=yes").await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN, "no token");
    let cookie = sign_in(&app).await;
    let page = get_with_cookie(&app, "/orchestrix/projections", &cookie).await;
    assert!(page.body.contains("action=\"/orchestrix/projections/balances/rebuild\""), "{}", page.body);
    assert!(page.body.contains("name=\"confirm\""), "a confirmation in the page");
    let csrf = page.csrf().expect("the form token");
    let forged = post_form(&app, rebuild, origin, Some(&cookie), "csrf=forged&confirm=yes").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let confirmed = format!("csrf={csrf}&confirm=yes");
    let elsewhere = post_form(&app, rebuild, Some("https://evil.example"), Some(&cookie), &confirmed).await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    let unconfirmed = post_form(&app, rebuild, origin, Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST, "not confirmed");
    assert_eq!(letter_ids(&fixture).await, parked, "nothing changed yet");
    assert_eq!(fixture.applied.load(Ordering::SeqCst), applied);

    let done = post_form(&app, rebuild, origin, Some(&cookie), &confirmed).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers.get("location").unwrap(), "/orchestrix/projections?done=rebuilding");
    let head = fixture.events.head_position().await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while fixture.handle.status().position < head {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the rebuilt projection reaches the head again");
    // Reset, then replayed: the same count, not twice it.
    assert_eq!(fixture.applied.load(Ordering::SeqCst), applied, "the same state after the replay");
    let again = letter_ids(&fixture).await;
    assert_eq!(again.len(), 1, "the poison event is parked again");
    assert_ne!(again, parked, "its old letter was purged");
    let page = get_with_cookie(&app, "/orchestrix/projections?done=rebuilding", &cookie).await;
    assert!(page.body.contains("Rebuilding"), "{}", page.body);

    let unknown = post_form(&app, "/orchestrix/projections/nobody/rebuild", origin, Some(&cookie), &confirmed).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
