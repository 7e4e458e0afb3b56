//! Prints the SQL schema of both adapters, for migration tools of one's
//! own: `cargo run -p orchestrix-adapters --all-features --example print_migration -- postgres my_schema`.

#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(unused_variables))]
fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "postgres".to_owned());
    let name = args.next();
    match kind.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" => {
            let config = orchestrix_adapters::postgres::PgConfig::new(name.unwrap_or_else(|| "orchestrix".to_owned()));
            match config {
                Ok(config) => print!("{}", orchestrix_adapters::postgres::migration_sql(&config)),
                Err(error) => eprintln!("{error}"),
            }
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            match orchestrix_adapters::sqlite::SqliteConfig::new(name.unwrap_or_else(|| "orchestrix_".to_owned())) {
                Ok(config) => print!("{}", orchestrix_adapters::sqlite::migration_sql(&config)),
                Err(error) => eprintln!("{error}"),
            }
        }
        other => eprintln!("unknown adapter `{other}`: use `postgres` or `sqlite` (with its feature enabled)"),
    }
}
