//! The real `salve` on the bed's PostgreSQL as an operator configures it: over TLS to the
//! server's own CA (`store.ca_file`), as a password role whose password comes from
//! `store.password_file`. What went over the wire is asked of the server (`pg_stat_ssl`);
//! a wrong password, a wrong CA and a password inside `store.url` fail with a reason and
//! never show the password.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    PgDatabase, SalveConfig, postgres_bed, postgres_ca, salve_cli_with_env, stranger_ca, text,
    wait_until, with_options,
};

/// `store.password_file` holding `password` (with the newline an editor leaves).
fn password_file(dir: &Path, password: &str) -> std::path::PathBuf {
    let file = dir.join("store.password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salve_serves_on_postgres_over_tls_as_the_password_role() {
    let database = PgDatabase::create().await;
    let application = format!("{}_serve", database.name);
    let url = with_options(
        &database.password_role_url(),
        "require",
        &format!("application_name={application}"),
    );
    let secrets = tempfile::tempdir().unwrap();
    let password = password_file(secrets.path(), &postgres_bed("TESTBED_POSTGRES_PASSWORD"));

    let salve = SalveConfig::standard()
        .store_url(&url)
        .salve()
        .env("SALVE_STORE__PASSWORD_FILE", password.to_str().unwrap())
        .env("SALVE_STORE__CA_FILE", postgres_ca().to_str().unwrap())
        .start()
        .await;

    let sessions = wait_until(
        Duration::from_secs(20),
        "salve's sessions on the server",
        || async {
            let sessions = database.sessions(&application).await;
            (!sessions.is_empty()).then_some(sessions)
        },
    )
    .await;
    assert!(
        sessions
            .iter()
            .all(|(role, ssl)| role == "salve_pw" && *ssl),
        "every session of salve is the password role over TLS: {sessions:?}"
    );
    drop(salve);
}

#[test]
fn a_wrong_password_is_refused_with_the_servers_reason_and_never_shown() {
    let database = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(PgDatabase::create());
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("wrong-password-{}", database.name);
    let password = password_file(dir.path(), &wrong);
    SalveConfig::standard()
        .store_url(&database.password_role_url())
        .write_to(dir.path());

    let output = salve_cli_with_env(
        dir.path(),
        &["breaker", "list"],
        &[("SALVE_STORE__PASSWORD_FILE", &password)],
    );
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("password authentication failed"),
        "the server's reason reaches the operator: {said}"
    );
    assert!(!said.contains(&wrong), "the password was shown: {said}");
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let database = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(PgDatabase::create());
    let dir = tempfile::tempdir().unwrap();
    let password = password_file(dir.path(), &postgres_bed("TESTBED_POSTGRES_PASSWORD"));
    let ca = stranger_ca(dir.path());
    let url = with_options(&database.password_role_url(), "require", "");
    SalveConfig::standard().store_url(&url).write_to(dir.path());

    let output = salve_cli_with_env(
        dir.path(),
        &["breaker", "list"],
        &[
            ("SALVE_STORE__PASSWORD_FILE", &password),
            ("SALVE_STORE__CA_FILE", &ca),
        ],
    );
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("TLS") && said.contains("certificate"),
        "the error names the TLS certificate problem: {said}"
    );
}

#[test]
fn a_password_inside_store_url_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://salve_pw:hunter2-in-the-url@127.0.0.1:1/salve?sslmode=require";
    SalveConfig::standard().store_url(url).write_to(dir.path());

    let output = salve_cli_with_env(dir.path(), &["check"], &[]);
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("must not hold a password"), "{said}");
    assert!(
        !said.contains("hunter2-in-the-url"),
        "the password was shown: {said}"
    );
}
