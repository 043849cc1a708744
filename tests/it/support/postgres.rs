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

/// A database of its own on the bed's server, owned by the password role `salve_pw`.
pub struct PgDatabase {
    pub name: String,
    admin: tokio_postgres::Client,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "salve_it_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = plain_client(&postgres_bed("TESTBED_POSTGRES_URL")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} OWNER salve_pw"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
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
