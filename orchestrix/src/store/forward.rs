//! The ports for shared and boxed stores: `Arc<T>` and `Box<T>` implement
//! every port `T` implements, `T` sized or not (`Arc<dyn EventStore>`
//! included), so a wrapper generic over a port (a [`TenantStore`], a
//! [`CryptoStore`], a user's store that counts calls or injects faults)
//! accepts a shared store as it is.
//!
//! Every method is forwarded, the ones with a default body too: a store
//! that overrides [`EventStore::read_by_query`] or
//! [`EventStore::append_if`] keeps its override behind the pointer.
//!
//! **Adding a method to a port** means adding its signature, one line, to
//! the port's list below: a default method left out of the list would
//! silently run the default behind the pointer instead of the store's own.
//! The lists take `async fn name(&self, arg: Type, ..) -> Type;` and
//! `fn name<'a>(&'a self, arg: Type, ..) -> Type;` (one lifetime or none;
//! no other generics).
//!
//! [`TenantStore`]: crate::tenant::TenantStore
//! [`CryptoStore`]: crate::crypto::CryptoStore

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use super::{
    BoxFuture, CheckpointStore, ConsumerControl, DeadLetter, DeadLetterQuery, DeadLetterStore, EventFilter, EventStore,
    EventStream, ExpectedVersion, KeyStore, KeyValueStore, Message, MessageBus, MessageStream, PauseAck, Snapshot,
    SnapshotAndTail, SnapshotStore, StreamAppend, StreamListing, StreamSummary,
};
use crate::envelope::{NewEvent, RecordedEvent};
use crate::error::StoreError;
use crate::personal::DataKey;
use crate::query::{AppendCondition, Query};
use crate::stream::StreamId;

/// `store` as a shared trait object `Arc<D>`: the store itself when it
/// already is one (an `Arc<dyn EventStore>` given where a store is taken
/// is not wrapped in a second `Arc`), else `share(store)`.
///
/// What lets one generic method (`event_store<S: EventStore>(store: S)`)
/// replace the `_arc` twins that took an `Arc<dyn _>` (ADR 0030), in the
/// core and in adapters that keep a store. Name `D` at the call
/// (`shared::<_, dyn EventStore>`): inferred, it would be `S`, and the
/// `Arc<S>` coerced only afterwards, so an `Arc<dyn _>` would be wrapped.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::memory::InMemoryEventStore;
/// use orchestrix::store::{shared, EventStore};
///
/// let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
/// let kept = shared::<_, dyn EventStore>(store.clone(), |s| Arc::new(s));
/// assert!(Arc::ptr_eq(&store, &kept));
/// ```
pub fn shared<S: 'static, D: ?Sized + 'static>(store: S, share: impl FnOnce(S) -> Arc<D>) -> Arc<D> {
    let mut slot = Some(store);
    if let Some(shared) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Arc<D>>>().and_then(Option::take)
    {
        return shared;
    }
    // The slot is emptied only when it held an `Arc<D>`, returned above.
    slot.map_or_else(|| unreachable!("a store that is not an `Arc<D>` is still in its slot"), share)
}

/// Implements a port for `Arc<T>` and `Box<T>` by forwarding each listed
/// method to `T`. The method list is collected one signature at a time
/// (a token muncher), so that `#[async_trait]` sees the whole impl.
macro_rules! forward {
    ($port:ident { $($methods:tt)* }) => {
        forward!(@munch Arc, $port, [] $($methods)*);
        forward!(@munch Box, $port, [] $($methods)*);
    };
    (@munch $pointer:ident, $port:ident, [$($done:tt)*]
        async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; $($rest:tt)*) => {
        forward!(@munch $pointer, $port, [$($done)*
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                (**self).$name($($arg),*).await
            }
        ] $($rest)*);
    };
    (@munch $pointer:ident, $port:ident, [$($done:tt)*]
        fn $name:ident $(<$lt:lifetime>)? (&$($self_lt:lifetime)? self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
        $($rest:tt)*) => {
        forward!(@munch $pointer, $port, [$($done)*
            fn $name $(<$lt>)? (&$($self_lt)? self $(, $arg: $ty)*) -> $ret {
                (**self).$name($($arg),*)
            }
        ] $($rest)*);
    };
    (@munch $pointer:ident, $port:ident, [$($done:tt)*]) => {
        #[async_trait]
        impl<T: $port + ?Sized> $port for $pointer<T> {
            $($done)*
        }
    };
}

