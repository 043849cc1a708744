//! Escalation end to end on real parts: a failed remediation pages by real email (STARTTLS
//! with AUTH) or a real ticket webhook, with the reason, the command output, the check
//! results and the recipe's diagnostics; the outbox holds an escalation through an SMTP
//! server that refuses (451) and through `kill -9`, and delivers it exactly once.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Enforcing, Inventory, SMTP_TEST_PASSWORD, SMTP_TEST_USER, SalveProcess, SmtpOptions,
    SmtpServer, SshHost, WebhookCapture, events, free_port, service_down_on_web1,
    wait_past_next_retry, wait_until,
};

#[tokio::test]
async fn service_restart_that_fails_verification_sends_one_email_over_starttls_with_auth() {
    let host = SshHost::start().await;
    host.define_unit(
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
    let port = free_port();
    let enforcing = Enforcing::on(&host)
        // The shipped recipe with its window cut from 60 s to 4 s.
        .patch_recipe(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"4s\"\ninterval = \"1s\"",
        )
        .config(|config| config.email_channels(&smtp, Some(&password_file), None))
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(service_down_on_web1("broken-api", port))
        .await;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    assert_eq!(history[0]["state"], "verify_failed");
    salve.wait_until_delivered().await;

    let mails = smtp.wait_for_mails(1).await;
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
    let enforcing = Enforcing::builder(vec![Inventory::of("db1", &host)], &[&host])
        .patch_recipe(
            "disk-space.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"3s\"\ninterval = \"1s\"",
        )
        .config(|config| config.email_channels(&smtp, None, Some(&capture)))
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "DiskSpaceLow", "instance": "db1:9100", "mountpoint": "/tmp" } }))
        .await;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    assert_eq!(history[0]["state"], "verify_failed", "{:#}", history[0]);
    salve.wait_until_delivered().await;

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

async fn wait_for_failed_attempt(salve: &SalveProcess) {
    wait_until(
        Duration::from_secs(20),
        "a refused delivery attempt",
        || async {
            let history = salve.history_json().await;
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
    let salve = SalveProcess::escalating_a_novel_alert_to(&smtp).await;
    wait_for_failed_attempt(&salve).await;
    assert!(smtp.messages().is_empty());

    smtp.set_failing(false);
    salve.wait_until_delivered().await;
    smtp.wait_for_mails(1).await;
    wait_past_next_retry(&salve.history_json().await).await;
    let history = salve.history_json().await;
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
    let mut salve = SalveProcess::escalating_a_novel_alert_to(&smtp).await;
    wait_for_failed_attempt(&salve).await;
    salve.kill9();

    smtp.set_failing(false);
    salve.restart().await;
    let history = salve.wait_until_delivered().await;
    smtp.wait_for_mails(1).await;
    wait_past_next_retry(&history).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "delivered once");
    assert!(mails[0].subject.contains("novel"), "{}", mails[0].subject);
}
