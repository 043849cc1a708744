//! What the tests ask a running salve, as methods of its process handle: post alerts, read
//! incidents through the API and the CLI, wait for states, scrape metrics. Plus the small
//! readers of the JSON it answers with. Never reaches into salve's internals.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::config::{API_BEARER, BEARER};
use super::{SalveProcess, http_client, post_json, wait_until};

/// The states an incident ends in.
pub const FINAL: [&str; 13] = [
    "notified",
    "paused",
    "denied",
    "approval_expired",
    "succeeded",
    "failed",
    "verify_failed",
    "resolved_before_run",
    "refused",
    "unmatched",
    "breaker_open",
    "rate_limited",
    "interrupted",
];

impl SalveProcess {
    /// POSTs `alerts` to `/hooks/generic` with the webhook token; asserts 200.
    pub async fn post_generic(&self, alerts: Value) {
        self.post_to_hook("/hooks/generic", &alerts, &[BEARER])
            .await;
    }

    /// POSTs `body` to `hook` with these headers (credentials); asserts 200.
    pub async fn post_to_hook(&self, hook: &str, body: &Value, headers: &[(&str, &str)]) {
        let response = post_json(&format!("{}{hook}", self.base_url()), body, headers).await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{}",
            response.text().await.unwrap()
        );
    }

    /// POSTs `body` as is to `path` with this content type and `authorization` header (if
    /// any); the status and the answer's text.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        authorization: Option<&str>,
    ) -> (u16, String) {
        let mut request = http_client()
            .post(format!("{}{path}", self.base_url()))
            .header("content-type", content_type)
            .body(body.into());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// POSTs `body` as JSON to `path` with the webhook token; the status and the answer.
    pub async fn post_webhook_json(&self, path: &str, body: &Value) -> (u16, String) {
        let body = serde_json::to_vec(body).expect("JSON body");
        self.post_raw(path, "application/json", body, Some(BEARER.1))
            .await
    }

    /// Incidents from `GET /api/v1/incidents`, newest first.
    pub async fn api_incidents(&self) -> Vec<Value> {
        let response = http_client()
            .get(format!("{}/api/v1/incidents?limit=500", self.base_url()))
            .header(API_BEARER.0, API_BEARER.1)
            .send()
            .await
            .expect("GET /api/v1/incidents");
        assert!(
            response.status().is_success(),
            "incidents API: {}",
            response.status()
        );
        match response.json::<Value>().await.expect("incidents JSON") {
            Value::Array(items) => items,
            other => panic!("incidents API returned {other}"),
        }
    }

    /// One incident with its plan and journal, from `GET /api/v1/incidents/{id}`.
    pub async fn api_incident(&self, id: &Value) -> Value {
        let response = http_client()
            .get(format!("{}/api/v1/incidents/{id}", self.base_url()))
            .header(API_BEARER.0, API_BEARER.1)
            .send()
            .await
            .expect("GET /api/v1/incidents/{id}");
        assert!(
            response.status().is_success(),
            "incident API: {}",
            response.status()
        );
        response.json().await.expect("incident JSON")
    }

    /// Polls the API until `done` holds for the incident list, and returns it.
    pub async fn wait_for_incidents(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(Duration::from_secs(20), what, || async {
            let incidents = self.api_incidents().await;
            done(&incidents).then_some(incidents)
        })
        .await
    }

    /// Polls the journal (`history --json`) until `done` holds for it, and returns it.
    pub async fn wait_for_history(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(Duration::from_secs(30), what, || async {
            let history = self.history_json().await;
            done(&history).then_some(history)
        })
        .await
    }

    /// `salve history --json` (room for a flood), parsed, asserting exit 0.
    pub async fn history_json(&self) -> Vec<Value> {
        let output = self
            .run_cli(&["history", "--json", "--limit", "5000"])
            .await;
        parse_json_output("history --json", &output)
    }

    /// Polls the journal until there are `count` incidents, every one in a final state.
    pub async fn wait_for_final(&self, count: usize, deadline: Duration) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let history = self.history_json().await;
            if history.len() == count
                && history
                    .iter()
                    .all(|i| FINAL.contains(&i["state"].as_str().unwrap_or("")))
            {
                return history;
            }
            if started.elapsed() > deadline {
                let states: Vec<String> = history
                    .iter()
                    .map(|i| format!("{} {} ({})", i["id"], i["state"], i["reason"]))
                    .collect();
                panic!(
                    "timed out after {deadline:?} waiting for {count} incident(s) in a final state; have {states:#?}\nsalve log:\n{}",
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until every escalation of the journal was accepted by its channel (and there is one).
    pub async fn wait_until_delivered(&self) -> Vec<Value> {
        wait_until(
            Duration::from_secs(30),
            "every escalation delivered",
            || async {
                let history = self.history_json().await;
                let delivered = history.iter().all(|i| {
                    let queued = events(i, "escalation_queued").len();
                    queued == 0 || !events(i, "escalation_sent").is_empty()
                });
                (delivered
                    && history
                        .iter()
                        .any(|i| !events(i, "escalation_sent").is_empty()))
                .then_some(history)
            },
        )
        .await
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        http_client()
            .get(format!("{}/metrics", self.base_url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }
}

/// A generic `ServiceDown` alert for `service` on web1, its health endpoint on local
/// `health_port` (what the shipped service-restart recipe checks).
pub fn service_down_on_web1(service: &str, health_port: u16) -> Value {
    json!({ "labels": {
        "alertname": "ServiceDown",
        "instance": "web1:9100",
        "service": service,
        "health_port": health_port.to_string(),
    } })
}

/// The value of the unlabelled sample `name` in a scrape.
pub fn metric_value(scraped: &str, name: &str) -> Option<String> {
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(|value| value.trim().to_owned())
}

/// The value of the `salve_escalation_outbox_pending` gauge in a scrape.
pub fn outbox_pending(scraped: &str) -> Option<i64> {
    metric_value(scraped, "salve_escalation_outbox_pending").and_then(|value| value.parse().ok())
}

/// A CLI's stdout as JSON items (an object is one item), asserting exit 0.
pub fn parse_json_output(what: &str, output: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "salve {what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_str::<Value>(&stdout) {
        Ok(Value::Array(items)) => items,
        Ok(other) => vec![other],
        Err(e) => panic!("salve {what}: not JSON ({e}): {stdout}"),
    }
}

/// Runs a one-shot `salve` command (check, simulate, test) in `dir` with a clean
/// environment, the way an operator would.
pub fn salve_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run salve")
}

/// Output bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one incident whose labels include `alertname`, asserting there is exactly one.
pub fn only<'a>(incidents: &'a [Value], alertname: &str) -> &'a Value {
    let matching: Vec<&Value> = incidents
        .iter()
        .filter(|i| i["labels"]["alertname"] == alertname)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "incidents for {alertname}: {matching:#?}"
    );
    matching[0]
}

