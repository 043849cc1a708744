//! The test bed's PostgreSQL (one cluster for the whole run, started by `scripts/test`
//! with `scripts/testbed/postgres.sh`): a fresh database per test, the bed's CA and
//! password role, and what the server itself says about the sessions salve opened.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// A `TESTBED_POSTGRES_*` variable; missing means the bed is missing: a panic, not a skip.
pub fn postgres_bed(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the PostgreSQL test bed (scripts/test starts \
             it; by hand: scripts/testbed/postgres.sh start DIR, then `set -a; . DIR/bed.env`)"
        )
    })
}

/// `url` naming database `name` (its options kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let authority = base.find("://").map_or(0, |at| at + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |at| authority + at);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..path])
}

/// `url` with `sslmode=MODE` in place of any it had, then `extra` options (`a=b&c=d`).
pub fn with_options(url: &str, mode: &str, extra: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut options: Vec<&str> = query
        .split('&')
        .filter(|option| !option.is_empty() && !option.starts_with("sslmode="))
        .collect();
    let sslmode = format!("sslmode={mode}");
    options.push(&sslmode);
    if !extra.is_empty() {
        options.push(extra);
    }
    format!("{base}?{}", options.join("&"))
}

/// The bed CA's PEM file (it signed the server's certificate).
pub fn postgres_ca() -> PathBuf {
    PathBuf::from(postgres_bed("TESTBED_POSTGRES_CA"))
}

/// A name no other database of this run has: `salve_it_PID_NANOS_N`.
fn new_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "salve_it_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a new database (`OWNER owner` when given) through the bed's admin URL; its name
/// and the admin connection.
async fn create_database(owner: Option<&str>) -> (String, tokio_postgres::Client) {
    let name = new_database_name();
    let admin = plain_client(&postgres_bed("TESTBED_POSTGRES_URL")).await;
    let owner = owner
        .map(|owner| format!(" OWNER {owner}"))
        .unwrap_or_default();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}{owner}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    (name, admin)
}

/// One test's database, reached with the bed's admin URL (trust): its URL for salve, and
/// plain SQL for the test's own checks. Each test gets its own, so tests run in parallel
/// without seeing each other.
pub struct Database {
    url: String,
}

/// A new database of the admin role.
pub async fn fresh_database() -> Database {
    let (name, _) = create_database(None).await;
    Database {
        url: with_database(&postgres_bed("TESTBED_POSTGRES_URL"), &name),
    }
}

impl Database {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` and returns every row, each column as text (NULL as "NULL").
    pub async fn query(&self, sql: &str) -> Vec<Vec<String>> {
        plain_client(&self.url)
            .await
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
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

/// A database of its own on the bed's server, owned by the password role `salve_pw`.
pub struct PgDatabase {
    pub name: String,
    admin: tokio_postgres::Client,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let (name, admin) = create_database(Some("salve_pw")).await;
        PgDatabase { name, admin }
    }

    /// The password role's URL for this database (no password in it; `sslmode=disable`).
    pub fn password_role_url(&self) -> String {
        with_database(&postgres_bed("TESTBED_POSTGRES_PASSWORD_URL"), &self.name)
    }

    /// (role, over TLS) of each open session of `application_name` on this database, as
    /// the server sees it (`pg_stat_activity`, `pg_stat_ssl`).
    pub async fn sessions(&self, application_name: &str) -> Vec<(String, bool)> {
        self.admin
            .query(
                "SELECT a.usename::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.application_name = $1 AND a.datname = $2",
                &[&application_name, &self.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }
}

async fn plain_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the PostgreSQL test bed at {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A CA of our own (openssl, part of the bed) that never signed the bed's certificate.
pub fn stranger_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("stranger-ca.crt");
    let status = Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the bed's CA", "-keyout"])
        .arg(dir.join("stranger-ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl made no CA");
    ca
}

/// `salve ARGS` in `dir` with a clean environment plus `env` (salve's `SALVE_*` overrides).
pub fn salve_cli_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_salve"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run salve")
}
