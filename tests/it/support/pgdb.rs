//! A fresh database on the test bed's PostgreSQL (`scripts/test` starts one cluster for the
//! run and exports `TESTBED_POSTGRES_URL`, an admin URL). Each test gets its own database,
//! so tests run in parallel without seeing each other. Panics when the bed is missing.

use tokio_postgres::NoTls;

/// One test's database: its URL for salve, and plain SQL for the test's own checks.
pub struct Database {
    url: String,
}

/// Creates `salve_it_<random>` and returns it.
pub async fn fresh_database() -> Database {
    let admin = std::env::var("TESTBED_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TESTBED_POSTGRES_URL is not set: run the tests through scripts/test, which starts the PostgreSQL bed"
        )
    });
    let name = format!("salve_it_{:016x}", rand_u64());
    let client = connect(&admin).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    // The bed's options (its `sslmode`) are kept; only the database changes.
    let (address, options) = admin.split_once('?').unwrap_or((&admin, ""));
    let (base, _) = address
        .rsplit_once('/')
        .expect("TESTBED_POSTGRES_URL ends with /DATABASE");
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("?{options}")
    };
    Database {
        url: format!("{base}/{name}{options}"),
    }
}

impl Database {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` and returns every row, each column as text (NULL as "NULL").
    pub async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let client = connect(&self.url).await;
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the PostgreSQL bed at {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}
