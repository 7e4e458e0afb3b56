//! Crypto-shredding end to end: personal fields are stored encrypted,
//! read back in clear, and after the subject's key is deleted the events,
//! the aggregates and every projection rebuilt from them still load, with
//! `None` where the personal data was.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use orchestrix::crypto::{CryptoStore, PersonalData, PersonalField, ENCRYPTED_MARKER};
use orchestrix::memory::{InMemoryCheckpointStore, InMemoryEventStore, InMemoryKeyStore};
use orchestrix::prelude::*;
use orchestrix::projection::{ProjectionEngine, ProjectionOptions};
use orchestrix::store::StreamAppend;
use orchestrix::{
    envelope::{NewEvent, RecordedEvent},
    store::{EventFilter, EventStore, ExpectedVersion, KeyStore},
    StoreError, StreamId,
};

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerEvent {
    Registered {
        customer_id: String,
        plan: String,
        #[event(personal(subject = customer_id))]
        name: Option<String>,
        #[event(personal(subject = customer_id))]
        address: Option<Address>,
    },
    Referred {
        customer_id: String,
        referrer_id: String,
        #[event(personal(subject = referrer_id))]
        referrer_email: Option<String>,
        #[event(personal(subject = customer_id))]
        email: Option<String>,
    },
    PlanChanged {
        plan: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    street: String,
    zip: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

#[aggregate(event = CustomerEvent, error = Refused, id = String)]
#[derive(Debug, Default)]
pub struct Customer {
    plan: String,
    name: Option<String>,
    email: Option<String>,
}

impl Customer {
    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::Registered { plan, name, .. } => {
                self.plan.clone_from(plan);
                self.name.clone_from(name);
            }
            CustomerEvent::Referred { email, .. } => self.email.clone_from(email),
            CustomerEvent::PlanChanged { plan } => self.plan.clone_from(plan),
        }
    }
}

/// A read model of names per customer, and how many events it saw.
#[derive(Debug, Default)]
pub struct Directory {
    names: BTreeMap<String, Option<String>>,
    seen: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("unavailable")]
pub struct Unavailable;

#[projection(name = "directory")]
impl Directory {
    fn on_customer(&mut self, event: CustomerEvent) -> Result<(), Unavailable> {
        self.seen += 1;
        if let CustomerEvent::Registered { customer_id, name, .. } = event {
            self.names.insert(customer_id, name);
        }
        Ok(())
    }

    #[reset]
    fn clear(&mut self) {
        *self = Self::default();
    }
}

fn registered(id: &str, name: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        customer_id: id.into(),
        plan: "basic".into(),
        name: Some(name.into()),
        address: Some(Address { street: format!("{name} Street 1"), zip: 12345 }),
    }
}

fn encode(event: &CustomerEvent) -> NewEvent {
    NewEvent::encode(event, Metadata::default()).unwrap()
}

fn stream(id: &str) -> StreamId {
    StreamId::new("Customer", id).unwrap()
}

async fn decoded(store: &impl EventStore) -> Vec<CustomerEvent> {
    let filter = EventFilter::all();
    store.read_all(0, &filter).map(|r| r.unwrap().decode::<CustomerEvent>().unwrap()).collect().await
}

