//! Pauses, maintenance windows and the fleet error budget on real parts: the real salve
//! enforcing on two inventory hosts played by a real sshd, pages into a webhook capture. A
//! pause by CLI, by API or by a `[[maintenance]]` window stops remediation on the paused
//! host (its marker file is never written) while the other host's runs; a pause survives a
//! restart; the error budget pauses everything after N failures and pages exactly once.

use std::time::Duration;

use chrono::{Datelike, Utc};
use serde_json::{Value, json};

use crate::support::{
    Enforcing, SalveProcess, SshHost, TARGET_USER, WebhookCapture, events, http_client, text,
    wait_until,
};

/// Writes `MARKER/<target>-<n>` on the target, then succeeds or fails as the alert's
/// `outcome` label says. `MARKER` is replaced per test.
const PROBE: &str = r#"name = "pause-probe"
match = ['alertname="PauseProbe"']
target = "{{ labels.instance | host }}"
mode = "enforce"

[params.n]
from = "labels.n"
pattern = '[0-9]+'

[params.outcome]
from = "labels.outcome"
pattern = '(ok|fail)'

[remediate]
run = ["mkdir -p MARKER && touch MARKER/{{ target_name }}-{{ n }} && test {{ outcome }} = ok"]
timeout = "10s"
"#;

/// States an incident of these tests ends in.
const DONE: [&str; 3] = ["succeeded", "failed", "paused"];

const OPERATE: &str = "Bearer pause-operate";
const READ: &str = "Bearer pause-read";

struct Bed {
    host: SshHost,
    capture: WebhookCapture,
    enforcing: Enforcing,
    marker: String,
}

/// web1 and web2 on one real sshd, the probe recipe (markers under a directory of this
/// test's own), pages of the default route into a capture, an `operate` and a `read` token.
async fn start(
    test: &str,
    extra: impl FnOnce(crate::support::SalveConfig) -> crate::support::SalveConfig,
) -> Bed {
    let host = SshHost::start().await;
    let marker = format!("/tmp/salve-pause-{test}");
    host.exec_ok(&format!("rm -rf {marker}")).await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::single_recipe(
        &host,
        &[("web1", TARGET_USER), ("web2", TARGET_USER)],
        &PROBE.replace("MARKER", &marker),
    )
    .config(|config| {
        extra(
            config
                .webhook_channel("oncall-email", &capture.url("/oncall"))
                .api_token("operator", "pause-operate", "operate")
                .api_token("viewer", "pause-read", "read"),
        )
    })
    .start()
    .await;
    Bed {
        host,
        capture,
        enforcing,
        marker,
    }
}

impl Bed {
    fn salve(&self) -> &SalveProcess {
        &self.enforcing.salve
    }

    /// Posts probe `n` for `host` and returns its incident once it (and every other) ended.
    async fn probe(&self, host: &str, n: u32, outcome: &str) -> Value {
        self.salve()
            .post_generic(json!({ "alerts": [{ "labels": {
                "alertname": "PauseProbe", "instance": format!("{host}:9100"),
                "n": n.to_string(), "outcome": outcome,
            } }] }))
            .await;
        let (salve, n) = (self.salve(), n.to_string());
        let history = wait_until(Duration::from_secs(60), "every probe ended", || async {
            let history = salve.history_json().await;
            let done = history
                .iter()
                .all(|i| DONE.contains(&i["state"].as_str().unwrap_or("")));
            let mine = history.iter().any(|i| i["labels"]["n"] == n.as_str());
            (done && mine).then_some(history)
        })
        .await;
        history
            .into_iter()
            .find(|i| i["labels"]["n"] == n.as_str())
            .unwrap()
    }

    /// Whether the probe wrote its marker for `host`, `n` on the target.
    async fn ran(&self, host: &str, n: u32) -> bool {
        self.host
            .exec(&format!("test -e {}/{host}-{n}", self.marker))
            .await
            .status
            .success()
    }

