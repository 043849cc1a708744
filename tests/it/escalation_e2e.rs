//! Escalation end to end on real parts: a failed remediation pages by real email (STARTTLS
//! with AUTH) or a real ticket webhook, with the reason, the command output, the check
//! results and the recipe's diagnostics; the outbox holds an escalation through an SMTP
//! server that refuses (451) and through `kill -9`, and delivers it exactly once.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use serde_json::{Value, json};

use crate::bed::{BEARER, TOKEN, history_json, shipped_recipes};
use crate::remediation_e2e::{
    Extras, Inventory, define_unit, events, post_generic, start_with, wait_for_final,
};
use crate::support::{
    CapturedMail, SMTP_TEST_PASSWORD, SMTP_TEST_USER, SalveProcess, SmtpOptions, SmtpServer,
    SshHost, WebhookCapture, free_port, post_json, salve_config_template, wait_until,
};

fn toml_path(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap()
}

/// `oncall-email` as real email; `tickets` as a webhook into `capture` (or log).
fn channels(
    smtp: &SmtpServer,
    password_file: Option<&Path>,
    capture: Option<&WebhookCapture>,
) -> String {
    let email = match password_file {
        Some(password_file) => format!(
            "[escalation.channels.oncall-email]\nkind = \"email\"\nsmtp_url = \"smtp://localhost:{}\"\n\
             tls = \"starttls\"\nusername = \"{SMTP_TEST_USER}\"\npassword_file = {}\nca_file = {}\n\
             from = \"salve <salve@test.invalid>\"\nto = [\"oncall@test.invalid\"]\n",
            smtp.port(),
            toml_path(password_file),
            toml_path(smtp.ca_file())
        ),
        None => format!(
            "[escalation.channels.oncall-email]\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\n\
             tls = \"none\"\nfrom = \"salve <salve@test.invalid>\"\nto = [\"oncall@test.invalid\"]\n",
            smtp.port()
        ),
    };
    let tickets = match capture {
        Some(capture) => format!(
            "[escalation.channels.tickets]\nkind = \"webhook\"\nurl = \"{}\"\n",
            capture.url("/tickets")
        ),
        None => "[escalation.channels.tickets]\nkind = \"log\"\n".to_owned(),
    };
    format!("{email}\n{tickets}")
}

pub(crate) async fn wait_for_mails(smtp: &SmtpServer, count: usize) -> Vec<CapturedMail> {
    wait_until(Duration::from_secs(30), &format!("{count} mail(s)"), || {
        let mails = smtp.messages();
        async move { (mails.len() >= count).then_some(mails) }
    })
    .await
}

/// Until every escalation of the journal was accepted by its channel.
pub(crate) async fn wait_until_delivered(salve: &SalveProcess) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        "every escalation delivered",
        || async {
            let history = history_json(salve).await;
            let delivered = history.iter().all(|i| {
                let queued = events(i, "escalation_queued").len();
                queued == 0 || !events(i, "escalation_sent").is_empty()
            });
            (delivered
                && history
                    .iter()
                    .any(|i| !events(i, "escalation_sent").is_empty()))
            .then_some(history)
        },
    )
    .await
}

