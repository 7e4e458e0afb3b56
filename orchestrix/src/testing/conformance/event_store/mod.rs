//! Checks of [`EventStore`] implementations.
//!
//! Each function runs one check on the store it is given, which must be
//! empty and used by nothing else while the check runs; it panics with the
//! check's name and what it expected and found. [`super::event_store()`] runs
//! them all. The checks live in one submodule per topic (single-stream
//! appends, reads, concurrency, subscriptions, hostile input, multi-stream
//! appends) and are re-exported here, so each is
//! `event_store::<check>`.

mod append;
mod append_many;
mod concurrency;
mod hostile;
mod read;
mod subscribe;

#[cfg(doc)]
use crate::store::EventStore;

pub use super::stream_listing::{streams_are_listed_in_pages, tenant_views_list_their_streams};
pub use super::validation::{
    payloads_at_the_limits_are_stored, payloads_come_back_as_equal_values, unreadable_payloads_are_refused,
};

pub use self::append::{
    any_appends_whatever_the_version, append_and_read_back, batch_is_atomic, empty_batch_checks_and_stores_nothing,
    exact_mismatch_conflicts_and_writes_nothing, exact_zero_is_no_stream, no_stream_on_existing_stream_conflicts,
};
pub use self::append_many::{
    append_many_conflict_writes_nothing, append_many_guards_and_empty_calls, append_many_refuses_a_stream_twice,
    append_many_writes_every_stream, concurrent_append_many_is_all_or_nothing, guards_hold_against_concurrent_writes,
    subscribers_see_append_many_whole,
};
pub use self::concurrency::{concurrent_appends_to_different_streams, concurrent_exact_appends_to_one_stream};
pub use self::hostile::{hostile_strings_round_trip, invalid_event_types_are_refused};
pub use self::read::{
    global_order_across_streams, long_streams_read_back_in_order, read_all_from_a_position_with_a_filter,
    read_missing_stream_is_empty, read_stream_from_a_version, stream_ids_are_exact, stream_version_and_head_position,
};
pub use self::subscribe::{
    dropped_subscription_is_harmless, subscribe_catches_up_then_follows_live, subscribe_from_a_middle_position,
    subscribe_with_a_filter, subscription_races_with_appends,
};
