//! Reaching the server: `PgStore::connect` against the bed's real cluster, over TLS to
//! its own CA and as its password role (`scripts/testbed/postgres.sh`). What the server
//! saw is asked of the server itself (`pg_stat_ssl`), never taken from salve.

use std::path::{Path, PathBuf};

use super::{TestDatabase, bed_variable, with_database, with_sslmode};
use crate::secret::Secret;
use crate::store::Store;
use crate::store::postgres::{PgConnect, PgStore};

fn bed_ca() -> PathBuf {
    PathBuf::from(bed_variable("TESTBED_POSTGRES_CA"))
}

async fn connect(
    url: String,
    password: Option<Secret>,
    ca_file: Option<&Path>,
) -> Result<PgStore, String> {
    PgStore::connect(&PgConnect {
        url,
        password,
        ca_file: ca_file.map(Path::to_path_buf),
        pool_size: 2,
    })
    .await
    .map_err(|error| format!("{error} / {error:?}"))
}

/// Whether each server session of `application_name` runs over TLS (one entry each).
async fn sessions_over_tls(database: &TestDatabase, application_name: &str) -> Vec<bool> {
    database
        .client()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1 AND a.datname = $2",
            &[&application_name, &database.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A CA of our own that never signed the bed's server certificate.
fn stranger_ca(dir: &Path) -> PathBuf {
    let key = dir.join("stranger.key");
    let ca = dir.join("stranger.crt");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the bed's CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (part of the test bed) runs");
    assert!(status.success(), "openssl made no CA");
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_with_the_bed_ca_connects_over_tls() {
    let database = TestDatabase::create(None).await;
    let tls_name = format!("{}_tls", database.name);
    let url = format!(
        "{}&application_name={tls_name}",
        with_sslmode(&database.url(), "require")
    );
    let store = connect(url, None, Some(&bed_ca())).await.unwrap();
    store.ping().await.unwrap();
    let sessions = sessions_over_tls(&database, &tls_name).await;
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| ssl),
        "the store's sessions over TLS, as the server sees them: {sessions:?}"
    );

    // The same question tells a plain session apart: it is not a check that always passes.
    let plain_name = format!("{}_plain", database.name);
    let url = format!(
        "{}&application_name={plain_name}",
        with_sslmode(&database.url(), "disable")
    );
    let plain = connect(url, None, Some(&bed_ca())).await.unwrap();
    plain.ping().await.unwrap();
    assert_eq!(sessions_over_tls(&database, &plain_name).await, [false]);
    drop((store, plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_with_a_tls_error() {
    let database = TestDatabase::create(None).await;
    let dir = tempfile::tempdir().unwrap();
    let url = with_sslmode(&database.url(), "require");
    let error = connect(url.clone(), None, Some(&stranger_ca(dir.path())))
        .await
        .err()
        .expect("a server certificate our CA never signed must not be trusted");
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "the error names the TLS certificate problem: {error}"
    );
    assert!(error.contains("store configuration"), "{error}");

    // Without a CA file the platform's roots are asked, and do not know the bed's CA.
    let error = connect(url, None, None)
        .await
        .err()
        .expect("a self-signed CA is not among the platform's roots");
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_role_connects_with_the_password_from_a_file() {
    let database = TestDatabase::create(Some("salve_pw")).await;
    let url = with_database(
        &bed_variable("TESTBED_POSTGRES_PASSWORD_URL"),
        &database.name,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.password");
    std::fs::write(
        &file,
        format!("{}\n", bed_variable("TESTBED_POSTGRES_PASSWORD")),
    )
    .unwrap();
    let password = crate::secret::secret_from("store.password", None, Some(&file)).unwrap();

    let store = connect(url.clone(), password.clone(), None).await.unwrap();
    store.ping().await.unwrap();
    // It migrated as that role: the tables are its own.
    let owner: String = database
        .client()
        .await
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'incidents'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "salve_pw");

    // Over TLS too, as a production setup would be.
    let tls_url = with_sslmode(&url, "require");
    let over_tls = connect(tls_url, password, Some(&bed_ca())).await.unwrap();
    over_tls.ping().await.unwrap();

    // Without a password the server asks for one, and the error says so.
    let error = connect(url, None, None)
        .await
        .err()
        .expect("no password, no session");
    assert!(error.contains("password"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_clearly_and_never_shown() {
    let database = TestDatabase::create(Some("salve_pw")).await;
    let url = with_database(
        &bed_variable("TESTBED_POSTGRES_PASSWORD_URL"),
        &database.name,
    );
    let wrong = format!("wrong-{}", database.name);
    let error = connect(url, Some(Secret::new(wrong.clone())), None)
        .await
        .err()
        .expect("a wrong password must not connect");
    assert!(
        error.contains("password authentication failed"),
        "the server's reason reaches the operator: {error}"
    );
    assert!(!error.contains(&wrong), "the password leaked: {error}");
    let right = bed_variable("TESTBED_POSTGRES_PASSWORD");
    assert!(!error.contains(&right), "the password leaked: {error}");
}

#[tokio::test]
async fn a_url_holding_a_password_is_refused_without_showing_it() {
    // Refused before any connection: no bed needed, nothing is dialled.
    for url in [
        "postgres://salve:hunter2-secret@127.0.0.1:1/salve",
        "postgres://127.0.0.1:1/salve?user=salve&password=hunter2-secret",
    ] {
        let error = connect(url.to_owned(), None, None)
            .await
            .err()
            .expect("a password in the URL must be refused");
        assert!(
            error.contains("store.url must not hold a password"),
            "{url}: {error}"
        );
        assert!(!error.contains("hunter2-secret"), "{url}: {error}");
    }
}
