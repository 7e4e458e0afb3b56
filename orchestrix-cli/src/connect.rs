//! Stores by URL: `sqlite://PATH`, `postgres://…`, `esdb+http(s)://…`,
//! opened through the adapters' own constructors, with every secret kept
//! out of what is printed.

use std::path::PathBuf;
use std::sync::Arc;

use orchestrix::store::{CheckpointStore, DeadLetterStore, EventStore, KeyStore, SnapshotStore};
use orchestrix_adapters::eventsourcingdb::{EsdbConfig, EsdbStore};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use orchestrix_adapters::sqlite::{SqliteConfig, SqliteStore};

use crate::error::Failure;

/// How a command opens its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The store must exist already (an SQLite file is not created).
    Existing,
    /// The store may be created (an import's or copy's target, `migrate`).
    Create,
}

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// PostgreSQL: the URL for the driver (without `schema`) and the schema.
    Postgres { url: String, schema: String },
    /// EventSourcingDB: its HTTP(S) base URL.
    Esdb(String),
}

impl StoreUrl {
    /// Parses `url`; an unknown scheme or a bad schema name is a usage error.
    pub(crate) fn parse(url: &str) -> Result<Self, Failure> {
        if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(Failure::Usage(format!(
                    "`{}` names no database file: write sqlite://PATH (an in-memory database has nothing to inspect)",
                    shown(url)
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut schema = "orchestrix".to_owned();
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("schema", value)) => value.clone_into(&mut schema),
                    _ => kept.push(pair),
                }
            }
            let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
            return Ok(Self::Postgres { url, schema });
        }
        if let Some(rest) = url.strip_prefix("esdb+") {
            if rest.starts_with("http://") || rest.starts_with("https://") {
                return Ok(Self::Esdb(rest.to_owned()));
            }
        }
        Err(Failure::Usage(format!(
            "unsupported store URL `{}`: expected sqlite://PATH, postgres://USER@HOST/DB[?schema=NAME] or \
             esdb+http(s)://HOST:PORT (with --token or ORCHESTRIX_ESDB_TOKEN)",
            shown(url)
        )))
    }
}

/// The secrets inside `url`: its password, if any.
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    password_span(url).map(|(start, end)| vec![url[start..end].to_owned()]).unwrap_or_default()
}

/// Where the password of `scheme://user:password@host` is, if it has one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

/// `url` as it may be printed: its password replaced by `***`.
pub(crate) fn shown(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// An opened store: the event log and whichever other ports the backend
/// has.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    /// The URL as it may be printed.
    pub(crate) shown: String,
    /// The event log.
    pub(crate) events: Arc<dyn EventStore>,
    /// Snapshots, where the backend keeps them.
    pub(crate) snapshots: Option<Arc<dyn SnapshotStore>>,
    /// Checkpoints, where the backend keeps them.
    pub(crate) checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// Dead letters, where the backend keeps them.
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterStore>>,
    /// The data subjects' keys (crypto-shredding), where the backend
    /// keeps them: in the same database as the events.
    pub(crate) keys: Option<Arc<dyn KeyStore>>,
    /// The backend, for `migrate`.
    pub(crate) backend: Backend,
}

/// The adapter behind a [`Store`].
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// SQLite (migrated when opened).
    Sqlite,
    /// PostgreSQL.
    Postgres(PgStore),
    /// EventSourcingDB.
    Esdb,
}

impl Store {
    /// Opens the store at `url` (with `token` for EventSourcingDB). A
    /// failure to reach it is [`Failure::Connect`]; its message never holds
    /// the password or the token.
    pub(crate) async fn open(url: &str, token: Option<&str>, mode: Mode) -> Result<Self, Failure> {
        let mut secrets = secrets_of(url);
        secrets.extend(token.map(str::to_owned));
        Self::open_parsed(url, token, mode).await.map_err(|failure| failure.redacted(&secrets))
    }