#[test]
fn the_macro_declares_personal_fields_per_stored_type() {
    assert_eq!(
        CustomerEvent::personal_data(),
        &[
            PersonalData {
                event_type: "CustomerRegistered",
                fields: &[
                    PersonalField { name: "name", subject: "customer_id" },
                    PersonalField { name: "address", subject: "customer_id" },
                ],
            },
            PersonalData {
                event_type: "CustomerReferred",
                fields: &[
                    PersonalField { name: "referrer_email", subject: "referrer_id" },
                    PersonalField { name: "email", subject: "customer_id" },
                ],
            },
        ]
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read from top to bottom
async fn forgetting_a_subject_erases_its_fields_and_everything_still_loads() {
    let raw = InMemoryEventStore::new();
    let keys = InMemoryKeyStore::new();
    let store = CryptoStore::new(raw.clone(), keys.clone()).register::<CustomerEvent>();
    let app = Orchestrix::builder().event_store(store.clone()).build().unwrap();

    let referral = CustomerEvent::Referred {
        customer_id: "bob".into(),
        referrer_id: "ada".into(),
        referrer_email: Some("ada@example.com".into()),
        email: Some("bob@example.com".into()),
    };
    let appended = store
        .append_many(vec![
            StreamAppend::new(stream("ada"), ExpectedVersion::NoStream, vec![encode(&registered("ada", "Ada"))]),
            StreamAppend::new(
                stream("bob"),
                ExpectedVersion::NoStream,
                vec![encode(&registered("bob", "Bob")), encode(&referral)],
            ),
        ])
        .await
        .unwrap();
    // What an append returns is what the caller wrote.
    assert_eq!(appended[1][1].decode::<CustomerEvent>().unwrap(), referral);
    store
        .append(
            &stream("ada"),
            ExpectedVersion::Exact(1),
            vec![encode(&CustomerEvent::PlanChanged { plan: "pro".into() })],
        )
        .await
        .unwrap();

    // Stored: no personal value in clear, subjects and other fields readable.
    let filter = EventFilter::all();
    let stored: Vec<Arc<RecordedEvent>> = raw.read_all(0, &filter).map(Result::unwrap).collect().await;
    let text: String = stored.iter().map(|e| e.data.get()).collect();
    for secret in ["Ada", "Bob", "Street", "12345", "@example.com"] {
        assert!(!text.contains(secret), "`{secret}` is stored in clear: {text}");
    }
    assert!(text.contains(ENCRYPTED_MARKER) && text.contains("\"customer_id\":\"ada\"") && text.contains("basic"));

    // Read through the store: in clear, in every read path.
    let expected = vec![
        registered("ada", "Ada"),
        registered("bob", "Bob"),
        referral.clone(),
        CustomerEvent::PlanChanged { plan: "pro".into() },
    ];
    assert_eq!(decoded(&store).await, expected);
    let mut subscription = store.subscribe(0, EventFilter::all());
    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!(first.decode::<CustomerEvent>().unwrap(), expected[0]);
    assert_eq!(app.load::<Customer>(&"bob".to_owned()).await.unwrap().state.email.as_deref(), Some("bob@example.com"));
    let engine = ProjectionEngine::new(store.clone(), InMemoryCheckpointStore::new());
    let mut directory = Directory::default();
    engine.rebuild(&mut directory, ProjectionOptions::default(), |_| {}).await.unwrap();
    assert_eq!(directory.names["ada"].as_deref(), Some("Ada"));

    // Forget Ada.
    let report = store.forget("ada").await.unwrap();
    assert!(report.key_deleted);
    assert_eq!(report.streams, [stream("ada"), stream("bob")], "Ada's data is in her stream and in Bob's referral");
    assert!(!store.forget("ada").await.unwrap().key_deleted);

    // Every event still loads; Ada's personal fields are `None`, even where
    // they sit in Bob's events (the referral); Bob's stay.
    let after = decoded(&store).await;
    assert_eq!(after.len(), 4);
    assert_eq!(
        after[0],
        CustomerEvent::Registered { customer_id: "ada".into(), plan: "basic".into(), name: None, address: None }
    );
    assert_eq!(after[1], registered("bob", "Bob"));
    assert_eq!(
        after[2],
        CustomerEvent::Referred {
            customer_id: "bob".into(),
            referrer_id: "ada".into(),
            referrer_email: None,
            email: Some("bob@example.com".into()),
        }
    );
    // The running subscription reads the next events with the key gone.
    let second = subscription.next().await.unwrap().unwrap();
    assert_eq!(second.decode::<CustomerEvent>().unwrap(), registered("bob", "Bob"));
    let third = subscription.next().await.unwrap().unwrap();
    assert!(matches!(third.decode::<CustomerEvent>().unwrap(), CustomerEvent::Referred { referrer_email: None, .. }));

    // Aggregates and projections rebuilt after the deletion load, with the
    // placeholder.
    let ada = app.load::<Customer>(&"ada".to_owned()).await.unwrap();
    assert_eq!((ada.version, ada.state.plan.as_str(), ada.state.name.as_deref()), (2, "pro", None));
    engine.rebuild(&mut directory, ProjectionOptions::default(), |_| {}).await.unwrap();
    assert_eq!(directory.seen, 4);
    assert_eq!(directory.names["ada"], None);
    assert_eq!(directory.names["bob"].as_deref(), Some("Bob"));

    // Ada's personal data is not written again under a fresh key: a typed
    // refusal, nothing stored, no key made.
    let refused =
        store.append(&stream("ada"), ExpectedVersion::Exact(2), vec![encode(&registered("ada", "Ada Again"))]).await;
    assert!(matches!(refused, Err(StoreError::SubjectForgotten { ref subject }) if subject == "ada"), "{refused:?}");
    assert_eq!(store.stream_version(&stream("ada")).await.unwrap(), Some(2));
    assert!(keys.key("ada").await.unwrap().is_none());
    // Events of hers without personal data still go in.
    let blank =
        CustomerEvent::Registered { customer_id: "ada".into(), plan: "basic".into(), name: None, address: None };
    store.append(&stream("ada"), ExpectedVersion::Exact(2), vec![encode(&blank)]).await.unwrap();

    // Re-admitted, she gets a new key: it encrypts new data and does not
    // open the old.
    assert!(store.readmit("ada").await.unwrap());
    store
        .append(&stream("ada"), ExpectedVersion::Exact(3), vec![encode(&registered("ada", "Ada Again"))])
        .await
        .unwrap();
    let again = decoded(&store).await;
    assert!(matches!(&again[0], CustomerEvent::Registered { name: None, .. }));
    assert!(matches!(&again[5], CustomerEvent::Registered { name: Some(name), .. } if name == "Ada Again"));
    assert!(keys.key("ada").await.unwrap().is_some());
}

#[tokio::test]
async fn personal_data_without_a_subject_or_tampered_ciphertext_is_a_typed_error() {
    let raw = InMemoryEventStore::new();
    let store = CryptoStore::new(raw.clone(), InMemoryKeyStore::new()).register::<CustomerEvent>();
    // A subject id of the wrong kind: refused, nothing stored.
    let mut event = encode(&registered("x", "X"));
    event.data = serde_json::value::RawValue::from_string(
        r#"{"customer_id":null,"plan":"basic","name":"X","address":null}"#.to_owned(),
    )
    .unwrap();
    let result = store.append(&stream("x"), ExpectedVersion::Any, vec![event]).await;
    assert!(matches!(&result, Err(StoreError::InvalidInput(m)) if m.contains("customer_id")), "{result:?}");
    assert_eq!(raw.head_position().await.unwrap(), None);

    // A flipped ciphertext is `Corrupt`, not a silent `None`.
    store.append(&stream("y"), ExpectedVersion::Any, vec![encode(&registered("y", "Y"))]).await.unwrap();
    let stored = raw.read_stream(&stream("y"), 1).next().await.unwrap().unwrap();
    let mut value: serde_json::Value = serde_json::from_str(stored.data.get()).unwrap();
    let data = value["name"][ENCRYPTED_MARKER]["data"].as_str().unwrap().to_owned();
    let flipped = if data.starts_with('A') { data.replacen('A', "B", 1) } else { format!("A{}", &data[1..]) };
    value["name"][ENCRYPTED_MARKER]["data"] = serde_json::Value::String(flipped);
    let tampered = NewEvent {
        id: orchestrix::Uuid::now_v7(),
        event_type: stored.event_type.clone(),
        schema_version: 1,
        data: serde_json::value::to_raw_value(&value).unwrap(),
        metadata: Metadata::default(),
    };
    raw.append(&stream("y"), ExpectedVersion::Exact(1), vec![tampered]).await.unwrap();
    let read: Vec<_> = store.read_stream(&stream("y"), 1).collect().await;
    assert!(read[0].is_ok());
    assert!(matches!(&read[1], Err(StoreError::Corrupt { version: 2, .. })), "{:?}", read[1]);
}

#[test]
fn stores_and_keys_never_print_key_material() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let keys = InMemoryKeyStore::new();
        let key = keys.key_or_create("ada").await.unwrap();
        let store = CryptoStore::new(InMemoryEventStore::new(), keys.clone()).register::<CustomerEvent>();
        let shown = format!("{key:?} {keys:?} {store:?} {:#?}", store.key_store());
        let material = key.material();
        for form in [format!("{material:?}"), format!("{:?}", material.as_slice()), hex(material)] {
            assert!(!shown.contains(&form), "key material shows in {shown}");
        }
        assert!(shown.contains("redacted") && shown.contains("CustomerRegistered"));
    });
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Consistency by query through a crypto store: the events are sealed, the
/// condition (on tags, which are never encrypted) means what it means on
/// the inner store, and reads by query come back in clear.
#[tokio::test]
async fn conditional_appends_seal_personal_fields_and_keep_their_condition() {
    use orchestrix::query::{AppendCondition, Query, QueryItem};
    let raw = InMemoryEventStore::new();
    let store = CryptoStore::new(raw.clone(), InMemoryKeyStore::new()).register::<CustomerEvent>();
    let query = Query::new([QueryItem::types(["CustomerRegistered"]).raw_tag("customer:ada")]);
    let tagged = |event: &CustomerEvent| NewEvent::encode(event, Metadata::default().with_tag("customer:ada")).unwrap();
    let part =
        |id: &str| StreamAppend::new(stream(id), ExpectedVersion::NoStream, vec![tagged(&registered("ada", "Ada"))]);

    let appended = store.append_if(AppendCondition::new(query.clone(), None), vec![part("ada")]).await.unwrap();
    assert_eq!(appended[0][0].decode::<CustomerEvent>().unwrap(), registered("ada", "Ada"));
    let filter = EventFilter::all();
    let stored: Vec<Arc<RecordedEvent>> = raw.read_all(0, &filter).map(Result::unwrap).collect().await;
    assert!(!stored[0].data.get().contains("Ada") && stored[0].data.get().contains(ENCRYPTED_MARKER));

    let error = store.append_if(AppendCondition::new(query.clone(), None), vec![part("ada-2")]).await.unwrap_err();
    assert!(matches!(error, StoreError::ConditionFailed { position: 1, after: None }), "{error:?}");
    let read: Vec<CustomerEvent> =
        store.read_by_query(&query, 0).map(|r| r.unwrap().decode::<CustomerEvent>().unwrap()).collect().await;
    assert_eq!(read, [registered("ada", "Ada")]);
    store.append_if(AppendCondition::new(query, Some(1)), vec![part("ada-2")]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crypto_store_passes_the_consistency_by_query_checks() {
    orchestrix::testing::conformance::consistency_by_query(|| async {
        CryptoStore::new(InMemoryEventStore::new(), InMemoryKeyStore::new()).register::<CustomerEvent>()
    })
    .await;
}

/// A projection that fails on every customer event.
#[derive(Debug, Default)]
pub struct Broken;

#[orchestrix::async_trait]
impl orchestrix::projection::Projection for Broken {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "broken".into()
    }
    fn filter(&self) -> EventFilter {
        EventFilter::types(["CustomerRegistered"])
    }
    async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), orchestrix::error::BoxError> {
        Err("down".into())
    }
}

