// scratch: not committed
use orchestrix::store::{EventStore, ExpectedVersion};
use orchestrix::{Metadata, NewEvent, StreamId, Uuid};
use orchestrix_adapters::postgres::{PgConfig, PgStore};
use serde_json::value::RawValue;
const DATA: &str = r#"{"owner":"Ada","amount":30,"note":"benchmark"}"#;
#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let side = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let url = std::env::var("ORCHESTRIX_PG_URL").unwrap();
    let schema = format!("orx_prof_{}", std::process::id());
    let config = PgConfig::new(&schema).unwrap().with_max_connections(4).with_notify(std::env::var("NOTIFY").is_ok());
    let store = PgStore::connect(&url, config).await.unwrap();
    store.migrate().await.unwrap();
    let raw_sql = format!(
        "INSERT INTO \"{schema}\".events (global_position, event_id, category, aggregate_id, stream_version, event_type, \
         schema_version, data, metadata, recorded_at) VALUES ((pg_current_xact_id()::text::bigint << 20) | 1, $1, $2, \
         $3, 1, $4, $5, $6::jsonb, $7::jsonb, $8)");
    let t = std::time::Instant::now();
    for _ in 0..n {
        let id = Uuid::now_v7().to_string();
        if side == "raw" {
            let metadata = serde_json::to_string(&Metadata::default()).unwrap();
            sqlx::query(&raw_sql)
                .bind(Uuid::now_v7())
                .bind("Account")
                .bind(id)
                .bind("AccountOpened")
                .bind(1_i64)
                .bind(DATA)
                .bind(metadata)
                .bind(chrono::Utc::now())
                .execute(store.pool())
                .await
                .unwrap();
        } else {
            let stream = StreamId::new("Account", id).unwrap();
            let e = NewEvent {
                event_type: "AccountOpened".into(),
                schema_version: 1,
                data: RawValue::from_string(DATA.into()).unwrap(),
                metadata: Metadata::default(),
            };
            store.append(&stream, ExpectedVersion::NoStream, vec![e]).await.unwrap();
        }
    }
    eprintln!("{side}: {:?} per op", t.elapsed() / n as u32);
    store.drop_schema().await.unwrap();
}
