//! Proves the test bed itself: a real Alertmanager starts, takes alerts, delivers them to a
//! webhook with the configured auth, and dies with the test.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::support::{Alertmanager, WebhookCapture, wait_until};

const DEADLINE: Duration = Duration::from_secs(10);

fn label<'a>(alert: &'a Value, name: &str) -> Option<&'a str> {
    alert["labels"][name].as_str()
}

#[tokio::test]
async fn alertmanager_starts_and_reports_ready() {
    let capture = WebhookCapture::start().await;

    let alertmanager = Alertmanager::start(&capture.url("/hooks/alertmanager"), None, None).await;

    let response = reqwest::get(format!("{}/-/ready", alertmanager.url()))
        .await
        .expect("GET /-/ready");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn alertmanager_lists_a_posted_alert() {
    let capture = WebhookCapture::start().await;
    let alertmanager = Alertmanager::start(&capture.url("/hooks/alertmanager"), None, None).await;

    alertmanager
        .post_alert(
            &[("alertname", "SmokeTest"), ("instance", "web-1:9100")],
            &[("summary", "bed smoke test")],
        )
        .await;

    let alert = wait_until(
        DEADLINE,
        "the posted alert in GET /api/v2/alerts",
        || async {
            alertmanager
                .alerts()
                .await
                .into_iter()
                .find(|alert| label(alert, "alertname") == Some("SmokeTest"))
        },
    )
    .await;
    assert_eq!(label(&alert, "instance"), Some("web-1:9100"));
    assert_eq!(alert["annotations"]["summary"], "bed smoke test");
    assert_eq!(alert["status"]["state"], "active");
}

#[tokio::test]
async fn alertmanager_delivers_firing_and_resolved_with_bearer_token() {
    let capture = WebhookCapture::start().await;
    let alertmanager = Alertmanager::start(
        &capture.url("/hooks/alertmanager"),
        Some("smoke-token"),
        None,
    )
    .await;
    let labels = [("alertname", "SmokeDelivery"), ("instance", "web-2:9100")];

    alertmanager.post_alert(&labels, &[]).await;
    let firing = wait_until(DEADLINE, "a firing notification at the webhook", || async {
        capture
            .requests()
            .into_iter()
            .find(|request| request.json()["status"] == "firing")
    })
    .await;
    alertmanager.resolve_alert(&labels, &[]).await;
    let resolved = wait_until(
        DEADLINE,
        "a resolved notification at the webhook",
        || async {
            capture
                .requests()
                .into_iter()
                .find(|request| request.json()["status"] == "resolved")
        },
    )
    .await;

    assert_eq!(firing.method, "POST");
    assert_eq!(firing.path, "/hooks/alertmanager");
    assert_eq!(firing.header("authorization"), Some("Bearer smoke-token"));
    let firing_body = firing.json();
    assert_eq!(firing_body["version"], "4");
    assert_eq!(
        label(&firing_body["alerts"][0], "alertname"),
        Some("SmokeDelivery")
    );
    // The resolve merged into the firing alert: same fingerprint, so salve can pair them.
    let resolved_body = resolved.json();
    assert_eq!(resolved_body["alerts"][0]["status"], "resolved");
    assert_eq!(
        resolved_body["alerts"][0]["fingerprint"],
        firing_body["alerts"][0]["fingerprint"]
    );
    assert_eq!(
        resolved_body["alerts"][0]["startsAt"],
        firing_body["alerts"][0]["startsAt"]
    );
}

#[tokio::test]
async fn alertmanager_delivers_with_basic_auth() {
    let capture = WebhookCapture::start().await;
    let alertmanager = Alertmanager::start(
        &capture.url("/hooks/alertmanager"),
        None,
        Some(("alertmanager", "p@ss:word")),
    )
    .await;

    alertmanager
        .post_alert(&[("alertname", "SmokeBasic"), ("instance", "db-1")], &[])
        .await;
    let request = wait_until(DEADLINE, "a notification at the webhook", || async {
        capture.requests().into_iter().next()
    })
    .await;

    let expected = base64::engine::general_purpose::STANDARD.encode("alertmanager:p@ss:word");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
}

#[tokio::test]
async fn dropping_alertmanager_kills_its_process() {
    let capture = WebhookCapture::start().await;
    let alertmanager = Alertmanager::start(&capture.url("/hooks/alertmanager"), None, None).await;
    let proc_entry = format!("/proc/{}", alertmanager.pid());
    assert!(std::path::Path::new(&proc_entry).exists());

    drop(alertmanager);

    // Drop kills and reaps synchronously, so the PID is gone at once, not eventually.
    assert!(
        !std::path::Path::new(&proc_entry).exists(),
        "{proc_entry} still exists after drop"
    );
}
