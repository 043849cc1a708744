//! Pages that close, on real parts: a novel alert pages PagerDuty (the preset posting into a
//! webhook capture), a generic webhook and real SMTP; when its alert resolves, or a later
//! incident of the same alert is fixed on a real sshd, each channel gets exactly one
//! follow-up — PagerDuty's `resolve` of the page's dedup_key, the webhook's `resolved`
//! event, a "Resolved:" mail in the page's thread — whatever is sent twice or restarted.
//! A route with `resolve = false` gets none.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    CapturedRequest, Channel, Enforcing, SalveConfig, SalveProcess, SmtpOptions, SmtpServer,
    SshHost, TOKEN, WebhookCapture, events, free_port, only, salve_cli, service_down_on_web1,
    shipped_recipes, text, wait_until,
};

const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

/// A novel alert on web1 with a `summary` annotation, firing or resolved.
fn novel(alertname: &str, status: &str) -> Value {
    json!({
        "labels": { "alertname": alertname, "instance": "web1:9100", "severity": "critical" },
        "annotations": { "summary": format!("{alertname}: the disk is on fire") },
        "status": status,
        "startsAt": "2026-11-28T10:00:00Z",
    })
}

/// The history once incident `alertname` has journaled `count` `follow_up_sent`.
async fn wait_for_follow_ups(salve: &SalveProcess, alertname: &str, count: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(60),
        &format!("{count} follow-up(s) of {alertname} sent"),
        || async {
            let history = salve.history_json().await;
            let sent = history
                .iter()
                .find(|i| i["labels"]["alertname"] == alertname)
                .map_or(0, |i| events(i, "follow_up_sent").len());
            (sent >= count).then_some(history)
        },
    )
    .await
}

fn posts_to(requests: &[CapturedRequest], path: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|request| request.path == path)
        .map(CapturedRequest::json)
        .collect()
}

/// `pager` (PagerDuty preset), `tickets` (generic webhook), `oncall-email` (plain SMTP),
/// all by default, dry-run with the shipped recipes.
async fn paging_everywhere(capture: &WebhookCapture, smtp: &SmtpServer) -> SalveProcess {
    SalveConfig::new()
        .bearer_token(TOKEN)
        .recipes_dir("recipes")
        .escalation_default(&["pager", "tickets", "oncall-email"])
        .channel(
            "pager",
            Channel::webhook(&capture.url("/pager"))
                .set("preset", "\"pagerduty\"")
                .set("routing_key", &format!("\"{ROUTING_KEY}\"")),
        )
        .channel("tickets", Channel::webhook(&capture.url("/tickets")))
        .channel("oncall-email", Channel::plain_email_to(smtp))
        .salve()
        .recipes_dir(&shipped_recipes())
        .start()
        .await
}