/// Dead letters parked through `seal_dead_letters` hold the sealed form
/// (the inner store never sees the name), read back in clear through the
/// wrapper, and read back erased once the subject is forgotten, with no
/// clean-up configured; a letter parked after the forget gets `null`.
#[tokio::test]
async fn sealed_dead_letters_never_hold_plaintext() {
    use orchestrix::memory::InMemoryDeadLetterStore;
    use orchestrix::projection::PoisonPolicy;
    use orchestrix::store::DeadLetterStore;

    let store = CryptoStore::new(InMemoryEventStore::new(), InMemoryKeyStore::new()).register::<CustomerEvent>();
    let raw_letters = InMemoryDeadLetterStore::new();
    let letters = store.seal_dead_letters(raw_letters.clone());
    store.append(&stream("ada"), ExpectedVersion::NoStream, vec![encode(&registered("ada", "Ada"))]).await.unwrap();
    let engine =
        ProjectionEngine::new(store.clone(), InMemoryCheckpointStore::new()).with_dead_letters(letters.clone());
    let options = ProjectionOptions::default()
        .poison(PoisonPolicy::Park)
        .retry(orchestrix::retry::RetryPolicy::fixed(1, std::time::Duration::ZERO));
    engine.rebuild(&mut Broken, options, |_| {}).await.unwrap();

    let raw = raw_letters.list(None).await.unwrap();
    assert_eq!(raw.len(), 1);
    assert!(!raw[0].event.data.get().contains("Ada") && raw[0].event.data.get().contains(ENCRYPTED_MARKER));
    let opened = letters.get(raw[0].id).await.unwrap().unwrap();
    assert_eq!(opened.event.decode::<CustomerEvent>().unwrap(), registered("ada", "Ada"));

    store.forget("ada").await.unwrap();
    let erased = letters.list(Some("broken")).await.unwrap();
    assert!(matches!(
        erased[0].event.decode::<CustomerEvent>().unwrap(),
        CustomerEvent::Registered { name: None, address: None, .. }
    ));
    // Parked after the forget (a decrypted copy read before it): `null`.
    letters.park(orchestrix::store::DeadLetter { id: orchestrix::Uuid::now_v7(), ..opened }).await.unwrap();
    let late = raw_letters.list(None).await.unwrap();
    assert!(late.iter().all(|letter| !letter.event.data.get().contains("Ada")), "{late:?}");
    assert!(letters.remove(raw[0].id).await.unwrap());
}

