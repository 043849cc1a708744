//! The webhook contract over real HTTP: credentials, size, content type and syntax are
//! checked before anything is stored, each with its status code and a reason.

use crate::support::{BEARER, SalveConfig, http_client, on_both_stores, post_json};
use serde_json::{Value, json};

fn am_body(alertname: &str) -> Value {
    let raw = std::fs::read_to_string(crate::support::fixture(
        "intake/alertmanager-0.25-firing.json",
    ))
    .expect("Alertmanager fixture");
    let mut capture: Value = serde_json::from_str(&raw).unwrap();
    let mut body = capture["body"].take();
    body["alerts"][0]["labels"]["alertname"] = json!(alertname);
    body
}

on_both_stores! {
async fn bad_requests_get_their_status_and_nothing_is_stored(store: StoreKind) {
    let on_store = store.config().await;
    let salve = on_store(SalveConfig::standard()).start_with_shipped_recipes().await;
    let body = serde_json::to_vec(&am_body("DiskFull")).unwrap();
    let hook = "/hooks/alertmanager";

    let (status, reason) = salve
        .post_raw(hook, "application/json", body.clone(), None)
        .await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("missing credentials"), "{reason}");
    let (status, _) = salve
        .post_raw(hook, "application/json", body.clone(), Some("Bearer wrong"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = salve
        .post_raw(
            hook,
            "application/json",
            body.clone(),
            Some("Basic d3Jvbmc6d3Jvbmc="),
        )
        .await;
    assert_eq!(status, 401);

    let (status, reason) = salve
        .post_raw(hook, "text/plain", body.clone(), Some(BEARER.1))
        .await;
    assert_eq!(status, 415, "{reason}");
    assert!(reason.contains("application/json"), "{reason}");

    let (status, reason) = salve
        .post_raw(
            hook,
            "application/json",
            b"{\"version\": \"4\", \"alerts\": [".to_vec(),
            Some(BEARER.1),
        )
        .await;
    assert_eq!(status, 400, "{reason}");
    assert!(
        reason.contains("line 1"),
        "reason should locate the error: {reason}"
    );

    let mut wrong_version = am_body("DiskFull");
    wrong_version["version"] = json!("3");
    let (status, reason) = salve.post_webhook_json(hook, &wrong_version).await;
    assert_eq!(status, 400, "{reason}");
    assert!(reason.contains("version"), "{reason}");

    // Over the default 1 MiB limit: one huge annotation.
    let mut huge = am_body("DiskFull");
    huge["alerts"][0]["annotations"]["blob"] = json!("x".repeat(2 * 1024 * 1024));
    let (status, reason) = salve.post_webhook_json(hook, &huge).await;
    assert_eq!(status, 413, "{reason}");

    assert!(
        salve.api_incidents().await.is_empty(),
        "a rejected request stored something"
    );

    // The same body with the right token is accepted and journaled.
    let response = post_json(
        &format!("{}{hook}", salve.base_url()),
        &am_body("DiskFull"),
        &[BEARER],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    salve
        .wait_for_incidents("the accepted alert", |all| all.len() == 1)
        .await;
}
}

on_both_stores! {
async fn basic_auth_generic_and_grafana_hooks_are_accepted(store: StoreKind) {
    let on_store = store.config().await;
    let salve = on_store(SalveConfig::standard())
        .basic_auth("am", "pw")
        .start_with_shipped_recipes()
        .await;
    let basic = ("authorization", "Basic YW06cHc="); // am:pw
    let generic = json!({
        "labels": {"alertname": "GenericThing", "instance": "web1:9100"},
        "annotations": {"summary": "from a script"}
    });
    salve
        .post_to_hook("/hooks/generic", &generic, &[basic])
        .await;

    let grafana: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::fixture("intake/grafana-firing.json"))
            .expect("grafana fixture"),
    )
    .unwrap();
    salve
        .post_to_hook("/hooks/grafana", &grafana, &[BEARER])
        .await;

    let incidents = salve
        .wait_for_incidents("both incidents planned", |all| {
            all.len() >= 2 && all.iter().all(|i| i["state"] != "received")
        })
        .await;
    let sources: Vec<&str> = incidents
        .iter()
        .filter_map(|i| i["source"].as_str())
        .collect();
    assert!(
        sources.contains(&"generic") && sources.contains(&"grafana"),
        "{sources:?}"
    );

    // Metrics moved, with sources as the only label values.
    let metrics = salve.metrics().await;
    assert!(
        metrics.contains("salve_alerts_received_total{source=\"generic\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "salve_webhook_request_duration_seconds_count{source=\"grafana\",code=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("GenericThing"),
        "alert names leaked into metric labels"
    );
}
}

#[tokio::test]
async fn health_and_readiness() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    let healthz = http_client()
        .get(format!("{}/healthz", salve.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    let readyz = http_client()
        .get(format!("{}/readyz", salve.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status().as_u16(), 200);
    let api = http_client()
        .get(format!("{}/api/v1/incidents", salve.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status().as_u16(),
        401,
        "the incidents API must need credentials"
    );
}

/// While the journal cannot commit, webhooks get 503 (Alertmanager retries 5xx) and are
/// not acknowledged; once it can, the same notification is accepted.
#[tokio::test]
async fn store_that_cannot_commit_answers_503_then_recovers() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    // Another process-level writer holds SQLite's write lock past salve's busy timeout.
    let blocker = rusqlite::Connection::open(salve.dir().join("salve.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let hook = format!("{}/hooks/alertmanager", salve.base_url());
    let response = post_json(&hook, &am_body("DiskFull"), &[BEARER]).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let response = post_json(&hook, &am_body("DiskFull"), &[BEARER]).await;
    assert_eq!(response.status().as_u16(), 200);
    let incidents = salve
        .wait_for_incidents("the retried alert", |all| all.len() == 1)
        .await;
    assert_eq!(
        incidents[0]["receive_count"], 1,
        "the 503'd delivery must not count"
    );
}

/// The intake limits over real HTTP, per hook: each breach is a 400 naming the limit, and
/// nothing of the notification is stored.
#[tokio::test]
async fn notifications_over_the_intake_limits_are_refused_whole() {
    let salve = SalveConfig::standard()
        .intake_setting("max_alerts", "2")
        .intake_setting("max_labels", "4")
        .intake_setting("max_name_bytes", "16")
        .intake_setting("max_value_bytes", "32")
        .start_with_shipped_recipes()
        .await;
    let generic = |labels: Value| json!({ "labels": labels });
    let ok = json!({ "alertname": "Limits", "instance": "web1:9100" });
    let mut am_three = am_body("Limits");
    let first = am_three["alerts"][0].clone();
    am_three["alerts"] = json!([first.clone(), first.clone(), first]);
    for (hook, body, limit) in [
        (
            "/hooks/generic",
            json!({ "alerts": [generic(ok.clone()), generic(ok.clone()), generic(ok.clone())] }),
            "max_alerts",
        ),
        ("/hooks/alertmanager", am_three, "max_alerts"),
        (
            "/hooks/generic",
            generic(json!({ "alertname": "Limits", "a": "1", "b": "2", "c": "3", "d": "4" })),
            "max_labels",
        ),
        (
            "/hooks/generic",
            generic(json!({ "alertname": "Limits", "a_very_long_label_name": "x" })),
            "max_name_bytes",
        ),
        (
            "/hooks/generic",
            generic(json!({ "alertname": "Limits", "instance": "x".repeat(33) })),
            "max_value_bytes",
        ),
    ] {
        let (status, reason) = salve.post_webhook_json(hook, &body).await;
        assert_eq!(status, 400, "{hook} {limit}: {reason}");
        assert!(
            reason.contains(limit),
            "{hook}: {reason} should name {limit}"
        );
    }
    assert!(
        salve.api_incidents().await.is_empty(),
        "a refused notification stored something"
    );
    // At the limits exactly: accepted (the same alert twice is one incident).
    let (status, reason) = salve
        .post_webhook_json(
            "/hooks/generic",
            &json!({ "alerts": [generic(ok.clone()), generic(ok)] }),
        )
        .await;
    assert_eq!(status, 200, "{reason}");
    salve
        .wait_for_incidents("the accepted alerts", |all| all.len() == 1)
        .await;
}