/// Sleeps until a duplicate delivery would have happened: past every `escalation_sent` of
/// `history` plus the backoff a retry of that row would have waited had attempt N been
/// recorded failed (2^(N-1) s, as `engine::outbox::backoff`) plus a margin of four outbox
/// polls. "Exactly once" counted any earlier could not see the duplicate.
pub(crate) async fn wait_past_next_retry(history: &[Value]) {
    let last_retry_due = history
        .iter()
        .flat_map(|incident| incident["events"].as_array().unwrap())
        .filter(|event| event["kind"] == "escalation_sent")
        .map(|event| {
            let at: DateTime<Utc> = event["at"].as_str().unwrap().parse().unwrap();
            let attempt = event["detail"]["attempt"].as_u64().unwrap().clamp(1, 9) as u32;
            at + chrono::Duration::seconds(2i64.pow(attempt - 1)) + chrono::Duration::seconds(2)
        })
        .max()
        .expect("no escalation_sent in the journal");
    if let Ok(left) = (last_retry_due - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

#[tokio::test]
async fn service_restart_that_fails_verification_sends_one_email_over_starttls_with_auth() {
    let host = SshHost::start().await;
    define_unit(
        &host,
        "broken-api",
        "echo FATAL config parse error on line 3 >&2; exit 1",
    )
    .await;
    let smtp = SmtpServer::start(SmtpOptions {
        starttls: true,
        auth: true,
        ..SmtpOptions::default()
    })
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("smtp-password");
    std::fs::write(&password_file, SMTP_TEST_PASSWORD).unwrap();
    let channels = channels(&smtp, Some(&password_file), None);
    let port = free_port();
    let enforcing = start_with(
        &[Inventory::of("web1", &host)],
        &[&host],
        // The shipped recipe with its window cut from 60 s to 4 s.
        &[(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"4s\"\ninterval = \"1s\"",
        )],
        Extras {
            channels: Some(&channels),
            ..Extras::default()
        },
    )
    .await;
    let salve = &enforcing.salve;
    post_generic(
        salve,
        json!({ "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "broken-api", "health_port": port.to_string() } }),
    )
    .await;
    let history = wait_for_final(salve, 1, Duration::from_secs(60)).await;
    assert_eq!(history[0]["state"], "verify_failed");
    wait_until_delivered(salve).await;

    let mails = wait_for_mails(&smtp, 1).await;
    assert_eq!(
        mails.len(),
        1,
        "one incident, one reason, one channel: one mail"
    );
    let mail = &mails[0];
    assert!(
        mail.tls && mail.auth_login.as_deref() == Some(SMTP_TEST_USER),
        "not STARTTLS+AUTH"
    );
    assert!(
        mail.subject.contains("verify_failed") && mail.subject.contains("web1"),
        "{}",
        mail.subject
    );
    let body = &mail.body;
    for expected in [
        "checks still failing",           // the reason
        "systemctl restart 'broken-api'", // the command
        "/healthz",                       // the HTTP check's last result
        "systemctl is-active --quiet 'broken-api'",
        "journalctl -u 'broken-api' -n 50 --no-pager", // the recipe's diagnostics…
        "FATAL config parse error on line 3",          // …and what they found
    ] {
        assert!(
            body.contains(expected),
            "the mail lacks {expected:?}:\n{body}"
        );
    }
}

#[tokio::test]
async fn disk_that_stays_full_opens_one_ticket_with_the_du_report() {
    let host = SshHost::start().await;
    // Fresh files: nothing is expired, so the known-safe cleanup cannot free them.
    let arrange = host
        .exec("mkdir -p /tmp/build-cache && dd if=/dev/zero of=/tmp/build-cache/layer.bin bs=1M count=14 status=none")
        .await;
    assert!(arrange.status.success());
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    let capture = WebhookCapture::start().await;
    let channels = channels(&smtp, None, Some(&capture));
    let enforcing = start_with(
        &[Inventory::of("db1", &host)],
        &[&host],
        &[(
            "disk-space.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"3s\"\ninterval = \"1s\"",
        )],
        Extras {
            channels: Some(&channels),
            ..Extras::default()
        },
    )
    .await;
    let salve = &enforcing.salve;
    post_generic(
        salve,
        json!({ "labels": { "alertname": "DiskSpaceLow", "instance": "db1:9100", "mountpoint": "/tmp" } }),
    )
    .await;
    let history = wait_for_final(salve, 1, Duration::from_secs(60)).await;
    assert_eq!(history[0]["state"], "verify_failed", "{:#}", history[0]);
    wait_until_delivered(salve).await;

    let posts = capture.requests();
    assert_eq!(posts.len(), 1, "one ticket");
    let ticket = posts[0].json();
    assert_eq!(ticket["reason"], "verify_failed");
    let du = &ticket["diagnostics"][0];
    assert!(
        du["command"]
            .as_str()
            .unwrap()
            .starts_with("du -xh --max-depth=2 '/tmp'"),
        "{du:#}"
    );
    assert!(
        du["output"].as_str().unwrap().contains("/tmp/build-cache"),
        "the du report: {du:#}"
    );
    assert!(
        smtp.messages().is_empty(),
        "disk-space routes to tickets only"
    );
}

/// A dry-run salve whose default route is email to `smtp`.
pub(crate) async fn novel_salve(smtp: &SmtpServer) -> SalveProcess {
    let config = format!(
        "{}\n[server.auth]\nbearer_token = \"{TOKEN}\"\n\n[recipes]\ndir = \"recipes\"\n\n\
         [escalation]\ndefault = [\"oncall-email\"]\n\n{}",
        salve_config_template(),
        channels(smtp, None, None)
    );
    SalveProcess::builder(&config)
        .recipes_dir(&shipped_recipes())
        .start()
        .await
}

pub(crate) async fn post_novel(salve: &SalveProcess) {
    let response = post_json(
        &format!("{}/hooks/generic", salve.base_url()),
        &json!({ "labels": { "alertname": "NovelThing", "instance": "web1:9100" } }),
        &[BEARER],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
}

async fn wait_for_failed_attempt(salve: &SalveProcess) {
    wait_until(
        Duration::from_secs(20),
        "a refused delivery attempt",
        || async {
            let history = history_json(salve).await;
            history
                .iter()
                .any(|i| !events(i, "escalation_failed").is_empty())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn outbox_retries_through_451_and_delivers_exactly_once() {
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    smtp.set_failing(true);
    let salve = novel_salve(&smtp).await;
    post_novel(&salve).await;
    wait_for_failed_attempt(&salve).await;
    assert!(smtp.messages().is_empty());

    smtp.set_failing(false);
    wait_until_delivered(&salve).await;
    wait_for_mails(&smtp, 1).await;
    wait_past_next_retry(&history_json(&salve).await).await;
    let history = history_json(&salve).await;
    assert_eq!(smtp.messages().len(), 1, "{:#?}", smtp.messages());
    assert_eq!(events(&history[0], "escalation_sent").len(), 1);
    let failure = events(&history[0], "escalation_failed")[0];
    assert!(
        failure["error"].as_str().unwrap().contains("451"),
        "{failure:#}"
    );
}

#[tokio::test]
async fn an_escalation_pending_at_kill_9_is_delivered_after_restart_once() {
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    smtp.set_failing(true);
    let mut salve = novel_salve(&smtp).await;
    post_novel(&salve).await;
    wait_for_failed_attempt(&salve).await;
    salve.kill9();

    smtp.set_failing(false);
    salve.restart().await;
    let history = wait_until_delivered(&salve).await;
    wait_for_mails(&smtp, 1).await;
    wait_past_next_retry(&history).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "delivered once");
    assert!(mails[0].subject.contains("novel"), "{}", mails[0].subject);
}
