//! Approval on real parts: the shipped service-restart recipe switched to
//! `mode = "approve"`, the real salve enforcing on a real sshd, pages into a webhook
//! capture. The plan waits in `awaiting_approval`; the page carries signed links whose GET
//! only shows a confirm page and whose POST decides, once; the CLI and the API decide too;
//! a denied or expired plan is escalated once; a link for a plan whose alert resolved is
//! refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Enforcing, SalveConfig, SalveProcess, SshHost, WebhookCapture, events, free_port,
    health_status, http_client, salve_cli, service_down_on_web1, shipped_recipes, text, wait_until,
};

const OPS_TOKEN: &str = "ops-approval-token";

/// salve enforcing service-restart in approve mode on `host`, paging into `capture`, with
/// `timeout` for approvals and an `operate` token named `ops`.
async fn start(host: &SshHost, capture: &WebhookCapture, timeout: &str) -> Enforcing {
    Enforcing::on(host)
        .patch_recipe(
            "service-restart.toml",
            "mode = \"enforce\"",
            "mode = \"approve\"",
        )
        .patch_recipe(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"10s\"\ninterval = \"1s\"",
        )
        .config(|config| {
            config
                .webhook_channel("oncall-email", &capture.url("/oncall"))
                .api_token("ops", OPS_TOKEN, "operate")
                .approval_setting("key", "\"approval-test-key\"")
                .approval_setting("timeout", &format!("\"{timeout}\""))
        })
        .start()
        .await
}

/// shop-api down on web1 (occurrence `n`), its health server on `port`.
async fn post_down(salve: &SalveProcess, port: u16, n: u32) {
    let mut alert = service_down_on_web1("shop-api", port);
    alert["startsAt"] = json!(format!("2026-11-28T10:00:{n:02}Z"));
    salve.post_generic(json!({ "alerts": [alert] })).await;
}

/// The incident with `id`, once it is in `state`.
async fn wait_for_state(salve: &SalveProcess, id: i64, state: &str) -> Value {
    wait_until(
        Duration::from_secs(60),
        &format!("incident {id} {state}"),
        || async {
            salve
                .history_json()
                .await
                .into_iter()
                .find(|i| i["id"] == id && i["state"] == state)
        },
    )
    .await
}

/// The newest incident once it waits for approval.
async fn wait_for_awaiting(salve: &SalveProcess, count: usize) -> Value {
    wait_until(
        Duration::from_secs(60),
        "an incident awaiting approval",
        || async {
            let history = salve.history_json().await;
            (history.len() == count)
                .then(|| {
                    history
                        .into_iter()
                        .find(|i| i["state"] == "awaiting_approval")
                })
                .flatten()
        },
    )
    .await
}

/// The pages of `reason` for incident `id` captured so far.
fn pages(capture: &WebhookCapture, id: i64, reason: &str) -> Vec<Value> {
    capture
        .requests()
        .iter()
        .map(|request| request.json())
        .filter(|body| body["incident_id"] == id && body["reason"] == reason)
        .collect()
}

/// The approval page of incident `id`, once delivered.
async fn approval_page(capture: &WebhookCapture, id: i64) -> Value {
    wait_until(Duration::from_secs(30), "the approval page", || async {
        pages(capture, id, "approval").into_iter().next()
    })
    .await
}

