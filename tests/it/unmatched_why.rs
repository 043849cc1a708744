//! Why an alert matched no recipe, through the real receiver: an `unmatched` incident's
//! plan names the nearest recipes and the first matcher each failed, against the alert's
//! value, in `salve history`, the incidents API and the escalation a ticket system gets.

use serde_json::{Value, json};

use crate::support::{
    API_BEARER, API_TOKEN, SalveConfig, TOKEN, WebhookCapture, http_client, text,
};

/// Restarts a unit on a critical `UnitDown` only (dry-run): a warning one is unmatched.
const CRITICAL_ONLY: &str = r#"name = "unit-restart"
match = ['alertname="UnitDown"', 'severity="critical"']
target = "{{ labels.instance | host }}"

[params.unit]
from = "labels.unit"
pattern = '^[a-z]+$'

[remediate]
run = ["systemctl restart {{ unit }}"]
"#;

const EXPECTED: &str = r#"unit-restart (1 of 2 matchers; severity="critical" vs got "warning")"#;

#[tokio::test]
async fn an_unmatched_incident_says_which_matcher_the_nearest_recipe_failed() {
    let capture = WebhookCapture::start().await;
    let recipes = tempfile::tempdir().unwrap();
    std::fs::write(recipes.path().join("unit-restart.toml"), CRITICAL_ONLY).unwrap();
    let salve = SalveConfig::new()
        .bearer_token(TOKEN)
        .api_token("it", API_TOKEN, "operate")
        .recipes_dir("recipes")
        .escalation_default(&["tickets"])
        .webhook_channel("tickets", &capture.url("/tickets"))
        .salve()
        .recipes_dir(recipes.path())
        .start()
        .await;
    salve
        .post_generic(json!({ "labels": {
            "alertname": "UnitDown", "severity": "warning", "instance": "web1:9100", "unit": "nginx"
        } }))
        .await;
    let history = salve.wait_until_delivered().await;
    let incident = &history[0];
    assert_eq!(incident["state"], "unmatched", "{incident:#}");

    // The plan, as the API serves it.
    let id = incident["id"].as_i64().unwrap();
    let response = http_client()
        .get(format!("{}/api/v1/incidents/{id}", salve.base_url()))
        .header(API_BEARER.0, API_BEARER.1)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let detail: Value = response.json().await.unwrap();
    let plan = if detail["plan"].is_null() {
        &detail["incident"]["plan"]
    } else {
        &detail["plan"]
    };
    assert_eq!(
        plan["near_misses"],
        json!([{
            "recipe": "unit-restart", "matched": 1, "matchers": 2,
            "failed": "severity=\"critical\"", "got": "warning"
        }]),
        "{detail:#}"
    );

    // `salve history --id` for a human.
    let output = salve.run_cli(&["history", "--id", &id.to_string()]).await;
    let shown = text(&output.stdout);
    assert!(shown.contains(EXPECTED), "{shown}");

    // The escalation the ticket system got.
    let posts = capture.requests();
    assert_eq!(posts.len(), 1);
    let why = posts[0].json()["why"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains(EXPECTED), "{why}");
}
