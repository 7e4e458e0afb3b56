//! The SQLite snapshot, checkpoint, key-value and dead-letter stores: the
//! shared SQL ports ([`crate::common::ports`]) with times in microseconds
//! since the epoch and ids as text.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqliteStore;
use crate::common::ports::{impl_sql_ports, Dialect};

/// How SQLite columns hold times and ids.
pub(super) struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Time = i64;
    type Id = String;

    fn time_to_sql(time: DateTime<Utc>) -> i64 {
        time.timestamp_micros()
    }

    fn time_from_sql(micros: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(micros)
    }

    fn id_to_sql(id: Uuid) -> String {
        id.to_string()
    }

    fn id_from_sql(id: &String) -> Result<Uuid, String> {
        Uuid::parse_str(id).map_err(|error| error.to_string())
    }

    fn text_to_sql(text: &str) -> String {
        text.to_owned()
    }
}

impl_sql_ports!(SqliteStore, sqlx::Sqlite, SqliteDialect);
