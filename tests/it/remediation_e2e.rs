//! Act and verify on real parts: Alertmanager → salve → real sshd (each test host is its
//! own sshd in a private mount namespace, see support/sshd.rs) → the recipe runs → checks
//! poll → `succeeded` only when verified. These machines have no systemd: the target's
//! `systemctl` and `journalctl` are test stand-ins (tests/bed/bin) that start and stop a
//! real process serving a real health endpoint.

use std::time::Duration;

use crate::support::{
    Alertmanager, Enforcing, Inventory, LIMITED_SUDO_USER, SalveProcess, SshHost, TOKEN, by_label,
    event_time, events, free_port, health_status, salve_cli, service_down_on_web1, text,
    wait_until,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[tokio::test]
async fn service_restart_end_to_end_restarts_the_service_and_verifies_it() {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    assert_eq!(
        health_status(port).await,
        None,
        "the service must be down before the alert"
    );

    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    let alertmanager = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .bearer_token(TOKEN)
        .start()
        .await;
    let port_label = port.to_string();
    alertmanager
        .post_alert(
            &[
                ("alertname", "ServiceDown"),
                ("instance", "web1:9100"),
                ("service", "shop-api"),
                ("health_port", &port_label),
            ],
            &[("summary", "shop-api is down")],
        )
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(90)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "succeeded", "{incident:#}");
    assert_eq!(
        health_status(port).await,
        Some(200),
        "the service is really back"
    );

    // The journal shows the command (through sudo -n), its exit status, output and
    // duration, and the check polls with the HTTP 200.
    let finished = events(incident, "step_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["command"], "systemctl restart 'shop-api'");
    assert_eq!(finished[0]["exit_status"], 0);
    assert!(finished[0]["duration_ms"].is_u64());
    assert!(finished[0]["stdout"].is_string() && finished[0]["stderr"].is_string());
    let started = events(incident, "step_started");
    assert_eq!(
        started[0]["executed"],
        // One program with a quoted argument: `timeout` runs it without `sh -c`.
        "sudo -n -- timeout -k 5 65 systemctl restart 'shop-api'"
    );
    let polls = events(incident, "check_poll");
    assert!(!polls.is_empty());
    let last = polls.last().unwrap();
    assert_eq!(last["passed"], true);
    let results = last["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{last:#}");
    assert!(results.iter().any(|r| r["http_status"] == 200), "{last:#}");
    assert!(results.iter().any(|r| r["exit_status"] == 0), "{last:#}");

    // The human view shows the same.
    let id = incident["id"].to_string();
    let output = salve.run_cli(&["history", "--id", &id]).await;
    let shown = text(&output.stdout);
    assert!(
        shown.contains("systemctl restart 'shop-api'") && shown.contains("all passed"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_service_that_cannot_start_is_verify_failed_after_within_not_before() {
    let host = SshHost::start().await;
    let port = free_port();
    // The unit's process exits at once: restart "works", the checks never pass.
    host.define_unit("broken-api", "exit 1").await;
    // The shipped recipe with its 60 s window cut to 6 s, to keep the suite fast.
    let enforcing = Enforcing::on(&host)
        .patch_recipe(
            "service-restart.toml",
            "within = \"60s\"\ninterval = \"5s\"",
            "within = \"6s\"\ninterval = \"1s\"",
        )
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(service_down_on_web1("broken-api", port))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "verify_failed", "{incident:#}");
    let verifying_for =
        event_time(incident, "verify_failed") - event_time(incident, "verify_started");
    assert!(
        verifying_for >= chrono::Duration::seconds(6),
        "gave up after {verifying_for}, before `within`"
    );
    // The last result of every check is on the record.
    let last = events(incident, "verify_failed")[0];
    assert_eq!(last["results"].as_array().unwrap().len(), 2, "{last:#}");
    assert!(
        incident["reason"]
            .as_str()
            .unwrap()
            .contains("still failing")
    );
}

#[tokio::test]
async fn disk_space_end_to_end_cleans_only_known_safe_paths() {
    let host = SshHost::start().await;
    // The target's /tmp is a 16 MiB tmpfs private to this host: fill it past 85% with
    // two-day-old junk, and leave a fresh file in /tmp and an old file outside the safe
    // paths, both of which must survive.
    let arrange = host
        .exec(
            "mkdir -p /var/cache/apt/archives/partial && \
             dd if=/dev/zero of=/tmp/old-junk bs=1M count=14 status=none && touch -d '3 days ago' /tmp/old-junk && \
             echo keep > /tmp/fresh-work && \
             echo keep > /srv/old-data && touch -d '3 days ago' /srv/old-data && \
             df --output=pcent /tmp | tail -n 1",
        )
        .await;
    assert!(
        arrange.status.success(),
        "arrange: {}",
        text(&arrange.stderr)
    );
    let used: u32 = text(&arrange.stdout)
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(used > 85, "the disk must start above 85%, is {used}%");

    let enforcing = Enforcing::builder(vec![Inventory::of("db1", &host)], &[&host])
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "DiskSpaceLow", "instance": "db1:9100", "mountpoint": "/tmp" } }))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "succeeded", "{incident:#}");
    let last = events(incident, "check_poll").last().copied().unwrap();
    assert!(
        last["results"][0]["value"]
            .as_f64()
            .is_some_and(|v| v < 80.0),
        "{last:#}"
    );

    let after = host
        .exec("test ! -e /tmp/old-junk && test -e /tmp/fresh-work && test -e /srv/old-data && echo intact")
        .await;
    assert_eq!(
        text(&after.stdout).trim(),
        "intact",
        "{}",
        text(&after.stderr)
    );
}

