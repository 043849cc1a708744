//! Alertmanager HA on real parts: two replicas clustered over loopback gossip, both routed to
//! one enforcing salve. Whether the cluster lets both replicas send their copy (delivery is
//! at-least-once) or suppresses the second one, salve makes exactly one incident and one
//! remediation per alert, and counts extra copies in `salve_alert_duplicates_total`.

use std::time::Duration;

use crate::support::{
    Alertmanager, AlertmanagerBuilder, Enforcing, SalveProcess, SshHost, StoreKind, TOKEN, events,
    http_client, on_both_stores, wait_until,
};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// Alerts per test, each its own Alertmanager group (group_by alertname + instance, and
/// every alert has its own `instance` port), so a replica sends each alert exactly once and
/// any copy beyond the first comes from the other replica, not from a group re-send.
const ALERTS: u16 = 5;

/// What the pair sent and what salve made of it, after both replicas decided every alert.
#[derive(Debug)]
struct Delivery {
    sent_by_first: u64,
    sent_by_second: u64,
    /// Alerts salve's Alertmanager intake received (`salve_alerts_received_total`).
    received: u64,
    /// Of those, copies of an alert it already had (`salve_alert_duplicates_total`).
    duplicates: u64,
    /// `receive_count` of each incident.
    receive_counts: Vec<i64>,
}

/// Sums the samples of one metric whose labels contain `selector` (empty: every sample,
/// labelled or not), from a Prometheus text exposition.
fn metric_sum(exposition: &str, name: &str, selector: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with('{') && rest.contains(selector))
                    || (selector.is_empty() && rest.starts_with(' '))
            })
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: &str) -> String {
    let response = http_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    response.text().await.expect("metrics body")
}

/// (notification-log queries, webhook notifications sent) of one replica. Every group flush
/// asks the notification log whether the group was already sent (the HA dedup stage) before
/// it sends, so `queries ≥ ALERTS` means the replica has decided every alert;
/// `alertmanager_notifications_total` counts each notification once, however many HTTP
/// attempts it took.
async fn replica_counts(replica: &Alertmanager) -> (u64, u64) {
    let exposition = scrape(&format!("{}/metrics", replica.url())).await;
    (
        metric_sum(&exposition, "alertmanager_nflog_queries_total", "") as u64,
        metric_sum(
            &exposition,
            "alertmanager_notifications_total",
            "integration=\"webhook\"",
        ) as u64,
    )
}

/// salve's intake counters for Alertmanager: (alerts received, of which duplicates).
async fn salve_intake(salve: &SalveProcess) -> (u64, u64) {
    let exposition = salve.metrics().await;
    let source = "source=\"alertmanager\"";
    (
        metric_sum(&exposition, "salve_alerts_received_total", source) as u64,
        metric_sum(&exposition, "salve_alert_duplicates_total", source) as u64,
    )
}

