//! Escalate and guard on real parts: the circuit breaker counted in the store (and so
//! across restarts), rate limits, escalation of novel and refused alerts, the gaps report
//! and the metrics, with escalations delivered to a real HTTP server capturing webhooks.

use std::time::Duration;

use crate::support::{
    BEARER, Enforcing, SalveConfig, SshHost, WebhookCapture, by_label, events, free_port,
    http_client, outbox_pending, service_down_on_web1, text, wait_until,
};
use serde_json::{Value, json};

/// Both routes of the shipped recipes as webhooks into one capture server.
/// Both channels post to `capture`: `/oncall` and `/tickets`.
fn capture_channels(config: SalveConfig, capture: &WebhookCapture) -> SalveConfig {
    config
        .webhook_channel("oncall-email", &capture.url("/oncall"))
        .webhook_channel("tickets", &capture.url("/tickets"))
}

async fn wait_for_posts(capture: &WebhookCapture, count: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(20),
        &format!("{count} escalation post(s)"),
        || async {
            let posts = capture.requests();
            (posts.len() >= count).then(|| posts.iter().map(|p| p.json()).collect())
        },
    )
    .await
}

fn service_down(service: &str, port: u16, n: u32) -> Value {
    let mut alert = service_down_on_web1(service, port);
    // A new occurrence each time: as an alert that flaps (fires, resolves, fires).
    alert["startsAt"] = json!(format!("2026-11-28T10:00:{n:02}Z"));
    alert
}

#[tokio::test]
async fn breaker_opens_after_max_runs_survives_restart_and_resets() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let capture = WebhookCapture::start().await;
    let mut enforcing = Enforcing::on(&host)
        // The shipped recipe (max_runs = 3 in 10m), polled every second instead of 5.
        .patch_recipe(
            "service-restart.toml",
            "interval = \"5s\"",
            "interval = \"1s\"",
        )
        .config(|config| capture_channels(config, &capture))
        .start()
        .await;

    for n in 1..=3 {
        enforcing
            .salve
            .post_generic(service_down("shop-api", port, n))
            .await;
        let history = enforcing
            .salve
            .wait_for_final(n as usize, Duration::from_secs(60))
            .await;
        assert!(
            history.iter().all(|i| i["state"] == "succeeded"),
            "{history:#?}"
        );
    }

    // A restart in between does not reset the count: it lives in the store.
    enforcing.salve.kill9();
    enforcing.salve.restart().await;
    let salve = &enforcing.salve;

    salve.post_generic(service_down("shop-api", port, 4)).await;
    let history = salve.wait_for_final(4, Duration::from_secs(30)).await;
    let fourth = by_label(&history, "alertname", "ServiceDown");
    let fourth = history
        .iter()
        .find(|i| {
            i["starts_at"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-28T10:00:04")
        })
        .unwrap_or(fourth);
    assert_eq!(fourth["state"], "breaker_open", "{fourth:#}");
    assert!(
        events(fourth, "step_started").is_empty(),
        "a breaker_open incident ran"
    );
    let posts = wait_for_posts(&capture, 1).await;
    assert_eq!(posts.len(), 1, "exactly one escalation: {posts:#?}");
    assert_eq!(posts[0]["reason"], "breaker_open");
    assert_eq!(
        posts[0]["breaker"]["runs"].as_array().unwrap().len(),
        3,
        "{:#}",
        posts[0]
    );

    let list = salve.run_cli(&["breaker", "list"]).await;
    let listed = text(&list.stdout);
    assert!(
        listed.contains("OPEN") && listed.contains("service-restart") && listed.contains("web1"),
        "{listed}"
    );
    assert!(
        salve
            .metrics()
            .await
            .contains("salve_breaker_open{recipe=\"service-restart\"} 1")
    );

    let reset = salve
        .run_cli(&["breaker", "reset", "service-restart", "web1/shop-api"])
        .await;
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    salve.post_generic(service_down("shop-api", port, 5)).await;
    let history = salve.wait_for_final(5, Duration::from_secs(60)).await;
    let fifth = history
        .iter()
        .find(|i| {
            i["starts_at"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-28T10:00:05")
        })
        .unwrap();
    assert_eq!(fifth["state"], "succeeded", "{fifth:#}");
}

#[tokio::test]
async fn the_breaker_resets_through_the_authenticated_api() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host)
        .config(|config| config.api_token("ops", "ops-token", "operate"))
        .start()
        .await;
    let url = format!("{}/api/v1/breakers/reset", enforcing.salve.base_url());
    let body = json!({ "recipe": "service-restart", "target": "web1" });
    let denied = http_client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    // The webhook credential may post alerts, not reset breakers (tests/it/api_auth.rs).
    let webhook = http_client()
        .post(&url)
        .header(BEARER.0, BEARER.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status().as_u16(), 403);
    // An operate token may; this breaker never ran, so there is nothing to reset.
    let allowed = http_client()
        .post(&url)
        .header("authorization", "Bearer ops-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 404);
}

