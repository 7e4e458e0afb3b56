//! The port conformance suite: the checks every adapter of the ports in
//! [`crate::store`] runs, so that all of them behave like the reference
//! in-memory adapters of [`crate::memory`].
//!
//! # Running it
//!
//! The simplest way is [`conformance_tests!`](crate::conformance_tests),
//! which generates one `#[tokio::test]` per check in a module named after
//! the port, given an expression that makes a fresh store (it is evaluated
//! once per check, inside the async test, so it may `.await`):
//!
//! ```
//! // In an adapter's `tests/conformance.rs`; here with the in-memory stores
//! // (an SQL adapter would write `SqliteStore::in_memory().await.unwrap()`).
//! orchestrix::conformance_tests!(event_store, orchestrix::memory::InMemoryEventStore::new());
//! orchestrix::conformance_tests!(key_value_store, orchestrix::memory::InMemoryKeyValueStore::new());
//! # fn main() {}
//! ```
//!
//! The generated tests use `#[tokio::test(flavor = "multi_thread")]`, so the
//! test crate needs `tokio` with the `macros` and `rt-multi-thread`
//! features among its dev-dependencies.
//!
//! Alternatively, run a whole port's checks from one test with the runner
//! functions ([`event_store()`] or [`event_store_except`], [`snapshot_store()`], [`snapshot_trust()`], [`checkpoint_store()`],
//! [`key_value_store()`], [`key_store()`], [`message_bus()`], [`dead_letter_store()`]), which take
//! an async factory, or run single checks from the modules of the same
//! names (for example [`event_store::append_and_read_back`]), each taking
//! the store to check by value:
//!
//! ```
//! # use orchestrix::memory::InMemoryEventStore;
//! # #[tokio::main]
//! # async fn main() {
//! // In a `#[tokio::test(flavor = "multi_thread")]` of the adapter:
//! orchestrix::testing::conformance::event_store(|| async { InMemoryEventStore::new() }).await;
//! # }
//! ```
//!
//! # What a check expects
//!
//! - Every check gets its own store, which must start **empty** and be
//!   used by nothing else while the check runs (a fresh database, schema or
//!   namespace). Checks use fresh stream ids, but some look at the whole
//!   global log or the head position.
//! - A failing check panics with its name (`event_store::batch_is_atomic`)
//!   and what it expected and found. A step that does not finish within
//!   ten seconds fails the check instead of hanging it.
//! - Concurrency checks spawn tokio tasks: run them on a multi-threaded
//!   runtime to exercise real parallelism.

pub(crate) mod support;

pub mod checkpoint_store;
pub mod consistency_by_query;
pub mod dead_letter_store;
pub mod event_store;
pub mod idempotent_append;
pub mod key_store;
pub mod key_value_store;
pub mod message_bus;
pub mod retag;
pub mod snapshot_store;
pub mod snapshot_trust;
mod stream_listing;
pub mod validation;

use std::future::Future;

use crate::store::{CheckpointStore, DeadLetterStore, EventStore, KeyStore, KeyValueStore, MessageBus, SnapshotStore};