#[tokio::test]
async fn a_resolved_alert_closes_its_page_on_pagerduty_webhook_and_email_once_each() {
    let capture = WebhookCapture::start().await;
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    let mut salve = paging_everywhere(&capture, &smtp).await;

    salve
        .post_generic(json!({ "alerts": [novel("DiskOnFire", "firing")] }))
        .await;
    salve.wait_until_delivered().await;
    let page_mail = smtp.wait_for_mails(1).await.remove(0);
    let trigger = posts_to(&capture.requests(), "/pager").remove(0);
    assert_eq!(trigger["event_action"], "trigger", "{trigger:#}");
    // Pages say where: the alert's instance (no target for a novel alert), and its summary.
    assert_eq!(trigger["payload"]["source"], "web1:9100", "{trigger:#}");
    assert_eq!(
        trigger["payload"]["summary"], "novel: DiskOnFire: the disk is on fire",
        "{trigger:#}"
    );
    let triggered = posts_to(&capture.requests(), "/tickets").remove(0);
    assert_eq!(triggered["event"], "triggered", "{triggered:#}");

    salve
        .post_generic(json!({ "alerts": [novel("DiskOnFire", "resolved")] }))
        .await;
    let history = wait_for_follow_ups(&salve, "DiskOnFire", 3).await;
    let incident = only(&history, "DiskOnFire");
    let queued: Vec<&str> = events(incident, "follow_up_queued")
        .iter()
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    assert_eq!(queued, ["resolved"; 3], "{incident:#}");

    // PagerDuty: a resolve of the trigger's dedup_key.
    let pager = posts_to(&capture.requests(), "/pager");
    assert_eq!(pager.len(), 2, "{pager:#?}");
    assert_eq!(
        pager[1],
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": trigger["dedup_key"],
            "client": "salve",
        })
    );
    // The generic webhook: the page's fields with event = resolved.
    let tickets = posts_to(&capture.requests(), "/tickets");
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert_eq!(tickets[1]["event"], "resolved", "{:#}", tickets[1]);
    assert_eq!(tickets[1]["incident_id"], incident["id"]);
    assert_eq!(tickets[1]["resolution"], "The alert resolved.");
    // Email: a short "Resolved:" mail in the page's thread.
    let mails = smtp.wait_for_mails(2).await;
    let page_id = page_mail
        .header("Message-ID")
        .expect("the page's Message-ID");
    assert!(page_id.starts_with("<salve-incident-"), "{page_id}");
    let reply = &mails[1];
    assert_eq!(reply.subject, format!("Resolved: {}", page_mail.subject));
    assert_eq!(reply.header("In-Reply-To"), Some(page_id), "{reply:#?}");
    assert_eq!(reply.header("References"), Some(page_id), "{reply:#?}");
    assert!(reply.body.contains("The alert resolved."), "{}", reply.body);

    // The resolved notification again, then a restart: still once each. Another alert's
    // whole round (page, resolve, follow-ups) after the restart shows the outbox ran since.
    salve
        .post_generic(json!({ "alerts": [novel("DiskOnFire", "resolved")] }))
        .await;
    salve.restart().await;
    salve
        .post_generic(json!({ "alerts": [novel("FanStopped", "firing")] }))
        .await;
    salve.wait_until_delivered().await;
    salve
        .post_generic(
            json!({ "alerts": [novel("FanStopped", "resolved"), novel("DiskOnFire", "resolved")] }),
        )
        .await;
    let history = wait_for_follow_ups(&salve, "FanStopped", 3).await;
    let incident = only(&history, "DiskOnFire");
    assert_eq!(
        events(incident, "follow_up_queued").len(),
        3,
        "{incident:#}"
    );
    assert_eq!(events(incident, "follow_up_sent").len(), 3, "{incident:#}");
    let resolves = |requests: &[CapturedRequest]| {
        posts_to(requests, "/pager")
            .into_iter()
            .filter(|body| {
                body["event_action"] == "resolve" && body["dedup_key"] == trigger["dedup_key"]
            })
            .count()
    };
    assert_eq!(resolves(&capture.requests()), 1);
    let resolved_tickets = posts_to(&capture.requests(), "/tickets")
        .into_iter()
        .filter(|body| body["event"] == "resolved" && body["incident_id"] == incident["id"])
        .count();
    assert_eq!(resolved_tickets, 1);
    let replies = smtp
        .messages()
        .iter()
        .filter(|mail| mail.header("In-Reply-To") == Some(page_id))
        .count();
    assert_eq!(replies, 1);
}