const HOSTILE: &[&str] = &[
    "a; touch /tmp/SENTINEL",
    "$(touch /tmp/SENTINEL)",
    "`touch /tmp/SENTINEL`",
    "it's \"quoted\"",
    "line1\ntouch /tmp/SENTINEL\n",
    "| touch /tmp/SENTINEL &",
];

#[tokio::test]
async fn hostile_label_values_reach_the_target_only_as_data() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    let alerts: Vec<Value> = HOSTILE
        .iter()
        .map(|message| json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": message } }))
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;

    let history = salve
        .wait_for_final(HOSTILE.len(), Duration::from_secs(60))
        .await;
    for message in HOSTILE {
        let incident = by_label(&history, "message", message);
        assert_eq!(incident["state"], "succeeded", "{incident:#}");
        let finished = events(incident, "step_finished");
        assert_eq!(
            finished[0]["stdout"], *message,
            "the target printed something else: {incident:#}"
        );
    }
    let sentinel = host
        .exec("test -e /tmp/SENTINEL && echo RAN || echo clean")
        .await;
    assert_eq!(
        text(&sentinel.stdout).trim(),
        "clean",
        "a label value was executed on the target"
    );
}

#[tokio::test]
async fn a_host_whose_key_does_not_match_is_never_commanded() {
    let host = SshHost::start().await;
    let impostor = SshHost::start().await;
    // known_hosts holds the impostor's key for the real host's address and port.
    let enforcing = Enforcing::builder(vec![Inventory::of("web1", &host)], &[])
        .start()
        .await;
    let wrong = impostor.known_hosts_line().replace(
        &format!("]:{}", impostor.port()),
        &format!("]:{}", host.port()),
    );
    std::fs::write(&enforcing.known_hosts, format!("{wrong}\n")).unwrap();
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "x; touch /tmp/RAN" } }))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "failed", "{incident:#}");
    let reason = incident["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot reach web1") && reason.to_lowercase().contains("host key"),
        "{reason}"
    );
    let ran = host.exec("ls /tmp").await;
    assert!(!text(&ran.stdout).contains("RAN"));
}