/// The list of checks of each port: the one place that names them, used
/// by the runner functions and by [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_conformance_checks {
    (event_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { event_store [
            append_and_read_back,
            no_stream_on_existing_stream_conflicts,
            exact_mismatch_conflicts_and_writes_nothing,
            exact_zero_is_no_stream,
            any_appends_whatever_the_version,
            empty_batch_checks_and_stores_nothing,
            batch_is_atomic,
            read_stream_from_a_version,
            read_missing_stream_is_empty,
            stream_version_and_head_position,
            read_all_from_a_position_with_a_filter,
            global_order_across_streams,
            stream_ids_are_exact,
            long_streams_read_back_in_order,
            concurrent_exact_appends_to_one_stream,
            concurrent_appends_to_different_streams,
            subscribe_catches_up_then_follows_live,
            subscribe_with_a_filter,
            subscribe_from_a_middle_position,
            subscription_races_with_appends,
            dropped_subscription_is_harmless,
            hostile_strings_round_trip,
            invalid_event_types_are_refused,
            append_many_writes_every_stream,
            append_many_conflict_writes_nothing,
            append_many_guards_and_empty_calls,
            append_many_refuses_a_stream_twice,
            concurrent_append_many_is_all_or_nothing,
            subscribers_see_append_many_whole,
            guards_hold_against_concurrent_writes,
            unreadable_payloads_are_refused,
            payloads_at_the_limits_are_stored,
            payloads_come_back_as_equal_values,
            streams_are_listed_in_pages,
            tenant_views_list_their_streams,
        ] $($then)* }
    };
    (idempotent_append $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { idempotent_append [
            events_keep_their_ids,
            retried_append_is_answered_as_the_original,
            retry_after_the_stream_moved_on,
            partial_or_foreign_ids_are_refused,
            concurrent_copies_store_once,
            retried_append_many_is_answered_as_the_original,
            retried_append_if_is_answered_as_the_original,
        ] $($then)* }
    };
    (consistency_by_query $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { consistency_by_query [
            tags_round_trip_and_queries_select,
            global_reads_filter_by_tags,
            condition_passes_then_fails,
            condition_and_expectations_are_atomic,
            concurrent_conditions_have_one_winner,
            no_write_skew_across_queries,
            append_if_refuses_unreadable_payloads,
            tenants_cannot_forge_tenant_tags,
        ] $($then)* }
    };
    (snapshot_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { snapshot_store [
            save_and_load_latest,
            load_at_or_before,
            save_replaces_at_the_same_version,
            delete_removes_a_streams_snapshots,
            streams_are_independent,
        ] $($then)* }
    };
    (snapshot_trust $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { snapshot_trust [
            valid_snapshot_is_used,
            snapshot_past_the_head_is_discarded,
            recreated_stream_never_gets_the_old_snapshot,
            snapshot_of_another_schema_is_discarded,
            undecodable_snapshot_is_discarded,
            snapshot_of_another_stream_is_discarded,
            snapshot_and_tail_come_together,
        ] $($then)* }
    };
    (retag $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { retag [
            retag_makes_untagged_events_visible,
            replace_tags_is_all_or_nothing,
        ] $($then)* }
    };
    (checkpoint_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { checkpoint_store [
            missing_is_none,
            save_overwrite_delete,
            consumers_are_independent,
            pause_request_and_acknowledgement,
            changed_request_clears_the_acknowledgement,
            controls_are_independent_of_checkpoints,
        ] $($then)* }
    };
    (key_value_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { key_value_store [
            get_put_overwrite_delete,
            keys_by_prefix_sorted,
            binary_values,
        ] $($then)* }
    };
    (key_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { key_store [
            create_once_and_read,
            delete_is_final,
            concurrent_creates_agree,
            forgotten_until_readmitted,
            readmit_keeps_a_live_key,
            streams_per_subject,
        ] $($then)* }
    };
    (message_bus $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { message_bus [
            pattern_matching,
            order_and_content_per_subscriber,
            multiple_subscribers,
            no_delivery_before_subscribe,
        ] $($then)* }
    };
    (dead_letter_store $($then:tt)*) => {
        $crate::__orchestrix_conformance_expand! { dead_letter_store [
            park_get_remove,
            list_by_consumer_oldest_first,
            query_count_purge,
        ] $($then)* }
    };
    ($other:ident $($then:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "unknown port `", ::core::stringify!($other), "`; expected one of `event_store`, `idempotent_append`, `consistency_by_query`, `snapshot_store`, ",
            "`snapshot_trust`, `retag`, `checkpoint_store`, `key_value_store`, `key_store`, `message_bus`, `dead_letter_store`"
        ));
    };
}