/// The details of an incident's journal events of one kind, in order.
pub fn events<'a>(incident: &'a Value, kind: &str) -> Vec<&'a Value> {
    incident["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| &e["detail"])
        .collect()
}

/// When the incident's first event of `kind` happened.
pub fn event_time(incident: &Value, kind: &str) -> DateTime<Utc> {
    let event = incident["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event: {incident:#}"));
    event["at"].as_str().unwrap().parse().unwrap()
}

/// The incident whose label `label` is `value`.
pub fn by_label<'a>(history: &'a [Value], label: &str, value: &str) -> &'a Value {
    history
        .iter()
        .find(|i| i["labels"][label] == value)
        .unwrap_or_else(|| panic!("no incident with {label}={value}: {history:#?}"))
}

/// Sleeps until a duplicate delivery would have happened: past every `escalation_sent` of
/// `history` plus the backoff a retry of that row would have waited had attempt N been
/// recorded failed (2^(N-1) s, as `engine::outbox::backoff`) plus a margin of four outbox
/// polls. "Exactly once" counted any earlier could not see the duplicate.
pub async fn wait_past_next_retry(history: &[Value]) {
    let last_retry_due = history
        .iter()
        .flat_map(|incident| incident["events"].as_array().unwrap())
        .filter(|event| event["kind"] == "escalation_sent")
        .map(|event| {
            let at: DateTime<Utc> = event["at"].as_str().unwrap().parse().unwrap();
            let attempt = event["detail"]["attempt"].as_u64().unwrap().clamp(1, 9) as u32;
            at + chrono::Duration::seconds(2i64.pow(attempt - 1)) + chrono::Duration::seconds(2)
        })
        .max()
        .expect("no escalation_sent in the journal");
    if let Ok(left) = (last_retry_due - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}
