//! Notify-only recipes and annotation matchers on real parts: a recipe without
//! `[remediate]` pages once (webhook capture) with its diagnostics from a real sshd and its
//! runbook, runs nothing else, and the incident is `notified`, not `novel`; in dry-run it
//! pages alike. A recipe matched by `match_annotations` runs on the real host.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Enforcing, SalveConfig, SalveProcess, SshHost, TARGET_USER, WebhookCapture, events, wait_until,
};

/// A notify-only recipe: diagnostics that read a file only the real host has, a runbook,
/// and its own channel.
const DISK_REPORT: &str = r#"name = "disk-report"
description = "The data disk fills up with customer uploads: nothing is safe to delete automatically"
runbook = """
1. Read the report below.
2. Ask the upload owner before deleting anything."""
match = ['alertname="DataDiskFull"']
target = "{{ labels.instance | host }}"

[params.volume]
from = "labels.volume"
pattern = '[a-z0-9-]+'

[escalate]
to = ["tickets"]
attach = ["cat /tmp/salve-notify-only/{{ volume }}.report"]
"#;

/// A host whose `VOLUME.report` holds `report` (what the diagnostics `cat`), a ticket capture,
/// and salve enforcing `DISK_REPORT` on it with `tickets` posting into the capture.
async fn start_with_report(volume: &str, report: &str) -> (SshHost, WebhookCapture, Enforcing) {
    let host = SshHost::start().await;
    host.exec_ok(&format!(
        "mkdir -p /tmp/salve-notify-only && echo '{report}' > /tmp/salve-notify-only/{volume}.report && chown -R {TARGET_USER} /tmp/salve-notify-only"
    ))
    .await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::single_recipe(&host, &[("web1", TARGET_USER)], DISK_REPORT)
        .config(|config| config.webhook_channel("tickets", &capture.url("/tickets")))
        .start()
        .await;
    (host, capture, enforcing)
}

fn data_disk_full() -> serde_json::Value {
    json!({ "labels": { "alertname": "DataDiskFull", "instance": "web1:9100", "volume": "uploads" } })
}

#[tokio::test]
async fn a_notify_only_recipe_pages_once_with_diagnostics_from_the_host_and_runs_nothing_else() {
    let (_host, capture, enforcing) =
        start_with_report("uploads", "9.1G /srv/uploads/tenant-42").await;
    let salve = &enforcing.salve;

    salve.post_generic(data_disk_full()).await;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "notified", "{incident:#}");
    assert_eq!(incident["plan"]["outcome"], "notify_only", "{incident:#}");
    assert_eq!(incident["plan"]["recipe"], "disk-report");
    salve.wait_until_delivered().await;

    let posts = capture.requests();
    assert_eq!(posts.len(), 1, "one incident, one channel: one page");
    let page = posts[0].json();
    assert_eq!(page["reason"], "known", "{page:#}");
    assert_eq!(page["state"], "notified");
    assert_eq!(page["recipe"], "disk-report");
    let diagnostic = &page["diagnostics"][0];
    assert_eq!(
        diagnostic["command"],
        "cat /tmp/salve-notify-only/'uploads'.report"
    );
    assert_eq!(diagnostic["exit_status"], 0, "{diagnostic:#}");
    assert_eq!(diagnostic["output"], "9.1G /srv/uploads/tenant-42\n");
    assert!(
        page["recipe_description"]
            .as_str()
            .unwrap()
            .starts_with("The data disk fills up")
    );
    let text = page["text"].as_str().unwrap();
    for expected in [
        "known: DataDiskFull on web1 (disk-report)",
        "RUNBOOK\n  | 1. Read the report below.\n  | 2. Ask the upload owner",
        "    | 9.1G /srv/uploads/tenant-42",
    ] {
        assert!(
            text.contains(expected),
            "the page lacks {expected:?}:\n{text}"
        );
    }
    // Nothing ran but the diagnostics: no remediation step, no check, no breaker run.
    let incident = &salve.history_json().await[0];
    for kind in ["step_started", "step_finished", "check_poll"] {
        assert!(events(incident, kind).is_empty(), "{kind}: {incident:#}");
    }
    let breakers = salve.run_cli(&["breaker", "list", "--json"]).await;
    assert!(
        !String::from_utf8_lossy(&breakers.stdout).contains("disk-report"),
        "a notify-only recipe counts no breaker run"
    );
}