/// An application declares the personal fields of its aggregates' events
/// to its event store at build: a `CryptoStore` on which nothing was
/// registered, alone or under a tenant view, encrypts them, records the
/// subject's stream, and forgets it. Marking a field personal is enough.
#[tokio::test]
async fn an_application_declares_its_personal_fields_to_the_store() {
    use orchestrix::{app::CommandOptions, decision::Decision, tenant::TenantStore};
    for tenant in [None, Some("acme")] {
        let crypto = CryptoStore::new(InMemoryEventStore::new(), InMemoryKeyStore::new());
        assert!(crypto.personal_fields("CustomerRegistered").is_none(), "nothing registered");
        let events: Arc<dyn EventStore> = match tenant {
            None => Arc::new(crypto.clone()),
            Some(tenant) => Arc::new(TenantStore::new(crypto.clone(), tenant).unwrap()),
        };
        let app = Orchestrix::builder().event_store(events).aggregate::<Customer>().build().unwrap();
        assert!(crypto.personal_fields("CustomerRegistered").is_some(), "declared at build");
        let id = "c-9".to_owned();
        let decision =
            Decision::new().append::<Customer>(&id, ExpectedVersion::NoStream, [registered(&id, "Ida Lovelace")]);
        app.append_many(decision, CommandOptions::default()).await.unwrap();

        let raw: Vec<Arc<RecordedEvent>> =
            crypto.inner().read_all(0, &EventFilter::all()).map(Result::unwrap).collect().await;
        assert!(!raw[0].data.get().contains("Ida Lovelace"), "{tenant:?}: stored encrypted");
        assert!(raw[0].data.get().contains(ENCRYPTED_MARKER));
        assert_eq!(app.load::<Customer>(&id).await.unwrap().state.name.as_deref(), Some("Ida Lovelace"));

        let report = crypto.forget(&id).await.unwrap();
        assert!(report.key_deleted, "{tenant:?}: {report:?}");
        assert_eq!(report.streams.len(), 1, "{tenant:?}: the stream was recorded: {report:?}");
        assert_eq!(app.load::<Customer>(&id).await.unwrap().state.name, None);
    }
}