forward!(EventStore {
    async fn append(&self, stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Vec<Arc<RecordedEvent>>, StoreError>;
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError>;
    fn read_stream<'a>(&'a self, stream: &'a StreamId, from_version: u64) -> EventStream<'a>;
    fn read_from_snapshot<'a>(&'a self, stream: &'a StreamId, at_or_before: Option<u64>, snapshots: &'a dyn SnapshotStore) -> BoxFuture<'a, Result<SnapshotAndTail<'a>, StoreError>>;
    fn read_all<'a>(&'a self, from_position: u64, filter: &'a EventFilter) -> EventStream<'a>;
    fn subscribe(&self, from_position: u64, filter: EventFilter) -> EventStream<'static>;
    async fn read_event(&self, id: Uuid) -> Result<Option<Arc<RecordedEvent>>, StoreError>;
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError>;
    async fn head_position(&self) -> Result<Option<u64>, StoreError>;
    async fn list_streams(&self, listing: &StreamListing) -> Result<Vec<StreamSummary>, StoreError>;
    fn erasure_generation(&self) -> u64;
    fn declare_personal_data(&self, data: &'static [crate::personal::PersonalData]) -> bool;
    fn read_by_query<'a>(&'a self, query: &'a Query, from_position: u64) -> EventStream<'a>;
    async fn append_if(&self, condition: AppendCondition, appends: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError>;
});

forward!(SnapshotStore {
    async fn save(&self, snapshot: Snapshot) -> Result<(), StoreError>;
    async fn load(&self, stream: &StreamId, at_or_before: Option<u64>) -> Result<Option<Snapshot>, StoreError>;
    async fn delete(&self, stream: &StreamId) -> Result<(), StoreError>;
});

forward!(CheckpointStore {
    async fn load(&self, consumer: &str) -> Result<Option<u64>, StoreError>;
    async fn save(&self, consumer: &str, position: u64) -> Result<(), StoreError>;
    async fn delete(&self, consumer: &str) -> Result<(), StoreError>;
    async fn load_control(&self, consumer: &str) -> Result<Option<ConsumerControl>, StoreError>;
    async fn request_pause(&self, consumer: &str, pause: bool) -> Result<(), StoreError>;
    async fn acknowledge_pause(&self, consumer: &str, ack: Option<PauseAck>) -> Result<bool, StoreError>;
});

forward!(KeyValueStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
});

forward!(KeyStore {
    async fn key(&self, subject: &str) -> Result<Option<DataKey>, StoreError>;
    async fn key_or_create(&self, subject: &str) -> Result<DataKey, StoreError>;
    async fn delete_key(&self, subject: &str) -> Result<bool, StoreError>;
    async fn readmit(&self, subject: &str) -> Result<bool, StoreError>;
    async fn is_forgotten(&self, subject: &str) -> Result<bool, StoreError>;
    async fn record_streams(&self, subject: &str, streams: &[StreamId]) -> Result<(), StoreError>;
    async fn streams_of(&self, subject: &str) -> Result<Vec<StreamId>, StoreError>;
    async fn erasure_mark(&self) -> Result<u64, StoreError>;
});

forward!(MessageBus {
    async fn publish(&self, message: Message) -> Result<(), StoreError>;
    async fn subscribe(&self, pattern: &str) -> Result<MessageStream, StoreError>;
});

forward!(DeadLetterStore {
    async fn park(&self, letter: DeadLetter) -> Result<(), StoreError>;
    async fn list(&self, consumer: Option<&str>) -> Result<Vec<DeadLetter>, StoreError>;
    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError>;
    async fn remove(&self, id: Uuid) -> Result<bool, StoreError>;
    async fn query(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError>;
    async fn count(&self, query: &DeadLetterQuery) -> Result<u64, StoreError>;
    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64, StoreError>;
});

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::query::{Query, QueryItem};

    /// A store whose default methods are overridden with a recognisable
    /// answer, and whose required methods hold nothing.
    #[derive(Debug)]
    struct Overriding;

    fn marker(method: &str) -> StoreError {
        StoreError::InvalidInput(format!("the override of {method}"))
    }

    #[async_trait]
    impl EventStore for Overriding {
        async fn append(
            &self,
            _: &StreamId,
            _: ExpectedVersion,
            _: Vec<NewEvent>,
        ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
            Ok(Vec::new())
        }
        async fn append_many(&self, _: Vec<StreamAppend>) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
            Ok(Vec::new())
        }
        fn read_stream<'a>(&'a self, _: &'a StreamId, _: u64) -> EventStream<'a> {
            Box::pin(futures_util::stream::empty())
        }
        fn read_all<'a>(&'a self, _: u64, _: &'a EventFilter) -> EventStream<'a> {
            Box::pin(futures_util::stream::empty())
        }
        fn subscribe(&self, _: u64, _: EventFilter) -> EventStream<'static> {
            Box::pin(futures_util::stream::empty())
        }
        async fn stream_version(&self, _: &StreamId) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }
        async fn head_position(&self) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }
        fn read_by_query<'a>(&'a self, _: &'a Query, _: u64) -> EventStream<'a> {
            Box::pin(futures_util::stream::once(async { Err(marker("read_by_query")) }))
        }
        async fn append_if(
            &self,
            _: AppendCondition,
            _: Vec<StreamAppend>,
        ) -> Result<Vec<Vec<Arc<RecordedEvent>>>, StoreError> {
            Err(marker("append_if"))
        }
        async fn list_streams(&self, _: &StreamListing) -> Result<Vec<StreamSummary>, StoreError> {
            Err(marker("list_streams"))
        }
        fn read_from_snapshot<'a>(
            &'a self,
            _: &'a StreamId,
            _: Option<u64>,
            _: &'a dyn SnapshotStore,
        ) -> BoxFuture<'a, Result<SnapshotAndTail<'a>, StoreError>> {
            Box::pin(async { Err(marker("read_from_snapshot")) })
        }
    }

    #[tokio::test]
    async fn pointers_reach_the_override_of_read_from_snapshot() {
        let snapshots = crate::memory::InMemorySnapshotStore::new();
        let stream = StreamId::new("Account", "1").expect("a valid stream id");
        let shared: Arc<dyn EventStore> = Arc::new(Overriding);
        let boxed: Box<dyn EventStore> = Box::new(Overriding);
        let nested = Box::new(Arc::clone(&shared));
        for answer in [
            shared.read_from_snapshot(&stream, None, &snapshots).await,
            boxed.read_from_snapshot(&stream, None, &snapshots).await,
            nested.read_from_snapshot(&stream, None, &snapshots).await,
        ] {
            let error = answer.err().expect("the override's error");
            assert_eq!(error.to_string(), "invalid input: the override of read_from_snapshot");
        }
    }

    #[tokio::test]
    async fn pointers_reach_the_override_of_list_streams() {
        let shared: Arc<dyn EventStore> = Arc::new(Overriding);
        let listing = StreamListing::new(10);
        let boxed: Box<dyn EventStore> = Box::new(Overriding);
        for answer in [shared.list_streams(&listing).await, boxed.list_streams(&listing).await] {
            assert_eq!(answer.unwrap_err().to_string(), "invalid input: the override of list_streams");
        }
    }

    /// Calls both default methods through `store` and returns their errors.
    async fn defaults_of(store: &impl EventStore) -> (String, String) {
        let query = Query::new([QueryItem::types(["Anything"])]);
        let read = store.read_by_query(&query, 0).next().await.expect("the override yields one item");
        let append = store.append_if(AppendCondition::new(query.clone(), None), Vec::new()).await;
        (read.unwrap_err().to_string(), append.unwrap_err().to_string())
    }

    #[tokio::test]
    async fn pointers_reach_the_overrides_of_default_methods() {
        let expected = (
            "invalid input: the override of read_by_query".to_owned(),
            "invalid input: the override of append_if".to_owned(),
        );
        let shared: Arc<dyn EventStore> = Arc::new(Overriding);
        assert_eq!(defaults_of(&shared).await, expected);
        assert_eq!(defaults_of(&Arc::new(Overriding)).await, expected);
        assert_eq!(defaults_of(&(Box::new(Overriding) as Box<dyn EventStore>)).await, expected);
        // Pointers nest: a box of a shared trait object is a store too.
        assert_eq!(defaults_of(&Box::new(Arc::clone(&shared))).await, expected);
    }

    #[test]
    fn a_shared_trait_object_is_not_wrapped_twice() {
        let store: Arc<dyn EventStore> = Arc::new(Overriding);
        let again: Arc<dyn EventStore> = shared::<_, dyn EventStore>(Arc::clone(&store), |s| Arc::new(s));
        assert!(Arc::ptr_eq(&store, &again));
        let concrete = Arc::new(Overriding);
        let wrapped: Arc<dyn EventStore> = shared::<_, dyn EventStore>(Arc::clone(&concrete), |s| Arc::new(s));
        assert_eq!(Arc::strong_count(&concrete), 2, "an `Arc<Overriding>` is a store of its own, wrapped once");
        drop(wrapped);
    }

    /// Every port is implemented for `Arc<dyn _>` and `Box<dyn _>`.
    #[test]
    fn every_port_is_implemented_for_trait_objects() {
        fn event_store<T: EventStore>() {}
        fn snapshot_store<T: SnapshotStore>() {}
        fn checkpoint_store<T: CheckpointStore>() {}
        fn key_value_store<T: KeyValueStore>() {}
        fn key_store<T: KeyStore>() {}
        fn message_bus<T: MessageBus>() {}
        fn dead_letter_store<T: DeadLetterStore>() {}
        event_store::<Arc<dyn EventStore>>();
        event_store::<Box<dyn EventStore>>();
        snapshot_store::<Arc<dyn SnapshotStore>>();
        snapshot_store::<Box<dyn SnapshotStore>>();
        checkpoint_store::<Arc<dyn CheckpointStore>>();
        checkpoint_store::<Box<dyn CheckpointStore>>();
        key_value_store::<Arc<dyn KeyValueStore>>();
        key_value_store::<Box<dyn KeyValueStore>>();
        key_store::<Arc<dyn KeyStore>>();
        key_store::<Box<dyn KeyStore>>();
        message_bus::<Arc<dyn MessageBus>>();
        message_bus::<Box<dyn MessageBus>>();
        dead_letter_store::<Arc<dyn DeadLetterStore>>();
        dead_letter_store::<Box<dyn DeadLetterStore>>();
    }
}
