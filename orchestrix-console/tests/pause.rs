//! Pause and resume buttons of the projections page (ADR 0050), protected
//! like every action: absent and unrouted without a write token, refused
//! without the session's form token or from another site.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use orchestrix::projection::ProjectionState;
use orchestrix::store::EventStore;
use orchestrix::Metadata;
use support::*;

#[tokio::test]
async fn pause_and_resume_need_the_token_and_the_form_token_and_pause_the_runner() {
    let fixture = Fixture::new().await;
    let pause = "/orchestrix/projections/balances/pause";
    let resume = "/orchestrix/projections/balances/resume";
    let origin = Some("http://console.test");

    // Read-only: no button, no route.
    let read_only = mounted(fixture.console());
    assert!(!get(&read_only, "/orchestrix/projections").await.body.contains("method=\"post\""));
    for uri in [pause, resume] {
        let bearer = Request::post(uri).header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap();
        let answer = send(&read_only, bearer).await;
        assert!(matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED), "{uri}");
    }

    let app = mounted(fixture.console().write_token(TOKEN));
    assert!(!get(&app, "/orchestrix/projections").await.body.contains("class=\"pause\""), "anonymous: no button");
    assert_eq!(post_form(&app, pause, origin, None, "csrf=x").await.status, StatusCode::FORBIDDEN);
    let cookie = sign_in(&app).await;
    let page = get_with_cookie(&app, "/orchestrix/projections", &cookie).await;
    assert!(page.body.contains("action=\"/orchestrix/projections/balances/pause\""), "{}", page.body);
    let csrf = page.csrf().expect("the form token");
    let form = format!("csrf={csrf}");
    assert_eq!(post_form(&app, pause, origin, Some(&cookie), "csrf=forged").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        post_form(&app, pause, Some("https://evil.example"), Some(&cookie), &form).await.status,
        StatusCode::FORBIDDEN
    );
    assert_ne!(fixture.handle.status().state, ProjectionState::Paused, "nothing changed yet");

    let done = post_form(&app, pause, origin, Some(&cookie), &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers.get("location").unwrap(), "/orchestrix/projections?done=paused");
    assert_eq!(fixture.handle.status().state, ProjectionState::Paused);
    let before = fixture.applied.load(Ordering::SeqCst);
    append(
        &fixture.events,
        "Account/1",
        new_event("MoneyDeposited", serde_json::json!({"amount": 1}), Metadata::default()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(fixture.applied.load(Ordering::SeqCst), before, "a paused projection handles nothing");
    let page = get_with_cookie(&app, "/orchestrix/projections?done=paused", &cookie).await;
    assert!(page.body.contains("paused") && page.body.contains("class=\"resume\""), "{}", page.body);

    let done = post_form(&app, resume, origin, Some(&cookie), &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let head = fixture.events.head_position().await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while fixture.handle.status().position < head {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the resumed projection reaches the head");
    assert_eq!(fixture.applied.load(Ordering::SeqCst), before + 1, "resumed: the event is applied");

    let unknown = post_form(&app, "/orchestrix/projections/nobody/pause", origin, Some(&cookie), &form).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
