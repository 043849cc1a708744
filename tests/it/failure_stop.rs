//! The failure half of stopping and checking, on real parts (the salve binary, a real sshd
//! per host, a real HTTPS server): SIGTERM/SIGINT with a short `shutdown_grace` while a
//! long command runs, a command that ignores TERM (the target's `timeout -k` backstop), the
//! SSH master dying mid-command (the host hold), and HTTP checks (TLS, redirects,
//! `body_contains`, the poll cut to what is left of `within`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    BEARER, Enforcing, HttpsEndpoint, OK_BODY, SalveProcess, SshHost, by_label, event_time, events,
    http_client, master_pids, toml_string, wait_until,
};

/// Enforcing salve for web1 (played by `host`) with the test recipes patched by `patch`.
async fn enforcing_on(host: &SshHost, patch: &[(&str, &str, &str)]) -> Enforcing {
    let mut builder = Enforcing::on(host);
    for (file, from, to) in patch {
        builder = builder.patch_recipe(file, from, to);
    }
    builder.start().await
}

/// Waits until `path` exists on `host`: the command that creates it has started there.
async fn wait_for_file(host: &SshHost, path: &str, what: &str) {
    wait_until(Duration::from_secs(20), what, || async {
        host.exec(&format!("test -e {path}"))
            .await
            .status
            .success()
            .then_some(())
    })
    .await;
}

/// salve with `shutdown_grace = grace`, running the non-idempotent `Long` recipe's command
/// (made to last 30 s) on web1; returns once the command has started on the target.
async fn long_command_running(host: &SshHost, grace: &str) -> Enforcing {
    let enforcing = Enforcing::on(host)
        .patch_recipe(
            "long.toml",
            "run = [\"sleep 3\"]",
            "run = [\"touch /tmp/started; sleep 30\"]",
        )
        .config(|config| config.engine_setting("shutdown_grace", &toml_string(grace)))
        .start()
        .await;
    enforcing
        .salve
        .post_generic(json!({ "labels": { "alertname": "Long", "instance": "web1:9100" } }))
        .await;
    wait_for_file(host, "/tmp/started", "the long command to start on web1").await;
    enforcing
}

/// After a stop cut the long command: the journal never saw it finish, and the next start
/// marks the incident `interrupted` (the recipe is not idempotent: it does not run again).
async fn interrupted_at_next_start(salve: &mut SalveProcess) {
    let history = salve.history_json().await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0]["state"], "remediating", "{:#}", history[0]);
    assert!(
        events(&history[0], "step_finished").is_empty(),
        "the cut command was journaled as finished: {:#}",
        history[0]
    );
    salve.restart().await;
    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    assert_eq!(history[0]["state"], "interrupted", "{:#}", history[0]);
    assert_eq!(events(&history[0], "step_started").len(), 1, "ran again");
}

/// The command runs 30 s; the grace is 5 s. salve must exit 0 well before the command ends,
/// answering `/readyz` 503 and webhooks 503 with `Retry-After` while it drains.
#[tokio::test]
async fn sigterm_with_a_short_grace_cuts_a_long_command_and_exits_0() {
    let host = SshHost::start().await;
    let mut enforcing = long_command_running(&host, "5s").await;
    let salve = &mut enforcing.salve;
    let base_url = salve.base_url().to_owned();

    salve.send_signal("TERM");

    let readyz = wait_until(Duration::from_secs(5), "/readyz 503 while draining", || {
        let url = format!("{base_url}/readyz");
        async move {
            let response = http_client().get(url).send().await.ok()?;
            (response.status().as_u16() == 503).then_some(response)
        }
    })
    .await;
    assert_eq!(
        readyz
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5"),
        "{:?}",
        readyz.headers()
    );
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "shutting down", "{body:#}");
    let refused = http_client()
        .post(format!("{base_url}/hooks/generic"))
        .header(BEARER.0, BEARER.1)
        .json(&json!({ "labels": { "alertname": "Late" } }))
        .send()
        .await
        .expect("salve still answers while it drains");
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5"),
        "{:?}",
        refused.headers()
    );
    // 20 s: far beyond the 5 s grace, well before the command's 30 s.
    let status = salve.wait_for_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}\n{}", salve.stderr_tail());

    interrupted_at_next_start(salve).await;
}

