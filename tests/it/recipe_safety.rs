//! Recipes an alert cannot turn into a weapon: the shipped `service-restart` refuses
//! targets, slices, sshd and salve whatever the inventory lists, and restarts only the units
//! the host lists (`salve simulate` shows it; a real salve against a real sshd restarts
//! nothing else on the target); `salve check` refuses placeholders in nested scripts and in
//! a URL's host, userinfo or non-numeric port with file:line, and warns about patterns that
//! restrict nothing.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    Channel, HostEntry, SalveConfig, SshHost, TOKEN, events, fixture, free_port, health_status,
    salve_cli, shipped_recipes, text, write_known_hosts,
};
use serde_json::{Value, json};

/// Units an alert must never get restarted, even where the host lists them.
const DANGEROUS: &[&str] = &[
    "poweroff.target",
    "reboot.target",
    "emergency.target",
    "rescue.target",
    "user.slice",
    "system.slice",
    "sshd",
    "ssh",
    "ssh.service",
    "salve",
    "salve.service",
    "systemd-reboot.service",
];

/// A dry-run config for `salve simulate` with the shipped recipes; `labels` for host web1.
fn simulate_dir(labels: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    SalveConfig::standard()
        .recipes_dir(shipped_recipes())
        .host_labels("web1", labels)
        .write_to(dir.path());
    dir
}

fn simulate(dir: &Path, labels: Value) -> Value {
    let alert = dir.join("alert.json");
    std::fs::write(&alert, json!({ "labels": labels }).to_string()).unwrap();
    let output = salve_cli(dir, &["simulate", "--json", alert.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "simulate: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value["alerts"][0].clone()
}

#[test]
fn simulate_refuses_dangerous_units_even_when_the_host_lists_them() {
    // The host lists every dangerous unit: the recipe's deny list still wins.
    let listed = DANGEROUS.join(",");
    let dir = simulate_dir(&format!("{{ services = \"nginx,{listed}\" }}"));
    for unit in DANGEROUS {
        let result = simulate(
            dir.path(),
            json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": unit }),
        );
        assert_eq!(result["state"], "refused", "{unit}: {result:#}");
        let reason = result["plan"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("param service: value \"{unit}\" is denied by")),
            "{unit}: {reason}"
        );
        assert_eq!(result["plan"]["commands"], json!([]), "{unit}");
    }
    // `salve check` passes but warns, at the host's line, that those will never run.
    let output = salve_cli(dir.path(), &["check"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let config_text = std::fs::read_to_string(dir.path().join("salve.toml")).unwrap();
    let line = 1 + config_text
        .lines()
        .position(|l| l.starts_with("labels = { services = \"nginx,poweroff.target"))
        .unwrap();
    assert!(
        stderr.contains(&format!(
            "salve.toml:{line}: warning: hosts[0].labels.services lists \"poweroff.target\", \
             which recipe service-restart (params.service) always refuses"
        )),
        "{stderr}"
    );

    // The human output says the same.
    let alert = dir.path().join("poweroff.json");
    std::fs::write(
        &alert,
        json!({ "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "poweroff.target" } }).to_string(),
    )
    .unwrap();
    let output = salve_cli(dir.path(), &["simulate", alert.to_str().unwrap()]);
    let shown = text(&output.stdout);
    assert!(
        shown.contains("refused") && shown.contains("is denied by") && !shown.contains("run:"),
        "{shown}"
    );

    // A listed unit is planned; one the host does not list is refused.
    let nginx = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx" }),
    );
    assert_eq!(nginx["state"], "dry_run", "{nginx:#}");
    assert_eq!(
        nginx["plan"]["commands"],
        json!(["systemctl restart 'nginx'"])
    );
    let mysql = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "mysql" }),
    );
    assert_eq!(mysql["state"], "refused", "{mysql:#}");
    assert!(
        mysql["plan"]["reason"]
            .as_str()
            .unwrap()
            .contains("is not in host \"web1\"'s label \"services\""),
        "{mysql:#}"
    );
}

#[test]
fn simulate_takes_host_labels_as_a_list_and_refuses_hosts_without_one() {
    let dir = simulate_dir("{ services = [\"nginx\", \"app\"] }");
    let app = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "app" }),
    );
    assert_eq!(app["state"], "dry_run", "{app:#}");
    // web2 lists nginx and postgresql, not app.
    let other = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web2:9100", "service": "app" }),
    );
    assert_eq!(other["state"], "refused", "{other:#}");

    let dir = simulate_dir("{ role = \"web\" }");
    let unlisted = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx" }),
    );
    assert_eq!(unlisted["state"], "refused", "{unlisted:#}");
    assert!(
        unlisted["plan"]["reason"]
            .as_str()
            .unwrap()
            .contains("host \"web1\" has no label \"services\""),
        "{unlisted:#}"
    );
}