    async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.salve().run_cli(args).await;
        (
            output.status.success(),
            text(&output.stdout),
            text(&output.stderr),
        )
    }

    async fn pause_list(&self) -> Value {
        let (ok, stdout, stderr) = self.cli(&["pause", "list", "--json"]).await;
        assert!(ok, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    async fn api(&self, method: &str, path: &str, auth: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.salve().base_url());
        let request = match method {
            "GET" => http_client().get(url),
            _ => http_client().post(url),
        }
        .header("authorization", auth);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// The pages the capture received with this `reason`.
    fn pages(&self, reason: &str) -> Vec<Value> {
        self.capture
            .requests()
            .iter()
            .map(|request| request.json())
            .filter(|page| page["reason"] == reason)
            .collect()
    }
}

/// A paused incident: state `paused`, journaled with the pause, no step sent.
fn assert_paused(incident: &Value, pause: &str) {
    assert_eq!(incident["state"], "paused", "{incident:#}");
    let paused = events(incident, "paused");
    assert_eq!(paused.len(), 1, "{incident:#}");
    assert_eq!(paused[0]["pause"], pause, "{incident:#}");
    assert!(events(incident, "step_started").is_empty(), "{incident:#}");
    assert!(
        events(incident, "remediation_started").is_empty(),
        "{incident:#}"
    );
}

#[tokio::test]
async fn a_cli_pause_of_one_host_stops_only_its_remediations_and_survives_a_restart() {
    let mut bed = start("cli", |config| config).await;

    // `--for` or `--until-resumed` is required, and the host must be in the inventory.
    let (ok, _, stderr) = bed.cli(&["pause", "--host", "web1", "--reason", "x"]).await;
    assert!(!ok && stderr.contains("--for 2h"), "{stderr}");
    let (ok, _, stderr) = bed
        .cli(&["pause", "--host", "web9", "--for", "2h", "--reason", "x"])
        .await;
    assert!(!ok && stderr.contains("not in the inventory"), "{stderr}");

    let (ok, stdout, stderr) = bed
        .cli(&[
            "pause",
            "--host",
            "web1",
            "--for",
            "2h",
            "--reason",
            "disk swap",
        ])
        .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("pause #1: recipe * on host web1 paused until "),
        "{stdout}"
    );

    let paused = bed.probe("web1", 1, "ok").await;
    assert_paused(&paused, "#1");
    assert!(
        events(&paused, "paused")[0]["by"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    assert!(!bed.ran("web1", 1).await, "nothing ran on the paused host");
    let other = bed.probe("web2", 2, "ok").await;
    assert_eq!(other["state"], "succeeded", "{other:#}");
    assert!(bed.ran("web2", 2).await);

    // The paused incident is escalated per route (the default: the capture), reason paused.
    let page = wait_until(Duration::from_secs(30), "the paused page", || async {
        bed.pages("paused").into_iter().next()
    })
    .await;
    assert_eq!(page["incident_id"], paused["id"], "{page:#}");
    assert!(
        page["why"].as_str().unwrap().contains("disk swap"),
        "{page:#}"
    );

    // In the store: a new process sees it, and `pause list` says who paused what.
    bed.enforcing.salve.restart().await;
    let listed = bed.pause_list().await;
    let pauses = listed["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{listed:#}");
    assert_eq!(pauses[0]["host"], "web1");
    assert_eq!(pauses[0]["recipe"], Value::Null);
    assert!(
        pauses[0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    assert_paused(&bed.probe("web1", 3, "ok").await, "#1");
    assert!(!bed.ran("web1", 3).await);

    // Resumed: the host runs again, and the list is empty.
    let (ok, stdout, stderr) = bed.cli(&["resume", "1"]).await;
    assert!(
        ok && stdout.contains("resumed pause #1"),
        "{stdout}{stderr}"
    );
    let (ok, _, stderr) = bed.cli(&["resume", "1"]).await;
    assert!(!ok && stderr.contains("no active pause #1"), "{stderr}");
    assert_eq!(bed.pause_list().await["pauses"], json!([]));
    assert_eq!(bed.probe("web1", 4, "ok").await["state"], "succeeded");
    assert!(bed.ran("web1", 4).await);
}

#[tokio::test]
async fn an_api_pause_needs_operate_stops_the_host_and_a_silent_one_pages_no_one() {
    let bed = start("api", |config| config).await;
    let body = json!({ "host": "web1", "for": "1h", "reason": "kernel update", "silent": true });

    let (status, _) = bed
        .api("POST", "/api/v1/pauses", READ, Some(body.clone()))
        .await;
    assert_eq!(status, 403, "a read token cannot pause");
    let (status, answer) = bed
        .api(
            "POST",
            "/api/v1/pauses",
            OPERATE,
            Some(json!({ "host": "web1", "reason": "x" })),
        )
        .await;
    assert_eq!(status, 400, "{answer:#}");
    let (status, pause) = bed.api("POST", "/api/v1/pauses", OPERATE, Some(body)).await;
    assert_eq!(status, 201, "{pause:#}");
    assert_eq!(pause["created_by"], "operator", "{pause:#}");
    assert_eq!(pause["silent"], true);
    let id = pause["id"].as_i64().unwrap();

    let (status, listed) = bed.api("GET", "/api/v1/pauses", READ, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["pauses"][0]["id"], id, "{listed:#}");

    let paused = bed.probe("web1", 1, "ok").await;
    assert_paused(&paused, &format!("#{id}"));
    assert!(!bed.ran("web1", 1).await);
    let other = bed.probe("web2", 2, "ok").await;
    assert_eq!(other["state"], "succeeded", "{other:#}");
    assert!(bed.ran("web2", 2).await);
    // Silent: journaled, escalated to no channel.
    let salve = bed.salve();
    let queued = wait_until(Duration::from_secs(30), "the silent escalation", || async {
        let history = salve.history_json().await;
        let incident = history.iter().find(|i| i["id"] == paused["id"])?.clone();
        events(&incident, "escalation_queued")
            .first()
            .map(|e| (*e).clone())
    })
    .await;
    assert_eq!(queued["channels"], json!([]), "{queued:#}");
    assert!(bed.pages("paused").is_empty());

    let path = format!("/api/v1/pauses/{id}/resume");
    let (status, _) = bed.api("POST", &path, READ, None).await;
    assert_eq!(status, 403);
    let (status, resumed) = bed.api("POST", &path, OPERATE, None).await;
    assert_eq!(status, 200, "{resumed:#}");
    assert_eq!(resumed["resumed_by"], "operator");
    let (status, _) = bed.api("POST", &path, OPERATE, None).await;
    assert_eq!(status, 404, "resumed already");
    assert_eq!(bed.probe("web1", 3, "ok").await["state"], "succeeded");
    assert!(bed.ran("web1", 3).await);
}

#[tokio::test]
async fn a_weekly_maintenance_window_open_now_in_its_zone_pauses_its_hosts() {
    // A window from an hour ago to an hour from now on Kolkata's wall clock (+05:30): open
    // now whatever the time of day (it may cross midnight: it belongs to its opening day).
    let zone: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let now = Utc::now().with_timezone(&zone);
    let (opens, closes) = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let day = format!("[\"{}\"]", opens.weekday().to_string().to_lowercase());
    let (from, to) = (
        format!("\"{}\"", opens.format("%H:%M")),
        format!("\"{}\"", closes.format("%H:%M")),
    );
    let bed = start("window", |config| {
        config.maintenance_window(&[
            ("name", "\"web1-patching\""),
            ("hosts", "[\"web1\"]"),
            ("days", &day),
            ("from", &from),
            ("to", &to),
            ("timezone", "\"Asia/Kolkata\""),
        ])
    })
    .await;

    let paused = bed.probe("web1", 1, "ok").await;
    assert_paused(&paused, "maintenance web1-patching");
    assert!(!bed.ran("web1", 1).await);
    let other = bed.probe("web2", 2, "ok").await;
    assert_eq!(other["state"], "succeeded", "{other:#}");
    assert!(bed.ran("web2", 2).await);

    let listed = bed.pause_list().await;
    assert_eq!(listed["pauses"], json!([]));
    assert_eq!(
        listed["maintenance"][0]["name"], "web1-patching",
        "{listed:#}"
    );
    assert!(
        listed["maintenance"][0]["schedule"]
            .as_str()
            .unwrap()
            .ends_with("Asia/Kolkata")
    );

    // A window without an explicit zone is a config error with its line.
    let config = std::fs::read_to_string(bed.salve().config_path()).unwrap();
    let broken = config.replace("timezone = \"Asia/Kolkata\"\n", "");
    std::fs::write(bed.salve().config_path(), &broken).unwrap();
    let (ok, _, stderr) = bed.cli(&["check"]).await;
    let line = 1 + broken.lines().position(|l| l == "[[maintenance]]").unwrap();
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "salve.toml:{line}: maintenance[0]: timezone is missing"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_error_budget_pauses_everything_after_n_failures_and_pages_once() {
    let bed = start("budget", |config| {
        config.engine_setting("error_budget", "{ max_failures = 2, window = \"15m\" }")
    })
    .await;

    assert_eq!(bed.probe("web1", 1, "fail").await["state"], "failed");
    assert_eq!(bed.probe("web2", 2, "fail").await["state"], "failed");

    // One global pause by the budget, one page listing both failures.
    let salve = bed.salve();
    let page = wait_until(Duration::from_secs(30), "the error budget page", || async {
        bed.pages("error_budget").into_iter().next()
    })
    .await;
    let why = page["why"].as_str().unwrap();
    assert!(why.contains("#1") && why.contains("#2"), "{page:#}");
    let listed = bed.pause_list().await;
    let pauses = listed["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{listed:#}");
    assert_eq!(pauses[0]["created_by"], "error-budget");
    assert_eq!(pauses[0]["until"], Value::Null, "until a human resumes it");
    assert_eq!(pauses[0]["host"], Value::Null);
    let pause = format!("#{}", pauses[0]["id"]);

    // Paused fleet-wide: a run that would work does not run, on either host.
    for (host, n) in [("web1", 3), ("web2", 4)] {
        assert_paused(&bed.probe(host, n, "ok").await, &pause);
        assert!(!bed.ran(host, n).await);
    }
    salve.wait_until_delivered().await;
    assert_eq!(bed.pages("error_budget").len(), 1, "the budget pages once");
    assert_eq!(
        bed.pages("paused").len(),
        2,
        "each paused incident escalates"
    );
    let metrics = salve.metrics().await;
    assert!(
        metrics.contains("salve_error_budget_tripped 1"),
        "{metrics}"
    );

    // A human resumes: runs go on, and the spent failures do not trip it again.
    let (ok, stdout, stderr) = bed.cli(&["resume", "--all"]).await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(bed.probe("web1", 5, "fail").await["state"], "failed");
    assert_eq!(bed.probe("web2", 6, "ok").await["state"], "succeeded");
    assert!(bed.ran("web2", 6).await);
    assert_eq!(bed.pause_list().await["pauses"], json!([]));
}
