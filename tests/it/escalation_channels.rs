//! Escalation channels against real servers: email through Debian's aiosmtpd (plain,
//! STARTTLS with AUTH and a test CA, implicit TLS, a 451 switch) and webhooks through the
//! capturing HTTP receiver (generic, PagerDuty, body templates, error statuses). Channels
//! are built from a real salve.toml through `config::load_with_env`, as `serve` will.

use std::collections::BTreeMap;

use crate::support::{
    Channel, SMTP_TEST_PASSWORD, SMTP_TEST_USER, SalveConfig, SmtpOptions, SmtpServer,
    WebhookCapture, free_port, toml_path, toml_string,
};
use salve::config::load_with_env;
use salve::notify::content::sample;
use salve::notify::{Channels, Escalation, SendError};
use serde_json::Value;
use tempfile::TempDir;

/// Channels from a salve.toml holding `config`, with `env` as the SALVE_* overrides.
/// The TempDir holds the file (and any secret files the caller put there).
fn channels_with_env(config: SalveConfig, env: &[(&str, &str)]) -> (Channels, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("salve.toml");
    let channels_toml = config.build();
    std::fs::write(&path, &channels_toml).expect("write salve.toml");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let loaded = load_with_env(Some(&path), env).unwrap_or_else(|problems| {
        panic!(
            "config problems:\n{}\n---\n{channels_toml}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let channels = Channels::new(&loaded.settings.escalation.channels)
        .unwrap_or_else(|error| panic!("Channels::new: {error}"));
    (channels, dir)
}

fn channels(config: SalveConfig) -> (Channels, TempDir) {
    channels_with_env(config, &[])
}

/// `Channel::email` to two recipients.
fn two_recipient_email(url: &str) -> Channel {
    Channel::email(url).set("to", "[\"oncall@test.invalid\", \"backup@test.invalid\"]")
}

/// Channel `mail`: email through `url` to two recipients, with `channel`'s settings.
fn email_channel(url: &str, channel: impl FnOnce(Channel) -> Channel) -> SalveConfig {
    SalveConfig::new().channel("mail", channel(two_recipient_email(url)))
}

/// An escalation whose alert data tries every trick: line breaks that would forge mail
/// headers or JSON keys, quotes, terminal escapes.
fn hostile_escalation() -> Escalation {
    let mut escalation = sample();
    escalation.incident_id = 7;
    escalation.alertname = Some("ServiceDown\r\nBcc: victim@test.invalid".into());
    escalation.labels.insert(
        "alertname".into(),
        "ServiceDown\r\nBcc: victim@test.invalid".into(),
    );
    escalation.labels.insert(
        "evil".into(),
        "\", \"routing_key\": \"stolen\"}\n\r\nX-Injected: yes\u{1b}[31m".into(),
    );
    escalation.steps[0].stdout = "Restarting nginx\nJob failed: see journalctl\n".into();
    escalation
}

async fn send_ok(channels: &Channels, channel: &str, escalation: &Escalation) {
    if let Err(error) = channels.send(channel, escalation).await {
        panic!("send through {channel}: {error:?}");
    }
}

async fn send_err(channels: &Channels, channel: &str, escalation: &Escalation) -> SendError {
    match channels.send(channel, escalation).await {
        Ok(()) => panic!("send through {channel} was accepted; expected an error"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn escalation_email_over_plain_smtp_arrives_with_subject_and_body() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let (channels, _dir) = channels(email_channel(
        &format!("smtp://127.0.0.1:{}", server.port()),
        |mail| mail.set("tls", "\"none\""),
    ));
    let escalation = hostile_escalation();

    send_ok(&channels, "mail", &escalation).await;

    let mails = server.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "salve@test.invalid");
    assert_eq!(mail.to, ["oncall@test.invalid", "backup@test.invalid"]);
    assert!(!mail.tls);
    // The hostile alertname stays inside the subject, escaped: no Bcc header appeared.
    assert_eq!(
        mail.subject,
        "[salve] verify_failed: ServiceDown\\r\\nBcc: victim@test.invalid on web1"
    );
    assert!(mail.header("Bcc").is_none(), "{:?}", mail.headers);
    assert!(mail.header("X-Injected").is_none(), "{:?}", mail.headers);
    assert_eq!(mail.header("X-Salve-Incident"), Some("7"));
    assert_eq!(mail.header("X-Salve-Reason"), Some("verify_failed"));
    // The body is the plain-text report: reason, step output, check results.
    assert!(
        mail.body
            .contains("salve escalated incident #7 (verify_failed)"),
        "{}",
        mail.body
    );
    assert!(
        mail.body.contains("1. $ systemctl restart 'nginx'"),
        "{}",
        mail.body
    );
    assert!(
        mail.body.contains("| Job failed: see journalctl"),
        "{}",
        mail.body
    );
    assert!(
        mail.body
            .contains("[FAIL] curl -fsS http://127.0.0.1/health"),
        "{}",
        mail.body
    );
    assert!(!mail.body.contains('\u{1b}'), "{}", mail.body);
}

#[tokio::test]
async fn escalation_email_over_starttls_with_auth_and_the_test_ca_arrives() {
    let server = SmtpServer::start(SmtpOptions {
        starttls: true,
        auth: true,
        ..SmtpOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, format!("{SMTP_TEST_PASSWORD}\n")).unwrap();
    let (channels, _config_dir) = channels(email_channel(
        &format!("smtp://localhost:{}", server.port()),
        |mail| {
            mail.set("tls", "\"starttls\"")
                .set("username", &toml_string(SMTP_TEST_USER))
                .set("password_file", &toml_path(&password_file))
                .set("ca_file", &toml_path(server.ca_file()))
                .set(
                    "subject",
                    "\"Incident {{ incident_id }} {{ labels.service }}\"",
                )
        },
    ));

    send_ok(&channels, "mail", &sample()).await;

    let mails = server.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls, "the session was not encrypted");
    assert_eq!(mails[0].auth_login.as_deref(), Some(SMTP_TEST_USER));
    assert_eq!(mails[0].subject, "Incident 42 nginx");
}

#[tokio::test]
async fn escalation_email_with_a_wrong_password_is_refused_and_not_retryable() {
    let server = SmtpServer::start(SmtpOptions {
        starttls: true,
        auth: true,
        ..SmtpOptions::default()
    })
    .await;
    let (channels, _dir) = channels_with_env(
        email_channel(&format!("smtp://127.0.0.1:{}", server.port()), |mail| {
            mail.set("username", &toml_string(SMTP_TEST_USER))
                .set("password", "\"wrong\"")
                .set("ca_file", &toml_path(server.ca_file()))
        }),
        // The environment overrides the file's password (still the wrong one here,
        // distinct so the test can check it never shows up in the error).
        &[(
            "SALVE_ESCALATION__CHANNELS__MAIL__PASSWORD",
            "hunter2-not-it",
        )],
    );

    let error = send_err(&channels, "mail", &sample()).await;

    assert!(!error.retryable, "{error:?}");
    assert!(error.message.contains("535"), "{error:?}");
    assert!(!error.message.contains("hunter2"), "{error:?}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn escalation_email_over_implicit_tls_arrives() {
    let server = SmtpServer::start(SmtpOptions {
        implicit_tls: true,
        auth: true,
        ..SmtpOptions::default()
    })
    .await;
    let (channels, _dir) = channels(email_channel(
        &format!("smtps://127.0.0.1:{}", server.port()),
        |mail| {
            mail.set("username", &toml_string(SMTP_TEST_USER))
                .set("password", &toml_string(SMTP_TEST_PASSWORD))
                .set("ca_file", &toml_path(server.ca_file()))
        },
    ));

    send_ok(&channels, "mail", &sample()).await;

    let mails = server.wait_for_mails(1).await;
    assert!(mails[0].tls);
    assert_eq!(mails[0].auth_login.as_deref(), Some(SMTP_TEST_USER));
}

#[tokio::test]
async fn escalation_email_refuses_a_server_certificate_from_another_ca() {
    let starttls = SmtpServer::start(SmtpOptions {
        starttls: true,
        ..SmtpOptions::default()
    })
    .await;
    let implicit = SmtpServer::start(SmtpOptions {
        implicit_tls: true,
        ..SmtpOptions::default()
    })
    .await;
    let config = email_channel(&format!("smtp://127.0.0.1:{}", starttls.port()), |mail| {
        mail.set("ca_file", &toml_path(starttls.untrusted_ca_file()))
    })
    .channel(
        "mail-tls",
        two_recipient_email(&format!("smtps://127.0.0.1:{}", implicit.port()))
            .set("ca_file", &toml_path(implicit.untrusted_ca_file())),
    );
    let (channels, _dir) = channels(config);

    for (channel, server) in [("mail", &starttls), ("mail-tls", &implicit)] {
        let error = send_err(&channels, channel, &sample()).await;
        assert!(!error.retryable, "{channel}: {error:?}");
        assert!(
            error.message.contains("certificate") || error.message.contains("UnknownIssuer"),
            "{channel}: {error:?}"
        );
        assert!(server.messages().is_empty(), "{channel}");
    }
}

#[tokio::test]
async fn escalation_email_refused_with_451_is_retryable_and_a_resend_arrives_once() {
    let server = SmtpServer::start(SmtpOptions::default()).await;
    let (channels, _dir) = channels(email_channel(
        &format!("smtp://127.0.0.1:{}", server.port()),
        |mail| mail.set("tls", "\"none\""),
    ));
    server.set_failing(true);

    let error = send_err(&channels, "mail", &sample()).await;
    assert!(error.retryable, "{error:?}");
    assert!(error.message.contains("451"), "{error:?}");
    assert!(server.messages().is_empty());

    server.set_failing(false);
    send_ok(&channels, "mail", &sample()).await;
    let mails = server.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
}

#[tokio::test]
async fn escalation_email_to_a_closed_port_is_retryable() {
    let (channels, _dir) = channels(email_channel(
        &format!("smtp://127.0.0.1:{}", free_port()),
        |mail| mail.set("tls", "\"none\"").set("timeout", "\"5s\""),
    ));

    let error = send_err(&channels, "mail", &sample()).await;

    assert!(error.retryable, "{error:?}");
}

/// Channel `name`: a webhook to `url`, with `channel`'s settings.
fn webhook_channel(name: &str, url: &str, channel: impl FnOnce(Channel) -> Channel) -> SalveConfig {
    SalveConfig::new().channel(name, channel(Channel::webhook(url)))
}

#[tokio::test]
async fn escalation_webhook_generic_posts_the_escalation_json_and_headers() {
    let capture = WebhookCapture::start().await;
    let (channels, _dir) = channels_with_env(
        webhook_channel(
            "tickets",
            &capture.url("/tickets?token=in-the-url"),
            |tickets| {
                tickets.set(
                    "headers",
                    "{ Authorization = \"Bearer from-file\", X-Team = \"sre\" }",
                )
            },
        ),
        &[(
            "SALVE_ESCALATION__CHANNELS__TICKETS__HEADERS__AUTHORIZATION",
            "Bearer from-env",
        )],
    );
    let escalation = hostile_escalation();

    send_ok(&channels, "tickets", &escalation).await;

    let requests = capture.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/tickets?token=in-the-url");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer from-env"));
    assert_eq!(request.header("x-team"), Some("sre"));
    assert!(request.header("x-injected").is_none());
    let body = request.json();
    assert_eq!(body["incident_id"], 7);
    assert_eq!(body["reason"], "verify_failed");
    assert_eq!(body["recipe"], "service-restart");
    assert_eq!(body["target"]["name"], "web1");
    // Alert text reaches the ticket system with its control characters escaped (no
    // ANSI sequence, no CR/LF to forge a line), still one JSON string.
    assert_eq!(
        body["labels"]["evil"],
        "\", \"routing_key\": \"stolen\"}\\n\\r\\nX-Injected: yes\\u{1b}[31m"
    );
    assert_eq!(body["checks"][0]["passed"], false);
    assert_eq!(body["steps"][0]["exit_status"], 0);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("incident #7 (verify_failed)")
    );
    let back: Escalation = serde_json::from_value(body).expect("body is an Escalation + text");
    assert_eq!(back, escalation.for_humans());
}

#[tokio::test]
async fn escalation_webhook_pagerduty_preset_posts_an_events_api_v2_trigger() {
    let capture = WebhookCapture::start().await;
    let (channels, _dir) = channels(webhook_channel(
        "pager",
        &capture.url("/v2/enqueue"),
        |pager| {
            pager
                .set("preset", "\"pagerduty\"")
                .set("routing_key", "\"R0UTINGKEY0123456789abcdef012345\"")
        },
    ));

    send_ok(&channels, "pager", &hostile_escalation()).await;

    let requests = capture.requests();
    assert_eq!(requests.len(), 1);
    let body = requests[0].json();
    assert_eq!(body["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "salve-incident-7");
    // The alert's summary annotation when it has one.
    assert_eq!(
        body["payload"]["summary"],
        "verify_failed: nginx is down on web1"
    );
    assert_eq!(body["payload"]["source"], "web1");
    assert_eq!(body["payload"]["severity"], "critical");
    assert_eq!(body["payload"]["custom_details"]["incident_id"], 7);
    assert_eq!(body["client"], "salve");
    let links: Vec<&str> = body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["href"].as_str().unwrap())
        .collect();
    assert!(links[1].contains("/#/silences/new?filter="), "{links:?}");
}

#[tokio::test]
async fn escalation_webhook_5xx_is_retryable_and_4xx_is_not() {
    let capture = WebhookCapture::start().await;
    let (channels, _dir) = channels(webhook_channel("tickets", &capture.url("/tickets"), |t| t));

    for (status, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        capture.set_response_status(status);
        let error = send_err(&channels, "tickets", &sample()).await;
        assert_eq!(error.retryable, retryable, "{status}: {error:?}");
        assert!(error.message.contains(&status.to_string()), "{error:?}");
        // Only the origin is named: the path could hold a token.
        assert!(!error.message.contains("/tickets"), "{error:?}");
    }
    capture.set_response_status(202);
    send_ok(&channels, "tickets", &sample()).await;
    assert_eq!(capture.requests().len(), 6);
}

#[tokio::test]
async fn escalation_webhook_body_template_renders_json_with_hostile_labels_escaped() {
    let capture = WebhookCapture::start().await;
    let template = r#"{"title": {{ "[" ~ reason ~ "] " ~ summary }}, "evil": {{ labels.evil }},
  "evil_again": {{ labels.evil | tojson }}, "host": {{ target.name }},
  "team": {{ labels.team }}, "labels": {{ labels }}, "report": {{ text }}}"#;
    let (channels, _dir) = channels(webhook_channel(
        "tickets",
        &capture.url("/custom"),
        |tickets| tickets.set("body", &format!("'''{template}'''")),
    ));
    let escalation = hostile_escalation();

    send_ok(&channels, "tickets", &escalation).await;

    let body: Value = capture.requests()[0].json();
    // Escaped as in every page: no control character reaches the ticket system.
    let evil = salve::notify::content::one_line(&escalation.labels["evil"]);
    assert_eq!(
        body["title"],
        "[verify_failed] ServiceDown on web1: verification failed after service-restart"
    );
    assert_eq!(body["evil"], evil);
    assert_eq!(body["evil_again"], evil);
    assert_eq!(body["host"], "web1");
    assert!(body["team"].is_null());
    assert_eq!(body["labels"]["evil"], evil);
    assert!(body.get("routing_key").is_none(), "{body}");
    assert!(body["report"].as_str().unwrap().contains("WHY"));
}

#[tokio::test]
async fn escalation_log_channel_accepts_and_unknown_channel_is_refused() {
    let (channels, _dir) = channels(SalveConfig::new().channel("audit", Channel::log()));

    send_ok(&channels, "audit", &sample()).await;
    let error = send_err(&channels, "nope", &sample()).await;

    assert!(!error.retryable);
    assert_eq!(channels.kind("audit"), Some("log"));
}

#[test]
fn escalation_channel_config_problems_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.toml");
    std::fs::write(
        &path,
        "[escalation.channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://h\"\ntls = \"none\"\n\
         username = \"u\"\npassword = \"p\"\nfrom = \"salve@x.test\"\nto = []\n\n\
         [escalation.channels.pager]\nkind = \"webhook\"\npreset = \"pagerduty\"\n",
    )
    .unwrap();

    let problems: Vec<String> = load_with_env(Some(&path), BTreeMap::new())
        .unwrap_err()
        .iter()
        .map(|problem| {
            problem
                .to_string()
                .replace(&path.display().to_string(), "salve.toml")
        })
        .collect();

    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "salve.toml:4: escalation.channels.mail.tls: tls = \"none\" with credentials"
        ),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("salve.toml:8: escalation.channels.mail.to: at least one"),
        "{problems:#?}"
    );
    assert!(
        problems[2].starts_with("salve.toml:10: escalation.channels.pager.routing_key:"),
        "{problems:#?}"
    );

    std::fs::write(
        &path,
        "[escalation.channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://h\"\nfrom = \"a@b.test\"\nto = [\"c@d.test\"]\ncc = [\"x\"]\n",
    )
    .unwrap();
    let problems = load_with_env(Some(&path), BTreeMap::new()).unwrap_err();
    assert!(
        problems[0].message.contains("unknown field `cc`"),
        "{problems:?}"
    );
}
