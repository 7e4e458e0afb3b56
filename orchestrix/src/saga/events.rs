//! The events a saga instance records about itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::error::DecodeErrorKind;
use crate::event::{decode_versioned, encode_raw, Event, EventType};

/// An instance started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStarted {
    /// The saga kind ([`super::Saga::NAME`]).
    pub saga: String,
    /// The instance's data, as JSON.
    pub data: Value,
    /// The correlation id every command of the instance carries: the
    /// starting event's correlation id, or its id when it has none.
    pub correlation_id: Uuid,
    /// The id of the event that started the instance.
    pub trigger: Uuid,
    /// The names of the steps, in order, as defined when the instance started.
    pub steps: Vec<String>,
    /// The tenant of the starting event, passed on to every command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The W3C `traceparent` of the starting event, passed on to every
    /// command, so that one trace follows the saga's commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A step's action is about to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepStarted {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// The id its command carries (command id and causation id).
    pub step_id: Uuid,
}

impl SagaStepStarted {
    /// Step `step`, named `name`, whose command carries `step_id`.
    pub fn new(step: usize, name: impl Into<String>, step_id: Uuid) -> Self {
        Self { step, name: name.into(), step_id }
    }
}

/// A step's action took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepCompleted {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
}

/// A step's action failed for good (refused, or timed out without
/// effect): the instance compensates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepFailed {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// Why, with the error's sources.
    pub error: String,
    /// Whether the step ran out of time.
    #[serde(default)]
    pub timed_out: bool,
}

impl SagaStepFailed {
    /// Step `step`, named `name`, failed with `error` (out of time if
    /// `timed_out`).
    pub fn new(step: usize, name: impl Into<String>, error: impl Into<String>, timed_out: bool) -> Self {
        Self { step, name: name.into(), error: error.into(), timed_out }
    }
}

/// A completed step's compensation is about to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaCompensationStarted {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// The id the compensation's command carries.
    pub step_id: Uuid,
}

/// A step's compensation took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepCompensated {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
}

/// Every step completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaCompleted {}

/// The instance ended without completing: a step failed, and either every
/// compensation ran or one of them failed too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaFailed {
    /// Why the instance failed: the failing step's error.
    pub error: String,
    /// The index of the step whose compensation failed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_compensation: Option<usize>,
    /// The compensation's error, if one failed: the instance then needs a
    /// human, as the completed steps before it were not undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_error: Option<String>,
}

/// What a step's decision hook (or a wait's outcome) decided, when it did
/// not run the step's action (ADR 0038).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DecidedAs {
    /// The step was skipped: the saga goes on with the next one.
    Skip,
    /// The step was deferred until [`SagaStepDecided::until`].
    Retry,
    /// The saga completes now; the steps after this one do not run.
    Finish,
}

/// A step's hook (or a wait's outcome) decided not to run the step now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepDecided {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// What was decided.
    pub decision: DecidedAs,
    /// For [`DecidedAs::Retry`]: when the step is decided again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Why, if the hook said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SagaStepDecided {
    /// Step `step`, named `name`, decided as `decision` (until `until`
    /// for a retry), for `reason` if one was given.
    pub fn new(
        step: usize,
        name: impl Into<String>,
        decision: DecidedAs,
        until: Option<DateTime<Utc>>,
        reason: Option<String>,
    ) -> Self {
        Self { step, name: name.into(), decision, until, reason }
    }
}

/// An attempt of a step that has a decision hook was refused: the hook
/// decides what comes next (retry, give up, skip, finish).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepAttemptFailed {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// Why, with the error's sources.
    pub error: String,
    /// Whether the attempt ran out of time.
    #[serde(default)]
    pub timed_out: bool,
}

impl SagaStepAttemptFailed {
    /// An attempt of step `step`, named `name`, failed with `error` (out of
    /// time if `timed_out`).
    pub fn new(step: usize, name: impl Into<String>, error: impl Into<String>, timed_out: bool) -> Self {
        Self { step, name: name.into(), error: error.into(), timed_out }
    }
}

/// A waiting step began to wait for an event, until a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaStepWaiting {
    /// The step's index.
    pub step: usize,
    /// The step's name.
    pub name: String,
    /// The stored type of the awaited event.
    pub event_type: String,
    /// The stream the awaited event is looked for in.
    pub stream: String,
    /// When the wait ends without the event, if it is bounded: absolute,
    /// so that it survives restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

