//! Forgetting a data subject: the key, the cached aggregates, the
//! snapshots, the dead letters and the read models' hooks (ADR 0031).

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{seal, CryptoStore, ERASURE_POLL_INTERVAL, SAGA_STARTED};
use crate::envelope::RecordedEvent;
use crate::error::{BoxError, StoreError};
use crate::store::DeadLetter;
use crate::stream::StreamId;

/// What replaces an erased value quoted in a dead letter's error text.
pub const ERASED_IN_TEXT: &str = "<erased>";

/// What a read model does when a data subject is forgotten: erase its own
/// copy of the subject's personal data. Give it to
/// [`CryptoStore::on_forget`].
///
/// It must be idempotent: `forget` may run again for one subject (after an
/// error, or to clean up a process that wrote late).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use orchestrix::crypto::ErasureHook;
/// use orchestrix::error::BoxError;
/// use orchestrix::StreamId;
///
/// /// A read model of e-mail addresses per customer.
/// #[derive(Debug, Default)]
/// struct Mailing { emails: Mutex<Vec<(String, String)>> }
///
/// #[orchestrix::async_trait]
/// impl ErasureHook for Mailing {
///     fn name(&self) -> std::borrow::Cow<'static, str> { "mailing".into() }
///     async fn erase(&self, subject: &str, _streams: &[StreamId]) -> Result<(), BoxError> {
///         self.emails.lock().unwrap().retain(|(customer, _)| customer != subject);
///         Ok(())
///     }
/// }
/// # let _ = Arc::new(Mailing::default());
/// ```
#[async_trait]
pub trait ErasureHook: Send + Sync + Debug + 'static {
    /// The hook's name, for the [`ErasureReport`].
    fn name(&self) -> Cow<'static, str>;

    /// Erases `subject`'s personal data; `streams` are the streams that
    /// hold it (as the key store recorded them).
    async fn erase(&self, subject: &str, streams: &[StreamId]) -> Result<(), BoxError>;
}

/// What [`CryptoStore::forget`] erased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErasureReport {
    /// The subject forgotten.
    pub subject: String,
    /// Whether it had a key (false when it was forgotten already, or never
    /// had personal data).
    pub key_deleted: bool,
    /// The streams that hold its personal data, as recorded on append:
    /// their personal fields of the subject read back as `null` now.
    pub streams: Vec<StreamId>,
    /// The streams whose snapshots were deleted, in every snapshot store
    /// given with [`CryptoStore::erase_snapshots_in`].
    pub snapshots_deleted: Vec<StreamId>,
    /// The dead letters whose personal fields of the subject were set to
    /// `null`.
    pub dead_letters_erased: Vec<Uuid>,
    /// The [`ErasureHook`]s that ran, by name.
    pub hooks: Vec<String>,
    /// The store's erasure generation after this `forget`: an application
    /// whose aggregate cache saw an older one drops its entries.
    pub erasure_generation: u64,
}