/// Expands a port's list of checks into runner statements or tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __orchestrix_conformance_expand {
    ($port:ident [$($check:ident),* $(,)?] run $make:ident) => {
        $( $crate::testing::conformance::$port::$check($make().await).await; )*
    };
    ($port:ident [$(,)?] tests [$($attr:tt)*] $make:expr) => {};
    ($port:ident [$check:ident $(, $rest:ident)* $(,)?] tests [$($attr:tt)*] $make:expr) => {
        $($attr)*
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            $crate::testing::conformance::$port::$check($make).await;
        }

        $crate::__orchestrix_conformance_expand! { $port [$($rest),*] tests [$($attr)*] $make }
    };
}

/// Generates one `#[tokio::test]` per conformance check of a port, in a
/// module named after the port.
///
/// The first argument names the port: `event_store`, `consistency_by_query`
/// (the conditional appends of an event store), `snapshot_store`,
/// `snapshot_trust` (a repository over an event store and a snapshot store,
/// made as a pair `(events, snapshots)`), `retag` (an event store that is
/// a [`crate::retag::Retag`]),
/// `checkpoint_store`, `key_value_store`, `key_store`, `message_bus` or
/// `dead_letter_store`. The second is an expression that makes a fresh,
/// empty store; it is evaluated once per test, inside the async test
/// function, so it may use `.await`. Names in scope where the macro is
/// invoked are in scope in the expression.
///
/// Attributes written before the port's name go on every generated test,
/// for example `#[cfg_attr(not(has_server), ignore = "needs a server")]`
/// to report the tests ignored, with the reason, when a service is absent.
///
/// `every_store_port` stands for all the store ports at once, for an
/// adapter whose one store type implements them all (the SQL adapters):
/// `event_store`, `consistency_by_query`, `retag`, `snapshot_store`,
/// `snapshot_trust` (the store paired with a clone of itself),
/// `checkpoint_store`, `key_value_store`, `key_store` and
/// `dead_letter_store`, each in its own module as above. It is the one
/// list such adapters share, so a port added to it reaches all of them.
///
/// `event_store` includes the checks of idempotent appends (ADR 0027), in
/// a module `event_store::idempotent_append`, unless the adapter declares
/// them unsupported with a third argument,
/// `unsupported = [idempotent_append]` (see [`Unsupported`]).
///
/// The test crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
///
/// ```
/// orchestrix::conformance_tests!(event_store, orchestrix::memory::InMemoryEventStore::new());
/// orchestrix::conformance_tests!(message_bus, orchestrix::memory::InMemoryMessageBus::new());
/// // cargo test: event_store::append_and_read_back ... ok, and so on.
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($(#[$attr:meta])* event_store, $make:expr, unsupported = [idempotent_append] $(,)?) => {
        mod event_store {
            #[allow(unused_imports)]
            use super::*;

            $crate::__orchestrix_conformance_checks! { event_store tests [$(#[$attr])*] $make }
        }
    };
    ($(#[$attr:meta])* event_store, $make:expr $(,)?) => {
        mod event_store {
            #[allow(unused_imports)]
            use super::*;

            $crate::__orchestrix_conformance_checks! { event_store tests [$(#[$attr])*] $make }

            mod idempotent_append {
                #[allow(unused_imports)]
                use super::*;

                $crate::__orchestrix_conformance_checks! { idempotent_append tests [$(#[$attr])*] $make }
            }
        }
    };
    ($(#[$attr:meta])* every_store_port, $make:expr $(,)?) => {
        $crate::conformance_tests!($(#[$attr])* event_store, $make);
        $crate::conformance_tests!($(#[$attr])* consistency_by_query, $make);
        $crate::conformance_tests!($(#[$attr])* retag, $make);
        $crate::conformance_tests!($(#[$attr])* snapshot_store, $make);
        $crate::conformance_tests!($(#[$attr])* snapshot_trust, {
            let store = $make;
            (::core::clone::Clone::clone(&store), store)
        });
        $crate::conformance_tests!($(#[$attr])* checkpoint_store, $make);
        $crate::conformance_tests!($(#[$attr])* key_value_store, $make);
        $crate::conformance_tests!($(#[$attr])* key_store, $make);
        $crate::conformance_tests!($(#[$attr])* dead_letter_store, $make);
    };
    ($(#[$attr:meta])* $port:ident, $make:expr $(,)?) => {
        mod $port {
            #[allow(unused_imports)]
            use super::*;

            $crate::__orchestrix_conformance_checks! { $port tests [$(#[$attr])*] $make }
        }
    };
}

/// Groups of checks an adapter may declare it does not support, so that
/// the runners skip exactly those ([`event_store_except`], and the third
/// argument of [`conformance_tests!`](crate::conformance_tests)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// Idempotent appends (ADR 0027, [`idempotent_append`]): the adapter
    /// does not keep the callers' event ids unique, so a retried append
    /// may be stored twice and commands are not deduplicated by command
    /// id. Its users get at-least-once appends.
    IdempotentAppend,
}

/// Writes the runner function `$port` (every check of the port, each on a
/// fresh store from `make`) for stores implementing `$bound`.
macro_rules! runner {
    ($(#[$doc:meta])* $port:ident: $bound:path) => {
        $(#[$doc])*
        pub async fn $port<S, F, Fut>(mut make: F)
        where
            S: $bound,
            F: FnMut() -> Fut,
            Fut: Future<Output = S>,
        {
            crate::__orchestrix_conformance_checks! { $port run make }
        }
    };
}

/// Runs every [`EventStore`] check, including the [`idempotent_append`]
/// ones, each on a fresh store from `make`.
pub async fn event_store<S, F, Fut>(make: F)
where
    S: EventStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    event_store_except(make, &[]).await;
}

/// Runs every [`EventStore`] check but the groups the adapter declares
/// `unsupported`, each on a fresh store from `make`.
pub async fn event_store_except<S, F, Fut>(mut make: F, unsupported: &[Unsupported])
where
    S: EventStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    crate::__orchestrix_conformance_checks! { event_store run make }
    if !unsupported.contains(&Unsupported::IdempotentAppend) {
        crate::__orchestrix_conformance_checks! { idempotent_append run make }
    }
}

runner! {
    /// Runs every consistency-by-query check of an [`EventStore`]
    /// ([`EventStore::append_if`], [`EventStore::read_by_query`]), each on a
    /// fresh store from `make`. Adapters without it run
    /// [`consistency_by_query::unsupported_is_refused`] instead.
    consistency_by_query: EventStore
}

runner! {
    /// Runs every [`SnapshotStore`] check, each on a fresh store from `make`.
    snapshot_store: SnapshotStore
}

/// Runs every check that a [`crate::repository::Repository`] over an
/// [`EventStore`] and a [`SnapshotStore`] never trusts a snapshot blindly
/// ([`snapshot_trust`](mod@snapshot_trust)), each on a fresh pair of stores from `make`.
pub async fn snapshot_trust<E, S, F, Fut>(mut make: F)
where
    E: EventStore,
    S: SnapshotStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = (E, S)>,
{
    crate::__orchestrix_conformance_checks! { snapshot_trust run make }
}

runner! {
    /// Runs every [`crate::retag::Retag`] check, each on a fresh store from
    /// `make`.
    retag: crate::retag::Retag
}

runner! {
    /// Runs every [`CheckpointStore`] check, each on a fresh store from `make`.
    checkpoint_store: CheckpointStore
}

runner! {
    /// Runs every [`KeyValueStore`] check, each on a fresh store from `make`.
    key_value_store: KeyValueStore
}

runner! {
    /// Runs every [`KeyStore`] check, each on a fresh store from `make`.
    key_store: KeyStore
}

runner! {
    /// Runs every [`MessageBus`] check, each on a fresh bus from `make`.
    message_bus: MessageBus
}

runner! {
    /// Runs every [`DeadLetterStore`] check, each on a fresh store from `make`.
    dead_letter_store: DeadLetterStore
}
