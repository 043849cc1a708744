//! Reload without restart on real parts: the real salve enforcing on web1 (a real sshd).
//! A recipe added to the directory runs on the next alert after SIGHUP or `POST /-/reload`
//! (operate scope; a read token gets 403); a broken recipe makes the reload fail with the
//! problem in the answer and `salve_config_last_reload_successful` 0 while the old recipes
//! still run; a SIGHUP during a running fix neither stops salve nor changes that fix's plan.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Enforcing, SalveProcess, SshHost, TARGET_USER, metric_value, text, wait_until,
};

/// Touches `MARKER/<name>-<n>` on the target after `SLEEP` seconds. `NAME`, `ALERT`,
/// `MARKER` and `SLEEP` are replaced per recipe.
const PROBE: &str = r#"name = "NAME"
match = ['alertname="ALERT"']
target = "{{ labels.instance | host }}"
mode = "enforce"

[params.n]
from = "labels.n"
pattern = '[0-9]+'

[remediate]
run = ["sleep SLEEP && mkdir -p MARKER && touch MARKER/NAME-{{ n }}"]
timeout = "30s"
"#;

const OPERATE: &str = "Bearer reload-operate";
const READ: &str = "Bearer reload-read";

fn probe(name: &str, alert: &str, marker: &str, sleep: u32) -> String {
    PROBE
        .replace("NAME", name)
        .replace("ALERT", alert)
        .replace("MARKER", marker)
        .replace("SLEEP", &sleep.to_string())
}

struct Bed {
    host: SshHost,
    enforcing: Enforcing,
    marker: String,
}

/// web1 on a real sshd, one recipe `first` (alert `First`), an operate and a read token.
async fn start(test: &str, first_sleep: u32) -> Bed {
    let host = SshHost::start().await;
    let marker = format!("/tmp/salve-reload-{test}");
    host.exec_ok(&format!("rm -rf {marker}")).await;
    let enforcing = Enforcing::single_recipe(
        &host,
        &[("web1", TARGET_USER)],
        &probe("first", "First", &marker, first_sleep),
    )
    .config(|config| {
        config
            .api_token("operator", "reload-operate", "operate")
            .api_token("viewer", "reload-read", "read")
    })
    .start()
    .await;
    Bed {
        host,
        enforcing,
        marker,
    }
}

impl Bed {
    fn salve(&self) -> &SalveProcess {
        &self.enforcing.salve
    }

    fn recipe_file(&self, file: &str) -> PathBuf {
        self.salve().dir().join("recipes").join(file)
    }

    /// Posts alert `alertname` number `n` on web1.
    async fn post(&self, alertname: &str, n: u32) {
        self.salve()
            .post_generic(json!({ "alerts": [{ "labels": {
                "alertname": alertname, "instance": "web1:9100", "n": n.to_string(),
            } }] }))
            .await;
    }

    /// The incident of alert number `n` once it is in one of `states`.
    async fn incident(&self, n: u32, states: &[&str]) -> Value {
        let salve = self.salve();
        let n = n.to_string();
        wait_until(
            Duration::from_secs(60),
            &format!("incident n={n} in {states:?}"),
            || async {
                salve.history_json().await.into_iter().find(|i| {
                    i["labels"]["n"] == n.as_str()
                        && states.contains(&i["state"].as_str().unwrap_or(""))
                })
            },
        )
        .await
    }

    async fn ran(&self, name: &str, n: u32) -> bool {
        self.host
            .exec(&format!("test -e {}/{name}-{n}", self.marker))
            .await
            .status
            .success()
    }

    async fn reload_metrics(&self) -> (String, String) {
        let scraped = self.salve().metrics().await;
        (
            metric_value(&scraped, "salve_config_last_reload_successful").unwrap_or_default(),
            metric_value(
                &scraped,
                "salve_config_last_reload_success_timestamp_seconds",
            )
            .unwrap_or_default(),
        )
    }

