//! The failure half of the guards on real parts: the overall rate bucket, a token that comes
//! within `max_wait` and a wait that lasts all of it, breaker runs ageing out of the window,
//! an API breaker reset that lets the next incident really run (a line appears on the
//! target), and an outbox row whose attempts and backoff keep growing across a `kill -9`.

use std::time::Duration;

use crate::support::{
    Enforcing, Inventory, SalveProcess, SmtpOptions, SmtpServer, SshHost, by_label, event_time,
    events, http_client, outbox_pending, wait_past_next_retry, wait_until,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// An enforcing salve on `host` (as web1) whose `echo-message` appends its message to
/// /tmp/echo-runs on the target (the evidence that it ran), with a breaker of `max_runs` in
/// `window`, and an operate-scope API token `(name, token)` if given.
async fn start_echo_with_breaker(
    host: &SshHost,
    max_runs: u32,
    window: &str,
    api_token: Option<(&str, &str)>,
) -> Enforcing {
    let breaker = format!("[breaker]\nmax_runs = {max_runs}\nwindow = \"{window}\"\n\n[escalate]");
    Enforcing::on(host)
        .patch_recipe(
            "echo-message.toml",
            "run = [\"printf '%s' {{ message }}\"]",
            "run = [\"printf '%s\\\\n' {{ message }} >> /tmp/echo-runs\"]",
        )
        .patch_recipe("echo-message.toml", "[escalate]", &breaker)
        .config(|config| match api_token {
            Some((name, token)) => config.api_token(name, token, "operate"),
            None => config,
        })
        .start()
        .await
}

fn echo(message: &str) -> Value {
    json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": message } })
}

/// The incident the single alert `message` made, once final.
async fn post_and_finish(salve: &SalveProcess, message: &str, count: usize) -> Value {
    salve.post_generic(echo(message)).await;
    let history = salve.wait_for_final(count, Duration::from_secs(60)).await;
    by_label(&history, "message", message).clone()
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

#[tokio::test]
async fn the_overall_bucket_limits_across_hosts_and_the_wait_lasts_max_wait() {
    let (web1, web2) = (SshHost::start().await, SshHost::start().await);
    // Per host there is room; all hosts together get one remediation a minute.
    let enforcing = Enforcing::builder(
        vec![Inventory::of("web1", &web1), Inventory::of("web2", &web2)],
        &[&web1, &web2],
    )
    .limit("remediations_per_minute", "1")
    .limit("per_host_per_minute", "100")
    .limit("max_wait", "\"3s\"")
    .start()
    .await;
    let salve = &enforcing.salve;
    let first = post_and_finish(salve, "first", 1).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");

    salve
        .post_generic(json!({ "labels": { "alertname": "Echo", "instance": "web2:9100", "message": "second" } }))
        .await;
    let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
    let limited = by_label(&history, "message", "second");
    assert_eq!(limited["state"], "rate_limited", "{limited:#}");
    assert!(events(limited, "step_started").is_empty(), "{limited:#}");
    let reason = limited["reason"].as_str().unwrap();
    assert!(reason.contains("1/min overall"), "{reason}");

    // It waited all of max_wait after it was planned (journal times), and not much longer.
    let waited = seconds_between(
        event_time(limited, "planned"),
        event_time(limited, "rate_limited"),
    );
    assert!(
        (2.9..25.0).contains(&waited),
        "waited {waited}s for a 3s max_wait: {limited:#}"
    );
}

#[tokio::test]
async fn a_token_that_arrives_within_max_wait_lets_the_incident_run() {
    let host = SshHost::start().await;
    // 10 a minute on the host: a burst of 10, then one token every 6 s.
    let enforcing = Enforcing::on(&host)
        .limit("per_host_per_minute", "10")
        .limit("max_wait", "\"40s\"")
        .start()
        .await;
    let salve = &enforcing.salve;
    let alerts: Vec<Value> = (1..=11).map(|n| echo(&format!("m{n}"))).collect();
    salve.post_generic(json!({ "alerts": alerts })).await;
    let history = salve.wait_for_final(11, Duration::from_secs(90)).await;
    let mut started: Vec<DateTime<Utc>> = history
        .iter()
        .map(|incident| {
            assert_eq!(incident["state"], "succeeded", "{incident:#}");
            event_time(incident, "step_started")
        })
        .collect();
    started.sort();
    // The 11th waited for the token after the burst: about 6 s after the first ran (without
    // the bucket all 11 start within about 1.5 s).
    let spread = seconds_between(started[0], started[10]);
    assert!(spread >= 5.5, "the 11th ran {spread}s after the first");
}

#[tokio::test]
async fn breaker_runs_age_out_of_the_window_and_the_next_incident_runs() {
    let host = SshHost::start().await;
    // 20 s: room for three incidents under load before the first run ages out.
    let enforcing = start_echo_with_breaker(&host, 2, "20s", None).await;
    let salve = &enforcing.salve;

    let first = post_and_finish(salve, "first", 1).await;
    post_and_finish(salve, "second", 2).await;
    let third = post_and_finish(salve, "third", 3).await;
    assert_eq!(third["state"], "breaker_open", "{third:#}");
    assert_eq!(host.file_lines("/tmp/echo-runs").await, ["first", "second"]);

    // Once the first run is older than the window, one run is left in it: room again.
    let aged_out = event_time(&first, "step_started") + chrono::Duration::milliseconds(20_500);
    if let Ok(left) = (aged_out - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    let fourth = post_and_finish(salve, "fourth", 4).await;
    assert_eq!(fourth["state"], "succeeded", "{fourth:#}");
    assert_eq!(
        host.file_lines("/tmp/echo-runs").await,
        ["first", "second", "fourth"]
    );
}

#[tokio::test]
async fn an_api_breaker_reset_lets_the_next_incident_really_run() {
    let host = SshHost::start().await;
    let enforcing = start_echo_with_breaker(&host, 1, "10m", Some(("ops", "ops-token"))).await;
    let salve = &enforcing.salve;
    assert_eq!(
        post_and_finish(salve, "first", 1).await["state"],
        "succeeded"
    );
    let second = post_and_finish(salve, "second", 2).await;
    assert_eq!(second["state"], "breaker_open", "{second:#}");

    let reset = http_client()
        .post(format!("{}/api/v1/breakers/reset", salve.base_url()))
        .header("authorization", "Bearer ops-token")
        .json(&json!({ "recipe": "echo-message", "target": "web1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reset.status().as_u16(),
        200,
        "{}",
        reset.text().await.unwrap()
    );

    let third = post_and_finish(salve, "third", 3).await;
    assert_eq!(third["state"], "succeeded", "{third:#}");
    assert_eq!(host.file_lines("/tmp/echo-runs").await, ["first", "third"]);
}

/// The failed attempts of the only outbox row seen so far, once there are `count`, as
/// `{"at": …, "detail": {"attempt": n}}`. Retries update the row (attempts, last error,
/// last and next attempt) rather than journaling each attempt, so the row is polled and
/// each attempt's time recorded in `seen` as it goes by; the journal has one
/// `escalation_failed`, the first.
async fn wait_for_failures(
    salve: &SalveProcess,
    seen: &mut Vec<Value>,
    count: usize,
) -> Vec<Value> {
    let db = salve.dir().join("salve.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{count} failed delivery attempt(s): saw {seen:#?}"
        );
        let row: Option<(i64, Option<String>)> =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()
                .and_then(|conn| {
                    conn.query_row(
                        "SELECT attempts, last_attempt_at FROM outbox ORDER BY id LIMIT 1",
                        [],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .ok()
                });
        if let Some((attempts, Some(at))) = row
            && attempts as usize > seen.len()
        {
            assert_eq!(
                attempts as usize,
                seen.len() + 1,
                "an attempt went by unseen: {seen:#?}"
            );
            seen.push(json!({ "at": at, "detail": { "attempt": attempts } }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = salve.history_json().await;
    let journaled = events(&history[0], "escalation_failed");
    assert_eq!(
        journaled.len(),
        1,
        "one journal entry, not one per attempt: {:#}",
        history[0]
    );
    seen.clone()
}

fn attempt_at(failure: &Value) -> DateTime<Utc> {
    failure["at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn outbox_attempts_grow_and_the_backoff_survives_a_restart() {
    let smtp = SmtpServer::start(SmtpOptions::default()).await;
    smtp.set_failing(true);
    let mut salve = SalveProcess::escalating_a_novel_alert_to(&smtp).await;

    // Attempts 1, 2, 3, each after a longer backoff (1 s, then 2 s).
    let mut seen = Vec::new();
    let failures = wait_for_failures(&salve, &mut seen, 3).await;
    let attempts: Vec<u64> = failures
        .iter()
        .map(|f| f["detail"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{failures:#?}");
    let gaps: Vec<f64> = failures
        .windows(2)
        .map(|pair| seconds_between(attempt_at(&pair[0]), attempt_at(&pair[1])))
        .collect();
    assert!(
        gaps[0] >= 0.9 && gaps[1] >= 1.9 && gaps[1] > gaps[0],
        "gaps {gaps:?}"
    );
    let pending = salve.metrics().await;
    assert_eq!(outbox_pending(&pending), Some(1), "{pending}");

    // Killed inside the 4 s backoff after attempt 3: the next process keeps the schedule.
    salve.kill9();
    salve.restart().await;
    let failures = wait_for_failures(&salve, &mut seen, 4).await;
    let fourth = &failures[3];
    assert_eq!(
        fourth["detail"]["attempt"], 4,
        "the count restarted: {failures:#?}"
    );
    let gap = seconds_between(attempt_at(&failures[2]), attempt_at(fourth));
    assert!(
        gap >= 3.9,
        "attempt 4 came {gap}s after attempt 3, not after its 4 s backoff"
    );

    // The channel recovers: attempt 5 (after 8 s) delivers, once.
    smtp.set_failing(false);
    let history = salve.wait_until_delivered().await;
    let sent = events(&history[0], "escalation_sent");
    assert_eq!(sent.len(), 1, "{:#}", history[0]);
    assert_eq!(sent[0]["attempt"], 5, "{:#}", history[0]);
    smtp.wait_for_mails(1).await;
    wait_past_next_retry(&history).await;
    assert_eq!(smtp.messages().len(), 1, "delivered once");
    let drained = wait_until(Duration::from_secs(10), "an empty outbox gauge", || async {
        let scraped = salve.metrics().await;
        (outbox_pending(&scraped) == Some(0)).then_some(())
    });
    drained.await;
}
