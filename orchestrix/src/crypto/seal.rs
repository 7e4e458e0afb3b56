//! The encrypted form of one personal value, and the walks that seal the
//! personal fields of an event's JSON object and open them again.

use std::collections::{BTreeSet, HashMap};

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::ENCRYPTED_MARKER;
use crate::error::StoreError;
use crate::personal::{DataKey, PersonalField};
use crate::store::KeyStore;
use crate::stream::truncate_for_message;

/// The associated data that binds a ciphertext to its place. `field` is the
/// field's path from the event's top level (`email`, or `data.email` in a
/// saga's data).
fn associated_data(event_type: &str, field: &str, subject: &str, key: Uuid) -> Vec<u8> {
    format!("orchestrix-personal-v1\0{event_type}\0{field}\0{subject}\0{key}").into_bytes()
}

/// Encrypts one field's JSON value into its stored form.
pub(super) fn seal(
    key: &DataKey,
    event_type: &str,
    field: &str,
    subject: &str,
    value: &Value,
) -> Result<Value, StoreError> {
    let plaintext = Zeroizing::new(serde_json::to_vec(value).map_err(|e| StoreError::InvalidInput(e.to_string()))?);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = associated_data(event_type, field, subject, key.id());
    let ciphertext = key
        .cipher()
        .encrypt(&nonce, Payload { msg: &plaintext, aad: &aad })
        .map_err(|_| StoreError::InvalidInput(format!("field `{field}` of `{event_type}` could not be encrypted")))?;
    let mut sealed = Map::new();
    sealed.insert("key".to_owned(), Value::String(key.id().to_string()));
    sealed.insert("subject".to_owned(), Value::String(subject.to_owned()));
    sealed.insert("nonce".to_owned(), Value::String(BASE64.encode(nonce)));
    sealed.insert("data".to_owned(), Value::String(BASE64.encode(ciphertext)));
    let mut outer = Map::new();
    outer.insert(ENCRYPTED_MARKER.to_owned(), Value::Object(sealed));
    Ok(Value::Object(outer))
}

/// The parts of a stored encrypted value.
pub(super) struct Sealed {
    pub(super) key: Uuid,
    pub(super) subject: String,
    nonce: Vec<u8>,
    pub(super) data: Vec<u8>,
}

impl Sealed {
    /// `Some` if `value` is an encrypted value; `Some(Err)` if it claims to
    /// be one but is malformed.
    pub(super) fn parse(value: &Value) -> Option<Result<Self, String>> {
        let sealed = value.as_object().filter(|o| o.len() == 1)?.get(ENCRYPTED_MARKER)?;
        let text = |name: &str| sealed.get(name).and_then(Value::as_str).ok_or_else(|| format!("no `{name}`"));
        let parse = || -> Result<Self, String> {
            Ok(Self {
                key: text("key")?.parse().map_err(|e| format!("bad key id: {e}"))?,
                subject: text("subject")?.to_owned(),
                nonce: BASE64.decode(text("nonce")?).map_err(|e| format!("bad nonce: {e}"))?,
                data: BASE64.decode(text("data")?).map_err(|e| format!("bad data: {e}"))?,
            })
        };
        Some(parse())
    }

    pub(super) fn open(&self, key: &DataKey, event_type: &str, field: &str) -> Result<Value, String> {
        if self.nonce.len() != 12 {
            return Err(format!("the nonce has {} bytes, not 12", self.nonce.len()));
        }
        let aad = associated_data(event_type, field, &self.subject, self.key);
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(Nonce::from_slice(&self.nonce), Payload { msg: &self.data, aad: &aad })
                .map_err(|_| "the ciphertext does not authenticate under its key".to_owned())?,
        );
        serde_json::from_slice(&plaintext).map_err(|e| format!("the plaintext is not JSON: {e}"))
    }
}