#[tokio::test]
async fn over_the_per_host_rate_an_incident_waits_then_escalates_rate_limited() {
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::on(&host)
        .config(|config| capture_channels(config, &capture))
        .limit("per_host_per_minute", "1")
        .limit("max_wait", "\"1s\"")
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "first" } },
            { "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "second" } },
        ]}))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(30)).await;
    assert_eq!(by_label(&history, "message", "first")["state"], "succeeded");
    let limited = by_label(&history, "message", "second");
    assert_eq!(limited["state"], "rate_limited", "{limited:#}");
    assert!(
        limited["reason"]
            .as_str()
            .unwrap()
            .contains("1/min per host"),
        "{}",
        limited["reason"]
    );
    let posts = wait_for_posts(&capture, 1).await;
    assert_eq!(posts[0]["reason"], "rate_limited");
}

#[tokio::test]
async fn novel_and_refused_alerts_are_escalated_and_gaps_ranks_them() {
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::on(&host)
        .config(|config| capture_channels(config, &capture))
        .start()
        .await;
    let salve = &enforcing.salve;
    let novel = |name: &str, n: u32| json!({ "labels": { "alertname": name, "instance": "web1:9100", "n": n.to_string() } });
    salve.post_generic(json!({ "alerts": [
            novel("KafkaLagHigh", 1), novel("KafkaLagHigh", 2), novel("KafkaLagHigh", 3),
            novel("CertExpiring", 1),
            { "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "bad name; rm -rf /" } },
        ]}),
    )
    .await;
    salve.wait_for_final(5, Duration::from_secs(30)).await;
    let posts = wait_for_posts(&capture, 5).await;
    assert_eq!(posts.len(), 5, "one escalation per incident: {posts:#?}");
    let reasons: Vec<&str> = posts.iter().filter_map(|p| p["reason"].as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "novel").count(),
        4,
        "{reasons:?}"
    );
    let refused = posts.iter().find(|p| p["reason"] == "refused").unwrap();
    assert!(
        refused["why"].as_str().unwrap().contains("pattern"),
        "{refused:#}"
    );
    // Novel and refused alerts go to the default route.
    assert!(capture.requests().iter().all(|r| r.path == "/oncall"));
    let history = salve.history_json().await;
    for incident in &history {
        assert_eq!(events(incident, "escalation_sent").len(), 1, "{incident:#}");
    }

    let gaps = salve.run_cli(&["gaps", "--json"]).await;
    let gaps: Value = serde_json::from_slice(&gaps.stdout).unwrap();
    let names: Vec<&str> = gaps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["alertname"].as_str())
        .collect();
    assert_eq!(
        names,
        ["KafkaLagHigh", "CertExpiring", "ServiceDown"],
        "{gaps:#}"
    );
    assert_eq!(gaps[0]["unmatched"], 3);

    // Every escalation was accepted, so the outbox empties (the gauge follows within a pass).
    let scraped = wait_until(Duration::from_secs(10), "an empty outbox gauge", || async {
        let scraped = salve.metrics().await;
        (outbox_pending(&scraped) == Some(0)).then_some(scraped)
    })
    .await;
    assert!(
        scraped.contains("salve_escalations_total{channel=\"oncall-email\",reason=\"novel\"} 4"),
        "{scraped}"
    );
    assert!(
        !scraped.contains("KafkaLagHigh"),
        "alert names leaked into metric labels"
    );
}

#[tokio::test]
async fn success_ratio_and_remediation_counters_move() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "ok" } },
            { "labels": { "alertname": "Hang", "instance": "web1:9100" } },
        ]}))
        .await;
    salve.wait_for_final(2, Duration::from_secs(30)).await;
    let scraped = wait_until(Duration::from_secs(10), "the ratio gauge", || async {
        let scraped = salve.metrics().await;
        scraped
            .contains("salve_auto_remediation_success_ratio 0.5")
            .then_some(scraped)
    })
    .await;
    assert!(
        scraped
            .contains("salve_remediations_total{recipe=\"echo-message\",outcome=\"succeeded\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("salve_remediations_total{recipe=\"hang\",outcome=\"failed\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("salve_ssh_command_duration_seconds_count"),
        "{scraped}"
    );
}