#[tokio::test]
async fn failures_are_bounded_and_one_hung_host_does_not_delay_another() {
    let hung = SshHost::start().await;
    let healthy = SshHost::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    // "gone": an inventory host whose port has nothing listening.
    let gone = SshHost::start().await;
    let enforcing = Enforcing::builder(
        vec![
            Inventory::of("hung", &hung),
            Inventory::of("healthy", &healthy),
            Inventory::of("gone", &gone),
        ],
        &[&hung, &healthy, &gone],
    )
    .start()
    .await;
    drop(gone);
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "Hang", "instance": "hung:9100" } },
            { "labels": { "alertname": "Echo", "instance": "healthy:9100", "message": "hello" } },
            { "labels": { "alertname": "Echo", "instance": "gone:9100", "message": "hello" } },
        ]}))
        .await;

    let history = salve.wait_for_final(3, Duration::from_secs(60)).await;
    let hang = by_label(&history, "alertname", "Hang");
    assert_eq!(hang["state"], "failed");
    assert_eq!(events(hang, "step_finished")[0]["outcome"], "timeout");
    assert!(
        hang["reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 3s"),
        "{}",
        hang["reason"]
    );
    let cut_after = event_time(hang, "failed") - event_time(hang, "step_started");
    assert!(
        cut_after < chrono::Duration::seconds(10),
        "the hung command ran {cut_after}"
    );

    let healthy_incident = by_label(&history, "instance", "healthy:9100");
    assert_eq!(healthy_incident["state"], "succeeded");
    assert!(
        event_time(healthy_incident, "succeeded") < event_time(hang, "failed"),
        "the healthy host waited for the hung one"
    );

    let gone_incident = by_label(&history, "instance", "gone:9100");
    assert_eq!(gone_incident["state"], "failed");
    assert!(
        gone_incident["reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach gone"),
        "{}",
        gone_incident["reason"]
    );
    let failed_after =
        event_time(gone_incident, "failed") - event_time(gone_incident, "remediation_started");
    assert!(
        failed_after < chrono::Duration::seconds(5),
        "connect took {failed_after} (connect_timeout 2s)"
    );
}

#[tokio::test]
async fn one_remediation_at_a_time_per_host_and_hosts_in_parallel() {
    let first = SshHost::start().await;
    let second = SshHost::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let enforcing = Enforcing::builder(
        vec![
            Inventory::of("web1", &first),
            Inventory::of("web2", &second),
        ],
        &[&first, &second],
    )
    .start()
    .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "Slow", "instance": "web1:9100", "n": "1" } },
            { "labels": { "alertname": "Slow", "instance": "web1:9100", "n": "2" } },
            { "labels": { "alertname": "Slow", "instance": "web2:9100", "n": "3" } },
        ]}))
        .await;
    let history = salve.wait_for_final(3, Duration::from_secs(60)).await;
    let span = |n: &str| {
        let incident = by_label(&history, "n", n);
        assert_eq!(incident["state"], "succeeded", "{incident:#}");
        (
            event_time(incident, "remediation_started"),
            event_time(incident, "succeeded"),
        )
    };
    let (a, b, c) = (span("1"), span("2"), span("3"));
    let overlap = |x: (DateTime<Utc>, DateTime<Utc>), y: (DateTime<Utc>, DateTime<Utc>)| {
        x.0 < y.1 && y.0 < x.1
    };
    assert!(
        !overlap(a, b),
        "two remediations ran at once on web1: {a:?} {b:?}"
    );
    assert!(
        overlap(a, c) || overlap(b, c),
        "web2 waited for web1: {a:?} {b:?} {c:?}"
    );
}

