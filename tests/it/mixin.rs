//! The monitoring mixin and the metrics it reads, on real parts: Debian's `promtool` checks
//! and unit-tests mixin/alerts.yml; the real Prometheus scrapes the real salve (in the text
//! format 0.0.4, through a proxy that asks for it) after a remediation over a real sshd and
//! an escalation, and every PromQL expression of mixin/dashboard.json returns data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Enforcing, Prometheus, SalveProcess, SshHost, TEXT_004_ACCEPT, Text004Proxy, free_port,
    health_status, http_client, promtool, service_down_on_web1, text, wait_until,
};

/// Every final outcome `salve_incidents_total` carries from the first scrape.
const OUTCOMES: [&str; 14] = [
    "unmatched",
    "refused",
    "dry_run",
    "notified",
    "succeeded",
    "failed",
    "verify_failed",
    "breaker_open",
    "rate_limited",
    "resolved_before_run",
    "interrupted",
    "paused",
    "denied",
    "approval_expired",
];

/// The alerts issue 13 asks the mixin for.
const ALERTS: [&str; 9] = [
    "SalveDown",
    "SalveWebhookErrors",
    "SalveWebhookUnavailable",
    "SalveEscalationBacklog",
    "SalveEscalationChannelFailing",
    "SalveBreakerOpen",
    "SalveRemediationSuccessRatioLow",
    "SalveConfigReloadFailed",
    "SalveErrorBudgetTripped",
];

/// What Prometheus 2.x sends by default: OpenMetrics first.
const PROMETHEUS_DEFAULT_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn mixin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mixin")
}

fn run_promtool(args: &[&str]) -> String {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(mixin_dir())
        .env_clear()
        .output()
        .expect("run promtool");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "promtool {args:?}:\n{said}");
    said
}