#[test]
fn simulate_refuses_a_health_port_outside_1_to_65535() {
    let dir = simulate_dir("{ services = \"nginx\" }");
    for port in ["99999", "0", "00000"] {
        let result = simulate(
            dir.path(),
            json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx", "health_port": port }),
        );
        assert_eq!(result["state"], "refused", "{port}: {result:#}");
        assert!(
            result["plan"]["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("URL port \"{port}\" is not 1-65535")),
            "{result:#}"
        );
    }
    let fine = simulate(
        dir.path(),
        json!({ "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx", "health_port": "65535" }),
    );
    assert_eq!(fine["state"], "dry_run", "{fine:#}");
}

#[test]
fn disk_space_refuses_mountpoints_its_cleanups_cannot_free() {
    let dir = simulate_dir("{ services = \"nginx\" }");
    for mountpoint in ["/root", "/home", "/etc", "/proc", "/var/lib/docker"] {
        let result = simulate(
            dir.path(),
            json!({ "alertname": "DiskSpaceLow", "instance": "web1:9100", "mountpoint": mountpoint }),
        );
        assert_eq!(result["state"], "refused", "{mountpoint}: {result:#}");
        assert_eq!(
            result["plan"]["attach"],
            json!([]),
            "no du report of {mountpoint}"
        );
    }
    let var = simulate(
        dir.path(),
        json!({ "alertname": "DiskSpaceLow", "instance": "web1:9100", "mountpoint": "/var" }),
    );
    assert_eq!(var["state"], "dry_run", "{var:#}");
}

fn check_in(recipes: &Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    SalveConfig::standard()
        .recipes_dir(recipes)
        .write_to(dir.path());
    salve_cli(dir.path(), &["check"])
}

#[test]
fn check_refuses_nested_scripts_and_alert_data_in_a_url_host_with_file_and_line() {
    let recipes = fixture("unsafe-recipes");
    let output = check_in(&recipes);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "check passed:\n{stderr}");
    for (file, line, fragment) in [
        ("a-sh-c.toml", 16, "inside the script `sh -c` runs"),
        ("b-ssh.toml", 16, "an argument of `ssh`"),
        ("c-find-exec.toml", 16, "inside the script `bash -c` runs"),
        ("d-eval.toml", 16, "an argument of `eval`"),
        (
            "e-url-host.toml",
            22,
            "`{{ service }}` is in the URL's host",
        ),
        ("f-url-userinfo.toml", 22, "is in the URL's userinfo"),
        ("g-url-port.toml", 22, "admits more than ASCII digits"),
    ] {
        let prefix = format!("{}:{line}: ", recipes.join(file).display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
            "no {prefix}…{fragment} in:\n{stderr}"
        );
    }
}

#[test]
fn check_warns_about_patterns_that_restrict_nothing_but_passes() {
    let recipes = fixture("loose-recipes");
    let output = check_in(&recipes);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let file = recipes.join("loose.toml").display().to_string();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings[0].starts_with(&format!("{file}:8: warning: params.note.pattern")));
    assert!(warnings[1].starts_with(&format!("{file}:12: warning: params.unit.pattern")));
    assert!(text(&output.stdout).contains("2 warning(s)"));

    // The shipped recipes restrict every param: no warning.
    let output = check_in(&shipped_recipes());
    assert!(output.status.success());
    assert!(
        !text(&output.stderr).contains("warning"),
        "{}",
        text(&output.stderr)
    );
}

