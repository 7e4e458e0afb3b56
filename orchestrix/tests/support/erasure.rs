//! One erasure scenario, run on every store (memory, SQLite, PostgreSQL,
//! and a tenant's views): after `forget(subject)`, no path of the
//! framework reads or re-persists the subject's plaintext (ADR 0031).
//!
//! Included with `#[path]` by `orchestrix/tests/erasure.rs` and by the
//! SQLite and PostgreSQL tests of `orchestrix-adapters`, so that one
//! scenario checks every adapter.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestrix::crypto::{required, CryptoStore, ErasureHook};
use orchestrix::error::BoxError;
use orchestrix::prelude::*;
use orchestrix::projection::{PoisonPolicy, ProjectionEngine, ProjectionOptions};
use orchestrix::saga::{Saga, SagaManager, SagaStatus, Step, StepAction, StepError};
use orchestrix::{
    app::CommandOptions,
    envelope::{NewEvent, RecordedEvent},
    retry::RetryPolicy,
    store::{CheckpointStore, DeadLetterStore, EventStore, ExpectedVersion, KeyStore, SnapshotStore},
    StoreError, StreamId,
};

/// The secrets of the member forgotten: none may be readable afterwards.
pub const SECRETS: [&str; 3] = ["ada@example.com", "Ada Lovelace", "billing-ada@example.com"];

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    Joined {
        member_id: String,
        #[event(personal(subject = member_id))]
        email: Option<String>,
        #[event(personal(subject = member_id))]
        name: Option<String>,
    },
    Renamed {
        member_id: String,
        #[event(personal(subject = member_id))]
        name: Option<String>,
    },
    Reminded {
        member_id: String,
        #[event(personal(subject = member_id))]
        email: Option<String>,
    },
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum InvoiceEvent {
    Issued {
        member_id: String,
        #[event(personal(subject = member_id))]
        billing_email: Option<String>,
        cents: u64,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// A member; a snapshot every 2 events, so snapshots hold the decrypted
/// state.
#[aggregate(event = MemberEvent, error = Refused, id = String, snapshot_every = 2)]
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Member {
    id: String,
    email: Option<String>,
    name: Option<String>,
    reminders: u32,
}

impl Member {
    fn apply(&mut self, event: &MemberEvent) {
        match event {
            MemberEvent::Joined { member_id, email, name } => {
                self.id.clone_from(member_id);
                self.email.clone_from(email);
                self.name.clone_from(name);
            }
            MemberEvent::Renamed { name, .. } => self.name.clone_from(name),
            MemberEvent::Reminded { .. } => self.reminders += 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Join {
    pub member_id: String,
    pub email: String,
    pub name: String,
}

/// Copies the member's e-mail address (from the state) into a new event:
/// the path by which forgotten data came back.
#[derive(Debug, Clone)]
pub struct Remind;

#[derive(Debug, Clone)]
pub struct Rename {
    pub name: String,
}

#[command_handler]
impl Member {
    fn join(cmd: Join) -> Result<MemberEvent, Refused> {
        Ok(MemberEvent::Joined { member_id: cmd.member_id, email: Some(cmd.email), name: Some(cmd.name) })
    }

    fn remind(&self, _cmd: Remind) -> Result<MemberEvent, Refused> {
        Ok(MemberEvent::Reminded { member_id: self.id.clone(), email: self.email.clone() })
    }

    fn rename(&self, cmd: Rename) -> Result<MemberEvent, Refused> {
        Ok(MemberEvent::Renamed { member_id: self.id.clone(), name: Some(cmd.name) })
    }
}

/// The saga's data marks its personal field as an event does.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct WelcomeData {
    pub member_id: String,
    #[event(personal(subject = member_id))]
    pub email: Option<String>,
}

/// Sends a welcome mail to a member who joined.
#[derive(Debug, Clone, Default)]
pub struct Outbox(pub Arc<Mutex<Vec<String>>>);

#[orchestrix::async_trait]
impl StepAction<WelcomeData> for Outbox {
    async fn execute(&self, _app: &Orchestrix, data: &WelcomeData, _options: CommandOptions) -> Result<(), StepError> {
        // The typed way to need a personal value: erased is a failed step.
        let email = required(data.email.as_ref(), "email")?;
        self.0.lock().unwrap().push(email.clone());
        Ok(())
    }
}

pub struct WelcomeSaga(pub Outbox);

impl Saga for WelcomeSaga {
    const NAME: &'static str = "Welcome";
    type Data = WelcomeData;

    fn start_event_types(&self) -> Vec<String> {
        vec!["MemberJoined".into()]
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<WelcomeData>, BoxError> {
        match event.decode::<MemberEvent>()? {
            MemberEvent::Joined { email, .. } => {
                Ok(Some(WelcomeData { member_id: event.stream.id().to_owned(), email }))
            }
            _ => Ok(None),
        }
    }

    fn steps(&self) -> Vec<Step<WelcomeData>> {
        vec![Step::custom("mail", self.0.clone())]
    }
}

/// A projection that fails on every reminder: the engine parks them.
#[derive(Debug, Default)]
pub struct Fragile;

#[orchestrix::async_trait]
impl orchestrix::projection::Projection for Fragile {
    fn name(&self) -> Cow<'static, str> {
        "fragile".into()
    }
    fn filter(&self) -> orchestrix::store::EventFilter {
        orchestrix::store::EventFilter::types(["MemberReminded"])
    }
    /// The error quotes the address, as a decoding error of serde would.
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let to = match event.decode::<MemberEvent>()? {
            MemberEvent::Reminded { email, .. } => email.unwrap_or_default(),
            _ => String::new(),
        };
        Err(format!("the mail server refused \"{to}\"").into())
    }
}

/// A read model of its own: e-mail addresses per member, erased by its
/// hook.
#[derive(Debug, Default)]
pub struct Mailing(pub Mutex<Vec<(String, String)>>);

#[orchestrix::async_trait]
impl ErasureHook for Mailing {
    fn name(&self) -> Cow<'static, str> {
        "mailing".into()
    }
    async fn erase(&self, subject: &str, _streams: &[StreamId]) -> Result<(), BoxError> {
        self.0.lock().unwrap().retain(|(member, _)| member != subject);
        Ok(())
    }
}

/// The stores a scenario runs on.
pub struct Stores<E> {
    pub events: E,
    pub keys: Arc<dyn KeyStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub checkpoints: Arc<dyn CheckpointStore>,
}

/// The crypto store over `stores`, erasing everywhere, and an application
/// with the aggregate cache on.
pub fn wire<E: EventStore + Clone>(stores: &Stores<E>, mailing: Arc<Mailing>) -> (CryptoStore<E>, Orchestrix) {
    let crypto = CryptoStore::new(stores.events.clone(), Arc::clone(&stores.keys))
        .register::<MemberEvent>()
        .register::<InvoiceEvent>()
        .register_saga::<WelcomeSaga>()
        .erase_snapshots_in(Arc::clone(&stores.snapshots))
        .erase_dead_letters_in(Arc::clone(&stores.dead_letters))
        .on_forget(mailing);
    let app = Orchestrix::builder()
        .event_store(crypto.clone())
        .snapshot_store(Arc::clone(&stores.snapshots))
        .aggregate::<Member>()
        .cache_capacity(100)
        .build()
        .expect("the application builds");
    (crypto, app)
}

fn member(id: &str) -> StreamId {
    StreamId::new("Member", id).unwrap()
}

/// Every stored byte of the events of `streams`, as the inner store holds
/// them, and of the snapshots and dead letters.
async fn stored_text<E: EventStore>(stores: &Stores<E>, streams: &[StreamId]) -> String {
    let mut text = String::new();
    for stream in streams {
        let mut events = stores.events.read_stream(stream, 1);
        while let Some(event) = events.next().await {
            text.push_str(event.unwrap().data.get());
        }
        if let Some(snapshot) = stores.snapshots.load(stream, None).await.unwrap() {
            text.push_str(snapshot.state.get());
        }
    }
    for letter in stores.dead_letters.list(None).await.unwrap() {
        text.push_str(letter.event.data.get());
        text.push_str(&letter.error);
    }
    text
}

fn is_forgotten_refusal<E: std::fmt::Debug>(result: &Result<E, CommandError<Refused>>) -> bool {
    matches!(
        result,
        Err(CommandError::Framework(orchestrix::Error::Store(StoreError::SubjectForgotten { subject }))) if subject.ends_with("m-1")
    )
}

/// The scenario: member `m-1` joins, is reminded (the cache and a snapshot
/// hold her address), is billed (another stream), starts a welcome saga
/// that has not run yet, and a projection parks her reminder; then she is
/// forgotten.
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
pub async fn forget_erases_every_copy<E: EventStore + Clone>(stores: Stores<E>) {
    let mailing = Arc::new(Mailing::default());
    let (crypto, app) = wire(&stores, Arc::clone(&mailing));
    // Two other processes on the same stores: their own caches and
    // generations.
    let (_, other_app) = wire(&stores, Arc::new(Mailing::default()));
    let (third_crypto, third_app) = wire(&stores, Arc::new(Mailing::default()));
    let id = "m-1".to_owned();

    app.execute(id.clone(), Join { member_id: id.clone(), email: SECRETS[0].into(), name: SECRETS[1].into() })
        .await
        .unwrap();
    let joined = app.load::<Member>(&id).await.unwrap();
    assert_eq!(joined.state.email.as_deref(), Some(SECRETS[0]));
    app.execute(id.clone(), Remind).await.unwrap();
    other_app.execute(id.clone(), Remind).await.unwrap();
    // The third caches her too.
    third_app.execute(id.clone(), Remind).await.unwrap();
    assert!(!third_crypto.refresh_erasures().await.unwrap(), "nothing was forgotten yet");
    let snapshot = stores.snapshots.load(&member("m-1"), None).await.unwrap().expect("a snapshot at version 2");
    assert!(snapshot.state.get().contains(SECRETS[0]), "the snapshot holds the decrypted state");
    let invoice = StreamId::new("Invoice", "inv-1").unwrap();
    let issued = InvoiceEvent::Issued { member_id: id.clone(), billing_email: Some(SECRETS[2].into()), cents: 990 };
    crypto
        .append(&invoice, ExpectedVersion::NoStream, vec![NewEvent::encode(&issued, Metadata::default()).unwrap()])
        .await
        .unwrap();
    mailing.0.lock().unwrap().push((id.clone(), SECRETS[0].into()));

    let outbox = Outbox::default();
    let sagas = SagaManager::new(app.clone(), WelcomeSaga(outbox.clone()));
    let first = crypto.read_stream(&member("m-1"), 1).next().await.unwrap().unwrap();
    let saga_id = sagas.begin(&first).await.unwrap().expect("the join starts a saga");
    assert_eq!(sagas.status(saga_id).await.unwrap().unwrap().data.email.as_deref(), Some(SECRETS[0]));

    let engine = ProjectionEngine::new(crypto.clone(), Arc::clone(&stores.checkpoints))
        .with_dead_letters(Arc::clone(&stores.dead_letters));
    let options = ProjectionOptions::default().poison(PoisonPolicy::Park).retry(RetryPolicy::fixed(1, Duration::ZERO));
    engine.rebuild(&mut Fragile, options, |_| {}).await.unwrap();
    let letters = stores.dead_letters.list(Some("fragile")).await.unwrap();
    assert_eq!(letters.len(), 3, "every reminder is parked");
    assert!(letters[0].event.data.get().contains(SECRETS[0]), "a dead letter holds the decrypted event");
    assert!(letters[0].error.contains(SECRETS[0]), "and its error quotes the address");

    // Every stream that holds her data is known.
    let saga_stream = SagaManager::<WelcomeSaga>::stream_id(saga_id).unwrap();
    let mut expected_streams = vec![invoice.clone(), member("m-1"), saga_stream.clone()];
    expected_streams.sort();
    assert_eq!(stores.keys.streams_of("m-1").await.unwrap(), expected_streams);

    // Forget her.
    let report = crypto.forget("m-1").await.unwrap();
    assert!(report.key_deleted);
    assert_eq!(report.streams, expected_streams);
    assert_eq!(report.snapshots_deleted, expected_streams);
    let mut erased_letters = report.dead_letters_erased.clone();
    erased_letters.sort();
    let mut parked: Vec<_> = letters.iter().map(|l| l.id).collect();
    parked.sort();
    assert_eq!(erased_letters, parked);
    assert_eq!(report.hooks, ["mailing"]);
    assert!(mailing.0.lock().unwrap().is_empty(), "the read model's hook erased its copy");

    // Nothing the framework keeps holds her plaintext any more.
    let text = stored_text(&stores, &expected_streams).await;
    for secret in SECRETS {
        assert!(!text.contains(secret), "`{secret}` is still stored: {text}");
    }
    assert!(stores.snapshots.load(&member("m-1"), None).await.unwrap().is_none());

    // The cached aggregate is dropped: the reminder copies the erased
    // marker, not the address.
    let reminded = app.execute(id.clone(), Remind).await.unwrap();
    assert!(matches!(&reminded.events[0].event, MemberEvent::Reminded { email: None, .. }), "{reminded:?}");
    // New personal data of hers is refused, typed; nothing is written.
    let version = crypto.stream_version(&member("m-1")).await.unwrap();
    let renamed = app.execute(id.clone(), Rename { name: "Ada King".into() }).await;
    assert!(is_forgotten_refusal(&renamed), "{renamed:?}");
    assert_eq!(crypto.stream_version(&member("m-1")).await.unwrap(), version);
    // The other process still caches her address: its write is refused by
    // the key store, and its next command reads the erased state.
    let stale = other_app.execute(id.clone(), Remind).await;
    assert!(is_forgotten_refusal(&stale), "{stale:?}");
    let fresh = other_app.execute(id.clone(), Remind).await.unwrap();
    assert!(matches!(&fresh.events[0].event, MemberEvent::Reminded { email: None, .. }), "{fresh:?}");
    // A process that polls the key store learns of the forget (appends
    // poll every second): its cache is dropped before any refusal.
    assert!(third_crypto.refresh_erasures().await.unwrap());
    let polled = third_app.execute(id.clone(), Remind).await.unwrap();
    assert!(matches!(&polled.events[0].event, MemberEvent::Reminded { email: None, .. }), "{polled:?}");

    // The saga's state shows the erased marker; the step that needs the
    // address gets the typed error, fails, and sends nothing.
    let instance = sagas.status(saga_id).await.unwrap().unwrap();
    assert_eq!(instance.data, WelcomeData { member_id: id.clone(), email: None });
    let ended = sagas.drive(saga_id).await.unwrap();
    assert_eq!(ended.status, SagaStatus::Failed);
    assert!(ended.error.as_deref().unwrap_or_default().contains("`email` is erased"), "{:?}", ended.error);
    assert!(outbox.0.lock().unwrap().is_empty());

    // Dead letters keep their event, without her data. The stream's first
    // letter holds the handler's error, its value cut out; the later
    // events of the stream are parked behind it (ADR 0025) untried.
    let letters = stores.dead_letters.list(Some("fragile")).await.unwrap();
    assert!(!letters.is_empty());
    for (index, letter) in letters.iter().enumerate() {
        let event = letter.event.decode::<MemberEvent>().unwrap();
        assert!(matches!(event, MemberEvent::Reminded { email: None, .. }), "{event:?}");
        if index == 0 {
            assert_eq!(letter.error, "the mail server refused \"<erased>\"");
        } else {
            assert!(letter.error.starts_with("parked behind dead letter"), "{}", letter.error);
        }
        assert!(SECRETS.iter().all(|secret| !letter.error.contains(secret)), "{}", letter.error);
    }

    // Forgetting again finds nothing new and erases nothing twice.
    let again = crypto.forget("m-1").await.unwrap();
    assert!(!again.key_deleted && again.dead_letters_erased.is_empty());
    assert_eq!(again.streams, expected_streams);

    // She comes back: an explicit re-admission, then her data is written
    // under a new key, which does not open the old.
    assert!(crypto.readmit("m-1").await.unwrap());
    app.execute(id.clone(), Rename { name: "Ada King".into() }).await.unwrap();
    let member_now = app.load::<Member>(&id).await.unwrap().state;
    assert_eq!((member_now.name.as_deref(), member_now.email.as_deref()), (Some("Ada King"), None));
}