impl SagaStepWaiting {
    /// Step `step`, named `name`, waits for an event of `event_type` in
    /// `stream`, until `deadline` if bounded.
    pub fn new(
        step: usize,
        name: impl Into<String>,
        event_type: impl Into<String>,
        stream: impl Into<String>,
        deadline: Option<DateTime<Utc>>,
    ) -> Self {
        Self { step, name: name.into(), event_type: event_type.into(), stream: stream.into(), deadline }
    }
}

/// Everything a saga instance records about itself.
///
/// Each variant is stored under its own type name (`SagaStarted`, …),
/// schema version 1, with the payload's fields as tag-free JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SagaEvent {
    /// `SagaStarted`.
    Started(SagaStarted),
    /// `SagaStepStarted`.
    StepStarted(SagaStepStarted),
    /// `SagaStepCompleted`.
    StepCompleted(SagaStepCompleted),
    /// `SagaStepFailed`.
    StepFailed(SagaStepFailed),
    /// `SagaCompensationStarted`.
    CompensationStarted(SagaCompensationStarted),
    /// `SagaStepCompensated`.
    StepCompensated(SagaStepCompensated),
    /// `SagaCompleted`.
    Completed(SagaCompleted),
    /// `SagaFailed`.
    Failed(SagaFailed),
    /// `SagaStepDecided`.
    StepDecided(SagaStepDecided),
    /// `SagaStepAttemptFailed`.
    StepAttemptFailed(SagaStepAttemptFailed),
    /// `SagaStepWaiting`.
    StepWaiting(SagaStepWaiting),
}

pub(crate) const STARTED: &str = "SagaStarted";
pub(crate) const STEP_STARTED: &str = "SagaStepStarted";
pub(crate) const STEP_COMPLETED: &str = "SagaStepCompleted";
pub(crate) const STEP_FAILED: &str = "SagaStepFailed";
pub(crate) const COMPENSATION_STARTED: &str = "SagaCompensationStarted";
pub(crate) const STEP_COMPENSATED: &str = "SagaStepCompensated";
pub(crate) const COMPLETED: &str = "SagaCompleted";
pub(crate) const FAILED: &str = "SagaFailed";
pub(crate) const STEP_DECIDED: &str = "SagaStepDecided";
pub(crate) const STEP_ATTEMPT_FAILED: &str = "SagaStepAttemptFailed";
pub(crate) const STEP_WAITING: &str = "SagaStepWaiting";

static TYPES: [EventType; 11] = [
    EventType { name: STARTED, version: 1 },
    EventType { name: STEP_STARTED, version: 1 },
    EventType { name: STEP_COMPLETED, version: 1 },
    EventType { name: STEP_FAILED, version: 1 },
    EventType { name: COMPENSATION_STARTED, version: 1 },
    EventType { name: STEP_COMPENSATED, version: 1 },
    EventType { name: COMPLETED, version: 1 },
    EventType { name: FAILED, version: 1 },
    EventType { name: STEP_DECIDED, version: 1 },
    EventType { name: STEP_ATTEMPT_FAILED, version: 1 },
    EventType { name: STEP_WAITING, version: 1 },
];