#[tokio::test]
async fn sigint_stops_like_sigterm() {
    let host = SshHost::start().await;
    let mut enforcing = long_command_running(&host, "1s").await;
    let salve = &mut enforcing.salve;

    salve.send_signal("INT");

    let status = salve.wait_for_exit(Duration::from_secs(20)).await;
    // Without its own handler SIGINT's default action kills salve: not a success.
    assert!(status.success(), "{status:?}\n{}", salve.stderr_tail());
    interrupted_at_next_start(salve).await;
}

/// Handles TERM by noting it and going on; would write /tmp/survived after ~25 s.
const IGNORES_TERM: &str = "trap 'echo TERM >> /tmp/ignorer.log' TERM; echo $$ > /tmp/ignorer.pid; \
i=0; while [ $i -lt 25 ]; do sleep 1; i=$((i+1)); done; touch /tmp/survived";

/// The `hang` recipe's timeout is 3 s: salve gives up then, the target's `timeout` sends
/// TERM 5 s later (ignored here) and KILL 5 s after that, long before the 25 s loop ends.
#[tokio::test]
async fn a_command_that_ignores_term_is_killed_by_the_backstop() {
    let host = SshHost::start().await;
    let run = format!("run = [\"{IGNORES_TERM}\"]");
    let enforcing = enforcing_on(&host, &[("hang.toml", "run = [\"sleep 30\"]", &run)]).await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "Hang", "instance": "web1:9100" } }))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "failed", "{incident:#}");
    assert!(
        incident["reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 3s"),
        "{incident:#}"
    );

    wait_for_file(&host, "/tmp/ignorer.pid", "the command's PID on web1").await;
    let pid = host.exec_ok("cat /tmp/ignorer.pid").await.trim().to_owned();
    // Gone, or a zombie nobody reaped yet: either way it runs no more.
    let gone = format!("s=$(ps -o stat= -p {pid}); [ -z \"$s\" ] || [ \"${{s#Z}}\" != \"$s\" ]");
    wait_until(
        Duration::from_secs(40),
        "the command to end on web1",
        || async { host.exec(&gone).await.status.success().then_some(()) },
    )
    .await;
    assert_eq!(
        host.exec_ok("cat /tmp/ignorer.log").await.trim(),
        "TERM",
        "the backstop's TERM should have come (and been ignored)"
    );
    let survived = host.exec("test -e /tmp/survived").await;
    assert!(
        !survived.status.success(),
        "the command ran to its end: TERM was ignored and no KILL came"
    );
}

