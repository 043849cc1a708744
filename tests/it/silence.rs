//! A silence for the life of the fix, against a real Alertmanager: while salve runs a fix
//! over real sshd, the alert is silenced (on both replicas of a gossiping pair, and
//! suppressed in their alert lists); when the fix ends the silence is expired; after a
//! failed fix the alert's normal ("human") receiver is notified, never during the fix; and
//! a silence left by a salve killed mid-fix is expired at the next start, while silences
//! salve did not make stay.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Alertmanager, Enforcing, SalveConfig, SalveProcess, SshHost, TARGET_USER, TOKEN,
    WebhookCapture, events, free_port, only, salve_cli, shipped_recipes, text, toml_path,
    toml_string, wait_until,
};

/// A fix that takes `{{ seconds }}`s over SSH, then exits with `{{ code }}`; no checks.
const SLOW_FIX: &str = r#"name = "slow-fix"
match = ['alertname="SlowFix"']
target = "{{ labels.instance | host }}"
mode = "enforce"

[params.seconds]
from = "labels.seconds"
pattern = '[0-9]{1,2}'

[params.code]
from = "labels.code"
pattern = '[01]'

[remediate]
run = ["sleep {{ seconds }}; exit {{ code }}"]
timeout = "60s"
"#;

const DEADLINE: Duration = Duration::from_secs(60);

fn slow_fix(seconds: &'static str, code: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("alertname", "SlowFix"),
        ("instance", "web1:9100"),
        ("seconds", seconds),
        ("code", code),
    ]
}

