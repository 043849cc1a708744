//! Novel and unsafe alerts through the real receiver: no recipe → `unmatched`; a target
//! outside the inventory, a param failing its pattern, a denied value or one the host does
//! not list → `refused`, with the reason,
//! as `salve history --json` shows it.

use crate::support::{BEARER, SalveConfig, post_json};
use serde_json::json;

#[tokio::test]
async fn unmatched_and_refused_are_journaled_with_reasons() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    let hook = format!("{}/hooks/generic", salve.base_url());
    let alerts = json!({ "alerts": [
        { "labels": { "alertname": "NeverSeenBefore", "instance": "web1:9100" } },
        { "labels": { "alertname": "ServiceDown", "instance": "db9:9100", "service": "nginx" } },
        { "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx; rm -rf /" } },
        { "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "reboot.target" } },
        { "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "redis" } },
    ]});
    let response = post_json(&hook, &alerts, &[BEARER]).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
    salve
        .wait_for_incidents("five planned incidents", |all| {
            all.len() == 5 && all.iter().all(|i| i["state"] != "received")
        })
        .await;

    let history = salve.history_json().await;
    let by_alert = |alertname: &str, instance: &str, service: Option<&str>| {
        history
            .iter()
            .find(|i| {
                i["labels"]["alertname"] == alertname
                    && i["labels"]["instance"] == instance
                    && service.is_none_or(|s| i["labels"]["service"] == s)
            })
            .unwrap_or_else(|| panic!("no incident for {alertname} {instance}: {history:#?}"))
    };

    let novel = by_alert("NeverSeenBefore", "web1:9100", None);
    assert_eq!(novel["state"], "unmatched");
    assert_eq!(novel["plan"]["outcome"], "unmatched");
    assert_eq!(novel["plan"]["escalate"], json!(["oncall-email"]));
    assert!(novel["plan"]["commands"].as_array().unwrap().is_empty());

    let outside = by_alert("ServiceDown", "db9:9100", None);
    assert_eq!(outside["state"], "refused");
    let reason = outside["reason"].as_str().unwrap();
    assert!(
        reason.contains("db9") && reason.contains("inventory"),
        "{reason}"
    );
    assert!(outside["plan"]["commands"].as_array().unwrap().is_empty());

    let hostile = by_alert("ServiceDown", "web1:9100", Some("nginx; rm -rf /"));
    assert_eq!(hostile["state"], "refused");
    let reason = hostile["reason"].as_str().unwrap();
    assert!(
        reason.contains("service") && reason.contains("pattern"),
        "{reason}"
    );
    assert!(hostile["plan"]["commands"].as_array().unwrap().is_empty());

    // A unit the recipe denies, and one web1 does not list (it lists nginx, postgresql).
    for (service, expected) in [
        (
            "reboot.target",
            "param service: value \"reboot.target\" is denied by",
        ),
        (
            "redis",
            "param service: value \"redis\" is not in host \"web1\"'s label \"services\"",
        ),
    ] {
        let incident = by_alert("ServiceDown", "web1:9100", Some(service));
        assert_eq!(incident["state"], "refused", "{incident:#}");
        let reason = incident["reason"].as_str().unwrap();
        assert!(reason.starts_with(expected), "{reason}");
        assert!(incident["plan"]["commands"].as_array().unwrap().is_empty());
    }
}