    async fn post_reload(&self, authorization: &str) -> (u16, Value) {
        let (status, body) = self
            .salve()
            .post_raw("/-/reload", "application/json", "", Some(authorization))
            .await;
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, body)
    }

    fn assert_alive(&self) {
        let pid = self.salve().pid().expect("salve runs");
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "salve exited on SIGHUP:\n{}",
            self.salve().stderr_tail()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_added_then_sighup_runs_on_the_next_alert() {
    let bed = start("sighup-add", 0).await;
    bed.post("Second", 1).await;
    let before = bed.incident(1, &["unmatched"]).await;
    assert_eq!(before["state"], "unmatched", "{before:#}");
    let (_, started_at) = bed.reload_metrics().await;

    std::fs::write(
        bed.recipe_file("second.toml"),
        probe("second", "Second", &bed.marker, 0),
    )
    .unwrap();
    bed.salve().send_signal("HUP");
    let salve = bed.salve();
    wait_until(
        Duration::from_secs(30),
        "a newer successful reload",
        || async {
            let scraped = salve.metrics().await;
            let at = metric_value(
                &scraped,
                "salve_config_last_reload_success_timestamp_seconds",
            )?;
            (at != started_at).then_some(())
        },
    )
    .await;
    bed.assert_alive();

    bed.post("Second", 2).await;
    let after = bed.incident(2, &["succeeded", "failed"]).await;
    assert_eq!(after["state"], "succeeded", "{after:#}");
    assert_eq!(after["plan"]["recipe"], "second", "{after:#}");
    assert!(bed.ran("second", 2).await, "the new recipe ran on web1");
    assert_eq!(bed.reload_metrics().await.0, "1");
    assert!(
        bed.salve().stderr_tail().contains("config reloaded"),
        "{}",
        bed.salve().stderr_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_needs_operate_and_a_broken_recipe_keeps_the_old_set() {
    let bed = start("post-broken", 0).await;

    // Arrange: a recipe with a typo'd key next to the working one.
    std::fs::write(
        bed.recipe_file("broken.toml"),
        probe("broken", "Broken", &bed.marker, 0).replace("[remediate]", "[remediat]"),
    )
    .unwrap();

    let (status, body) = bed.post_reload(READ).await;
    assert_eq!(status, 403, "a read token may not reload: {body:#}");
    let (status, body) = bed.post_reload(OPERATE).await;
    assert_eq!(status, 422, "{body:#}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("broken.toml"), "{body:#}");
    assert_eq!(bed.reload_metrics().await.0, "0");
    assert!(
        bed.salve().stderr_tail().contains("reload refused"),
        "{}",
        bed.salve().stderr_tail()
    );

    // The old set still runs.
    bed.post("First", 1).await;
    let first = bed.incident(1, &["succeeded", "failed"]).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    assert!(bed.ran("first", 1).await);

    // Fixed: the reload goes through and reports what it added.
    std::fs::write(
        bed.recipe_file("broken.toml"),
        probe("broken", "Broken", &bed.marker, 0),
    )
    .unwrap();
    let (status, body) = bed.post_reload(OPERATE).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["reloaded"]["recipes_added"],
        json!(["broken"]),
        "{body:#}"
    );
    assert_eq!(bed.reload_metrics().await.0, "1");
    bed.post("Broken", 2).await;
    let fixed = bed.incident(2, &["succeeded", "failed"]).await;
    assert_eq!(fixed["state"], "succeeded", "{fixed:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_a_running_fix_keeps_its_plan() {
    let bed = start("mid-fix", 4).await;
    bed.post("First", 1).await;
    bed.incident(1, &["remediating"]).await;

    // The recipe now writes another marker; the running incident keeps the plan it has.
    std::fs::write(
        bed.recipe_file("recipe.toml"),
        probe("first", "First", &bed.marker, 0).replace("/first-", "/changed-"),
    )
    .unwrap();
    bed.salve().send_signal("HUP");

    let done = bed
        .incident(1, &["succeeded", "failed", "interrupted"])
        .await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(bed.ran("first", 1).await, "the fix ran as planned");
    bed.assert_alive();
    let output = bed.host.exec(&format!("ls {}", bed.marker)).await;
    assert!(
        !text(&output.stdout).contains("changed"),
        "{}",
        text(&output.stdout)
    );
}

/// A host a reload brings into the inventory can be paused through the API at once (seen
/// red with the pause API checking the start's inventory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_added_by_a_reload_can_be_paused_through_the_api() {
    let bed = start("new-host", 0).await;
    let pause_web9 = || async {
        let response = crate::support::post_json(
            &format!("{}/api/v1/pauses", bed.salve().base_url()),
            &json!({ "host": "web9", "for": "1h", "reason": "after the reload" }),
            &[("Authorization", OPERATE)],
        )
        .await;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    };
    let (status, body) = pause_web9().await;
    assert_eq!(status, 400, "web9 is not in the inventory yet: {body}");

    let config = bed.salve().config_path();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[hosts]]\nname = \"web9\"\naddress = \"127.0.0.9\"\n");
    std::fs::write(&config, text).unwrap();
    let (status, body) = bed.post_reload(OPERATE).await;
    assert_eq!(status, 200, "{body:#}");

    let (status, body) = pause_web9().await;
    assert_eq!(status, 201, "a host the reload added: {body}");
}
