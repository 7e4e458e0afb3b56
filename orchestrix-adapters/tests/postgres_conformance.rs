//! The core's conformance suite against the PostgreSQL adapter, each check
//! in a schema of its own.
#![cfg(feature = "postgres")]

mod support;

orchestrix::conformance_tests!(
    event_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    consistency_by_query,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    snapshot_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    checkpoint_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    key_value_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    dead_letter_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
orchestrix::conformance_tests!(
    key_store,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);
