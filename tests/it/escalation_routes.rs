//! Escalation routes through the real receiver: `[[escalation.routes]]` pick the channel of
//! every escalation a recipe does not route itself by the alert's labels (first match wins,
//! the default last), delivered to webhook captures standing in for a pager and a ticket
//! system; and `salve check` on configs whose escalations could reach no channel.

use serde_json::json;

use crate::support::{
    Channel, HostEntry, SalveConfig, TOKEN, WebhookCapture, salve_cli, shipped_recipes, text,
};

/// A recipe that names no `escalate.to` (its escalations follow the routes), dry-run.
const UNROUTED_RECIPE: &str = r#"name = "unit-restart"
match = ['alertname="UnitDown"']
target = "{{ labels.instance | host }}"

[params.unit]
from = "labels.unit"
pattern = '^[a-z]+$'

[remediate]
run = ["systemctl restart {{ unit }}"]
"#;

/// Channels `pager` and `ticket` posting into `capture`, `oncall` the log; critical
/// alerts page, warnings or the db/infra teams open a ticket, the rest go to `oncall`.
fn routed(capture: &WebhookCapture) -> SalveConfig {
    SalveConfig::new()
        .bearer_token(TOKEN)
        .recipes_dir("recipes")
        .escalation_route(&[r#"severity="critical""#], &["pager"])
        .escalation_route(&[r#"severity="warning""#], &["ticket"])
        .escalation_route(&[r#"team=~"db|infra""#], &["ticket"])
        .escalation_default(&["oncall"])
        .channel("oncall", Channel::log())
        .webhook_channel("pager", &capture.url("/pager"))
        .webhook_channel("ticket", &capture.url("/ticket"))
        .host(HostEntry::new("web1", "127.0.0.1"))
}

#[tokio::test]
async fn route_matrix_pages_critical_tickets_warning_and_defaults_the_rest() {
    let capture = WebhookCapture::start().await;
    let recipes = tempfile::tempdir().unwrap();
    std::fs::write(recipes.path().join("unit-restart.toml"), UNROUTED_RECIPE).unwrap();
    let salve = routed(&capture)
        .salve()
        .recipes_dir(recipes.path())
        .start()
        .await;

    salve
        .post_generic(json!({ "alerts": [
            // Novel (no recipe): by severity.
            { "labels": { "alertname": "DiskOnFire", "severity": "critical" } },
            { "labels": { "alertname": "FanSlow", "severity": "warning" } },
            // No severity route, but the team's: a later route.
            { "labels": { "alertname": "ReplicaLag", "team": "db" } },
            // Nothing matches: the default (log).
            { "labels": { "alertname": "Chatter", "severity": "info" } },
            // Refused by a recipe that does not route itself (host not in the inventory).
            { "labels": { "alertname": "UnitDown", "instance": "db9:9100", "unit": "nginx", "severity": "critical" } },
        ]}))
        .await;
    let history = salve.wait_until_delivered().await;
    assert_eq!(history.len(), 5, "{history:#?}");

    let posts = capture.requests();
    let to = |path: &str| -> Vec<String> {
        let mut alertnames: Vec<String> = posts
            .iter()
            .filter(|post| post.path == path)
            .map(|post| post.json()["alertname"].as_str().unwrap_or("").to_owned())
            .collect();
        alertnames.sort();
        alertnames
    };
    assert_eq!(to("/pager"), ["DiskOnFire", "UnitDown"], "pager");
    assert_eq!(to("/ticket"), ["FanSlow", "ReplicaLag"], "ticket");
    assert_eq!(posts.len(), 4, "Chatter goes to the log channel only");

    let refused = history
        .iter()
        .find(|i| i["labels"]["alertname"] == "UnitDown")
        .unwrap();
    assert_eq!(refused["state"], "refused", "{refused:#}");
    assert_eq!(refused["plan"]["escalate"], json!(["pager"]), "{refused:#}");
    let chatter = history
        .iter()
        .find(|i| i["labels"]["alertname"] == "Chatter")
        .unwrap();
    assert_eq!(
        chatter["plan"]["escalate"],
        json!(["oncall"]),
        "{chatter:#}"
    );
}

/// `salve check` in a fresh directory holding `config` (with the shipped recipes).
fn check(config: SalveConfig) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    config.recipes_dir(shipped_recipes()).write_to(dir.path());
    let output = salve_cli(dir.path(), &["check"]);
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

/// Routes for critical and the db team only, channels the shipped recipes name, no default.
fn without_default() -> SalveConfig {
    SalveConfig::new()
        .escalation_route(&[r#"severity="critical""#], &["oncall-email"])
        .escalation_route(&[r#"team=~"db|infra""#], &["tickets"])
        .channel("oncall-email", Channel::log())
        .channel("tickets", Channel::log())
}

#[test]
fn check_fails_when_an_escalation_could_reach_no_channel() {
    let (ok, output) = check(without_default());
    assert!(!ok, "check passed:\n{output}");
    assert!(
        output.contains("an escalation could reach no channel")
            && output.contains("matches no route and escalation.default is empty"),
        "{output}"
    );

    // A default catches the rest.
    let (ok, output) = check(without_default().escalation_default(&["tickets"]));
    assert!(ok, "{output}");

    // So do routes that together match every label set.
    let (ok, output) =
        check(without_default().escalation_route(&[r#"severity!="critical""#], &["tickets"]));
    assert!(ok, "{output}");
}

#[test]
fn check_fails_on_a_route_to_an_unknown_channel_with_its_line() {
    let (ok, output) = check(
        without_default()
            .escalation_default(&["tickets"])
            .escalation_route(&[r#"severity="warning""#], &["pagr"]),
    );
    assert!(!ok, "check passed:\n{output}");
    assert!(
        output.contains("escalation.routes[2].to names unknown channel \"pagr\""),
        "{output}"
    );
    assert!(output.contains("salve.toml:"), "located: {output}");
}

#[test]
fn check_warns_for_a_log_only_route_in_enforce_mode() {
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let enforcing = |config: SalveConfig| config.enforce().known_hosts(&known_hosts);
    let (ok, output) = check(enforcing(
        without_default().escalation_default(&["tickets"]),
    ));
    assert!(ok, "a warning does not fail the check:\n{output}");
    for warning in [
        "warning: escalation.default sends only to log channels in enforce mode",
        "warning: escalation.routes[0] sends only to log channels in enforce mode",
        "warning: escalation.routes[1] sends only to log channels in enforce mode",
    ] {
        assert!(output.contains(warning), "{warning}:\n{output}");
    }

    // In dry-run, nothing is run, so a log-only route is no warning.
    let (ok, output) = check(without_default().escalation_default(&["tickets"]));
    assert!(ok && !output.contains("log channels"), "{output}");
}

#[test]
fn simulate_shows_the_channels_the_routes_choose() {
    let dir = tempfile::tempdir().unwrap();
    without_default()
        .escalation_default(&["tickets"])
        .recipes_dir(shipped_recipes())
        .write_to(dir.path());
    let alert = dir.path().join("alert.json");
    std::fs::write(
        &alert,
        json!({ "alerts": [
            { "labels": { "alertname": "Novel", "severity": "critical" } },
            { "labels": { "alertname": "Novel", "severity": "warning" } },
        ]})
        .to_string(),
    )
    .unwrap();
    let output = salve_cli(
        dir.path(),
        &["simulate", "--source", "generic", "--json", "alert.json"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let escalate = |index: usize| result["alerts"][index]["plan"]["escalate"].clone();
    assert_eq!(escalate(0), json!(["oncall-email"]), "{result:#}");
    assert_eq!(escalate(1), json!(["tickets"]), "{result:#}");
}