    async fn open_parsed(url: &str, token: Option<&str>, mode: Mode) -> Result<Self, Failure> {
        let shown = shown(url);
        let connect = |e: orchestrix::StoreError| Failure::Connect(format!("cannot open `{shown}`: {e}"));
        match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(path) => {
                if mode == Mode::Existing && !path.exists() {
                    return Err(Failure::NotFound(format!("no SQLite database at `{}`", path.display())));
                }
                let store = SqliteStore::open(&path, SqliteConfig::default()).await.map_err(connect)?;
                let shared = Arc::new(store);
                Ok(Self {
                    shown: shown.clone(),
                    events: shared.clone(),
                    snapshots: Some(shared.clone()),
                    checkpoints: Some(shared.clone()),
                    dead_letters: Some(shared.clone()),
                    keys: Some(shared),
                    backend: Backend::Sqlite,
                })
            }
            StoreUrl::Postgres { url, schema } => {
                let config = PgConfig::new(schema).map_err(|e| Failure::Usage(format!("`{shown}`: {e}")))?;
                let store = PgStore::connect(&url, config.with_notify(false)).await.map_err(connect)?;
                let shared = Arc::new(store.clone());
                Ok(Self {
                    shown: shown.clone(),
                    events: shared.clone(),
                    snapshots: Some(shared.clone()),
                    checkpoints: Some(shared.clone()),
                    dead_letters: Some(shared.clone()),
                    keys: Some(shared),
                    backend: Backend::Postgres(store),
                })
            }
            StoreUrl::Esdb(base) => {
                let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                    Failure::Usage(format!("`{shown}` needs an API token: pass --token or set ORCHESTRIX_ESDB_TOKEN"))
                })?;
                let store = EsdbStore::connect(EsdbConfig::new(base, token)).await.map_err(connect)?;
                let shared = Arc::new(store);
                Ok(Self {
                    shown: shown.clone(),
                    events: shared.clone(),
                    snapshots: Some(shared),
                    checkpoints: None,
                    dead_letters: None,
                    keys: None,
                    backend: Backend::Esdb,
                })
            }
        }
    }

    /// The dead-letter store, or a usage error naming the backend.
    pub(crate) fn dead_letters(&self) -> Result<&Arc<dyn DeadLetterStore>, Failure> {
        self.dead_letters.as_ref().ok_or_else(|| {
            Failure::Usage(format!("`{}` keeps no dead letters (EventSourcingDB holds events only)", self.shown))
        })
    }

    /// The key store, or a usage error naming the backend.
    pub(crate) fn keys(&self) -> Result<&Arc<dyn KeyStore>, Failure> {
        self.keys.as_ref().ok_or_else(|| {
            Failure::Usage(format!(
                "`{}` keeps no keys of personal data (EventSourcingDB holds events only; keep the keys in SQLite or \
                 PostgreSQL and run this command on that store)",
                self.shown
            ))
        })
    }

    /// The checkpoint store, or a usage error naming the backend.
    pub(crate) fn checkpoints(&self) -> Result<&Arc<dyn CheckpointStore>, Failure> {
        self.checkpoints.as_ref().ok_or_else(|| {
            Failure::Usage(format!("`{}` keeps no checkpoints (EventSourcingDB holds events only)", self.shown))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(shown("postgres://app:s3cret@db:5432/x?schema=a"), "postgres://app:***@db:5432/x?schema=a");
        assert_eq!(shown("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(shown("postgres://a:b:c@db/x"), "postgres://a:***@db/x");
        assert_eq!(secrets_of("postgres://app:s3cret@db/x"), vec!["s3cret".to_owned()]);
        assert_eq!(redact("failed for s3cret", &secrets_of("postgres://app:s3cret@db/x")), "failed for ***");
    }

    #[test]
    fn urls_parse_or_explain() {
        assert_eq!(StoreUrl::parse("sqlite://bank.db").unwrap(), StoreUrl::Sqlite("bank.db".into()));
        assert_eq!(StoreUrl::parse("sqlite:///tmp/b.db").unwrap(), StoreUrl::Sqlite("/tmp/b.db".into()));
        assert_eq!(
            StoreUrl::parse("postgres://u@h/db?schema=app&sslmode=disable").unwrap(),
            StoreUrl::Postgres { url: "postgres://u@h/db?sslmode=disable".into(), schema: "app".into() }
        );
        assert_eq!(StoreUrl::parse("esdb+http://h:3000").unwrap(), StoreUrl::Esdb("http://h:3000".into()));
        for bad in ["mysql://u:pw@h/db", "sqlite://", "sqlite::memory:", "esdb+ftp://x", "bank.db"] {
            let failure = StoreUrl::parse(bad).unwrap_err();
            assert_eq!(failure.exit_code(), 2, "{bad}");
            assert!(!failure.to_string().contains("pw@"), "{failure}");
        }
    }
}
