//! Looking at sealed values without opening them: which subject and key
//! each belongs to, for checks such as `orchestrix verify` (ADR 0051).

use serde_json::Value;
use uuid::Uuid;

use super::seal::Sealed;

/// A personal value stored encrypted, as found in an event's data by
/// [`sealed_values`]: where it is, whose it is and under which key. The
/// ciphertext is not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealedValue {
    /// The field's path from the event's top level (`email`, or
    /// `data.email` in a saga's data).
    pub path: String,
    /// The data subject it belongs to.
    pub subject: String,
    /// The id of the key it was sealed with.
    pub key: Uuid,
}

/// Why [`sealed_values`] could not read an event's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealedValueError {
    /// The data is not JSON.
    #[error("the data is not JSON: {0}")]
    NotJson(String),
    /// A value marked as encrypted is malformed.
    #[error("the encrypted value at `{path}` is malformed: {reason}")]
    Malformed {
        /// The field's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Every encrypted personal value in an event's stored `data` (JSON text),
/// at any depth, in document order, without opening any.
///
/// ```
/// use orchestrix::crypto::sealed_values;
///
/// let data = r#"{"customer_id":"c-1","email":{"$orchestrix.encrypted":{
///     "key":"0190a5a4-0000-7000-8000-000000000001","subject":"c-1","nonce":"AAAAAAAAAAAAAAAA","data":"AA=="}}}"#;
/// let found = sealed_values(data)?;
/// assert_eq!((found[0].path.as_str(), found[0].subject.as_str()), ("email", "c-1"));
/// assert!(sealed_values(r#"{"plain":true}"#)?.is_empty());
/// # Ok::<(), orchestrix::crypto::SealedValueError>(())
/// ```
pub fn sealed_values(data: &str) -> Result<Vec<SealedValue>, SealedValueError> {
    let value: Value = serde_json::from_str(data).map_err(|e| SealedValueError::NotJson(e.to_string()))?;
    let mut found = Vec::new();
    walk(&value, "", &mut found)?;
    Ok(found)
}

fn walk(value: &Value, path: &str, found: &mut Vec<SealedValue>) -> Result<(), SealedValueError> {
    match Sealed::parse(value) {
        Some(Ok(sealed)) => {
            found.push(SealedValue { path: path.to_owned(), subject: sealed.subject, key: sealed.key });
        }
        Some(Err(reason)) => return Err(SealedValueError::Malformed { path: path.to_owned(), reason }),
        None => match value {
            Value::Object(object) => {
                for (name, inner) in object {
                    let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    walk(inner, &path, found)?;
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, &format!("{path}[{i}]"), found)?;
                }
            }
            _ => {}
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::DataKey;

    #[test]
    fn sealed_values_are_found_at_any_depth_and_malformed_ones_reported() {
        let key = DataKey::generate();
        let email = super::super::seal::seal(&key, "T", "email", "c-1", &Value::String("a@x".into())).unwrap();
        let nested = super::super::seal::seal(&key, "T", "data.name", "c-2", &Value::String("Ada".into())).unwrap();
        let data = serde_json::json!({"email": email, "data": {"name": nested, "plan": "basic"}, "n": 1}).to_string();
        let found = sealed_values(&data).unwrap();
        let seen: Vec<(&str, &str)> = found.iter().map(|v| (v.path.as_str(), v.subject.as_str())).collect();
        assert_eq!(seen, [("data.name", "c-2"), ("email", "c-1")]);
        assert!(found.iter().all(|v| v.key == key.id()));
        let broken = r#"{"email":{"$orchestrix.encrypted":{"key":"not-a-uuid","subject":"c-1","nonce":"","data":""}}}"#;
        assert!(matches!(sealed_values(broken), Err(SealedValueError::Malformed { path, .. }) if path == "email"));
        assert!(matches!(sealed_values("not json"), Err(SealedValueError::NotJson(_))));
    }
}