#[tokio::test]
async fn a_later_fix_of_the_same_alert_closes_the_page_of_the_failed_one() {
    let host = SshHost::start().await;
    let port = free_port();
    // Its process exits at once: the restart "works", verification never passes.
    host.define_unit("shop-api", "exit 1").await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::on(&host)
        .patch_recipe(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"3s\"\ninterval = \"1s\"",
        )
        .config(|config| config.webhook_channel("oncall-email", &capture.url("/oncall")))
        .start()
        .await;
    let salve = &enforcing.salve;
    let occurrence = |n: u32| {
        let mut alert = service_down_on_web1("shop-api", port);
        alert["startsAt"] = json!(format!("2026-11-28T10:00:{n:02}Z"));
        json!({ "alerts": [alert] })
    };

    salve.post_generic(occurrence(1)).await;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    assert_eq!(history[0]["state"], "verify_failed", "{:#}", history[0]);
    salve.wait_until_delivered().await;
    let failed_id = history[0]["id"].clone();

    // The unit is repaired; the alert fires again (a new occurrence, the same labels) and
    // this time the restart is verified: the first page is followed up.
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    salve.post_generic(occurrence(2)).await;
    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    let fixed = history.iter().find(|i| i["id"] != failed_id).unwrap();
    assert_eq!(fixed["state"], "succeeded", "{fixed:#}");
    let history = wait_until(
        Duration::from_secs(60),
        "the failed page followed up",
        || async {
            let history = salve.history_json().await;
            let failed = history
                .iter()
                .find(|i| i["id"] == failed_id)
                .cloned()
                .unwrap();
            (!events(&failed, "follow_up_sent").is_empty()).then_some(history)
        },
    )
    .await;
    let failed = history.iter().find(|i| i["id"] == failed_id).unwrap();
    assert_eq!(
        events(failed, "follow_up_queued"),
        [&json!({ "channel": "oncall-email", "cause": "succeeded", "by": fixed["id"] })],
        "{failed:#}"
    );
    let posts = posts_to(&capture.requests(), "/oncall");
    let resolved: Vec<&Value> = posts.iter().filter(|b| b["event"] == "resolved").collect();
    assert_eq!(resolved.len(), 1, "{posts:#?}");
    assert_eq!(resolved[0]["incident_id"], failed_id);
    assert_eq!(resolved[0]["fixed_by"], fixed["id"]);
    assert!(
        resolved[0]["resolution"]
            .as_str()
            .unwrap()
            .contains("remediated and verified"),
        "{:#}",
        resolved[0]
    );
}

#[tokio::test]
async fn a_route_with_resolve_false_sends_no_follow_up() {
    let capture = WebhookCapture::start().await;
    let salve = SalveConfig::new()
        .bearer_token(TOKEN)
        .recipes_dir("recipes")
        .escalation_setting(
            "routes",
            r#"[{ match = ['severity="info"'], to = ["tickets"], resolve = false }]"#,
        )
        .escalation_default(&["tickets"])
        .channel("tickets", Channel::webhook(&capture.url("/tickets")))
        .channel("oncall-email", Channel::log())
        .salve()
        .recipes_dir(&shipped_recipes())
        .start()
        .await;
    let quiet = |status: &str| {
        let mut alert = novel("Chatter", status);
        alert["labels"]["severity"] = json!("info");
        alert
    };

    salve
        .post_generic(json!({ "alerts": [quiet("firing"), novel("DiskOnFire", "firing")] }))
        .await;
    salve.wait_until_delivered().await;
    salve
        .post_generic(json!({ "alerts": [quiet("resolved"), novel("DiskOnFire", "resolved")] }))
        .await;
    // The default route's follow-up is sent; the opted-out one was decided in the same pass.
    let history = wait_for_follow_ups(&salve, "DiskOnFire", 1).await;
    let chatter = only(&history, "Chatter");
    assert!(
        events(chatter, "follow_up_queued").is_empty(),
        "{chatter:#}"
    );
    let resolved: Vec<Value> = posts_to(&capture.requests(), "/tickets")
        .into_iter()
        .filter(|body| body["event"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["labels"]["alertname"], "DiskOnFire");
}

#[test]
fn check_warns_for_a_webhook_body_without_body_resolved() {
    let check = |tickets: Channel| {
        let dir = tempfile::tempdir().unwrap();
        SalveConfig::new()
            .escalation_default(&["tickets"])
            .channel("oncall-email", Channel::log())
            .channel("tickets", tickets)
            .recipes_dir(shipped_recipes())
            .write_to(dir.path());
        let output = salve_cli(dir.path(), &["check"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let with_body = Channel::webhook("https://tickets.example/api")
        .set("body", r#"'{"title": {{ summary }}}'"#);
    let output = check(with_body.clone());
    assert!(
        output.contains("warning: escalation.channels.tickets has a body but no body_resolved"),
        "{output}"
    );
    let output = check(with_body.set("body_resolved", r#"'{"close": {{ incident_id }}}'"#));
    assert!(!output.contains("body_resolved"), "{output}");
}
