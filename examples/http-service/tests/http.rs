//! Drives the service over real HTTP on a random port.

use http_service::{Accepted, BalanceView, ErrorBody};
use serde_json::json;

struct Running {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start() -> Running {
    let service = http_service::service();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service.router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        service.projection.stop().await.unwrap();
    });
    Running { base, stop, server }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queries_errors_metrics_and_health_over_http() {
    let running = start().await;
    let base = &running.base;
    let http = reqwest::Client::new();

    let opened = http.post(format!("{base}/accounts")).json(&json!({ "owner": "Ada" })).send().await.unwrap();
    assert_eq!(opened.status(), 201);
    let opened: Accepted = opened.json().await.unwrap();
    assert_eq!(opened.version, 1);
    let id = opened.id;

    let deposited = http
        .post(format!("{base}/accounts/{id}/deposits"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&json!({ "amount": 70 }))
        .send()
        .await
        .unwrap();
    assert_eq!(deposited.status(), 200);
    let deposited: Accepted = deposited.json().await.unwrap();
    assert_eq!(deposited.version, 2);

    // A domain rejection is 422 with a typed JSON body.
    let refused = http
        .post(format!("{base}/accounts/{id}/withdrawals"))
        .json(&json!({ "amount": 500, "reason": "rent" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.unwrap();
    assert_eq!(body.error, "rejected");
    assert!(body.message.contains("insufficient funds"), "{}", body.message);

    // An unknown account is 404; a malformed id is 400.
    let unknown = uuid_like();
    let missing = http.post(format!("{base}/accounts/{unknown}/deposits")).json(&json!({ "amount": 1 })).send().await;
    assert_eq!(missing.unwrap().status(), 404);
    let bad = http.get(format!("{base}/accounts/not-a-uuid")).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // The query is served from the projection; read your write by version.
    let view = http.get(format!("{base}/accounts/{id}?min_version=2")).send().await.unwrap();
    assert_eq!(view.status(), 200);
    let view: BalanceView = view.json().await.unwrap();
    assert_eq!((view.owner.as_str(), view.balance, view.version), ("Ada", 70, 2));
    let nowhere = http.get(format!("{base}/accounts/{unknown}")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);

    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(text.contains("orchestrix_commands_total"), "{text}");
    assert!(text.contains(r#"outcome="rejected""#), "{text}");
    assert!(text.contains("orchestrix_projection_position"), "{text}");

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap(), json!({ "status": "ok" }));

    // Graceful shutdown: the server stops and the projection saves its checkpoint.
    running.stop.send(()).unwrap();
    running.server.await.unwrap();
}

/// A retried request (the same `Idempotency-Key`) is applied once and
/// answered as the first; another key is another command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_an_idempotency_key_is_applied_once() {
    let running = start().await;
    let base = &running.base;
    let http = reqwest::Client::new();
    let post = |path: String, key: &'static str, body: serde_json::Value| {
        http.post(format!("{base}{path}")).header("Idempotency-Key", key).json(&body).send()
    };

    // Opening twice with one key: one account, the same answer.
    let first: Accepted =
        post("/accounts".into(), "open-1", json!({ "owner": "Ada" })).await.unwrap().json().await.unwrap();
    let again = post("/accounts".into(), "open-1", json!({ "owner": "Ada" })).await.unwrap();
    assert_eq!(again.status(), 201);
    let again: Accepted = again.json().await.unwrap();
    assert_eq!((again.id, again.version, again.global_position), (first.id, first.version, first.global_position));
    let id = first.id;

    // A deposit sent three times at once (the client timed out twice).
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/accounts/{id}/deposits"));
            tokio::spawn(async move {
                let response =
                    http.post(url).header("Idempotency-Key", "dep-1").json(&json!({ "amount": 70 })).send().await;
                let response = response.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Accepted>().await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.unwrap());
    }
    for answer in &answers {
        assert_eq!((answer.version, answer.global_position), (answers[0].version, answers[0].global_position));
    }
    assert_eq!(answers[0].version, 2);
    // Another key is another deposit.
    let other: Accepted =
        post(format!("/accounts/{id}/deposits"), "dep-2", json!({ "amount": 5 })).await.unwrap().json().await.unwrap();
    assert_eq!(other.version, 3);

    let view: BalanceView =
        http.get(format!("{base}/accounts/{id}?min_version=3")).send().await.unwrap().json().await.unwrap();
    assert_eq!((view.balance, view.version), (75, 3), "the retried deposit counted once");

    // A key that is not visible ASCII is refused.
    let bad = http
        .post(format!("{base}/accounts/{id}/deposits"))
        .header("Idempotency-Key", "")
        .json(&json!({ "amount": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    running.stop.send(()).unwrap();
    running.server.await.unwrap();
}

fn uuid_like() -> String {
    "0190a0b0-0000-7000-8000-000000000001".to_owned()
}