/// `Long` runs `echo run >> /tmp/runs; sleep 30` with an 8 s timeout; its SSH master is
/// killed mid-command. The incident fails (never retried), and the next incident on the
/// host waits until the target's backstop has surely ended the cut command.
#[tokio::test]
async fn a_master_killed_mid_command_fails_the_incident_and_holds_the_host() {
    let host = SshHost::start().await;
    let enforcing = enforcing_on(
        &host,
        &[
            (
                "long.toml",
                "run = [\"sleep 3\"]",
                "run = [\"echo run >> /tmp/runs; sleep 30\"]",
            ),
            ("long.toml", "timeout = \"30s\"", "timeout = \"8s\""),
        ],
    )
    .await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "Long", "instance": "web1:9100" } }))
        .await;
    wait_for_file(&host, "/tmp/runs", "the long command to start on web1").await;
    // salve's default control dir (its environment has no TMPDIR).
    let control_dir = PathBuf::from(format!("/tmp/salve-{}/", salve.pid().unwrap()));
    let masters = master_pids(&control_dir);
    assert_eq!(masters.len(), 1, "{masters:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &masters[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    salve
        .post_generic(json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": "next" } }))
        .await;

    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    let cut = by_label(&history, "alertname", "Long");
    assert_eq!(cut["state"], "failed", "{cut:#}");
    let reason = cut["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not run on web1") && reason.contains("ssh session"),
        "{reason}"
    );
    let next = by_label(&history, "alertname", "Echo");
    assert_eq!(next["state"], "succeeded", "{next:#}");
    let held = events(next, "host_held");
    assert_eq!(held.len(), 1, "{next:#}");
    assert!(
        held[0]["why"].as_str().unwrap().contains("backstop"),
        "{next:#}"
    );
    // salve's 8 s timeout, then the target's TERM 5 s later and its KILL 5 s after that.
    let waited = event_time(next, "step_started") - event_time(cut, "step_started");
    assert!(
        waited >= chrono::Duration::seconds(18),
        "the next command started {waited} after the cut one"
    );
    // The target agrees: the cut command ran once and is gone.
    assert_eq!(host.exec_ok("cat /tmp/runs").await, "run\n");
    let left = host.exec("pgrep -f '[s]leep 30'").await;
    assert!(
        !left.status.success(),
        "still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// `Slow` with its command cut to `true` and these checks, verified within `within`.
async fn checks_on(host: &SshHost, checks: &str, within: &str) -> Enforcing {
    let checks = format!("checks = [\n{checks}\n]");
    let window = format!("within = \"{within}\"\ninterval = \"1s\"");
    enforcing_on(
        host,
        &[
            ("slow.toml", "run = [\"sleep 1\"]", "run = [\"true\"]"),
            ("slow.toml", "within = \"5s\"\ninterval = \"1s\"", &window),
            ("slow.toml", "checks = [{ command = \"true\" }]", &checks),
        ],
    )
    .await
}

/// One incident whose checks each show one behaviour against a real HTTPS server whose
/// certificate no system CA signed; the last poll's result of each check is asserted.
#[tokio::test]
async fn http_checks_verify_tls_do_not_follow_redirects_and_match_bodies() {
    let host = SshHost::start().await;
    let https = HttpsEndpoint::start().await;
    let (ok, redirect) = (https.url("/ok"), https.url("/redirect"));
    let checks = format!(
        "{{ http = \"{ok}\", status = 200 }},\n\
         {{ http = \"{ok}\", status = 200, tls_verify = false, body_contains = \"all good\" }},\n\
         {{ http = \"{ok}\", status = 200, tls_verify = false, body_contains = \"all bad\" }},\n\
         {{ http = \"{redirect}\", status = 200, tls_verify = false }},\n\
         {{ http = \"{redirect}\", status = 302, tls_verify = false }},"
    );
    let enforcing = checks_on(&host, &checks, "2s").await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "Slow", "instance": "web1:9100" } }))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(30)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "verify_failed", "{incident:#}");
    let results = events(incident, "verify_failed")[0]["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results.len(), 5, "{incident:#}");
    let detail = |i: usize| results[i]["detail"].as_str().unwrap().to_lowercase();
    // Each line: (what, holds); all are reported together so one run shows every break.
    let expectations = [
        (
            "TLS verified by default: the unknown CA fails the check",
            results[0]["passed"] == false && detail(0).contains("certificate"),
        ),
        (
            "tls_verify = false passes, and the body contains the text",
            results[1]["passed"] == true && results[1]["output"] == OK_BODY,
        ),
        (
            "body_contains that the body lacks fails",
            results[2]["passed"] == false && detail(2).contains("body lacks"),
        ),
        (
            "a 302 is not followed to the 200",
            results[3]["passed"] == false && results[3]["http_status"] == 302,
        ),
        (
            "the 302 itself is what the check sees",
            results[4]["passed"] == true,
        ),
    ];
    let broken: Vec<&str> = expectations
        .iter()
        .filter(|(_, holds)| !holds)
        .map(|(what, _)| *what)
        .collect();
    assert!(
        broken.is_empty(),
        "{broken:#?}\n{results:#?}\n{}",
        https.log_tail()
    );
}

/// The check's own timeout is 60 s and the SSH command timeout 30 s, but only 3 s of
/// `within` are left: the poll of an endpoint that never answers is cut at those 3 s.
#[tokio::test]
async fn an_http_check_that_hangs_is_cut_to_what_is_left_of_within() {
    let host = SshHost::start().await;
    let https = HttpsEndpoint::start().await;
    let checks = format!(
        "{{ http = \"{}\", status = 200, tls_verify = false, timeout = \"60s\" }},",
        https.url("/hang")
    );
    let enforcing = checks_on(&host, &checks, "3s").await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": { "alertname": "Slow", "instance": "web1:9100" } }))
        .await;

    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let incident = &history[0];
    assert_eq!(incident["state"], "verify_failed", "{incident:#}");
    let verifying = event_time(incident, "verify_failed") - event_time(incident, "verify_started");
    // About `within`: not before it, and far from the 30 s the poll would take uncut.
    assert!(
        verifying >= chrono::Duration::seconds(3) && verifying < chrono::Duration::seconds(20),
        "verified for {verifying}\n{incident:#}"
    );
    let result = &events(incident, "verify_failed")[0]["results"][0];
    assert!(
        result["detail"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{result:#}"
    );
}
