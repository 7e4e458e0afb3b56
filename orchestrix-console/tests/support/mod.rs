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

/// Counts the events it handles (a rebuild resets the count); fails on
/// `Poison` until healed.
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

    /// A rebuild starts the count again.
    async fn reset(&mut self) -> Result<(), BoxError> {
        self.applied.store(0, Ordering::SeqCst);
        Ok(())
    }
}

pub fn new_event(event_type: &str, data: serde_json::Value, metadata: Metadata) -> NewEvent {
    NewEvent::new(event_type, 1, serde_json::value::to_raw_value(&data).unwrap()).with_metadata(metadata)
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

/// An aggregate the console is told about: its state is shown.
pub mod book {
    #[orchestrix::event]
    #[derive(Debug, Clone)]
    pub enum Ledger {
        Opened {
            customer_id: String,
            #[event(personal(subject = customer_id))]
            owner: Option<String>,
        },
        Deposited {
            amount: u64,
        },
    }

    #[derive(Debug)]
    pub struct Never;

    impl std::fmt::Display for Never {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("never")
        }
    }

    impl std::error::Error for Never {}

    #[orchestrix::aggregate(event = Ledger, error = Never, id = u64)]
    #[derive(Debug, Default, serde::Serialize)]
    pub struct Book {
        owner: Option<String>,
        balance: u64,
        deposits: u32,
    }

    impl Book {
        fn apply(&mut self, event: &Ledger) {
            match event {
                Ledger::Opened { owner, .. } => self.owner.clone_from(owner),
                Ledger::Deposited { amount } => {
                    self.balance += amount;
                    self.deposits += 1;
                }
            }
        }
    }
}

pub fn encoded(event: &book::Ledger) -> NewEvent {
    NewEvent::encode(event, Metadata::default()).unwrap()
}

/// A saga instance's stream as its manager writes it: the stored types
/// and payloads of ADR 0007 and 0038.
pub async fn saga(store: &dyn orchestrix::store::EventStore, id: &str, events: &[(&str, serde_json::Value)]) {
    for (event_type, data) in events {
        append(store, &format!("saga-Transfer/{id}"), new_event(event_type, data.clone(), Metadata::default())).await;
    }
}

pub const RUNNING: &str = "00000000-0000-7000-8000-000000000001";
pub const WAITING: &str = "00000000-0000-7000-8000-000000000002";
pub const COMPENSATING: &str = "00000000-0000-7000-8000-000000000003";
pub const COMPLETED: &str = "00000000-0000-7000-8000-000000000004";
pub const FAILED: &str = "00000000-0000-7000-8000-000000000005";

pub async fn sagas(store: &dyn orchestrix::store::EventStore) {
    let nil = "00000000-0000-0000-0000-000000000000";
    let started = serde_json::json!({"saga": "Transfer", "data": {"amount": 30, "note": HOSTILE},
        "correlation_id": nil, "trigger": nil, "steps": ["debit", "credit"]});
    let step = |event: &str, step: usize, name: &str| {
        let mut data = serde_json::json!({"step": step, "name": name});
        if event.ends_with("Started") {
            data["step_id"] = nil.into();
        }
        (event.to_owned(), data)
    };
    let failed = serde_json::json!({"step": 1, "name": "credit", "error": "declined by postgres://bank:hunter2@db/x"});
    let waiting = serde_json::json!({"step": 1, "name": "credit", "event_type": "Approved", "stream": "Approval/1",
        "deadline": "2030-01-02T03:04:05Z"});
    let runs: [(&str, Vec<(String, serde_json::Value)>); 5] = [
        (RUNNING, vec![step("SagaStepStarted", 0, "debit")]),
        (WAITING, vec![step("SagaStepCompleted", 0, "debit"), ("SagaStepWaiting".into(), waiting)]),
        (
            COMPENSATING,
            vec![
                step("SagaStepCompleted", 0, "debit"),
                ("SagaStepFailed".into(), failed.clone()),
                step("SagaCompensationStarted", 0, "debit"),
            ],
        ),
        (
            COMPLETED,
            vec![
                step("SagaStepCompleted", 0, "debit"),
                step("SagaStepCompleted", 1, "credit"),
                ("SagaCompleted".into(), serde_json::json!({})),
            ],
        ),
        (
            FAILED,
            vec![
                step("SagaStepCompleted", 0, "debit"),
                ("SagaStepFailed".into(), failed.clone()),
                step("SagaCompensationStarted", 0, "debit"),
                step("SagaStepCompensated", 0, "debit"),
                ("SagaFailed".into(), serde_json::json!({"error": "declined"})),
            ],
        ),
    ];
    for (id, events) in runs {
        let mut all = vec![("SagaStarted", started.clone())];
        all.extend(events.iter().map(|(event_type, data)| (event_type.as_str(), data.clone())));
        saga(store, id, &all).await;
    }
}