/// `GET /metrics` with this `Accept` header: (content type, body).
async fn scrape(salve: &SalveProcess, accept: &str) -> (String, String) {
    let response = http_client()
        .get(format!("{}/metrics", salve.base_url()))
        .header("Accept", accept)
        .send()
        .await
        .expect("GET /metrics");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// The value of the sample whose line starts with `series` (name and labels as written).
fn sample(scraped: &str, series: &str) -> Option<f64> {
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a sample value"))
}

fn outcome_count(scraped: &str, outcome: &str) -> Option<f64> {
    sample(
        scraped,
        &format!("salve_incidents_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Every `salve_incidents_total` sample added up.
fn incidents_counted(scraped: &str) -> f64 {
    scraped
        .lines()
        .filter(|line| line.starts_with("salve_incidents_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn the_alert_rules_pass_promtool_check_and_a_unit_test_of_each_alert() {
    let checked = run_promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = run_promtool(&["test", "rules", "tests.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // One rule per alert the issue names, each tested firing and not firing.
    let rules = std::fs::read_to_string(mixin_dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(mixin_dir().join("tests.yml")).unwrap();
    for alert in ALERTS {
        assert!(rules.contains(&format!("- alert: {alert}\n")), "{alert}");
        let cases: Vec<&str> = tests
            .split(&format!("alertname: {alert}\n"))
            .skip(1)
            .map(|after| after.trim_start())
            .collect();
        assert!(
            cases.iter().any(|case| case.starts_with("exp_alerts: []")),
            "{alert} is never tested not firing"
        );
        assert!(
            cases
                .iter()
                .any(|case| case.starts_with("exp_alerts:\n") && case.contains("exp_labels:")),
            "{alert} is never tested firing"
        );
    }
    assert_eq!(rules.matches("- alert: ").count(), ALERTS.len());
}

#[tokio::test]
async fn metrics_speak_text_004_when_asked_and_count_each_incident_once_by_final_outcome() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;

    // From the start: the 0.0.4 text for a scraper asking for it, every outcome at 0,
    // the build, and a text promtool's own parser accepts.
    let (content_type, fresh) = scrape(salve, TEXT_004_ACCEPT).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        !fresh.contains("# EOF") && !fresh.contains("# UNIT"),
        "{fresh}"
    );
    assert!(
        fresh.contains("# TYPE salve_incidents_total counter\n"),
        "{fresh}"
    );
    for outcome in OUTCOMES {
        assert_eq!(
            outcome_count(&fresh, outcome),
            Some(0.0),
            "{outcome}\n{fresh}"
        );
    }
    assert_eq!(incidents_counted(&fresh), 0.0, "{fresh}");
    let build = format!(
        "salve_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        fresh
            .lines()
            .any(|line| line.starts_with(&build) && line.ends_with("\"} 1")),
        "{fresh}"
    );
    assert!(
        fresh.contains("salve_alert_to_first_command_seconds_count 0\n"),
        "{fresh}"
    );
    let mut promtool_check = Command::new(promtool())
        .args(["check", "metrics"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    std::io::Write::write_all(&mut promtool_check.stdin.take().unwrap(), fresh.as_bytes()).unwrap();
    let linted = promtool_check.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "promtool check metrics:\n{}{}",
        text(&linted.stdout),
        text(&linted.stderr)
    );
    // Prometheus's default header prefers OpenMetrics, and gets it.
    let (content_type, openmetrics) = scrape(salve, PROMETHEUS_DEFAULT_ACCEPT).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");

    // A remediation that succeeds over real sshd, and a novel alert: two incidents.
    salve
        .post_generic(json!({ "alerts": [service_down_on_web1("shop-api", port)] }))
        .await;
    salve
        .post_generic(json!({ "alerts": [{ "labels": { "alertname": "MixinNovel" } }] }))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(90)).await;
    assert!(
        history.iter().any(|i| i["state"] == "succeeded"),
        "{history:#?}"
    );
    assert_eq!(health_status(port).await, Some(200));
    salve.wait_until_delivered().await;

    let (_, after) = scrape(salve, TEXT_004_ACCEPT).await;
    assert_eq!(outcome_count(&after, "succeeded"), Some(1.0), "{after}");
    assert_eq!(outcome_count(&after, "unmatched"), Some(1.0), "{after}");
    // Each incident once: `matched` on the way to `succeeded` is no outcome.
    assert_eq!(incidents_counted(&after), 2.0, "{after}");
    assert!(!after.contains("outcome=\"matched\""), "{after}");
    assert_eq!(
        sample(&after, "salve_alert_to_first_command_seconds_count"),
        Some(1.0),
        "{after}"
    );
}

#[tokio::test]
async fn a_denial_from_the_cli_and_an_expired_approval_are_each_counted_once() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let enforcing = Enforcing::on(&host)
        .patch_recipe(
            "service-restart.toml",
            "mode = \"enforce\"",
            "mode = \"approve\"",
        )
        .config(|config| {
            config
                .approval_setting("key", "\"mixin-approval-key\"")
                .approval_setting("timeout", "\"20s\"")
        })
        .start()
        .await;
    let salve = &enforcing.salve;

    for second in [1, 2] {
        let mut alert = service_down_on_web1("shop-api", port);
        alert["startsAt"] = json!(format!("2026-11-28T10:00:{second:02}Z"));
        salve.post_generic(json!({ "alerts": [alert] })).await;
    }
    let waiting = wait_until(
        Duration::from_secs(60),
        "two plans awaiting approval",
        || async {
            let history = salve.history_json().await;
            let ids: Vec<i64> = history
                .iter()
                .filter(|i| i["state"] == "awaiting_approval")
                .map(|i| i["id"].as_i64().unwrap())
                .collect();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    // `salve deny` decides in the store, from another process than the one counting.
    let denied = salve
        .run_cli(&["deny", &waiting[0].to_string(), "--reason", "mixin test"])
        .await;
    assert!(denied.status.success(), "{}", text(&denied.stderr));

    let history = salve.wait_for_final(2, Duration::from_secs(90)).await;
    let states: Vec<&str> = history
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"denied") && states.contains(&"approval_expired"),
        "{states:?}"
    );
    salve.wait_until_delivered().await;
    let scraped = wait_until(Duration::from_secs(30), "both outcomes counted", || async {
        let (_, scraped) = scrape(salve, TEXT_004_ACCEPT).await;
        (incidents_counted(&scraped) >= 2.0).then_some(scraped)
    })
    .await;
    assert_eq!(outcome_count(&scraped, "denied"), Some(1.0), "{scraped}");
    assert_eq!(
        outcome_count(&scraped, "approval_expired"),
        Some(1.0),
        "{scraped}"
    );
    // A few engine passes later, still once each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, later) = scrape(salve, TEXT_004_ACCEPT).await;
    assert_eq!(incidents_counted(&later), 2.0, "{later}");
}

/// Every `expr` of the dashboard's panels, with the panel's title.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(mixin_dir().join("dashboard.json")).expect("read dashboard"),
    )
    .expect("dashboard.json is JSON");
    let mut found = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target has an expr");
            found.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
        }
    }
    found
}

/// The expression as Grafana sends it: its variables replaced.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "10m")
        .replace("$job", "salve")
}

#[tokio::test]
async fn prometheus_scrapes_salve_in_text_004_and_every_dashboard_query_returns_data() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    let upstream = salve
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Text004Proxy::to(&upstream).await;
    let prometheus =
        Prometheus::scraping(proxy.address(), &[&mixin_dir().join("alerts.yml")]).await;
    wait_until(
        Duration::from_secs(60),
        "Prometheus scraping salve",
        || async {
            let data = prometheus.query("up{job=\"salve\"} == 1").await;
            (!data["result"].as_array().unwrap().is_empty()).then_some(())
        },
    )
    .await;

    // Traffic while Prometheus watches, so rates and histograms move: a duplicate, a
    // remediation over real sshd, a novel alert that is escalated.
    let down = service_down_on_web1("shop-api", port);
    salve
        .post_generic(json!({ "alerts": [down.clone()] }))
        .await;
    salve.post_generic(json!({ "alerts": [down] })).await;
    salve
        .post_generic(json!({ "alerts": [{ "labels": { "alertname": "MixinNovel" } }] }))
        .await;
    salve.wait_for_final(2, Duration::from_secs(90)).await;
    salve.wait_until_delivered().await;
    // Counters move a moment after the journal: wait until Prometheus scraped them.
    for moved in [
        "sum(increase(salve_escalations_total{job=\"salve\"}[1m])) > 0",
        "sum(salve_incidents_total{job=\"salve\", outcome=\"succeeded\"}) > 0",
    ] {
        wait_until(Duration::from_secs(60), moved, || async {
            let data = prometheus.query(moved).await;
            (!data["result"].as_array().unwrap().is_empty()).then_some(())
        })
        .await;
    }

    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 10, "{expressions:#?}");
    let mut empty = Vec::new();
    for (title, expr) in &expressions {
        let promql = substitute(expr);
        assert!(!promql.contains('$'), "unknown variable in {promql}");
        let data = prometheus.query(&promql).await;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        let has_number = result.iter().any(|series| {
            series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| !v.is_nan())
        });
        if !has_number {
            empty.push(format!("{title}: {promql} → {data}"));
        }
    }
    if !empty.is_empty() {
        let counted = prometheus
            .query("salve_incidents_total{job=\"salve\"}[1m]")
            .await;
        panic!(
            "dashboard queries without data:\n{}\nlast proxied scrape: {:?}\nincidents counted: {counted}",
            empty.join("\n"),
            proxy.scrapes().last()
        );
    }

    // Prometheus asked for OpenMetrics, the proxy for 0.0.4, and salve answered 0.0.4.
    let scrapes = proxy.scrapes();
    assert!(!scrapes.is_empty());
    for scrape in &scrapes {
        assert!(
            scrape
                .scraper_accept
                .starts_with("application/openmetrics-text"),
            "{scrape:?}"
        );
        assert_eq!(
            scrape.content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{scrape:?}"
        );
    }
    // Prometheus read the counters as counters from the 0.0.4 text.
    let metadata = http_client()
        .get(prometheus.url("/api/v1/metadata", &[("metric", "salve_incidents_total")]))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        metadata["data"]["salve_incidents_total"][0]["type"], "counter",
        "{metadata:#}"
    );
}
