//! Drives the service over real HTTP on a random port.

use http_service::{Accepted, BalanceView, ErrorBody};
use serde_json::json;

struct Running {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start() -> Running {
    start_with(http_service::service()).await
}

async fn start_with(service: http_service::Service) -> Running {
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

/// Bodies are checked before a command sees them: unknown fields, strings
/// over their limit, amounts that are not whole cents from 0 to `u64::MAX`
/// are refused with the JSON error body, naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_long_strings_and_overflowing_amounts_are_refused() {
    let running = start().await;
    let base = &running.base;
    let http = reqwest::Client::new();
    let refused = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: ErrorBody = response.json().await.expect("a JSON error body");
        assert_eq!(body.error, "bad_request");
        (status, body.message)
    };

    let (status, message) = refused(
        http.post(format!("{base}/accounts")).json(&json!({ "owner": "Ada", "admin": true })).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(message.contains("unknown field `admin`"), "{message}");

    let huge = "x".repeat(1 << 20);
    let (status, message) =
        refused(http.post(format!("{base}/accounts")).json(&json!({ "owner": huge })).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(message.contains("too long: at most 200 bytes"), "{message}");
    let longest = "x".repeat(http_service::MAX_OWNER_LEN);
    let opened = http.post(format!("{base}/accounts")).json(&json!({ "owner": longest })).send().await.unwrap();
    assert_eq!(opened.status(), 201, "the limit itself is accepted");
    let id = opened.json::<Accepted>().await.unwrap().id;

    let deposits = format!("{base}/accounts/{id}/deposits");
    let raw = |body: &'static str| http.post(&deposits).header("content-type", "application/json").body(body).send();
    let (status, message) = refused(raw(r#"{"amount": 100000000000000000000}"#).await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(message.contains("number out of range"), "{message}");
    assert!(!message.contains("floating point"), "{message}");
    let (_, message) = refused(raw(r#"{"amount": -5}"#).await.unwrap()).await;
    assert!(message.contains("number out of range"), "{message}");
    let (_, message) = refused(raw(r#"{"amount": 1.5}"#).await.unwrap()).await;
    assert!(message.contains("not a whole number of cents"), "{message}");
    let (status, _) = refused(raw(r#"{"amount": "#).await.unwrap()).await;
    assert_eq!(status, 400, "malformed JSON");
    let top: Accepted = raw(r#"{"amount": 18446744073709551615}"#).await.unwrap().json().await.unwrap();
    assert_eq!(top.version, 2, "u64::MAX is an amount");

    let (status, message) = refused(
        http.post(format!("{base}/accounts/{id}/withdrawals"))
            .json(&json!({ "amount": 1, "reason": "y".repeat(http_service::MAX_REASON_LEN + 1) }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(message.contains("too long"), "{message}");

    running.stop.send(()).unwrap();
    running.server.await.unwrap();
}

/// On PostgreSQL the accounts survive a restart of the service, and the
/// in-memory read model is rebuilt from the stored events.
#[cfg_attr(
    not(orchestrix_pg),
    ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_accounts_survive_a_restart() {
    use orchestrix_adapters::postgres::{PgConfig, PgStore};
    let Ok(url) = std::env::var("ORCHESTRIX_PG_URL") else {
        assert!(std::env::var_os("CI").is_none(), "ORCHESTRIX_PG_URL is not set, but CI is");
        eprintln!("skipped: ORCHESTRIX_PG_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return;
    };
    let schema =
        format!("orx_t_{}_{}", std::process::id(), std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let config = || PgConfig::new(schema.clone()).unwrap().with_max_connections(4);
    let http = reqwest::Client::new();

    let running = start_with(http_service::service_on_postgres(&url, config()).await.unwrap()).await;
    let base = running.base.clone();
    let opened: Accepted = http
        .post(format!("{base}/accounts"))
        .json(&json!({ "owner": "Ada" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = opened.id;
    let deposited = http.post(format!("{base}/accounts/{id}/deposits")).json(&json!({ "amount": 70 })).send().await;
    assert_eq!(deposited.unwrap().status(), 200);
    running.stop.send(()).unwrap();
    running.server.await.unwrap();

    // A new process on the same schema: the account is there, and a command on it continues its stream.
    let running = start_with(http_service::service_on_postgres(&url, config()).await.unwrap()).await;
    let base = running.base.clone();
    let view: BalanceView =
        http.get(format!("{base}/accounts/{id}?min_version=2")).send().await.unwrap().json().await.unwrap();
    assert_eq!((view.owner.as_str(), view.balance, view.version), ("Ada", 70, 2));
    let more: Accepted = http
        .post(format!("{base}/accounts/{id}/deposits"))
        .json(&json!({ "amount": 5 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(more.version, 3);
    running.stop.send(()).unwrap();
    running.server.await.unwrap();

    PgStore::connect(&url, config()).await.unwrap().drop_schema().await.unwrap();
}

fn uuid_like() -> String {
    "0190a0b0-0000-7000-8000-000000000001".to_owned()
}
