//! The store's contract: behaviour tests every [`Store`] must pass, each run twice, on a
//! fresh SQLite file and on a fresh database in the test bed's PostgreSQL
//! (`TESTBED_POSTGRES_URL`, started by `scripts/test`). A test reaches the store only
//! through the trait; the few fixtures that must reach behind it (backdating rows, a
//! counter at its limit) are plain SQL both schemas share. Never skipped: without the bed
//! the PostgreSQL half panics.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

use crate::store::Store;
use crate::store::postgres::{PgConnect, PgStore};
use crate::store::sqlite::SqliteStore;

/// For each contract test named (an `async fn NAME(store: &mut TestStore)` in the same
/// file), a module `NAME` with two tests, `sqlite` and `postgres`, running it on a fresh
/// store of each kind (`cargo nextest run --lib contract -E 'test(/::sqlite$/)'` runs
/// one half). A test left out of the list is dead code, which clippy refuses.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut store = $crate::store::contract::TestStore::sqlite();
                super::$name(&mut store).await;
                store.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut store = $crate::store::contract::TestStore::postgres().await;
                super::$name(&mut store).await;
                store.finish().await;
            }
        }
    )*};
}
mod approvals;
mod connect;
mod gates;
mod incidents;
mod retention;

/// A store under test, and what the test needs to reopen it or reach its rows.
pub(crate) struct TestStore {
    /// `None` only for the moment `reopen` closed it and opens it again.
    handle: Option<Handle>,
    place: Place,
}

/// The open store, by kind (for what only the concrete type says, like `commits`).
enum Handle {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

/// Where the store keeps its rows.
enum Place {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres(TestDatabase),
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match self.handle() {
            Handle::Sqlite(store) => &**store,
            Handle::Postgres(store) => &**store,
        }
    }
}

impl TestStore {
    /// A store on a new file in a fresh temporary directory.
    pub(crate) fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        TestStore {
            handle: Some(Handle::Sqlite(Arc::new(store))),
            place: Place::Sqlite { _dir: dir, path },
        }
    }

    /// A store on a new database of the bed's PostgreSQL, migrated by `PgStore::connect`.
    pub(crate) async fn postgres() -> TestStore {
        let database = TestDatabase::create(None).await;
        let store = database.connect().await;
        TestStore {
            handle: Some(Handle::Postgres(Arc::new(store))),
            place: Place::Postgres(database),
        }
    }

    fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("the store is open")
    }

    /// Another handle on the same store, for tasks of their own.
    pub(crate) fn shared(&self) -> Arc<dyn Store> {
        match self.handle() {
            Handle::Sqlite(store) => store.clone(),
            Handle::Postgres(store) => store.clone(),
        }
    }

    /// Closes the store and opens it again on the same file or database, as a restarted
    /// salve does (handles from [`TestStore::shared`] keep the old one open meanwhile).
    pub(crate) async fn reopen(&mut self) {
        self.handle = None;
        self.handle = Some(match &self.place {
            Place::Sqlite { path, .. } => Handle::Sqlite(Arc::new(
                SqliteStore::open_path(path).expect("reopen the SQLite store"),
            )),
            Place::Postgres(database) => Handle::Postgres(Arc::new(database.connect().await)),
        });
    }

    /// Transactions the store's intake writer committed (group commit).
    pub(crate) fn commits(&self) -> u64 {
        match self.handle() {
            Handle::Sqlite(store) => store.commits(),
            Handle::Postgres(store) => store.commits(),
        }
    }

    /// Runs `sql` (no parameters: test values are written into it) behind the store's
    /// back, on its own connection; returns the rows changed. Only SQL both schemas read
    /// alike: the same tables, columns and text formats.
    pub(crate) async fn execute_sql(&self, sql: &str) -> u64 {
        match &self.place {
            Place::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .execute(sql, [])
                .map(|changed| changed as u64)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Place::Postgres(database) => database
                .client()
                .await
                .execute(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// The one integer `sql` answers (a count).
    pub(crate) async fn query_i64(&self, sql: &str) -> i64 {
        match &self.place {
            Place::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Place::Postgres(database) => database
                .client()
                .await
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0),
        }
    }

    /// After a test that passed: close the store and drop its database (a failed test
    /// leaves it for a look; the bed's cluster goes at the end of the run anyway).
    pub(crate) async fn finish(mut self) {
        self.handle = None;
        if let Place::Postgres(database) = self.place {
            database.drop_database().await;
        }
    }
}

/// The bed's admin URL; a missing bed is a failure, never a skip.
pub(crate) fn admin_url() -> String {
    std::env::var("TESTBED_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TESTBED_POSTGRES_URL is not set: the store's contract tests need the PostgreSQL \
             test bed; run them through scripts/test, or start a cluster with \
             `scripts/testbed/postgres.sh start DIR` and export the URL it prints"
        )
    })
}