impl Event for SagaEvent {
    fn event_types() -> &'static [EventType] {
        &TYPES
    }

    fn event_type(&self) -> &'static str {
        match self {
            Self::Started(_) => STARTED,
            Self::StepStarted(_) => STEP_STARTED,
            Self::StepCompleted(_) => STEP_COMPLETED,
            Self::StepFailed(_) => STEP_FAILED,
            Self::CompensationStarted(_) => COMPENSATION_STARTED,
            Self::StepCompensated(_) => STEP_COMPENSATED,
            Self::Completed(_) => COMPLETED,
            Self::Failed(_) => FAILED,
            Self::StepDecided(_) => STEP_DECIDED,
            Self::StepAttemptFailed(_) => STEP_ATTEMPT_FAILED,
            Self::StepWaiting(_) => STEP_WAITING,
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Box<RawValue>, serde_json::Error> {
        match self {
            Self::Started(e) => encode_raw(e),
            Self::StepStarted(e) => encode_raw(e),
            Self::StepCompleted(e) => encode_raw(e),
            Self::StepFailed(e) => encode_raw(e),
            Self::CompensationStarted(e) => encode_raw(e),
            Self::StepCompensated(e) => encode_raw(e),
            Self::Completed(e) => encode_raw(e),
            Self::Failed(e) => encode_raw(e),
            Self::StepDecided(e) => encode_raw(e),
            Self::StepAttemptFailed(e) => encode_raw(e),
            Self::StepWaiting(e) => encode_raw(e),
        }
    }

    fn decode(event_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, DecodeErrorKind> {
        match event_type {
            STARTED => decode_versioned(data, schema_version, 1, &[]).map(Self::Started),
            STEP_STARTED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepStarted),
            STEP_COMPLETED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepCompleted),
            STEP_FAILED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepFailed),
            COMPENSATION_STARTED => decode_versioned(data, schema_version, 1, &[]).map(Self::CompensationStarted),
            STEP_COMPENSATED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepCompensated),
            COMPLETED => decode_versioned(data, schema_version, 1, &[]).map(Self::Completed),
            FAILED => decode_versioned(data, schema_version, 1, &[]).map(Self::Failed),
            STEP_DECIDED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepDecided),
            STEP_ATTEMPT_FAILED => decode_versioned(data, schema_version, 1, &[]).map(Self::StepAttemptFailed),
            STEP_WAITING => decode_versioned(data, schema_version, 1, &[]).map(Self::StepWaiting),
            _ => Err(DecodeErrorKind::UnknownType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_under_its_own_type_name() {
        let events = [
            SagaEvent::Started(SagaStarted {
                saga: "Transfer".into(),
                data: serde_json::json!({"amount": 3}),
                correlation_id: Uuid::nil(),
                trigger: Uuid::max(),
                steps: vec!["debit".into(), "credit".into()],
                tenant: None,
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            }),
            SagaEvent::StepStarted(SagaStepStarted { step: 0, name: "debit".into(), step_id: Uuid::nil() }),
            SagaEvent::StepCompleted(SagaStepCompleted { step: 0, name: "debit".into() }),
            SagaEvent::StepFailed(SagaStepFailed {
                step: 1,
                name: "credit".into(),
                error: "closed".into(),
                timed_out: false,
            }),
            SagaEvent::CompensationStarted(SagaCompensationStarted {
                step: 0,
                name: "debit".into(),
                step_id: Uuid::max(),
            }),
            SagaEvent::StepCompensated(SagaStepCompensated { step: 0, name: "debit".into() }),
            SagaEvent::Completed(SagaCompleted {}),
            SagaEvent::Failed(SagaFailed {
                error: "closed".into(),
                failed_compensation: None,
                compensation_error: None,
            }),
            SagaEvent::StepDecided(SagaStepDecided {
                step: 1,
                name: "credit".into(),
                decision: DecidedAs::Retry,
                until: Some(DateTime::UNIX_EPOCH),
                reason: Some("later".into()),
            }),
            SagaEvent::StepAttemptFailed(SagaStepAttemptFailed {
                step: 1,
                name: "credit".into(),
                error: "declined".into(),
                timed_out: false,
            }),
            SagaEvent::StepWaiting(SagaStepWaiting {
                step: 1,
                name: "paid".into(),
                event_type: "InvoicePaid".into(),
                stream: "Invoice/1".into(),
                deadline: None,
            }),
        ];
        for (event, expected) in events.iter().zip(&TYPES) {
            assert_eq!(event.event_type(), expected.name);
            let data = event.encode().unwrap();
            assert!(data.get().starts_with('{'), "tag-free object: {}", data.get());
            let back = SagaEvent::decode(event.event_type(), 1, &data).unwrap();
            assert_eq!(&back, event);
        }
        assert_eq!(SagaEvent::Completed(SagaCompleted {}).encode().unwrap().get(), "{}");
        assert_eq!(events.len(), TYPES.len());
        assert!(matches!(
            SagaEvent::decode("Other", 1, &RawValue::from_string("{}".into()).unwrap()),
            Err(DecodeErrorKind::UnknownType)
        ));
    }

    /// Streams written before ADR 0038 hold the eight old types with the
    /// same payloads: they decode unchanged.
    #[test]
    fn old_payloads_still_decode() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let started = raw(
            r#"{"saga":"T","data":{"a":1},"correlation_id":"00000000-0000-0000-0000-000000000000","trigger":"00000000-0000-0000-0000-000000000000","steps":["a"]}"#,
        );
        assert!(matches!(SagaEvent::decode(STARTED, 1, &started), Ok(SagaEvent::Started(_))));
        let failed = raw(r#"{"step":0,"name":"a","error":"no"}"#);
        assert!(matches!(SagaEvent::decode(STEP_FAILED, 1, &failed), Ok(SagaEvent::StepFailed(f)) if !f.timed_out));
        assert!(matches!(SagaEvent::decode(COMPLETED, 1, &raw("{}")), Ok(SagaEvent::Completed(_))));
    }
}
