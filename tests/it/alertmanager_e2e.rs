//! A real Alertmanager 0.25 sending to the real salve: one incident per alert, with the
//! shipped recipe's plan; re-sends leave one incident; a resolve marks it resolved.

use crate::support::{Alertmanager, SalveConfig, TOKEN, only};
use std::time::Duration;

#[tokio::test]
async fn alertmanager_alert_becomes_one_planned_incident_and_resolves() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    let alertmanager = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .bearer_token(TOKEN)
        // Re-send the unchanged group on every tick, as a long-firing alert would.
        .repeat_interval(Duration::from_secs(1))
        .start()
        .await;
    let labels = [
        ("alertname", "ServiceDown"),
        ("instance", "web1:9100"),
        ("service", "nginx"),
    ];
    alertmanager
        .post_alert(&labels, &[("summary", "nginx is down on web1")])
        .await;

    let incidents = salve
        .wait_for_incidents("the ServiceDown incident to be planned", |all| {
            all.iter().any(|i| i["state"] == "dry_run")
        })
        .await;
    let incident = only(&incidents, "ServiceDown");
    assert_eq!(incident["source"], "alertmanager");
    assert_eq!(incident["alert_status"], "firing");
    // The listing is a summary; the plan is on the incident's own URL.
    assert_eq!(incident["recipe"], "service-restart");
    let detail = salve.api_incident(&incident["id"]).await;
    let plan = &detail["plan"];
    assert_eq!(plan["outcome"], "planned");
    assert_eq!(plan["recipe"], "service-restart");
    assert_eq!(plan["target"]["name"], "web1");
    assert_eq!(plan["commands"][0], "systemctl restart 'nginx'");
    assert!(
        plan["verify"]["checks"]
            .as_array()
            .is_some_and(|c| c.len() >= 2),
        "checks: {}",
        plan["verify"]
    );
    assert_eq!(plan["escalate"][0], "oncall-email");

    // Alertmanager re-sends the group every second: still one incident, counted.
    let incidents = salve
        .wait_for_incidents("three deliveries of the same alert", |all| {
            all.len() > 1
                || all
                    .first()
                    .is_some_and(|i| i["receive_count"].as_i64() >= Some(3))
        })
        .await;
    assert_eq!(
        incidents.len(),
        1,
        "re-sends created incidents: {incidents:#?}"
    );

    alertmanager
        .resolve_alert(&labels, &[("summary", "nginx is down on web1")])
        .await;
    let incidents = salve
        .wait_for_incidents("the incident to be resolved", |all| {
            all.len() > 1 || all.first().is_some_and(|i| i["alert_status"] == "resolved")
        })
        .await;
    assert_eq!(
        incidents.len(),
        1,
        "the resolve created an incident: {incidents:#?}"
    );
    assert!(incidents[0]["resolved_at"].is_string());

    // The CLI reads the same journal, with the events.
    let history = salve.history_json().await;
    let incident = only(&history, "ServiceDown");
    assert_eq!(incident["alert_status"], "resolved");
    let kinds: Vec<&str> = incident["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["received", "planned", "resolved"] {
        assert!(kinds.contains(&kind), "journal lacks {kind}: {kinds:?}");
    }
}