/// A variable of the bed (`scripts/testbed/postgres.sh` writes them); missing: a failure.
pub(crate) fn bed_variable(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the PostgreSQL test bed (scripts/test exports \
             it; by hand: `set -a; . DIR/bed.env` after `scripts/testbed/postgres.sh start DIR`)"
        )
    })
}

/// `url` with its database replaced by `database` (the query, e.g. `sslmode`, kept).
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` with `sslmode=MODE` instead of any `sslmode` it had (its other options kept).
pub(crate) fn with_sslmode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut options: Vec<&str> = query
        .split('&')
        .filter(|option| !option.is_empty() && !option.starts_with("sslmode="))
        .collect();
    let sslmode = format!("sslmode={mode}");
    options.push(&sslmode);
    format!("{base}?{}", options.join("&"))
}

/// A database of its own in the bed's cluster, made through the admin URL.
pub(crate) struct TestDatabase {
    pub(crate) name: String,
    admin_url: String,
}

impl TestDatabase {
    /// `CREATE DATABASE salve_t_<unique>` (owned by `owner` when given).
    pub(crate) async fn create(owner: Option<&str>) -> TestDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "salve_t_{}_{:x}_{}",
            std::process::id(),
            nanos & 0xffff_ffff_ffff,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let database = TestDatabase {
            name,
            admin_url: admin_url(),
        };
        let owner = owner.map_or(String::new(), |owner| format!(" OWNER {owner}"));
        admin_client(&database.admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {}{owner}", database.name))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {}: {e}", database.name));
        database
    }

    /// This database's URL as the admin role (trust, no TLS).
    pub(crate) fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }

    async fn connect(&self) -> PgStore {
        PgStore::connect(&PgConnect {
            url: self.url(),
            password: None,
            ca_file: None,
            pool_size: 4,
        })
        .await
        .unwrap_or_else(|e| panic!("PgStore::connect on {}: {e}", self.url()))
    }

    /// A plain connection to this database as the admin role, beside the store's pool.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url()).await
    }

    async fn drop_database(self) {
        admin_client(&self.admin_url)
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the PostgreSQL test bed at {url}: {e}"));
    tokio::spawn(async move {
        // Ends when the client is dropped; an error then is only the goodbye.
        let _ = connection.await;
    });
    client
}

#[test]
fn a_url_gets_another_database_and_keeps_its_options() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u@h:1/db?sslmode=require", "t2"),
        "postgres://u@h:1/t2?sslmode=require"
    );
    assert_eq!(
        with_database("postgres://u@h:1", "t3"),
        "postgres://u@h:1/t3"
    );
    assert_eq!(
        with_sslmode(
            "postgres://u@h:1/d?sslmode=disable&application_name=a",
            "require"
        ),
        "postgres://u@h:1/d?application_name=a&sslmode=require"
    );
    assert_eq!(
        with_sslmode("postgres://u@h:1/d", "require"),
        "postgres://u@h:1/d?sslmode=require"
    );
}
