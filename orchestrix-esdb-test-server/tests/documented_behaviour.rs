//! The test server follows the documented API where it used to be more
//! lenient (ADR 0028), spoken to as a bare HTTP client would, through API
//! v1 (`POST`, statuses with text) and API v2 (`QUERY`, `error` items
//! with a code).

use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use serde_json::{json, Value};

struct Api {
    server: TestServer,
    client: reqwest::Client,
    v2: bool,
}

impl Api {
    async fn new(options: TestServerOptions) -> Self {
        let v2 = options.offer_v2 && !options.offer_v1;
        Self { server: TestServer::start(options).await.unwrap(), client: reqwest::Client::new(), v2 }
    }

    /// Sends `body` to the operation; the status and the body as text.
    async fn send(&self, operation: &str, body: &Value) -> (u16, String) {
        let (method, path) = match (self.v2, operation) {
            (false, op) => (reqwest::Method::POST, format!("/api/v1/{op}")),
            (true, "write-events" | "register-event-schema") => {
                (reqwest::Method::POST, format!("/api/v2/data/{operation}"))
            }
            (true, op) => (reqwest::Method::from_bytes(b"QUERY").unwrap(), format!("/api/v2/data/{op}")),
        };
        let response = self
            .client
            .request(method, format!("{}{path}", self.server.url()))
            .bearer_auth(self.server.token())
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Asserts a refusal of input: v1 a 400, v2 an `error` item with `slug`.
    async fn refused(&self, operation: &str, body: &Value, slug: &str) {
        let (status, text) = self.send(operation, body).await;
        if self.v2 && slug != "-" {
            assert_eq!(status, 200, "{text}");
            assert!(text.contains("\"type\":\"error\"") && text.contains(slug), "{slug}: {text}");
        } else {
            assert_eq!(status, 400, "{operation} {body}: {text}");
            // As EventSourcingDB writes a 400 (the official client's fixtures).
            assert!(text.starts_with("bad request: ") && text.ends_with('\n'), "{text:?}");
        }
    }

    async fn write(&self, subject: &str, event_type: &str) {
        let body = json!({ "events": [{ "source": "https://t.example", "subject": subject, "type": event_type, "data": {} }] });
        let (status, text) = self.send("write-events", &body).await;
        assert_eq!(status, 200, "{text}");
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod v1 { $( #[tokio::test] async fn $name() { super::$name(super::Api::new(orchestrix_esdb_test_server::TestServerOptions::default()).await).await; } )* }
        mod v2 { $( #[tokio::test] async fn $name() { super::$name(super::Api::new(orchestrix_esdb_test_server::TestServerOptions::v2_only()).await).await; } )* }
    };
}

both!(
    a_missing_token_is_refused_as_documented,
    observations_validate_their_subject,
    from_latest_event_validates_its_subject_and_type_and_excludes_a_lower_bound,
    read_subjects_lists_parents_and_refuses_an_empty_base,
    a_malformed_event_type_is_refused_not_unknown,
    an_absent_schema_is_absent_not_null,
    unknown_fields_are_refused,
);

async fn observations_validate_their_subject(api: Api) {
    api.refused(
        "observe-events",
        &json!({ "subject": "no-slash", "options": { "recursive": false } }),
        "subject-malformed",
    )
    .await;
    api.refused(
        "observe-events",
        &json!({ "subject": "/a//b", "options": { "recursive": false } }),
        "subject-malformed",
    )
    .await;
}

async fn from_latest_event_validates_its_subject_and_type_and_excludes_a_lower_bound(api: Api) {
    api.write("/books/42", "io.example.book-acquired").await;
    let from = |subject: &str, event_type: &str| json!({ "subject": subject, "type": event_type, "ifEventIsMissing": "read-everything" });
    let read = |options: Value| json!({ "subject": "/books/42", "options": options });
    api.refused("read-events", &read(json!({ "fromLatestEvent": from("books", "io.example.x") })), "subject-malformed")
        .await;
    api.refused(
        "read-events",
        &read(json!({ "fromLatestEvent": from("/books/42", "nodots") })),
        "event-type-malformed",
    )
    .await;
    let both = json!({
        "lowerBound": { "type": "inclusive", "id": "0" },
        "fromLatestEvent": from("/books/42", "io.example.book-acquired"),
    });
    api.refused("read-events", &read(both.clone()), "selection-conflicting").await;
    api.refused("observe-events", &read(both), "selection-conflicting").await;
    // Each alone is fine.
    let (status, _) = api.send("read-events", &read(json!({ "lowerBound": { "type": "inclusive", "id": "0" } }))).await;
    assert_eq!(status, 200);
}

async fn read_subjects_lists_parents_and_refuses_an_empty_base(api: Api) {
    api.write("/books/42", "io.example.book-acquired").await;
    let body = |base: &str| {
        if api.v2 {
            json!({ "subject": base, "options": { "recursive": true } })
        } else {
            json!({ "baseSubject": base })
        }
    };
    let (status, text) = api.send("read-subjects", &body("/")).await;
    assert_eq!(status, 200, "{text}");
    let subjects: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|item| item["type"] == "subject")
        .map(|item| item[if api.v2 { "data" } else { "payload" }]["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, ["/", "/books", "/books/42"]);
    api.refused("read-subjects", &body(""), "subject-malformed").await;
}

async fn a_malformed_event_type_is_refused_not_unknown(api: Api) {
    let key = if api.v2 { "type" } else { "eventType" };
    api.refused("read-event-type", &json!({ key: "not a type" }), "event-type-malformed").await;
    let (status, text) = api.send("read-event-type", &json!({ key: "io.example.never-seen" })).await;
    if api.v2 {
        assert!(text.contains("event-type-unknown"), "{text}");
    } else {
        assert_eq!(status, 404, "a well-formed unknown type is still unknown: {text}");
    }
}

async fn an_absent_schema_is_absent_not_null(api: Api) {
    api.write("/books/42", "io.example.book-acquired").await;
    let key = if api.v2 { "type" } else { "eventType" };
    let (status, text) = api.send("read-event-type", &json!({ key: "io.example.book-acquired" })).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("schema"), "{text}");
}

async fn unknown_fields_are_refused(api: Api) {
    let body = json!({ "subject": "/books", "options": { "recursive": false }, "limit": 3 });
    api.refused("read-events", &body, "-").await;
    let event =
        json!({ "source": "https://t.example", "subject": "/b", "type": "io.example.x", "data": {}, "color": "red" });
    api.refused("write-events", &json!({ "events": [event] }), "-").await;
    if api.v2 {
        // v2 refuses a field sent as null instead of left out; `data` is the user's.
        let nulled = json!({ "subject": "/books", "options": { "recursive": false, "order": null } });
        api.refused("read-events", &nulled, "-").await;
        let event =
            json!({ "source": "https://t.example", "subject": "/b", "type": "io.example.x", "data": { "x": null } });
        let (status, text) = api.send("write-events", &json!({ "events": [event] })).await;
        assert!(status == 200 && !text.contains("\"error\""), "{text}");
    }
}

async fn a_missing_token_is_refused_as_documented(api: Api) {
    let path = if api.v2 { "/api/v2/system/verify-token" } else { "/api/v1/verify-api-token" };
    let response = api.client.post(format!("{}{path}", api.server.url())).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.text().await.unwrap(), "unauthorized\n");
}
