//! Intake under abuse, over real HTTP: whatever a sender puts in a field, the error it gets
//! back (and the log line) quotes at most a bounded, escaped piece of it; and a count the
//! sender claims (`truncatedAlerts`) saturates instead of wrapping the metric or failing
//! the notification.

use crate::support::{BEARER, SalveConfig, SalveProcess, metric_value};
use serde_json::{Value, json};

fn alertmanager_body(truncated: Value) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": truncated, "status": "firing",
        "receiver": "salve", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "", "alerts": [{
            "status": "firing", "labels": { "alertname": "Truncated", "instance": "web1:9100" },
            "annotations": {}, "startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        }],
    })
}

async fn metric(salve: &SalveProcess, name: &str) -> String {
    let text = salve.metrics().await;
    metric_value(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn truncated_alerts_saturate_instead_of_wrapping_or_failing() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    let hook = "/hooks/alertmanager";
    let body = |truncated: &str| {
        alertmanager_body(json!(0)).to_string().replace(
            "\"truncatedAlerts\":0",
            &format!("\"truncatedAlerts\":{truncated}"),
        )
    };
    // Past u64 (a float to JSON readers), and negative: accepted, saturated.
    for truncated in [
        "1000000000000000000000000000000",
        "-1",
        "-9223372036854775809",
    ] {
        let (status, reason) = salve
            .post_raw(hook, "application/json", body(truncated), Some(BEARER.1))
            .await;
        assert_eq!(status, 200, "truncatedAlerts {truncated}: {reason}");
    }
    // u64::MAX twice more: the counter stays at u64::MAX instead of wrapping.
    for _ in 0..2 {
        let (status, reason) = salve
            .post_raw(
                hook,
                "application/json",
                body("18446744073709551615"),
                Some(BEARER.1),
            )
            .await;
        assert_eq!(status, 200, "{reason}");
    }
    assert_eq!(
        metric(&salve, "salve_alertmanager_truncated_alerts_total").await,
        "18446744073709551615"
    );
}

#[tokio::test]
async fn input_quoted_in_an_error_is_bounded_and_escaped() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    let huge = "\u{1b}]8;;http://evil.test/\u{7}\r\n".repeat(20_000);
    let alertmanager = "/hooks/alertmanager";
    let mut cases: Vec<(&str, String)> = Vec::new();
    // A number given as a huge string.
    cases.push((
        alertmanager,
        alertmanager_body(json!("9".repeat(500_000))).to_string(),
    ));
    // Huge hostile strings in fields that are quoted back.
    let mut version = alertmanager_body(json!(0));
    version["version"] = json!(huge);
    cases.push((alertmanager, version.to_string()));
    let mut status = alertmanager_body(json!(0));
    status["alerts"][0]["status"] = json!(huge);
    cases.push((alertmanager, status.to_string()));
    let mut starts = alertmanager_body(json!(0));
    starts["alerts"][0]["startsAt"] = json!(huge);
    cases.push((alertmanager, starts.to_string()));
    // A huge key, with control characters in it.
    let mut key = alertmanager_body(json!(0));
    key["alerts"][0]["labels"][format!("{huge}k")] = json!("v");
    cases.push((alertmanager, key.to_string()));
    cases.push((
        "/hooks/generic",
        json!({ "labels": { "alertname": "A" }, format!("x{huge}"): 1 }).to_string(),
    ));
    cases.push((
        "/hooks/generic",
        json!({ "labels": { "alertname": "A" }, "fingerprint": huge }).to_string(),
    ));
    // A deeply nested value.
    cases.push((
        alertmanager,
        alertmanager_body(json!(0)).to_string().replace(
            "\"truncatedAlerts\":0",
            &format!(
                "\"truncatedAlerts\":{}{}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
        ),
    ));
    for (hook, body) in cases {
        let sent = body.len();
        let (status, reason) = salve
            .post_raw(hook, "application/json", body, Some(BEARER.1))
            .await;
        assert_eq!(status, 400, "{hook}: {reason}");
        assert!(
            reason.len() < 600,
            "{hook}: a {sent}-byte body got a {}-byte error: {reason}",
            reason.len()
        );
        let error: Value = serde_json::from_str(&reason).expect("the error is JSON");
        let error = error["error"].as_str().expect("an error reason");
        assert!(
            !error.chars().any(char::is_control),
            "{hook}: raw control characters in {error:?}"
        );
    }

    // A content type is quoted back too.
    let (status, reason) = salve
        .post_raw(
            alertmanager,
            &format!("text/{}", "x".repeat(6000)),
            "{}",
            Some(BEARER.1),
        )
        .await;
    assert_eq!(status, 415, "{reason}");
    assert!(reason.len() < 600, "{} bytes: {reason}", reason.len());
}
