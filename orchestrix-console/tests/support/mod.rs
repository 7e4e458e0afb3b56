//! A store with known events, a projection that parks one of them, and
//! the requests the tests send.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::needless_pass_by_value)]

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use orchestrix::envelope::{NewEvent, RecordedEvent};
use orchestrix::error::BoxError;
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryDeadLetterStore, InMemoryEventStore};
use orchestrix::projection::{PoisonPolicy, Projection, ProjectionEngine, ProjectionHandle, ProjectionOptions};
use orchestrix::retry::RetryPolicy;
use orchestrix::store::{EventFilter, EventStore, ExpectedVersion};
use orchestrix::tenant::TenantStore;
use orchestrix::{Metadata, StreamId, Uuid};
use tower::ServiceExt;

pub const TOKEN: &str = "s3cret-write-token-0123456789";
pub const HOSTILE: &str = "<script>alert('x')</script>";

/// Counts the events it handles; fails on `Poison` until healed.
pub struct Balances {
    pub healed: Arc<AtomicBool>,
    pub applied: Arc<AtomicU64>,
}

#[orchestrix::async_trait]
impl Projection for Balances {
    fn name(&self) -> Cow<'static, str> {
        "balances".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        if event.event_type == "Poison" && !self.healed.load(Ordering::SeqCst) {
            return Err("the balance went negative: postgres://admin:hunter2@db/x refused".into());
        }
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub fn new_event(event_type: &str, data: serde_json::Value, metadata: Metadata) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&data).unwrap(),
        metadata,
    }
}

pub async fn append(store: &dyn EventStore, stream: &str, event: NewEvent) -> Arc<RecordedEvent> {
    let (category, id) = stream.split_once('/').unwrap();
    let stream = StreamId::new(category, id).unwrap();
    store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap().remove(0)
}

pub struct Fixture {
    pub events: InMemoryEventStore,
    pub dead_letters: InMemoryDeadLetterStore,
    pub handle: Arc<ProjectionHandle<Balances>>,
    pub healed: Arc<AtomicBool>,
    pub applied: Arc<AtomicU64>,
    pub opened: Arc<RecordedEvent>,
    pub deposited: Arc<RecordedEvent>,
    pub noted: Arc<RecordedEvent>,
    pub poison: Arc<RecordedEvent>,
    pub hostile: Arc<RecordedEvent>,
}

impl Fixture {
    pub async fn new() -> Self {
        let events = InMemoryEventStore::new();
        let dead_letters = InMemoryDeadLetterStore::new();
        let correlation = Uuid::now_v7();
        let opened = append(
            &events,
            "Account/1",
            new_event(
                "AccountOpened",
                serde_json::json!({"owner": "Ada", "limit": 100}),
                Metadata::default().with_correlation_id(correlation),
            ),
        )
        .await;
        let deposited = append(
            &events,
            "Account/1",
            new_event(
                "MoneyDeposited",
                serde_json::json!({"amount": 10}),
                Metadata::default()
                    .with_correlation_id(correlation)
                    .with_causation_id(opened.id)
                    .with_header("authorization", "Bearer do-not-show-me")
                    .with_header("source", "teller"),
            ),
        )
        .await;
        let noted = append(
            &events,
            "Audit/1",
            new_event(
                "DepositNoted",
                serde_json::json!({"account": "Account/1"}),
                Metadata::default().with_correlation_id(correlation).with_causation_id(deposited.id),
            ),
        )
        .await;
        let hostile = append(
            &events,
            &format!("Account/{HOSTILE}"),
            new_event("AccountOpened", serde_json::json!({"owner": HOSTILE}), Metadata::default()),
        )
        .await;
        let poison =
            append(&events, "Account/3", new_event("Poison", serde_json::json!({"amount": -5}), Metadata::default()))
                .await;
        let healed = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicU64::new(0));
        let engine = ProjectionEngine::new(events.clone(), InMemoryCheckpointStore::new())
            .with_dead_letters(dead_letters.clone());
        let options = ProjectionOptions::default()
            .poison(PoisonPolicy::Park)
            .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
            .checkpoint_every(1);
        let mut handle = engine.spawn(Balances { healed: healed.clone(), applied: applied.clone() }, options);
        handle.wait_caught_up(Duration::from_secs(10)).await.unwrap();
        Self {
            events,
            dead_letters,
            handle: Arc::new(handle),
            healed,
            applied,
            opened,
            deposited,
            noted,
            poison,
            hostile,
        }
    }

    /// The console over the fixture, its projection given.
    pub fn console(&self) -> orchestrix_console::Console {
        orchestrix_console::Console::new(self.events.clone())
            .dead_letters(self.dead_letters.clone())
            .projection("balances", self.handle.clone())
    }
}

/// A tenant's view of `store`.
pub fn tenant(store: &InMemoryEventStore, tenant: &str) -> TenantStore<InMemoryEventStore> {
    TenantStore::new(store.clone(), tenant).unwrap()
}

/// The console nested at `/orchestrix`, as an application mounts it.
pub fn mounted(console: orchestrix_console::Console) -> Router {
    Router::new().nest("/orchestrix", orchestrix_console::router(console))
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn cookie(&self) -> Option<String> {
        let value = self.headers.get("set-cookie")?.to_str().ok()?;
        Some(value.split(';').next()?.to_owned())
    }

    /// The value of the first hidden `csrf` input.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        Some(self.body[at..].split('"').next()?.to_owned())
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).header("host", "console.test").body(Body::empty()).unwrap()).await
}

pub async fn get_with_cookie(app: &Router, uri: &str, cookie: &str) -> Answer {
    send(app, Request::get(uri).header("host", "console.test").header("cookie", cookie).body(Body::empty()).unwrap())
        .await
}

/// A form post as a browser on `origin` sends it.
pub async fn post_form(app: &Router, uri: &str, origin: Option<&str>, cookie: Option<&str>, form: &str) -> Answer {
    let mut request =
        Request::post(uri).header("host", "console.test").header("content-type", "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(app, request.body(Body::from(form.to_owned())).unwrap()).await
}

/// Signs in with the write token; the session cookie.
pub async fn sign_in(app: &Router) -> String {
    let answer = post_form(
        app,
        "/orchestrix/session",
        Some("http://console.test"),
        None,
        &format!("token={TOKEN}&next=/orchestrix/dead-letters"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer.cookie().expect("a session cookie")
}

/// `text` percent-encoded for a query value.
pub fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}
