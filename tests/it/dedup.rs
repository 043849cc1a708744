//! Dedup cannot be gamed: an incident is keyed by the fingerprint salve computes from the
//! labels and the alert's start, never by a fingerprint the sender supplies, and not by the
//! route either — the same alert from a real Alertmanager and the generic hook is one
//! incident. An alert that resolves and fires again while its incident waits for its host
//! runs (once); it never ends `resolved_before_run` while it fires.

use std::time::Duration;

use crate::support::{
    Alertmanager, BEARER, Enforcing, SalveConfig, SalveProcess, SshHost, TOKEN, events,
    on_both_stores, post_json,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

fn with_label<'a>(history: &'a [Value], name: &str, value: &str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|i| i["labels"][name] == value)
        .collect()
}

/// An Alertmanager webhook body (version 4) around `alerts`.
fn alertmanager_body(alerts: Value) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "salve", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093", "alerts": alerts,
    })
}

async fn post(salve: &SalveProcess, hook: &str, body: &Value) -> (u16, String) {
    let response = post_json(&format!("{}{hook}", salve.base_url()), body, &[BEARER]).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

on_both_stores! {
async fn an_alert_posted_with_another_alerts_fingerprint_never_joins_its_incident(store: StoreKind) {
    let on_store = store.config().await;
    let salve = on_store(SalveConfig::standard()).start_with_shipped_recipes().await;
    let starts_at = "2026-12-01T00:00:00.000Z";
    let victim = json!({
        "status": "firing", "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
        "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "shop-api" },
        "annotations": {}, "generatorURL": "",
    });
    let (status, body) = post(
        &salve,
        "/hooks/alertmanager",
        &alertmanager_body(json!([victim])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let history = salve
        .wait_for_history("the victim's incident", |h| h.len() == 1)
        .await;
    let victim_fingerprint = history[0]["fingerprint"].as_str().unwrap().to_owned();
    let victim_id = history[0]["id"].clone();

    // The attacker resolves "its" alert, sending the victim's fingerprint and start: on the
    // Alertmanager route the sent fingerprint is ignored, the alert is its own.
    let forged = json!({
        "status": "resolved", "startsAt": starts_at, "endsAt": "2026-12-01T00:00:01.000Z",
        "labels": { "alertname": "ServiceDown", "instance": "attacker:9100", "service": "x" },
        "annotations": {}, "generatorURL": "", "fingerprint": victim_fingerprint,
    });
    let (status, body) = post(
        &salve,
        "/hooks/alertmanager",
        &alertmanager_body(json!([forged])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // On the generic route a fingerprint that is not the labels' own is refused.
    let forged_generic = json!({
        "labels": { "alertname": "ServiceDown", "instance": "attacker2:9100", "service": "x" },
        "status": "resolved", "startsAt": starts_at, "fingerprint": victim_fingerprint,
    });
    let (status, body) = post(&salve, "/hooks/generic", &forged_generic).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("fingerprint") && body.contains("does not match the labels"),
        "{body}"
    );

    let history = salve
        .wait_for_history("the attacker's own incident", |h| h.len() == 2)
        .await;
    let victim = history.iter().find(|i| i["id"] == victim_id).unwrap();
    assert_eq!(
        victim["alert_status"], "firing",
        "the forged resolve closed it: {victim:#}"
    );
    assert_eq!(victim["receive_count"], 1, "{victim:#}");
    assert_eq!(victim["labels"]["instance"], "web1:9100");
    assert!(events(victim, "resolved").is_empty(), "{victim:#}");
    let attacker = &with_label(&history, "instance", "attacker:9100")[0];
    assert_ne!(attacker["fingerprint"], victim_fingerprint.as_str());
    assert_eq!(attacker["alert_status"], "resolved");
    assert!(with_label(&history, "instance", "attacker2:9100").is_empty());
}
}

on_both_stores! {
async fn the_same_alert_from_alertmanager_and_the_generic_hook_is_one_incident(store: StoreKind) {
    let on_store = store.config().await;
    let salve = on_store(SalveConfig::standard()).start_with_shipped_recipes().await;
    let alertmanager = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .bearer_token(TOKEN)
        .start()
        .await;

    // A user migrating a monitor: the real Alertmanager sends it first, then the script on
    // the generic hook sends the same labels (without a start, as scripts do).
    let first = [
        ("alertname", "DiskFull"),
        ("instance", "web1:9100"),
        ("mountpoint", "/var"),
    ];
    alertmanager.post_alert(&first, &[]).await;
    salve
        .wait_for_history("Alertmanager's incident", |h| h.len() == 1)
        .await;
    salve.post_generic(json!({ "labels": { "alertname": "DiskFull", "instance": "web1:9100", "mountpoint": "/var" } })).await;

    // The other order: the generic hook first, then Alertmanager with its own start.
    salve.post_generic(json!({ "labels": { "alertname": "DiskFull", "instance": "web2:9100", "mountpoint": "/srv" } })).await;
    salve
        .wait_for_history("the generic incident", |h| h.len() == 2)
        .await;
    let second = [
        ("alertname", "DiskFull"),
        ("instance", "web2:9100"),
        ("mountpoint", "/srv"),
    ];
    alertmanager.post_alert(&second, &[]).await;

    let history = salve
        .wait_for_history("each alert counted from both routes", |h| {
            h.iter()
                .map(|i| i["receive_count"].as_i64().unwrap_or(0))
                .sum::<i64>()
                >= 4
        })
        .await;
    assert_eq!(history.len(), 2, "one incident per alert: {history:#?}");
    for incident in &history {
        assert_eq!(incident["receive_count"], 2, "{incident:#}");
    }
    let via_alertmanager = with_label(&history, "instance", "web1:9100")[0];
    assert_eq!(via_alertmanager["source"], "alertmanager");
    let via_generic = with_label(&history, "instance", "web2:9100")[0];
    assert_eq!(via_generic["source"], "generic");
    // It took the monitor's start (what Alertmanager reports for the alert).
    let held = alertmanager.alerts().await;
    let monitor_start = held
        .iter()
        .find(|a| a["labels"]["instance"] == "web2:9100")
        .and_then(|a| a["startsAt"].as_str())
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc())
        .expect("Alertmanager holds the web2 alert");
    let stored_start =
        chrono::DateTime::parse_from_rfc3339(via_generic["starts_at"].as_str().unwrap())
            .unwrap()
            .to_utc();
    assert_eq!(stored_start, monitor_start, "{via_generic:#}");

    // A resolve on the other route resolves it.
    salve
        .post_generic(json!({ "labels": { "alertname": "DiskFull", "instance": "web1:9100", "mountpoint": "/var" }, "status": "resolved" }))
        .await;
    let history = salve
        .wait_for_history("the generic resolve", |h| {
            h.iter()
                .any(|i| i["labels"]["instance"] == "web1:9100" && i["alert_status"] == "resolved")
        })
        .await;
    assert_eq!(history.len(), 2, "{history:#?}");
}
}

on_both_stores! {
async fn an_alert_that_resolves_and_fires_again_while_queued_runs_once(store: StoreKind) {
    let on_store = store.config().await;
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host).config(on_store).start().await;
    let salve = &enforcing.salve;

    // A three-second fix keeps web1 busy; the Echo alerts queue behind it.
    salve
        .post_generic(json!({ "labels": { "alertname": "Long", "instance": "web1:9100" } }))
        .await;
    salve
        .wait_for_history("the long fix running", |h| {
            h.iter().any(|i| i["state"] == "remediating")
        })
        .await;

    let at = |offset_ms: i64| {
        (Utc::now() + chrono::Duration::milliseconds(offset_ms))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let (first_start, second_start) = (at(-2000), at(0));
    let labels = json!({ "alertname": "Echo", "instance": "web1:9100", "message": "with-starts" });
    // As Alertmanager sends it: fires, resolves, fires again with a new start.
    for alert in [
        json!({ "labels": labels, "startsAt": first_start }),
        json!({ "labels": labels, "startsAt": first_start, "status": "resolved", "endsAt": at(-1000) }),
        json!({ "labels": labels, "startsAt": second_start }),
    ] {
        salve.post_generic(alert).await;
    }
    // As a script sends it: no start at all.
    let labels =
        json!({ "alertname": "Echo", "instance": "web1:9100", "message": "without-starts" });
    for alert in [
        json!({ "labels": labels }),
        json!({ "labels": labels, "status": "resolved" }),
        json!({ "labels": labels }),
    ] {
        salve.post_generic(alert).await;
    }
    let queued = salve.history_json().await;
    assert!(
        queued.iter().any(|i| i["state"] == "remediating"),
        "the long fix ended before the alerts fired again; the test proves nothing: {queued:#?}"
    );

    let history = salve.wait_for_final(3, Duration::from_secs(60)).await;
    for incident in &history {
        assert_ne!(
            incident["state"], "resolved_before_run",
            "closed as resolved although its alert fires: {incident:#}"
        );
    }
    for message in ["with-starts", "without-starts"] {
        let echoes = with_label(&history, "message", message);
        assert_eq!(echoes.len(), 1, "{message}: {echoes:#?}");
        let echo = echoes[0];
        assert_eq!(echo["state"], "succeeded", "{echo:#}");
        assert_eq!(echo["alert_status"], "firing", "{echo:#}");
        // It ran once, on the target, which printed the label back.
        let steps = events(echo, "step_finished");
        assert_eq!(steps.len(), 1, "{echo:#}");
        assert_eq!(steps[0]["stdout"], message, "{echo:#}");
        assert_eq!(events(echo, "refired").len(), 1, "{echo:#}");
    }
    let with_starts = with_label(&history, "message", "with-starts")[0];
    let stored = chrono::DateTime::parse_from_rfc3339(with_starts["starts_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    let sent = chrono::DateTime::parse_from_rfc3339(&second_start)
        .unwrap()
        .to_utc();
    assert_eq!(
        stored, sent,
        "the incident takes the new occurrence's start"
    );
}
}