/// The subject id in `object`'s field `name`: a string, or a number or
/// boolean as text.
pub(super) fn subject_of(object: &Map<String, Value>, name: &str, event_type: &str) -> Result<String, StoreError> {
    match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        other => Err(StoreError::InvalidInput(format!(
            "`{event_type}` holds personal data of the subject in field `{name}`, but that field is {}: \
             personal data needs a subject (a non-empty string or a number)",
            match other {
                None => "missing".to_owned(),
                Some(value) => format!("`{}`", truncate_for_message(&value.to_string())),
            }
        ))),
    }
}

/// Why personal fields are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SealMode {
    /// An append: a forgotten subject is refused
    /// ([`StoreError::SubjectForgotten`]).
    Append,
    /// A dead letter parked: a forgotten subject's value becomes `null`,
    /// and values sealed already stay as they are.
    Park,
}

/// Seals the personal `fields` of `object` (found at `path`, `""` for the
/// event's top level) with the subjects' keys, creating keys as needed;
/// adds each subject it sealed for to `subjects`. A forgotten subject is
/// treated as `mode` says.
pub(super) async fn seal_fields(
    keys: &dyn KeyStore,
    object: &mut Map<String, Value>,
    fields: &[PersonalField],
    (event_type, path): (&str, &str),
    mode: SealMode,
    subjects: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let mut cache: HashMap<String, DataKey> = HashMap::new();
    for field in fields {
        let Some(value) = object.get(field.name).filter(|value| !value.is_null()) else { continue };
        if mode == SealMode::Park && Sealed::parse(value).is_some() {
            continue;
        }
        let subject = subject_of(object, field.subject, event_type)?;
        let key = if let Some(key) = cache.get(&subject) {
            key.clone()
        } else {
            let key = match keys.key_or_create(&subject).await {
                Err(StoreError::SubjectForgotten { .. }) if mode == SealMode::Park => {
                    object.insert(field.name.to_owned(), Value::Null);
                    continue;
                }
                other => other?,
            };
            cache.insert(subject.clone(), key.clone());
            key
        };
        let value = object.get(field.name).unwrap_or(&Value::Null);
        let sealed = seal(&key, event_type, &format!("{path}{}", field.name), &subject, value)?;
        object.insert(field.name.to_owned(), sealed);
        subjects.insert(subject);
    }
    Ok(())
}

/// Opens every encrypted value in `object` (and in the objects nested in
/// it, as a saga's data is), at `path`; a value whose key is gone becomes
/// `null`, the documented erased marker. Returns whether anything changed;
/// an encrypted value that does not open is `Err((field path, reason))`.
pub(super) fn open_fields<'a>(
    keys: &'a dyn KeyStore,
    object: &'a mut Map<String, Value>,
    event_type: &'a str,
    path: String,
    seen: &'a mut HashMap<String, Option<DataKey>>,
) -> futures_util::future::BoxFuture<'a, Result<bool, OpenError>> {
    Box::pin(async move {
        let mut changed = false;
        for (name, value) in object.iter_mut() {
            let field = format!("{path}{name}");
            match Sealed::parse(value) {
                Some(sealed) => {
                    let sealed = sealed.map_err(|reason| OpenError::Corrupt(field.clone(), reason))?;
                    let key = if let Some(key) = seen.get(&sealed.subject) {
                        key.clone()
                    } else {
                        let key = keys.key(&sealed.subject).await.map_err(OpenError::Store)?;
                        seen.insert(sealed.subject.clone(), key.clone());
                        key
                    };
                    *value = match key {
                        Some(key) if key.id() == sealed.key => {
                            sealed.open(&key, event_type, &field).map_err(|reason| OpenError::Corrupt(field, reason))?
                        }
                        // The subject was forgotten (or its key replaced):
                        // the documented placeholder.
                        _ => Value::Null,
                    };
                    changed = true;
                }
                None => {
                    if let Value::Object(inner) = value {
                        changed |= open_fields(keys, inner, event_type, format!("{field}."), seen).await?;
                    }
                }
            }
        }
        Ok(changed)
    })
}

/// Why an event's encrypted values did not open.
pub(super) enum OpenError {
    /// The key store failed.
    Store(StoreError),
    /// A value at this field path is malformed or does not authenticate.
    Corrupt(String, String),
}

