//! Acknowledged means durable: `kill -9` right after a 2xx loses nothing, and the
//! restarted engine plans what was journaled but not yet planned.

use serde_json::json;

use crate::bed::{BEARER, history_json, only, start_salve, wait_for_incidents};
use crate::support::post_json;

#[tokio::test]
async fn kill_9_right_after_2xx_keeps_the_incident() {
    let mut salve = start_salve("", "").await;
    let alert = json!({ "labels": {
        "alertname": "ServiceDown", "instance": "web2:9100", "service": "postgresql"
    }});
    let response = post_json(
        &format!("{}/hooks/generic", salve.base_url()),
        &alert,
        &[BEARER],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    // No wait of any kind between the acknowledgement and the kill.
    salve.kill9();

    salve.restart().await;
    let incidents = wait_for_incidents(&salve, "the acknowledged incident after restart", |all| {
        all.iter().any(|i| i["state"] == "dry_run")
    })
    .await;
    assert_eq!(incidents.len(), 1);
    let history = history_json(&salve).await;
    let incident = only(&history, "ServiceDown");
    assert_eq!(incident["plan"]["target"]["name"], "web2");
    assert_eq!(
        incident["plan"]["commands"][0],
        "systemctl restart 'postgresql'"
    );
}
