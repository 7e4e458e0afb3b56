//! The core's conformance suite against the PostgreSQL adapter, each check
//! in a schema of its own.
#![cfg(feature = "postgres")]

mod support;

orchestrix::conformance_tests!(
    #[cfg_attr(
        not(orchestrix_pg),
        ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
    )]
    every_store_port,
    match crate::support::pg_store().await {
        Some(store) => store,
        None => return,
    }
);

/// The event store checks again with group commit at its most eager (one
/// statement in flight, so concurrent appends share statements; ADR 0024).
mod group_commit_eager {
    orchestrix::conformance_tests!(
        #[cfg_attr(
            not(orchestrix_pg),
            ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
        )]
        event_store,
        match crate::support::pg_store_with(|config| config.with_group_commit(1)).await {
            Some(store) => store,
            None => return,
        }
    );
}

/// The event store checks again with group commit off.
mod group_commit_off {
    orchestrix::conformance_tests!(
        #[cfg_attr(
            not(orchestrix_pg),
            ignore = "needs ORCHESTRIX_PG_URL (a PostgreSQL server), see docs/guide/getting-started.md"
        )]
        event_store,
        match crate::support::pg_store_with(|config| config.with_group_commit(0)).await {
            Some(store) => store,
            None => return,
        }
    );
}
