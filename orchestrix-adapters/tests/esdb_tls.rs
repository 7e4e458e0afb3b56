//! HTTPS (feature `eventsourcingdb-tls`): the adapter against the test
//! server served over TLS with a self-signed certificate, trusted through a
//! root certificate on the configuration.

#![cfg(feature = "eventsourcingdb-tls")]

use futures_util::TryStreamExt;
use orchestrix::{
    envelope::NewEvent,
    store::{EventStore, ExpectedVersion},
    StoreError, StreamId,
};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbError, EsdbStore};
use orchestrix_esdb_test_server::{TestServer, TestServerOptions};
use serde_json::value::RawValue;

mod esdb_support;

esdb_support::for_both_apis!(the_adapter_speaks_https_to_a_server_whose_root_it_is_given);

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

async fn the_adapter_speaks_https_to_a_server_whose_root_it_is_given(options: TestServerOptions) {
    let (cert, key) = self_signed();
    let server = TestServer::start_tls(options, &cert, &key).await.unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"), "{}", server.url());

    let config = EsdbConfig::new(server.url(), server.token()).with_root_certificate_pem(cert.as_bytes());
    let store = EsdbStore::connect(config).await.unwrap();
    let stream = StreamId::new("Account", "1").unwrap();
    let event = NewEvent::new("AccountOpened", 1, RawValue::from_string(r#"{"owner":"Ada"}"#.into()).unwrap());
    store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
    let events: Vec<_> = store.read_stream(&stream, 1).try_collect().await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.get(), r#"{"owner":"Ada"}"#);
    assert_eq!(server.len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_connection_error() {
    let (cert, key) = self_signed();
    let server = TestServer::start_tls(TestServerOptions::default(), &cert, &key).await.unwrap();
    // Trusting another self-signed certificate does not help.
    let (other, _) = self_signed();
    for config in [
        EsdbConfig::new(server.url(), server.token()),
        EsdbConfig::new(server.url(), server.token()).with_root_certificate_pem(other),
    ] {
        let error = EsdbStore::connect(config).await.unwrap_err();
        let StoreError::Unavailable(source) = &error else { panic!("expected Unavailable, got {error:?}") };
        match source.downcast_ref::<EsdbError>() {
            Some(EsdbError::Connection { reason, .. }) => {
                assert!(reason.to_lowercase().contains("certificate"), "{reason}");
            }
            other => panic!("expected a connection error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_root_certificate_that_is_not_pem_is_invalid_input() {
    for pem in ["not a certificate", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"] {
        let config = EsdbConfig::new("https://127.0.0.1:1", "secret").with_root_certificate_pem(pem);
        let error = EsdbStore::connect(config).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::InvalidInput(message) if message.contains("root certificate")),
            "{error:?}"
        );
    }
}
