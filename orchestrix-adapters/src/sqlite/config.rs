//! The configuration of a [`SqliteStore`](super::SqliteStore): its table
//! prefix, pool, polling and leases.

use std::time::Duration;

use orchestrix::StoreError;

#[cfg(doc)]
use super::{SqliteLease, SqliteStore};
use crate::common::validate_identifier;

/// The configuration of a [`SqliteStore`]: the table prefix and polling.
///
/// ```
/// use orchestrix_adapters::sqlite::SqliteConfig;
///
/// assert_eq!(SqliteConfig::default().prefix(), "orchestrix_");
/// assert!(SqliteConfig::new("app_").is_ok());
/// assert!(SqliteConfig::new("x; DROP TABLE y; --").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub(super) prefix: String,
    pub(super) poll_interval: Duration,
    pub(super) max_connections: u32,
    pub(super) lease_ttl: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            prefix: "orchestrix_".to_owned(),
            poll_interval: Duration::from_millis(200),
            max_connections: 8,
            lease_ttl: super::lease::DEFAULT_LEASE_TTL,
        }
    }
}

impl SqliteConfig {
    /// A configuration whose tables are named `<prefix>events` and so on:
    /// 0 to 32 lowercase ASCII letters, digits and `_`, not starting with a
    /// digit. Any other prefix is refused with [`StoreError::InvalidInput`].
    pub fn new(prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        validate_identifier("table prefix", &prefix, 32, true)?;
        Ok(Self { prefix, ..Self::default() })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How often an idle subscription polls for appends made by other
    /// processes or store instances (default 200 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The pool size of a file database (default 8).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a lease ([`SqliteLease`]) stays held without being
    /// checked (default 10 s, at least 1 s): a holder that dies loses it
    /// this long after its last check, and a holder that cannot check for
    /// this long (a frozen process, a database locked by someone else)
    /// may find it taken over.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }
}