#[tokio::test]
async fn in_dry_run_a_notify_only_recipe_still_pages_and_says_why_there_are_no_diagnostics() {
    let capture = WebhookCapture::start().await;
    let recipes = tempfile::tempdir().unwrap();
    std::fs::write(recipes.path().join("disk-report.toml"), DISK_REPORT).unwrap();
    let config = SalveConfig::standard().webhook_channel("tickets", &capture.url("/tickets"));
    let salve = SalveProcess::builder(&config.build())
        .recipes_dir(recipes.path())
        .start()
        .await;

    salve.post_generic(data_disk_full()).await;
    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    assert_eq!(history[0]["state"], "notified", "{:#}", history[0]);
    salve.wait_until_delivered().await;

    let posts = capture.requests();
    assert_eq!(
        posts.len(),
        1,
        "one page, not `novel`, not held back by dry-run"
    );
    let page = posts[0].json();
    assert_eq!(page["reason"], "known", "{page:#}");
    assert_eq!(page["diagnostics"], json!([]));
    assert_eq!(
        page["diagnostics_omitted"],
        "salve runs in dry-run: nothing is run on any host"
    );
    assert!(
        page["text"].as_str().unwrap().contains("RUNBOOK"),
        "{page:#}"
    );

    let simulate_input = recipes.path().join("alert.json");
    std::fs::write(&simulate_input, data_disk_full().to_string()).unwrap();
    let simulated = salve
        .run_cli(&["simulate", simulate_input.to_str().unwrap()])
        .await;
    let shown = String::from_utf8_lossy(&simulated.stdout);
    assert!(
        shown.contains("alert DataDiskFull: notified (notify_only)")
            && shown.contains("recipe:   disk-report (notify-only")
            && shown.contains("attach:   cat /tmp/salve-notify-only/'uploads'.report"),
        "{shown}"
    );
    let checked = salve.run_cli(&["check"]).await;
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("1 recipe(s)")
            && String::from_utf8_lossy(&checked.stdout).contains("(1 notify-only)"),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

/// Matched on an annotation only (the label set is the same for both alerts): the recipe
/// runs its command on the real host for the alert whose summary matches, and the other
/// alert is novel.
const BY_ANNOTATION: &str = r#"name = "rotate-on-summary"
match = ['alertname="LogAlert"']
match_annotations = ['summary=~"log partition (full|nearly full)"']
target = "{{ labels.instance | host }}"
mode = "enforce"

[remediate]
run = ["touch /tmp/salve-annotation-matched"]
"#;

#[tokio::test]
async fn a_recipe_matched_on_annotations_runs_on_the_host() {
    let host = SshHost::start().await;
    host.exec("rm -f /tmp/salve-annotation-matched").await;
    let enforcing = Enforcing::single_recipe(&host, &[("web1", TARGET_USER)], BY_ANNOTATION)
        .start()
        .await;
    let salve = &enforcing.salve;

    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "LogAlert", "instance": "web1:9100", "n": "1" },
              "annotations": { "summary": "log partition full; rm -rf /" } },
        ] }))
        .await;
    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    assert_eq!(
        history[0]["state"], "unmatched",
        "anchored: {:#}",
        history[0]
    );
    assert!(
        !host
            .exec("test -e /tmp/salve-annotation-matched")
            .await
            .status
            .success()
    );

    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "LogAlert", "instance": "web1:9100", "n": "2" },
              "annotations": { "summary": "log partition nearly full" } },
        ] }))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    let matched = history
        .iter()
        .find(|i| i["labels"]["n"] == "2")
        .expect("the second incident");
    assert_eq!(matched["state"], "succeeded", "{matched:#}");
    assert_eq!(matched["plan"]["recipe"], "rotate-on-summary");
    host.exec_ok("test -e /tmp/salve-annotation-matched").await;
}

#[tokio::test]
async fn a_burst_of_notify_only_alerts_runs_the_diagnostics_once_per_target() {
    let (_host, capture, enforcing) = start_with_report("logs", "report").await;
    let salve = &enforcing.salve;

    let alert = |n: &str| json!({ "labels": { "alertname": "DataDiskFull", "instance": "web1:9100", "volume": "logs", "n": n } });
    salve
        .post_generic(json!({ "alerts": [alert("1"), alert("2")] }))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    assert!(
        history.iter().all(|i| i["state"] == "notified"),
        "{history:#?}"
    );
    // Both escalations are delivered (the journal says so for each), then the capture holds
    // exactly their two pages.
    wait_until(Duration::from_secs(30), "both pages delivered", || async {
        let history = salve.history_json().await;
        history
            .iter()
            .all(|i| !events(i, "escalation_sent").is_empty())
            .then_some(())
    })
    .await;
    let pages: Vec<serde_json::Value> = capture.requests().iter().map(|r| r.json()).collect();
    assert_eq!(pages.len(), 2, "each known incident is paged");
    let with_report = pages
        .iter()
        .filter(|p| p["diagnostics"][0]["output"] == "report\n")
        .count();
    assert_eq!(with_report, 1, "{pages:#?}");
    let omitted = pages
        .iter()
        .find(|p| p["diagnostics"] == json!([]))
        .expect("the other page");
    assert!(
        omitted["diagnostics_omitted"]
            .as_str()
            .unwrap()
            .starts_with("last collected at"),
        "{omitted:#}"
    );
}