async fn get(url: &str) -> (u16, String) {
    let answer = http_client().get(url).send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn post_form(url: &str, form: &str) -> (u16, String) {
    let answer = http_client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn api_decide(salve: &SalveProcess, id: i64, action: &str, body: Value) -> (u16, Value) {
    let answer = http_client()
        .post(format!(
            "{}/api/v1/incidents/{id}/{action}",
            salve.base_url()
        ))
        .header("authorization", format!("Bearer {OPS_TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn a_link_shows_a_confirm_page_on_get_and_only_its_post_runs_the_plan_once() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let capture = WebhookCapture::start().await;
    let enforcing = start(&host, &capture, "15m").await;
    let salve = &enforcing.salve;

    post_down(salve, port, 1).await;
    let waiting = wait_for_awaiting(salve, 1).await;
    let id = waiting["id"].as_i64().unwrap();
    let requested = events(&waiting, "approval_requested");
    assert_eq!(requested.len(), 1, "{waiting:#}");
    let digest = requested[0]["plan_digest"].as_str().unwrap().to_owned();
    let page = approval_page(&capture, id).await;
    let approve = page["approve_url"]
        .as_str()
        .expect("approve_url")
        .to_owned();
    let deny = page["deny_url"].as_str().expect("deny_url").to_owned();
    assert!(
        approve.starts_with(&format!("{}/approve/", salve.base_url())),
        "{approve}"
    );

    // A link scanner fetches both links, twice: confirm pages, nothing decided or run.
    for url in [&approve, &deny, &approve] {
        let (status, html) = get(url).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("<form method=\"post\">"), "{html}");
        assert!(
            html.contains("systemctl restart &#39;shop-api&#39;"),
            "{html}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = wait_for_state(salve, id, "awaiting_approval").await;
    assert!(events(&still, "step_started").is_empty(), "{still:#}");
    assert!(events(&still, "approved").is_empty(), "{still:#}");
    assert_eq!(
        health_status(port).await,
        None,
        "nothing ran: shop-api is down"
    );

    // A tampered link is refused.
    let tampered = approve.replacen(&format!("/approve/{id}."), "/approve/999999.", 1);
    let (status, html) = post_form(&tampered, "").await;
    assert_eq!(status, 403, "{html}");

    // The POST approves: the plan runs through the gates and succeeds.
    let (status, html) = post_form(&approve, "").await;
    assert_eq!(status, 200, "{html}");
    let done = wait_for_state(salve, id, "succeeded").await;
    assert_eq!(health_status(port).await, Some(200));
    let approved = events(&done, "approved");
    assert_eq!(approved.len(), 1, "{done:#}");
    assert_eq!(approved[0]["by"], "link");
    assert_eq!(approved[0]["plan_digest"], digest.as_str());
    assert_eq!(approved[0]["commands"][0], "systemctl restart 'shop-api'");
    assert_eq!(events(&done, "step_started").len(), 1, "{done:#}");

    // Single use: the same link, or the deny link of the same request, does nothing more.
    for url in [&approve, &deny] {
        let (status, html) = post_form(url, "reason=late").await;
        assert_eq!(status, 409, "{html}");
        assert!(html.contains("already decided"), "{html}");
    }
    let after = wait_for_state(salve, id, "succeeded").await;
    assert_eq!(events(&after, "step_started").len(), 1, "{after:#}");
}

#[tokio::test]
async fn the_cli_and_the_api_approve_and_deny_and_a_denial_pages_once() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let capture = WebhookCapture::start().await;
    let enforcing = start(&host, &capture, "15m").await;
    let salve = &enforcing.salve;

    // By the CLI.
    post_down(salve, port, 1).await;
    let first = wait_for_awaiting(salve, 1).await["id"].as_i64().unwrap();
    let output = salve.run_cli(&["approve", &first.to_string()]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let done = wait_for_state(salve, first, "succeeded").await;
    let by = events(&done, "approved")[0]["by"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(by.starts_with("cli"), "{by}");
    // Twice is refused.
    let again = salve.run_cli(&["approve", &first.to_string()]).await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already decided"),
        "{}",
        text(&again.stderr)
    );

    // By the API, with the token's name in the journal.
    post_down(salve, port, 2).await;
    let second = wait_for_awaiting(salve, 2).await["id"].as_i64().unwrap();
    let (status, answer) = api_decide(salve, second, "approve", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let done = wait_for_state(salve, second, "succeeded").await;
    assert_eq!(events(&done, "approved")[0]["by"], "ops");

    // Denied by the API: nothing runs, one `denied` page.
    post_down(salve, port, 3).await;
    let third = wait_for_awaiting(salve, 3).await["id"].as_i64().unwrap();
    let (status, answer) =
        api_decide(salve, third, "deny", json!({ "reason": "release freeze" })).await;
    assert_eq!(status, 200, "{answer}");
    let denied = wait_for_state(salve, third, "denied").await;
    assert!(events(&denied, "step_started").is_empty(), "{denied:#}");
    let event = events(&denied, "denied")[0];
    assert_eq!(
        (event["by"].as_str(), event["reason"].as_str()),
        (Some("ops"), Some("release freeze"))
    );

    // Denied by the CLI.
    post_down(salve, port, 4).await;
    let fourth = wait_for_awaiting(salve, 4).await["id"].as_i64().unwrap();
    let output = salve
        .run_cli(&["deny", &fourth.to_string(), "--reason", "not now"])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_for_state(salve, fourth, "denied").await;

    for id in [third, fourth] {
        wait_until(Duration::from_secs(30), "the denied page", || async {
            (!pages(&capture, id, "denied").is_empty()).then_some(())
        })
        .await;
    }
    // Give a second page time to show up: there must be none.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in [third, fourth] {
        assert_eq!(pages(&capture, id, "denied").len(), 1);
        assert_eq!(pages(&capture, id, "approval").len(), 1);
    }
}

#[tokio::test]
async fn an_unanswered_plan_expires_across_a_restart_and_pages_once() {
    let host = SshHost::start().await;
    let port = free_port();
    let capture = WebhookCapture::start().await;
    let mut enforcing = start(&host, &capture, "6s").await;

    post_down(&enforcing.salve, port, 1).await;
    let id = wait_for_awaiting(&enforcing.salve, 1).await["id"]
        .as_i64()
        .unwrap();
    approval_page(&capture, id).await;
    // The expiry time is in the store: a new process ends the request on time.
    enforcing.salve.restart().await;
    let salve = &enforcing.salve;
    let expired = wait_for_state(salve, id, "approval_expired").await;
    assert_eq!(events(&expired, "approval_expired").len(), 1, "{expired:#}");
    assert!(events(&expired, "step_started").is_empty(), "{expired:#}");
    wait_until(Duration::from_secs(30), "the expiry page", || async {
        (!pages(&capture, id, "approval_expired").is_empty()).then_some(())
    })
    .await;

    // Its link no longer works (the link itself expired), nor does the CLI. (The link
    // names the port of the first process.)
    let link = approval_page(&capture, id).await["approve_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = &link[link.find("/approve/").unwrap()..];
    let approve = format!("{}{path}", salve.base_url());
    let (status, html) = post_form(&approve, "").await;
    assert!(status == 410 || status == 409, "{status} {html}");
    let output = salve.run_cli(&["approve", &id.to_string()]).await;
    assert!(!output.status.success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pages(&capture, id, "approval_expired").len(), 1);
    let after = wait_for_state(salve, id, "approval_expired").await;
    assert!(events(&after, "step_started").is_empty(), "{after:#}");
}

#[tokio::test]
async fn a_link_for_a_plan_whose_alert_resolved_is_refused() {
    let host = SshHost::start().await;
    let port = free_port();
    let capture = WebhookCapture::start().await;
    let enforcing = start(&host, &capture, "15m").await;
    let salve = &enforcing.salve;

    post_down(salve, port, 1).await;
    let id = wait_for_awaiting(salve, 1).await["id"].as_i64().unwrap();
    let approve = approval_page(&capture, id).await["approve_url"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut resolved = service_down_on_web1("shop-api", port);
    resolved["startsAt"] = json!("2026-11-28T10:00:01Z");
    resolved["status"] = json!("resolved");
    salve.post_generic(json!({ "alerts": [resolved] })).await;
    wait_for_state(salve, id, "resolved_before_run").await;

    let (status, html) = get(&approve).await;
    assert_eq!(status, 409, "{html}");
    let (status, html) = post_form(&approve, "").await;
    assert_eq!(status, 409, "{html}");
    let after = wait_for_state(salve, id, "resolved_before_run").await;
    assert!(events(&after, "approved").is_empty(), "{after:#}");
    assert!(events(&after, "step_started").is_empty(), "{after:#}");
}

#[test]
fn check_fails_when_a_recipe_says_approve_and_no_key_signs_links() {
    let dir = tempfile::tempdir().unwrap();
    let recipes = dir.path().join("recipes");
    std::fs::create_dir(&recipes).unwrap();
    let restart = std::fs::read_to_string(shipped_recipes().join("service-restart.toml"))
        .unwrap()
        .replace("mode = \"enforce\"", "mode = \"approve\"");
    std::fs::write(recipes.join("service-restart.toml"), restart).unwrap();
    let config = SalveConfig::standard().recipes_dir(&recipes);

    config.write_to(dir.path());
    let output = salve_cli(dir.path(), &["check"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("[approval] key_file"), "{stderr}");

    config
        .approval_setting("key", "\"approval-test-key\"")
        .write_to(dir.path());
    let output = salve_cli(dir.path(), &["check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}