/// Replaces with `null` every personal field of `object` whose subject is
/// `subject`, in clear or encrypted, and every encrypted value anywhere in
/// it that names `subject`; the values in clear it removed go to
/// `removed`. Returns whether anything changed.
pub(super) fn erase_subject(
    object: &mut Map<String, Value>,
    fields: &[PersonalField],
    subject: &str,
    removed: &mut Vec<Value>,
) -> bool {
    let mut changed = false;
    for field in fields {
        let belongs = object.get(field.subject).is_some_and(|value| match value {
            Value::String(s) => s == subject,
            Value::Number(n) => n.to_string() == subject,
            Value::Bool(b) => b.to_string() == subject,
            _ => false,
        });
        if belongs && object.get(field.name).is_some_and(|v| !v.is_null()) {
            if let Some(value) = object.insert(field.name.to_owned(), Value::Null) {
                if Sealed::parse(&value).is_none() {
                    removed.push(value);
                }
            }
            changed = true;
        }
    }
    for value in object.values_mut() {
        if let Some(Ok(sealed)) = Sealed::parse(value) {
            if sealed.subject == subject {
                *value = Value::Null;
                changed = true;
            }
        } else if let Value::Object(inner) = value {
            changed |= erase_subject(inner, &[], subject, removed);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let key = DataKey::generate();
        let value = serde_json::json!({"street": "1 Main St", "zip": 12345});
        let sealed = seal(&key, "Registered", "address", "c-1", &value).unwrap();
        assert!(!sealed.to_string().contains("Main St"));
        let parsed = Sealed::parse(&sealed).unwrap().unwrap();
        assert_eq!(parsed.open(&key, "Registered", "address").unwrap(), value);
        assert!(parsed.open(&key, "Registered", "email").is_err(), "moved to another field");
        assert!(parsed.open(&key, "Registered", "data.address").is_err(), "moved into a nested object");
        assert!(parsed.open(&key, "Moved", "address").is_err(), "moved to another event type");
        assert!(parsed.open(&DataKey::generate(), "Registered", "address").is_err(), "another key");
        let mut tampered = Sealed::parse(&sealed).unwrap().unwrap();
        tampered.subject = "c-2".to_owned();
        assert!(tampered.open(&key, "Registered", "address").is_err(), "another subject");
        let mut flipped = Sealed::parse(&sealed).unwrap().unwrap();
        flipped.data[0] ^= 1;
        assert!(flipped.open(&key, "Registered", "address").is_err(), "a flipped bit");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = DataKey::generate();
        let value = Value::String("ada@example.com".to_owned());
        assert_ne!(seal(&key, "T", "f", "s", &value).unwrap(), seal(&key, "T", "f", "s", &value).unwrap());
    }

    #[test]
    fn erasing_a_subject_nulls_its_fields_in_clear_and_sealed_and_keeps_the_others() {
        let key = DataKey::generate();
        let sealed = seal(&key, "T", "data.email", "c-1", &Value::String("a@x".into())).unwrap();
        let mut object: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "customer_id": "c-1", "email": "a@x", "referrer_id": "c-2", "referrer_email": "b@x",
            "data": {"email": sealed, "plan": "basic"}
        }))
        .unwrap();
        let fields = [
            PersonalField { name: "email", subject: "customer_id" },
            PersonalField { name: "referrer_email", subject: "referrer_id" },
        ];
        let mut removed = Vec::new();
        assert!(erase_subject(&mut object, &fields, "c-1", &mut removed));
        assert_eq!(removed, [Value::String("a@x".into())], "the sealed value is not plaintext");
        assert_eq!(
            Value::Object(object.clone()),
            serde_json::json!({
                "customer_id": "c-1", "email": null, "referrer_id": "c-2", "referrer_email": "b@x",
                "data": {"email": null, "plan": "basic"}
            })
        );
        assert!(!erase_subject(&mut object, &fields, "c-1", &mut removed), "a second erasure changes nothing");
    }
}