/// Starts an enforcing salve with one SSH host and a clustered pair configured by
/// `configure`, fires `ALERTS` Echo alerts at both replicas, and waits until every alert is
/// remediated and every copy either replica sent has reached salve. Asserts the HA promise
/// (one incident, one remediation, one step per alert) and returns the delivery figures.
async fn deliver_through_pair(
    store: StoreKind,
    configure: impl FnOnce(AlertmanagerBuilder) -> AlertmanagerBuilder,
) -> Delivery {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host)
        .config(store.config().await)
        .start()
        .await;
    let salve = &enforcing.salve;
    let builder = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .bearer_token(TOKEN);
    let (first, second) = configure(builder).start_pair().await;

    // Like Prometheus, send every alert to every replica at once, with the same explicit
    // startsAt: that is what makes both replicas' copies the same alert occurrence.
    let starts_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let alerts: Vec<Value> = (0..ALERTS)
        .map(|n| {
            json!({
                "labels": {
                    "alertname": "Echo",
                    "instance": format!("web1:{}", 9100 + n),
                    "message": format!("ha copy {n}"),
                },
                "startsAt": starts_at,
            })
        })
        .collect();
    let alerts = Value::Array(alerts);
    tokio::join!(
        first.post_alerts_json(alerts.clone()),
        second.post_alerts_json(alerts)
    );

    let expected = usize::from(ALERTS);
    salve
        .wait_for_final(expected, Duration::from_secs(60))
        .await;
    let (sent_by_first, sent_by_second, received, duplicates) = wait_until(
        Duration::from_secs(30),
        "both replicas to decide every alert and salve to receive every copy they sent",
        || async {
            let (first_queries, sent_by_first) = replica_counts(&first).await;
            let (second_queries, sent_by_second) = replica_counts(&second).await;
            let (received, duplicates) = salve_intake(salve).await;
            let decided = first_queries >= u64::from(ALERTS) && second_queries >= u64::from(ALERTS);
            (decided && received == sent_by_first + sent_by_second).then_some((
                sent_by_first,
                sent_by_second,
                received,
                duplicates,
            ))
        },
    )
    .await;

    // The journal, read after every copy arrived: one incident per alert, each run once.
    let history = salve.history_json().await;
    assert_eq!(
        history.len(),
        expected,
        "HA copies created incidents: {history:#?}"
    );
    for incident in &history {
        assert_eq!(incident["state"], "succeeded", "{incident:#}");
        assert_eq!(
            events(incident, "remediation_started").len(),
            1,
            "remediated more than once: {incident:#}"
        );
        assert_eq!(
            events(incident, "step_started").len(),
            1,
            "a step ran more than once: {incident:#}"
        );
    }
    let delivery = Delivery {
        sent_by_first,
        sent_by_second,
        received,
        duplicates,
        receive_counts: history
            .iter()
            .map(|incident| incident["receive_count"].as_i64().unwrap())
            .collect(),
    };
    eprintln!("HA delivery: {delivery:?}");
    assert_eq!(
        delivery.duplicates,
        delivery.received - u64::from(ALERTS),
        "every copy beyond the first of each alert counts as a duplicate: {delivery:?}"
    );
    assert_eq!(
        delivery.receive_counts.iter().sum::<i64>(),
        i64::try_from(delivery.received).unwrap(),
        "the incidents' receive counts add up to the copies received: {delivery:?}"
    );
    delivery
}

on_both_stores! {
async fn both_replicas_deliver_and_each_alert_is_still_remediated_once(store: StoreKind) {
    // The at-least-once case, made deterministic: no peer timeout, so neither replica waits
    // for the other, and gossip (with the full syncs tied to it) slowed to once a minute, so
    // neither learns from its notification log that the other already sent — what a lagging
    // or partitioned cluster does. Membership itself does not wait for gossip: the pair
    // still joins and lists both peers at once.
    let delivery = deliver_through_pair(store, |builder| {
        builder
            .peer_timeout(Duration::ZERO)
            .gossip_interval(Duration::from_secs(60))
    })
    .await;
    assert_eq!(
        (delivery.sent_by_first, delivery.sent_by_second),
        (u64::from(ALERTS), u64::from(ALERTS)),
        "each replica sends each alert once: {delivery:?}"
    );
    assert_eq!(delivery.duplicates, u64::from(ALERTS), "{delivery:?}");
    assert!(
        delivery.receive_counts.iter().all(|&count| count == 2),
        "{delivery:?}"
    );
}
}

#[tokio::test]
async fn a_settled_cluster_suppresses_the_second_copy_and_each_alert_is_remediated_once() {
    // Healthy HA: fast gossip, and the later replica waits 2 s (Alertmanager's peer timeout,
    // 15 s by default) — long after the first replica's notification-log entries arrived —
    // so it finds every alert already sent and stays silent.
    let delivery = deliver_through_pair(StoreKind::Sqlite, |builder| {
        builder.peer_timeout(Duration::from_secs(2))
    })
    .await;
    assert_eq!(
        delivery.sent_by_first + delivery.sent_by_second,
        u64::from(ALERTS),
        "the cluster sent an alert twice although gossip had 2 s to spread: {delivery:?}"
    );
    assert_eq!(delivery.duplicates, 0, "{delivery:?}");
}