/// The real path: Alertmanager-shaped alerts through a real salve in enforce mode, to a real
/// sshd whose `systemctl` stand-in runs a unit's command on restart. Every unit leaves a
/// file when it starts: only the listed, allowed one may.
#[tokio::test]
async fn serve_restarts_only_listed_units_and_never_a_dangerous_one() {
    let host = SshHost::start().await;
    let port = free_port();
    for unit in DANGEROUS.iter().chain(&["mysql"]) {
        let name = unit.trim_end_matches(".service");
        host.define_unit(
            name,
            &format!("touch /srv/units/STARTED-{name}; exec sleep 600"),
        )
        .await;
    }
    host.define_unit(
        "shop-api",
        &format!("touch /srv/units/STARTED-shop-api; exec health-server {port}"),
    )
    .await;
    host.exec_ok("rm -f /srv/units/STARTED-*").await;

    // The host lists every dangerous unit too: the recipe's deny list must still win.
    let listed = format!("shop-api,{}", DANGEROUS.join(","));
    let files = tempfile::tempdir().unwrap();
    let known_hosts = write_known_hosts(files.path(), &[&host]);
    let config = SalveConfig::new()
        .bearer_token(TOKEN)
        .recipes_dir("recipes")
        .enforce()
        .ssh_identity(host.client_key())
        .known_hosts(&known_hosts)
        .ssh_setting("connect_timeout", "\"2s\"")
        .escalation_default(&["oncall-email"])
        .channel("oncall-email", Channel::log())
        .channel("tickets", Channel::log())
        .host(HostEntry::on("web1", &host, host.user()).services(&listed));
    // The shipped recipes, with the verify window cut from 60 s to 3 s to keep this short.
    let recipes = files.path().join("recipes");
    std::fs::create_dir(&recipes).unwrap();
    for name in ["service-restart.toml", "disk-space.toml"] {
        let text = std::fs::read_to_string(shipped_recipes().join(name)).unwrap();
        let patched = text.replace(
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"3s\"\ninterval = \"1s\"",
        );
        assert_ne!(patched, text, "{name}");
        std::fs::write(recipes.join(name), patched).unwrap();
    }
    let salve = config.salve().recipes_dir(&recipes).start().await;

    let mut alerts: Vec<Value> = DANGEROUS
        .iter()
        .chain(&["mysql"])
        .map(|unit| json!({ "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": unit } }))
        .collect();
    alerts.push(json!({ "labels": {
        "alertname": "ServiceDown", "instance": "web1:9100", "service": "shop-api",
        "health_port": port.to_string()
    }}));
    let count = alerts.len();
    salve.post_generic(json!({ "alerts": alerts })).await;

    let history = salve.wait_for_final(count, Duration::from_secs(90)).await;
    // On the target: only the allowed unit ever started.
    let started = host
        .exec_ok("ls /srv/units | grep '^STARTED-' || true")
        .await;
    assert_eq!(
        started.trim(),
        "STARTED-shop-api",
        "units started on the target"
    );
    assert_eq!(health_status(port).await, Some(200));

    for incident in &history {
        let service = incident["labels"]["service"].as_str().unwrap();
        if service == "shop-api" {
            assert_eq!(incident["state"], "succeeded", "{incident:#}");
            let started = events(incident, "step_started");
            assert_eq!(
                started[0]["executed"],
                "sudo -n -- timeout -k 5 65 systemctl restart 'shop-api'"
            );
        } else {
            assert_eq!(incident["state"], "refused", "{service}: {incident:#}");
            assert!(
                events(incident, "step_started").is_empty(),
                "{service}: {incident:#}"
            );
            let reason = incident["reason"].as_str().unwrap();
            let expected = if service == "mysql" {
                "is not in host \"web1\"'s label \"services\""
            } else {
                "is denied by"
            };
            assert!(reason.contains(expected), "{service}: {reason}");
        }
    }
}