impl<S> CryptoStore<S> {
    /// Forgets a data subject: deletes its key and remembers it as
    /// forgotten, drops cached aggregates, deletes the snapshots of its
    /// streams, erases it from dead letters and runs the read models'
    /// hooks (see the [module documentation](super)); returns what it
    /// erased.
    ///
    /// Idempotent: run it again after an error, or to clean up after a
    /// process that wrote while it ran. The key is deleted first, so a
    /// failure later leaves the events already unreadable.
    pub async fn forget(&self, subject: &str) -> Result<ErasureReport, StoreError>
    where
        S: crate::store::EventStore,
    {
        let key_deleted = self.keys.delete_key(subject).await?;
        self.erasure.generation.fetch_add(1, Ordering::AcqRel);
        let streams = self.keys.streams_of(subject).await?;
        let mut report = ErasureReport {
            subject: subject.to_owned(),
            key_deleted,
            streams: streams.clone(),
            ..ErasureReport::default()
        };
        for snapshots in &self.erasure.snapshots {
            for stream in &streams {
                snapshots.delete(stream).await?;
            }
        }
        if !self.erasure.snapshots.is_empty() {
            report.snapshots_deleted.clone_from(&streams);
        }
        for dead_letters in &self.erasure.dead_letters {
            for letter in dead_letters.list(None).await? {
                if let Some(erased) = self.erase_letter(&letter, subject)? {
                    dead_letters.park(erased).await?;
                    report.dead_letters_erased.push(letter.id);
                }
            }
        }
        for hook in &self.erasure.hooks {
            hook.erase(subject, &streams).await.map_err(|error| {
                StoreError::Backend(format!("the erasure hook `{}` failed: {error}", hook.name()).into())
            })?;
            report.hooks.push(hook.name().into_owned());
        }
        report.erasure_generation = crate::store::EventStore::erasure_generation(self);
        tracing::info!(
            key_deleted,
            streams = report.streams.len(),
            dead_letters = report.dead_letters_erased.len(),
            hooks = report.hooks.len(),
            "orchestrix: a data subject was forgotten (crypto-shredding)"
        );
        Ok(report)
    }

    /// `letter` with `subject`'s personal fields set to `null` (and their
    /// values cut out of its error text, where a decoding error may have
    /// quoted them), or `None` if it holds none.
    fn erase_letter(&self, letter: &DeadLetter, subject: &str) -> Result<Option<DeadLetter>, StoreError> {
        let event = &letter.event;
        let Ok(mut object) = serde_json::from_str::<Map<String, Value>>(event.data.get()) else { return Ok(None) };
        let fields = self.fields_of(&event.event_type, &object).unwrap_or(&[]);
        let mut removed = Vec::new();
        let changed = if event.event_type == SAGA_STARTED {
            match object.get_mut("data") {
                Some(Value::Object(data)) => seal::erase_subject(data, fields, subject, &mut removed),
                _ => false,
            }
        } else {
            seal::erase_subject(&mut object, fields, subject, &mut removed)
        };
        if !changed {
            return Ok(None);
        }
        let data = serde_json::value::to_raw_value(&object).map_err(StoreError::backend)?;
        let mut error = letter.error.clone();
        for value in &removed {
            for text in [value.as_str().map(str::to_owned), Some(value.to_string())].into_iter().flatten() {
                if !text.is_empty() {
                    error = error.replace(&text, ERASED_IN_TEXT);
                }
            }
        }
        let event = RecordedEvent { data, ..event.clone() };
        Ok(Some(DeadLetter { event, error, ..letter.clone() }))
    }
}

/// How a store learns of erasures made by other processes.
impl<S> CryptoStore<S> {
    /// Learns of a `forget` run by another process on the same key store:
    /// polls the key store's [`KeyStore::erasure_mark`](crate::store::KeyStore::erasure_mark) and, if it changed
    /// since the last poll, bumps this store's
    /// [`EventStore::erasure_generation`](crate::store::EventStore::erasure_generation), so that the application's cache
    /// drops what it read before. Returns whether it did. Appends call it
    /// at most every [`ERASURE_POLL_INTERVAL`]; call it yourself to learn
    /// sooner.
    pub async fn refresh_erasures(&self) -> Result<bool, StoreError> {
        let mark = self.keys.erasure_mark().await?;
        let mut polled = self.erasure.polled.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = polled.is_some_and(|(_, seen)| seen != mark);
        *polled = Some((Instant::now(), mark));
        drop(polled);
        if changed {
            self.erasure.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(changed)
    }

    /// [`CryptoStore::refresh_erasures`], if the last poll is older than
    /// [`ERASURE_POLL_INTERVAL`].
    pub(super) async fn refresh_erasures_if_due(&self) -> Result<(), StoreError> {
        let due = self
            .erasure
            .polled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|(at, _)| at.elapsed() >= ERASURE_POLL_INTERVAL);
        if due {
            self.refresh_erasures().await?;
        }
        Ok(())
    }
}