#[tokio::test]
async fn an_alert_resolved_while_waiting_its_turn_is_not_run() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    let waiting = json!({ "labels": { "alertname": "Slow", "instance": "web1:9100", "n": "2" }, "startsAt": "2026-11-28T10:00:00Z" });
    salve
        .post_generic(json!({ "alerts": [ { "labels": { "alertname": "Slow", "instance": "web1:9100", "n": "1" } }, waiting ] }))
        .await;
    // While n=1 holds the host, n=2 resolves.
    let mut resolved = waiting.clone();
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-11-28T10:00:05Z");
    salve.post_generic(resolved).await;

    let history = salve.wait_for_final(2, Duration::from_secs(30)).await;
    let skipped = by_label(&history, "n", "2");
    assert_eq!(skipped["state"], "resolved_before_run", "{skipped:#}");
    assert!(
        events(skipped, "step_started").is_empty(),
        "a resolved alert was run"
    );
}

/// web1 logged into as `user`, its shop-api unit down, and the ServiceDown alert for it
/// posted to an enforcing salve (the shipped service-restart recipe, with sudo).
async fn shop_api_down_as(user: &str) -> (SshHost, Enforcing) {
    let host = SshHost::start().await;
    let port = free_port();
    host.define_unit("shop-api", &format!("exec health-server {port}"))
        .await;
    let enforcing = Enforcing::builder(
        vec![Inventory {
            name: "web1",
            host: &host,
            user,
        }],
        &[&host],
    )
    .start()
    .await;
    enforcing
        .salve
        .post_generic(service_down_on_web1("shop-api", port))
        .await;
    (host, enforcing)
}

#[tokio::test]
async fn sudo_that_needs_a_password_fails_clearly() {
    let (_host, enforcing) = shop_api_down_as("salvenopw").await;
    let salve = &enforcing.salve;
    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "failed");
    assert!(
        incident["reason"]
            .as_str()
            .unwrap()
            .contains("needs a password"),
        "{}",
        incident["reason"]
    );
}

/// The remote line of a simple command is exact enough for a least-privilege sudoers rule:
/// `salvelimited` may run only `/usr/bin/timeout -k 5 65 systemctl restart shop-api` (and
/// `… broken-api`, the other unit its host lists) as root (scripts/testbed/setup-ssh-target.sh). The shipped service restart works under it; the
/// disk cleanup, which the rule does not allow, is refused by sudo and fails clearly.
#[tokio::test]
async fn a_sudoers_rule_for_exactly_the_restart_line_is_enough() {
    let (_host, enforcing) = shop_api_down_as(LIMITED_SUDO_USER).await;
    let salve = &enforcing.salve;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let restart = &history[0];
    assert_eq!(restart["state"], "succeeded", "{restart:#}");
    assert_eq!(
        events(restart, "step_started")[0]["executed"],
        "sudo -n -- timeout -k 5 65 systemctl restart 'shop-api'"
    );

    salve
        .post_generic(json!({ "labels": { "alertname": "DiskSpaceLow", "instance": "web1:9100", "mountpoint": "/tmp" } }))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    let cleanup = by_label(&history, "alertname", "DiskSpaceLow");
    assert_eq!(cleanup["state"], "failed", "{cleanup:#}");
    assert!(
        cleanup["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("needs a password"),
        "{cleanup:#}"
    );
}

#[test]
fn enforce_without_known_hosts_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("salve.toml"),
        "[engine]\nmode = \"enforce\"\n\n[ssh]\nknown_hosts = \"/nonexistent/known_hosts\"\n",
    )
    .unwrap();
    let output = salve_cli(dir.path(), &["serve"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("ssh.known_hosts"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn serve_dry_run_overrides_an_enforcing_config() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host)
        .serve_args(&["--dry-run"])
        .start()
        .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(
            json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "x" } }),
        )
        .await;
    let history = wait_for_final_or_dry_run(salve).await;
    assert_eq!(history[0]["state"], "dry_run");
    assert_eq!(host.accepted_logins(), 0, "dry-run connected to the target");
}

async fn wait_for_final_or_dry_run(salve: &SalveProcess) -> Vec<Value> {
    wait_until(Duration::from_secs(20), "the dry-run plan", || async {
        let history = salve.history_json().await;
        (history.len() == 1 && history[0]["state"] != "received").then_some(history)
    })
    .await
}
