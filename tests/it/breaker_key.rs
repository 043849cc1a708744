//! The breaker key on real parts: two units on one real sshd host under the shipped
//! service-restart recipe (`[breaker] key = "{{ target_name }}/{{ service }}"`). One keeps
//! failing verification until its breaker opens; the other still restarts. The page, the
//! CLI and the API name the key, and a reset of a recipe or key that never ran is refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Enforcing, SalveProcess, SshHost, WebhookCapture, events, free_port, health_status,
    http_client, parse_json_output, service_down_on_web1, text, wait_until,
};

/// A new occurrence of `service` being down on web1 (as an alert that flaps: fires,
/// resolves, fires), its health check on `port`.
async fn post_down(salve: &SalveProcess, service: &str, port: u16, n: u32) {
    let mut alert = service_down_on_web1(service, port);
    alert["startsAt"] = json!(format!("2026-11-28T10:00:{n:02}Z"));
    salve.post_generic(json!({ "alerts": [alert] })).await;
}

/// Posts occurrence `n` (the `n`-th incident) and returns it once every incident is final.
async fn post_and_finish(salve: &SalveProcess, service: &str, port: u16, n: u32) -> Value {
    post_down(salve, service, port, n).await;
    let history = salve
        .wait_for_final(n as usize, Duration::from_secs(60))
        .await;
    let starts = format!("2026-11-28T10:00:{n:02}");
    history
        .into_iter()
        .find(|i| i["starts_at"].as_str().unwrap().starts_with(&starts))
        .unwrap()
}

async fn reset_by_api(salve: &SalveProcess, body: Value) -> (u16, Value) {
    let answer = http_client()
        .post(format!("{}/api/v1/breakers/reset", salve.base_url()))
        .header("authorization", "Bearer ops-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn one_flapping_unit_does_not_block_restarts_of_another_on_the_same_host() {
    let host = SshHost::start().await;
    let (steady_port, broken_port) = (free_port(), free_port());
    host.define_unit("shop-api", &format!("exec health-server {steady_port}"))
        .await;
    // Its process exits at once: every restart "works", verification never passes.
    host.define_unit("broken-api", "exit 1").await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::on(&host)
        // The shipped recipe and its key; a shorter verify window and 2 runs per window.
        .patch_recipe(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"3s\"\ninterval = \"1s\"",
        )
        .patch_recipe("service-restart.toml", "max_runs = 3", "max_runs = 2")
        .config(|config| {
            config
                .webhook_channel("oncall-email", &capture.url("/oncall"))
                .api_token("ops", "ops-token", "operate")
        })
        .start()
        .await;
    let salve = &enforcing.salve;

    // broken-api flaps: two runs that fail verification, then its breaker is open.
    for n in 1..=2 {
        let run = post_and_finish(salve, "broken-api", broken_port, n).await;
        assert_eq!(run["state"], "verify_failed", "{run:#}");
    }
    let stopped = post_and_finish(salve, "broken-api", broken_port, 3).await;
    assert_eq!(stopped["state"], "breaker_open", "{stopped:#}");
    assert!(events(&stopped, "step_started").is_empty(), "{stopped:#}");
    assert_eq!(
        events(&stopped, "breaker_open")[0]["key"],
        "web1/broken-api"
    );
    let reason = stopped["reason"].as_str().unwrap();
    assert!(reason.contains("\"web1/broken-api\""), "{reason}");

    // shop-api on the same host: its own breaker, so it is restarted and verified.
    assert_eq!(health_status(steady_port).await, None, "shop-api is down");
    let restarted = post_and_finish(salve, "shop-api", steady_port, 4).await;
    assert_eq!(restarted["state"], "succeeded", "{restarted:#}");
    assert_eq!(health_status(steady_port).await, Some(200));

    // The page for the stopped one names its key and the runs it counted.
    let page = wait_until(Duration::from_secs(30), "the breaker_open page", || async {
        capture
            .requests()
            .iter()
            .map(|request| request.json())
            .find(|body| body["reason"] == "breaker_open")
    })
    .await;
    assert_eq!(page["breaker"]["key"], "web1/broken-api", "{page:#}");
    assert_eq!(page["breaker"]["runs"].as_array().unwrap().len(), 2);

    // `breaker list` names both keys of web1: one open, one closed.
    let listed = parse_json_output(
        "breaker list --json",
        &salve.run_cli(&["breaker", "list", "--json"]).await,
    );
    let breakers: Vec<(&str, &str, bool)> = listed
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap(),
                b["target"].as_str().unwrap(),
                b["open"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        breakers,
        [
            ("web1/broken-api", "web1", true),
            ("web1/shop-api", "web1", false)
        ]
    );
    let by_api: Vec<Value> = http_client()
        .get(format!("{}/api/v1/breakers", salve.base_url()))
        .header("authorization", "Bearer ops-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_api, listed, "the API lists what the CLI lists");
    let table = text(&salve.run_cli(&["breaker", "list"]).await.stdout);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("OPEN") && line.contains("web1/broken-api")),
        "{table}"
    );

    // A reset of a recipe or a key that never ran is an error, by CLI and by API.
    let unknown_key = salve
        .run_cli(&["breaker", "reset", "service-restart", "web1"])
        .await;
    assert!(!unknown_key.status.success());
    let said = text(&unknown_key.stderr);
    assert!(
        said.contains("web1/broken-api"),
        "names the keys it ran under: {said}"
    );
    let unknown_recipe = salve
        .run_cli(&["breaker", "reset", "no-such-recipe", "web1/broken-api"])
        .await;
    assert!(!unknown_recipe.status.success());
    let (status, answer) = reset_by_api(
        salve,
        json!({ "recipe": "service-restart", "key": "web1/nope" }),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["known_keys"],
        json!(["web1/broken-api", "web1/shop-api"])
    );
    let (status, answer) = reset_by_api(
        salve,
        json!({ "recipe": "no-such-recipe", "key": "web1/broken-api" }),
    )
    .await;
    assert_eq!(status, 404, "{answer}");

    // The API resets the key; the next broken-api incident really runs again.
    let (status, answer) = reset_by_api(
        salve,
        json!({ "recipe": "service-restart", "key": "web1/broken-api" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["key"].as_str(), answer["runs_forgotten"].as_u64()),
        (Some("web1/broken-api"), Some(2))
    );
    let again = post_and_finish(salve, "broken-api", broken_port, 5).await;
    assert_eq!(again["state"], "verify_failed", "{again:#}");
}
