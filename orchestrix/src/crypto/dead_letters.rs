//! Dead letters that never hold personal data in clear (ADR 0031).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{open_record, CryptoStore, SealMode};
use crate::envelope::RecordedEvent;
use crate::error::StoreError;
use crate::store::{DeadLetter, DeadLetterStore};

/// A [`DeadLetterStore`] that parks events with their personal fields
/// sealed, as the event store holds them, and opens them when a letter is
/// read: the inner store never holds the plaintext, and once the subject
/// is forgotten its fields read back as `null` with no clean-up at all.
/// Made by [`CryptoStore::seal_dead_letters`]; give it to the projection
/// engine in place of the inner store.
///
/// A subject forgotten before its event is parked gets `null` in the
/// letter. The letter's error text is kept as the consumer wrote it: give
/// the inner store to [`CryptoStore::erase_dead_letters_in`] too, so that
/// `forget` cuts erased values a decoding error quoted out of it.
#[derive(Clone)]
pub struct SealedDeadLetters<D> {
    inner: D,
    crypto: CryptoStore<()>,
}

impl<D: fmt::Debug> fmt::Debug for SealedDeadLetters<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedDeadLetters").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<D> SealedDeadLetters<D> {
    /// The wrapped store, which holds the sealed form.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    async fn open(&self, mut letter: DeadLetter) -> Result<DeadLetter, StoreError> {
        let opened = open_record(&*self.crypto.keys, Arc::new(letter.event)).await?;
        letter.event = Arc::unwrap_or_clone(opened);
        Ok(letter)
    }
}

impl<S> CryptoStore<S> {
    /// Wraps a dead-letter store so that parked events keep their personal
    /// fields sealed under this store's keys and registrations (see
    /// [`SealedDeadLetters`]).
    pub fn seal_dead_letters<D: DeadLetterStore>(&self, inner: D) -> SealedDeadLetters<D> {
        let crypto = CryptoStore {
            inner: (),
            keys: Arc::clone(&self.keys),
            personal: Arc::clone(&self.personal),
            declared: Arc::clone(&self.declared),
            erasure: Arc::clone(&self.erasure),
        };
        SealedDeadLetters { inner, crypto }
    }
}

#[async_trait]
impl<D: DeadLetterStore> DeadLetterStore for SealedDeadLetters<D> {
    async fn park(&self, mut letter: DeadLetter) -> Result<(), StoreError> {
        let event = &letter.event;
        let mut subjects = BTreeSet::new();
        if let Some(data) = self.crypto.seal_data(&event.event_type, &event.data, SealMode::Park, &mut subjects).await?
        {
            letter.event = RecordedEvent { data, ..letter.event };
        }
        self.inner.park(letter).await
    }

    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut opened = Vec::new();
        for letter in self.inner.list(consumer).await? {
            opened.push(self.open(letter).await?);
        }
        Ok(opened)
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        match self.inner.get(id).await? {
            Some(letter) => Ok(Some(self.open(letter).await?)),
            None => Ok(None),
        }
    }

    async fn remove(&self, id: Uuid) -> Result<bool, StoreError> {
        self.inner.remove(id).await
    }
}