fn labels_json(labels: &[(&str, &str)]) -> Value {
    labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// salve enforcing `SLOW_FIX` on `host`, silencing through `alertmanagers`, listening on
/// `port` when given (so an Alertmanager started before it can send to it).
async fn start_salve(
    host: &SshHost,
    port: Option<u16>,
    alertmanagers: &[&Alertmanager],
) -> Enforcing {
    let urls: Vec<String> = alertmanagers.iter().map(|am| am.url()).collect();
    start_salve_with(host, port, &urls, &[]).await
}

/// `start_salve` with Alertmanager base `urls` and more `[alertmanager]` settings.
async fn start_salve_with(
    host: &SshHost,
    port: Option<u16>,
    urls: &[String],
    settings: &[(&str, String)],
) -> Enforcing {
    let urls: Vec<String> = urls.iter().map(|url| toml_string(url)).collect();
    let mut builder =
        Enforcing::single_recipe(host, &[("web1", TARGET_USER)], SLOW_FIX).config(|mut config| {
            config = config
                .alertmanager_setting("urls", &format!("[{}]", urls.join(", ")))
                .alertmanager_setting("margin", "\"1m\"")
                .alertmanager_setting("external_url", "\"https://salve.example\"");
            for (key, value) in settings {
                config = config.alertmanager_setting(key, value);
            }
            config
        });
    if let Some(port) = port {
        builder = builder.env("SALVE_SERVER__LISTEN", &format!("127.0.0.1:{port}"));
    }
    builder.start().await
}

/// The id of the silence salve journaled for its (only) incident, once it has.
async fn silenced(salve: &SalveProcess) -> (Value, String) {
    wait_until(DEADLINE, "salve to journal its silence", || async {
        let history = salve.history_json().await;
        let incident = history.first()?.clone();
        if let Some(failed) = events(&incident, "silence_failed").first() {
            panic!("salve could not silence: {failed}\n{}", salve.stderr_tail());
        }
        let id = events(&incident, "silenced")
            .first()?
            .get("silence_id")?
            .as_str()?
            .to_owned();
        Some((incident, id))
    })
    .await
}

/// Polls `alertmanager` until its silence `id` is in `state`; returns it.
async fn silence_in_state(alertmanager: &Alertmanager, id: &str, state: &str) -> Value {
    wait_until(
        DEADLINE,
        &format!("silence {id} {state} on {}", alertmanager.url()),
        || async {
            alertmanager
                .silence(id)
                .await
                .filter(|silence| silence["status"]["state"] == state)
        },
    )
    .await
}

#[tokio::test]
async fn during_the_fix_the_alert_is_silenced_on_both_replicas_and_the_silence_expires_after() {
    let host = SshHost::start().await;
    let port = free_port();
    let (first, second) =
        Alertmanager::builder(&format!("http://127.0.0.1:{port}/hooks/alertmanager"))
            .bearer_token(TOKEN)
            .start_pair()
            .await;
    let enforcing = start_salve(&host, Some(port), &[&first, &second]).await;
    let salve = &enforcing.salve;
    let labels = slow_fix("8", "0");

    // Like Prometheus, the alert goes to both replicas.
    first.post_alert(&labels, &[]).await;
    second.post_alert(&labels, &[]).await;
    let (incident, id) = silenced(salve).await;
    let incident_id = incident["id"].as_i64().unwrap();

    // The silence gossips: both replicas show it active and the alert suppressed by it.
    for replica in [&first, &second] {
        let silence = silence_in_state(replica, &id, "active").await;
        assert_eq!(silence["createdBy"], "salve");
        assert_eq!(
            silence["comment"],
            format!(
                "salve incident {incident_id}: slow-fix on web1 https://salve.example/api/v1/incidents/{incident_id}"
            )
        );
        let mut matchers: Vec<(String, String)> = silence["matchers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(
                    (&m["isRegex"], &m["isEqual"]),
                    (&json!(false), &json!(true))
                );
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        matchers.sort();
        let mut expected: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        expected.sort();
        assert_eq!(matchers, expected);
        wait_until(DEADLINE, "the alert suppressed by the silence", || async {
            replica.alerts().await.into_iter().find(|alert| {
                alert["labels"] == labels_json(&labels)
                    && alert["status"]["state"] == "suppressed"
                    && alert["status"]["silencedBy"]
                        .as_array()
                        .is_some_and(|by| by.iter().any(|s| s == id.as_str()))
            })
        })
        .await;
    }
    // Seen active while the fix still ran: it was silenced during the fix.
    let history = salve.history_json().await;
    assert_eq!(
        only(&history, "SlowFix")["state"],
        "remediating",
        "the fix ended before the silence was seen on both replicas"
    );

    let history = salve.wait_for_final(1, DEADLINE).await;
    let incident = only(&history, "SlowFix");
    assert_eq!(incident["state"], "succeeded", "{incident:#}");
    for replica in [&first, &second] {
        silence_in_state(replica, &id, "expired").await;
    }
    let history = salve.history_json().await;
    let incident = only(&history, "SlowFix");
    assert_eq!(
        events(incident, "silence_expired"),
        [&json!({ "silence_id": id })]
    );
    assert!(
        events(incident, "silence_failed").is_empty(),
        "{incident:#}"
    );
    // `endsAt`: the step's timeout (60s) and the margin (1m) after the start.
    let ends_at: chrono::DateTime<chrono::Utc> = events(incident, "silenced")[0]["ends_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let started = crate::support::event_time(incident, "remediation_started");
    let lasts = (ends_at - started).num_seconds();
    assert!((110..=130).contains(&lasts), "silence lasts {lasts}s");
}

#[tokio::test]
async fn after_a_failed_fix_the_alert_reaches_its_normal_receiver_and_not_before() {
    let host = SshHost::start().await;
    let human = WebhookCapture::start().await;
    let port = free_port();
    // The human route waits 4 s before its first notification: by then salve has the alert
    // silenced, so only the end of a failed fix lets it through.
    let human_group_wait = Duration::from_secs(4);
    let alertmanager =
        Alertmanager::builder(&format!("http://127.0.0.1:{port}/hooks/alertmanager"))
            .bearer_token(TOKEN)
            .also_notify(&human.url("/human"), human_group_wait)
            .start()
            .await;
    let enforcing = start_salve(&host, Some(port), &[&alertmanager]).await;
    let salve = &enforcing.salve;
    let labels = slow_fix("12", "1");

    let posted = Instant::now();
    alertmanager.post_alert(&labels, &[]).await;
    let (_, id) = silenced(salve).await;
    silence_in_state(&alertmanager, &id, "active").await;

    // Past the human route's group_wait (plus a margin for a loaded runner), the fix still
    // running: the human was not notified.
    let quiet_until = human_group_wait + Duration::from_secs(3);
    tokio::time::sleep(quiet_until.saturating_sub(posted.elapsed())).await;
    let history = salve.history_json().await;
    assert_eq!(
        only(&history, "SlowFix")["state"],
        "remediating",
        "the fix ended before the human route's first flush: the test proves nothing"
    );
    assert!(
        human.requests().is_empty(),
        "the human was notified during the fix: {:?}",
        human
            .requests()
            .iter()
            .map(|r| r.json())
            .collect::<Vec<_>>()
    );

    let history = salve.wait_for_final(1, DEADLINE).await;
    assert_eq!(only(&history, "SlowFix")["state"], "failed");
    silence_in_state(&alertmanager, &id, "expired").await;
    let notified = wait_until(DEADLINE, "the human receiver notified", || async {
        human
            .requests()
            .into_iter()
            .find(|request| request.path == "/human")
    })
    .await
    .json();
    assert_eq!(notified["status"], "firing", "{notified:#}");
    assert_eq!(notified["alerts"][0]["labels"], labels_json(&labels));
    let history = salve.history_json().await;
    assert_eq!(
        events(only(&history, "SlowFix"), "silence_expired"),
        [&json!({ "silence_id": id })]
    );
}

#[tokio::test]
async fn a_silence_left_by_a_salve_killed_mid_fix_is_expired_at_the_next_start() {
    let host = SshHost::start().await;
    let nobody = WebhookCapture::start().await;
    let alertmanager = Alertmanager::builder(&nobody.url("/unused")).start().await;
    let mut enforcing = start_salve(&host, None, &[&alertmanager]).await;
    let labels = slow_fix("30", "0");
    // Silences salve did not make, or that name no incident of this store: never touched.
    let by_human = alertmanager
        .create_silence(&labels, "alice", "salve incident 1: looks like salve's")
        .await;
    let other_salve = alertmanager
        .create_silence(&labels, "salve", "salve incident 999: slow-fix on web9")
        .await;
    let unshaped = alertmanager
        .create_silence(&labels, "salve", "made by hand")
        .await;

    enforcing
        .salve
        .post_generic(json!({ "labels": labels_json(&labels) }))
        .await;
    let (_, id) = silenced(&enforcing.salve).await;
    enforcing.salve.kill9();
    // Nothing expired it: salve died mid-fix.
    silence_in_state(&alertmanager, &id, "active").await;

    enforcing.salve.restart().await;
    silence_in_state(&alertmanager, &id, "expired").await;
    let history = enforcing.salve.history_json().await;
    let incident = only(&history, "SlowFix");
    assert_eq!(incident["state"], "interrupted", "{incident:#}");
    assert_eq!(
        events(incident, "silence_expired"),
        [&json!({ "silence_id": id })]
    );
    for other in [by_human, other_salve, unshaped] {
        let silence = alertmanager.silence(&other).await.unwrap();
        assert_eq!(silence["status"]["state"], "active", "{silence:#}");
    }
}

/// The credential goes with every request, to the first replica that answers (the first
/// URL is a closed port), under the base URL's path; it never reaches salve's log.
#[tokio::test]
async fn requests_carry_the_credential_to_the_first_replica_that_answers() {
    const SECRET: &str = "am-token-3f9c1e";
    let host = SshHost::start().await;
    // A stand-in Alertmanager that records what salve sends and answers every request
    // with a silence id (the startup listing then reads as malformed: logged, harmless).
    let stand_in = WebhookCapture::start().await;
    stand_in.set_response_body(r#"{"silenceID":"stand-in-silence"}"#);
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("am-token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let enforcing = start_salve_with(
        &host,
        None,
        &[closed, stand_in.url("/am")],
        &[("bearer_token_file", toml_path(&token_file))],
    )
    .await;
    let salve = &enforcing.salve;
    let labels = slow_fix("1", "0");

    salve
        .post_generic(json!({ "labels": labels_json(&labels) }))
        .await;
    let history = salve.wait_for_final(1, DEADLINE).await;
    assert_eq!(only(&history, "SlowFix")["state"], "succeeded");
    let requests = wait_until(DEADLINE, "the silence created and expired", || async {
        let requests = stand_in.requests();
        requests
            .iter()
            .any(|request| request.method == "DELETE")
            .then_some(requests)
    })
    .await;
    let calls: Vec<(String, String)> = requests
        .iter()
        .map(|request| (request.method.clone(), request.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET".to_owned(), "/am/api/v2/silences".to_owned()),
            ("POST".to_owned(), "/am/api/v2/silences".to_owned()),
            (
                "DELETE".to_owned(),
                "/am/api/v2/silence/stand-in-silence".to_owned()
            ),
        ]
    );
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
    }
    let created = requests[1].json();
    assert_eq!(created["createdBy"], "salve");
    assert_eq!(created["matchers"].as_array().unwrap().len(), labels.len());
    let history = salve.history_json().await;
    assert_eq!(
        events(only(&history, "SlowFix"), "silence_expired"),
        [&json!({ "silence_id": "stand-in-silence" })]
    );
    let log = std::fs::read_to_string(salve.dir().join("salve.stderr.log")).unwrap();
    assert!(!log.contains(SECRET), "the token is in salve's log");
}

/// No Alertmanager answers: the fix runs anyway, and the journal says why it was not
/// silenced.
#[tokio::test]
async fn an_unreachable_alertmanager_does_not_stop_the_fix() {
    let host = SshHost::start().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let enforcing = start_salve_with(&host, None, &[closed], &[]).await;
    let salve = &enforcing.salve;

    salve
        .post_generic(json!({ "labels": labels_json(&slow_fix("0", "0")) }))
        .await;
    let history = salve.wait_for_final(1, DEADLINE).await;
    let incident = only(&history, "SlowFix");
    assert_eq!(incident["state"], "succeeded", "{incident:#}");
    let failed = events(incident, "silence_failed");
    assert_eq!(failed.len(), 1, "{incident:#}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("silencing the alert: no Alertmanager answered: 127.0.0.1:"),
        "{}",
        failed[0]
    );
    assert!(events(incident, "silenced").is_empty());
}

/// `salve check` refuses an `[alertmanager]` URL it could not use (or that would print a
/// credential), naming the key and its line; a good one checks clean.
#[test]
fn check_refuses_an_unusable_alertmanager_url_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = SalveConfig::standard().recipes_dir(shipped_recipes());
    for (url, complaint) in [
        ("ftp://127.0.0.1:9093", "only http and https"),
        (
            "http://ops:hunter2@127.0.0.1:9093",
            "credentials in the URL",
        ),
        ("127.0.0.1:9093", "alertmanager.url"),
    ] {
        base.clone()
            .alertmanager_setting("url", &toml_string(url))
            .write_to(dir.path());
        let output = salve_cli(dir.path(), &["check"]);
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success(),
            "check passed url {url}:\n{stderr}"
        );
        let line = stderr
            .lines()
            .find(|line| line.contains("alertmanager.url"))
            .unwrap_or_else(|| panic!("no alertmanager.url problem for {url}:\n{stderr}"));
        assert!(line.contains(complaint), "{line}");
        assert!(line.contains("salve.toml:"), "no file:line: {line}");
        assert!(
            !stderr.contains("hunter2"),
            "the password was printed:\n{stderr}"
        );
    }
    base.alertmanager_setting("url", "\"http://127.0.0.1:9093\"")
        .write_to(dir.path());
    let output = salve_cli(dir.path(), &["check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}
