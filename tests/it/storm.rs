//! Storms and crash safety on the real stack: many alerts for many inventory hosts through
//! salve to a real sshd, with `kill -9` at several points. What must hold is checked on the
//! target itself (a per-host lock that records any overlap, a log of what really ran) and
//! in the journal, never only in one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{
    Enforcing, FINAL, Inventory, SalveProcess, SshHost, WebhookCapture, by_label, events, text,
    wait_until, wait_until_every, wait_until_every_saying,
};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// salve with one inventory host, web1, and two storm alerts for it: `n=1` holds the
/// host's lock on the target for `hold` seconds (the recipe's command budget is 3 s),
/// `n=2` is the next incident for the same host.
async fn two_alerts_for_one_host(hold: &str) -> (SshHost, WebhookCapture, Enforcing) {
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    let enforcing = Enforcing::on(&host)
        .config(|config| config.webhook_channel("oncall-email", &capture.url("/oncall")))
        .start()
        .await;
    enforcing.salve.post_generic(json!({ "alerts": [
            { "labels": { "alertname": "StormOnce", "instance": "web1:9100", "n": "1", "hold": hold } },
            { "labels": { "alertname": "StormOnce", "instance": "web1:9100", "n": "2" } },
        ]}),
    )
    .await;
    (host, capture, enforcing)
}

/// A command salve was running when it was killed keeps running on the target (closing an
/// SSH channel does not stop a process without a terminal). After the restart, the next
/// incident for that host must wait for it, not start beside it — also after a second
/// `kill -9` during that wait (a crash loop): the hold is in the store, not only in memory.
#[tokio::test]
async fn a_command_cut_by_kill_9_holds_its_host_until_it_is_surely_over() {
    // The cut command holds the host's lock for 6 s (the target's backstop would TERM it
    // at 8 s).
    let (host, _capture, mut enforcing) = two_alerts_for_one_host("6").await;
    // Killed only once the command really runs on the target (its journal entry comes
    // before it is sent, so the journal alone cannot tell).
    wait_until(
        Duration::from_secs(20),
        "the first command to run on the target",
        || async {
            let runs = host.file_lines("/tmp/storm-runs").await;
            runs.iter().any(|l| l == "once 1 web1").then_some(())
        },
    )
    .await;
    enforcing.salve.kill9();
    enforcing.salve.restart().await;
    // The next incident waits for the host; kill salve again while it does.
    wait_until(
        Duration::from_secs(10),
        "the next incident to wait for web1",
        || async {
            let history = enforcing.salve.history_json().await;
            history
                .iter()
                .any(|incident| !events(incident, "host_held").is_empty())
                .then_some(())
        },
    )
    .await;
    let still_running = host.file_lines("/tmp/storm-runs").await;
    assert_eq!(
        still_running,
        ["once 1 web1"],
        "the second kill must come while the first command runs"
    );
    enforcing.salve.kill9();
    enforcing.salve.restart().await;
    let salve = &enforcing.salve;

    let history = salve.wait_for_final(2, Duration::from_secs(40)).await;
    let cut = by_label(&history, "n", "1");
    assert_eq!(cut["state"], "interrupted", "{cut:#}");
    let next = by_label(&history, "n", "2");
    let overlaps = host.file_lines("/tmp/storm-overlaps").await;
    assert!(
        overlaps.is_empty(),
        "after the restart a remediation started on web1 while the cut one still ran there: {overlaps:?}\n{next:#}"
    );
    assert_eq!(next["state"], "succeeded", "{next:#}");
    assert_eq!(events(cut, "step_started").len(), 1, "{cut:#}");
    // It waited, once per start, and said why.
    let held = events(next, "host_held");
    assert_eq!(held.len(), 2, "{next:#}");
    assert!(held.iter().all(|h| h["host"] == "web1"), "{next:#}");
    let runs = host.file_lines("/tmp/storm-runs").await;
    assert_eq!(runs, ["once 1 web1", "once 2 web1"]);
}

/// The same without a crash: a command salve stopped waiting for at its timeout goes on
/// running on the target until the target's `timeout` backstop ends it. The next incident
/// for that host must wait for that, not start beside it.
#[tokio::test]
async fn a_command_cut_by_its_timeout_holds_its_host_until_it_is_surely_over() {
    // The first command holds the host's lock for 4.5 s, past its 3 s budget.
    let (host, _capture, enforcing) = two_alerts_for_one_host("4.5").await;
    let history = enforcing
        .salve
        .wait_for_final(2, Duration::from_secs(60))
        .await;
    let cut = by_label(&history, "n", "1");
    assert_eq!(cut["state"], "failed", "{cut:#}");
    assert!(
        cut["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{cut:#}"
    );
    let next = by_label(&history, "n", "2");
    let overlaps = host.file_lines("/tmp/storm-overlaps").await;
    assert!(
        overlaps.is_empty(),
        "a remediation started on web1 while the timed-out one still ran there: {overlaps:?}\n{next:#}"
    );
    assert_eq!(next["state"], "succeeded", "{next:#}");
    let held = events(next, "host_held");
    assert_eq!(held.len(), 1, "{next:#}");
    assert_eq!(held[0]["host"], "web1");
    assert!(
        held[0]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("backstop"),
        "{next:#}"
    );
    // Both really ran, one after the other.
    let runs = host.file_lines("/tmp/storm-runs").await;
    assert_eq!(runs, ["once 1 web1", "once 2 web1"]);
}

pub(crate) const HOSTS: usize = 100;
pub(crate) const ALERTS: usize = 1000;
pub(crate) const BATCH: usize = 50;
/// Peak resident memory allowed to each salve process of the storm.
const MAX_PEAK_RSS_BYTES: u64 = 150 * 1024 * 1024;
/// Where an incident's run ends in the journal (`resumed`/`interrupted`: cut by a crash,
/// journaled at the next start before anything new runs).
const RUN_ENDS: [&str; 5] = [
    "succeeded",
    "failed",
    "verify_failed",
    "interrupted",
    "resumed",
];

/// Alert `n` of the storm: host `n % 100`, so each host gets 10; rounds of 100 alternate
/// between the non-idempotent and the idempotent recipe, so each host gets 5 of each.
/// Every 50th alert (`n % 50 == 7`) holds its host for 1.5 s instead of 50 ms: a window
/// wide enough to kill salve in the middle of a command, seen on the target itself.
pub(crate) fn storm_alert(n: usize, starts_at: &str) -> Value {
    let idempotent = (n / HOSTS) % 2 == 1;
    let mut labels = json!({
        "alertname": if idempotent { "StormIdempotent" } else { "StormOnce" },
        "instance": format!("host{}:9100", n % HOSTS),
        "n": n.to_string(),
    });
    if is_slow(n) {
        labels["hold"] = json!("1.5");
    }
    json!({ "labels": labels, "startsAt": starts_at })
}

pub(crate) fn is_slow(n: usize) -> bool {
    n % 50 == 7
}

/// One webhook POST; `true` only for a 200 (acknowledged: journaled). A refused
/// connection or any other status is not acknowledged, and a real sender sends again.
async fn post_batch(url: &str, body: &Value) -> bool {
    let sent = crate::support::http_client()
        .post(url)
        .header(crate::support::BEARER.0, crate::support::BEARER.1)
        .json(body)
        .send()
        .await;
    sent.is_ok_and(|response| response.status().as_u16() == 200)
}

/// How often the storm test asks the CLI: each run reads the whole journal, and the
/// machine has two cores for salve, sshd and the test.
pub(crate) const CLI_POLL: Duration = Duration::from_secs(1);

/// Incidents per state, from `salve history` (without the journal events: cheap enough to
/// poll during the storm).
pub(crate) async fn state_counts(salve: &SalveProcess) -> BTreeMap<String, usize> {
    let output = salve
        .run_cli(&["history", "--limit", &(2 * ALERTS).to_string()])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut counts = BTreeMap::new();
    // An incident's first line: id, last seen (date, time, `UTC`), state, ...; the lines
    // under it (labels, recipe, why) are indented and start with a word, not an id.
    for line in text(&output.stdout).lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if let [id, _date, _time, "UTC", state, ..] = columns.as_slice()
            && id.parse::<u64>().is_ok()
        {
            *counts.entry((*state).to_owned()).or_default() += 1;
        }
    }
    counts
}

pub(crate) fn finished(counts: &BTreeMap<String, usize>) -> usize {
    FINAL
        .iter()
        .map(|state| counts.get(*state).copied().unwrap_or(0))
        .sum()
}

/// Waits until at least `n` incidents are in a final state.
async fn wait_for_finished(salve: &SalveProcess, n: usize) {
    wait_until_every(
        Duration::from_secs(120),
        CLI_POLL,
        &format!("{n} incidents finished"),
        || async {
            let counts = state_counts(salve).await;
            (finished(&counts) >= n).then_some(())
        },
    )
    .await;
}

/// `VmHWM` (peak resident set) of a live process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// Numbers of slow alerts of `kind` ("once" or "idempotent") whose command is running on
/// the target right now and started less than `FRESH` ago (of its 1.5 s): a kill decided on
/// this answer a moment later still comes while the command runs. (Any running one would
/// not do: one about to end could end, and its replica commit the end, between this look
/// and the kill; the kill then cut nothing.) The start is the host lock's creation, read
/// before the command is seen not done, so it is this command's lock. The run log belongs
/// to the target user: this only reads it, never creates it as root.
pub(crate) async fn slow_commands_running(host: &SshHost, kind: &str) -> Vec<usize> {
    const FRESH: Duration = Duration::from_millis(700);
    let script = format!(
        "[ -e /tmp/storm-runs ] || exit 0; now=$(date +%s%N); while read kind n name; do \
         if [ \"$kind\" = {kind} ] && [ $((n % 50)) -eq 7 ]; then \
         started=$(date -r /tmp/storm-lock-$name +%s%N 2>/dev/null) || continue; \
         if [ ! -e /tmp/storm-done-$n ] && [ $((now - started)) -lt {} ]; then echo $n; fi; \
         fi; done < /tmp/storm-runs",
        FRESH.as_nanos()
    );
    host.exec_ok(&script)
        .await
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Waits until a slow command of `kind` runs on the target, then kills salve with SIGKILL;
/// returns the process's peak RSS.
async fn kill_9_mid_command(
    salve: &mut SalveProcess,
    host: &SshHost,
    kind: &str,
    since: Instant,
) -> u64 {
    let running = wait_until(
        Duration::from_secs(90),
        &format!("a slow `{kind}` command to run on the target"),
        || async {
            let running = slow_commands_running(host, kind).await;
            (!running.is_empty()).then_some(running)
        },
    )
    .await;
    let peak = peak_rss(salve.pid().expect("salve runs"));
    salve.kill9();
    eprintln!(
        "storm: kill -9 after {:.1?} while alert(s) {running:?} ran on the target",
        since.elapsed()
    );
    peak
}

fn time_of(event: &Value) -> DateTime<Utc> {
    event["at"].as_str().unwrap().parse().unwrap()
}

/// The storm: 1,000 alerts for 100 inventory hosts (one real sshd plays them all), two
/// recipes (one idempotent), `kill -9` three times — mid-intake with only some batches
/// acknowledged, mid-command of a non-idempotent run, and mid-command of an idempotent run
/// while escalations were being refused by their channel — each followed by a restart.
///
/// Limits are opened up on purpose (10,000/min overall, 60/min per host; the default 6 per
/// host per minute would turn the storm into `rate_limited` escalations, which the guard
/// tests cover); the recipes' breaker (20 runs in 10 min per host) counts every run but is
/// above the 5 runs (plus re-runs) each (recipe, host) gets here.
#[tokio::test]
async fn storm_of_1000_alerts_for_100_hosts_survives_kill_9_at_several_points() {
    let started = Instant::now();
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    let names: Vec<String> = (0..HOSTS).map(|i| format!("host{i}")).collect();
    let inventory: Vec<Inventory> = names.iter().map(|n| Inventory::of(n, &host)).collect();
    let mut enforcing = Enforcing::builder(inventory, &[&host])
        .config(|config| config.webhook_channel("oncall-email", &capture.url("/oncall")))
        .limit("remediations_per_minute", "10000")
        .limit("per_host_per_minute", "60")
        .limit("max_wait", "\"60s\"")
        .start()
        .await;
    let starts_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let batches: Vec<Value> = (0..ALERTS / BATCH)
        .map(|b| {
            let alerts: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
                .map(|n| storm_alert(n, &starts_at))
                .collect();
            json!({ "alerts": alerts })
        })
        .collect();
    let mut peaks = Vec::new();

    // Kill 1, mid-intake: two senders post the batches; salve dies after the 8th 200.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let url = format!("{}/hooks/generic", enforcing.salve.base_url());
    let poster = tokio::spawn({
        let (acked, batches, url) = (acked.clone(), batches.clone(), url.clone());
        async move {
            futures_util::stream::iter(batches.into_iter().enumerate())
                .for_each_concurrent(2, |(index, body)| {
                    let (acked, url) = (acked.clone(), url.clone());
                    async move {
                        if post_batch(&url, &body).await {
                            acked.lock().unwrap().insert(index);
                        }
                    }
                })
                .await;
        }
    });
    wait_until(
        Duration::from_secs(60),
        "8 acknowledged batches",
        || async { (acked.lock().unwrap().len() >= 8).then_some(()) },
    )
    .await;
    peaks.push(peak_rss(enforcing.salve.pid().unwrap()));
    enforcing.salve.kill9();
    poster.await.unwrap();
    let acked_before_kill = acked.lock().unwrap().clone();
    let unacked: Vec<usize> = (0..batches.len())
        .filter(|b| !acked_before_kill.contains(b))
        .collect();
    assert!(
        !unacked.is_empty(),
        "every batch was acknowledged before the kill: not a mid-intake kill"
    );
    enforcing.salve.restart().await;
    // The sender retries what was not acknowledged, and only that.
    let url = format!("{}/hooks/generic", enforcing.salve.base_url());
    for &index in &unacked {
        assert!(
            post_batch(&url, &batches[index]).await,
            "batch {index} refused after restart\n{}",
            enforcing.salve.stderr_tail()
        );
    }
    let all_acked = started.elapsed();
    eprintln!(
        "storm: kill 1 after {} of {} batches acknowledged; the other {} re-sent; all acknowledged after {:.1?}",
        acked_before_kill.len(),
        batches.len(),
        unacked.len(),
        all_acked
    );

    // Kill 2, mid-command of a non-idempotent run, a good way into the storm.
    wait_for_finished(&enforcing.salve, 300).await;
    peaks.push(kill_9_mid_command(&mut enforcing.salve, &host, "once", started).await);
    // The interrupted incident's escalation will be refused for now, so it is pending in
    // the outbox, and retried with backoff, at the next kill.
    capture.set_response_status(503);
    enforcing.salve.restart().await;

    // Kill 3, later on, while the escalation is refused, mid-command of an idempotent run.
    wait_for_finished(&enforcing.salve, 500).await;
    wait_until(
        Duration::from_secs(30),
        "an escalation refused by its channel",
        || async {
            capture
                .requests()
                .iter()
                .any(|r| r.status == 503)
                .then_some(())
        },
    )
    .await;
    peaks.push(kill_9_mid_command(&mut enforcing.salve, &host, "idempotent", started).await);
    capture.set_response_status(200);
    enforcing.salve.restart().await;
    let salve = &enforcing.salve;

    wait_for_all_final(salve, Duration::from_secs(150)).await;
    let all_final = started.elapsed();
    let history = wait_for_every_escalation_delivered(salve).await;
    peaks.push(peak_rss(salve.pid().unwrap()));
    let runs = host.file_lines("/tmp/storm-runs").await;
    let overlaps = host.file_lines("/tmp/storm-overlaps").await;

    let report = assert_storm(
        &history,
        &runs,
        &overlaps,
        &capture,
        3,
        true,
        chrono::Duration::zero(),
    );
    eprintln!(
        "storm: {report}; all final after {all_final:.1?}, whole test {:.1?}; peak RSS per salve process: {:?} MiB",
        started.elapsed(),
        peaks.iter().map(|b| b / (1024 * 1024)).collect::<Vec<_>>()
    );
    for (incarnation, peak) in peaks.iter().enumerate() {
        assert!(
            *peak <= MAX_PEAK_RSS_BYTES,
            "salve process {} peaked at {} MiB",
            incarnation + 1,
            peak / (1024 * 1024)
        );
    }
}

/// Waits until all the storm's incidents exist and every one is in a final state.
pub(crate) async fn wait_for_all_final(salve: &SalveProcess, deadline: Duration) {
    wait_until_every_saying(
        deadline,
        CLI_POLL,
        "all 1000 incidents in a final state",
        || async {
            let counts = state_counts(salve).await;
            if counts.values().sum::<usize>() == ALERTS && finished(&counts) == ALERTS {
                Ok(())
            } else {
                Err(format!("incidents by state: {counts:?}"))
            }
        },
    )
    .await;
}

/// Every interrupted incident escalated and delivered, and the outbox empty (one channel:
/// one `escalation_sent` per `escalation_queued`); returns the history then.
pub(crate) async fn wait_for_every_escalation_delivered(salve: &SalveProcess) -> Vec<Value> {
    wait_until_every_saying(
        Duration::from_secs(60),
        CLI_POLL,
        "every escalation to be delivered",
        || async {
            let history = full_history(salve).await;
            // On a timeout: which incidents still wait, and their journals.
            let pending: Vec<String> = history
                .iter()
                .filter(|i| {
                    let sent = events(i, "escalation_sent").len();
                    events(i, "escalation_queued").len() != sent
                        || (i["state"] == "interrupted" && sent == 0)
                })
                .map(|i| {
                    let journal: Vec<String> = i["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| format!("{} {}", e["at"], e["kind"]))
                        .collect();
                    format!(
                        "#{} {} owner {}: {}",
                        i["id"],
                        i["state"],
                        i["owner"],
                        journal.join(", ")
                    )
                })
                .collect();
            if pending.is_empty() {
                Ok(history)
            } else {
                Err(pending.join("\n"))
            }
        },
    )
    .await
}

/// Every incident with its journal, through the CLI.
pub(crate) async fn full_history(salve: &SalveProcess) -> Vec<Value> {
    let output = salve
        .run_cli(&["history", "--json", "--limit", &(2 * ALERTS).to_string()])
        .await;
    crate::support::parse_json_output("history --json", &output)
}

/// One remediation run from the journal: (start, end, alert number).
type Run = (DateTime<Utc>, DateTime<Utc>, usize);

/// The storm's promises, checked on the journal and on the target. Returns a summary.
pub(crate) fn assert_storm(
    history: &[Value],
    target_runs: &[String],
    overlaps: &[String],
    capture: &WebhookCapture,
    kills: usize,
    cut_both_kinds: bool,
    journal_slack: chrono::Duration,
) -> String {
    // On the target: no run ever found its host's lock taken.
    assert!(
        overlaps.is_empty(),
        "two remediations at once on one host, seen on the target: {overlaps:?}"
    );
    // What really ran, per alert, from the target's own log.
    let mut ran: BTreeMap<usize, usize> = BTreeMap::new();
    for line in target_runs {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let n: usize = fields[1].parse().unwrap();
        assert_eq!(
            fields[2],
            format!("host{}", n % HOSTS),
            "ran on the wrong host: {line}"
        );
        *ran.entry(n).or_default() += 1;
    }

    // Every acknowledged alert is exactly one incident.
    assert_eq!(
        history.len(),
        ALERTS,
        "incidents for {ALERTS} distinct alerts"
    );
    let mut by_n: BTreeMap<usize, &Value> = BTreeMap::new();
    for incident in history {
        let n: usize = incident["labels"]["n"].as_str().unwrap().parse().unwrap();
        assert!(
            by_n.insert(n, incident).is_none(),
            "alert {n} has two incidents"
        );
    }
    assert_eq!(by_n.len(), ALERTS);

    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let (mut resumed, mut reruns, mut held) = (0, 0, 0);
    let mut cut_was: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs_by_host: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for (&n, &incident) in &by_n {
        let state = incident["state"].as_str().unwrap();
        *states.entry(state.to_owned()).or_default() += 1;
        let idempotent = incident["plan"]["idempotent"] == true;
        let started = events(incident, "step_started").len();
        let queued = events(incident, "escalation_queued");
        let sent = events(incident, "escalation_sent");
        for cut in events(incident, "interrupted")
            .into_iter()
            .chain(events(incident, "resumed"))
        {
            *cut_was
                .entry(cut["was"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        resumed += events(incident, "resumed").len();
        held += events(incident, "host_held").len();
        match state {
            "succeeded" => {
                assert!(
                    queued.is_empty() && incident["escalated_at"].is_null(),
                    "a succeeded incident was escalated: {incident:#}"
                );
                assert!(
                    ran.get(&n).copied().unwrap_or(0) >= 1,
                    "alert {n} succeeded but never ran on the target: {incident:#}"
                );
            }
            "interrupted" => {
                assert!(
                    !idempotent,
                    "an idempotent incident was not re-run: {incident:#}"
                );
                assert!(!incident["escalated_at"].is_null(), "{incident:#}");
                assert_eq!(queued.len(), 1, "escalated once: {incident:#}");
                assert_eq!(queued[0]["reason"], "interrupted");
                assert_eq!(queued[0]["channels"], json!(["oncall-email"]));
                assert_eq!(sent.len(), 1, "delivered once: {incident:#}");
            }
            other => panic!("alert {n} ended {other}, not succeeded or interrupted: {incident:#}"),
        }
        if idempotent {
            reruns += started.saturating_sub(1);
        } else {
            assert!(
                started <= 1,
                "a non-idempotent command was started twice: {incident:#}"
            );
        }
        // The target never ran a command the journal does not show starting.
        let on_target = ran.get(&n).copied().unwrap_or(0);
        assert!(
            on_target <= started,
            "alert {n} ran {on_target} time(s), journaled {started}: {incident:#}"
        );

        // Each run, from its start to its end or to the crash recovery that ended it.
        let host = incident["plan"]["target"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut open = None;
        for event in incident["events"].as_array().unwrap() {
            let kind = event["kind"].as_str().unwrap();
            if kind == "remediation_started" {
                assert!(open.is_none(), "a run started inside a run: {incident:#}");
                open = Some(time_of(event));
            } else if RUN_ENDS.contains(&kind)
                && let Some(start) = open.take()
            {
                runs_by_host
                    .entry(host.clone())
                    .or_default()
                    .push((start, time_of(event), n));
            }
        }
        assert!(open.is_none(), "a run never ended: {incident:#}");
    }
    // In the journal: one host's runs, crash-cut ones included, never overlap.
    for (host, runs) in &mut runs_by_host {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0 + journal_slack,
                "two runs at once on {host} in the journal: alert {} {:?} and alert {} {:?}",
                pair[0].2,
                (pair[0].0, pair[0].1),
                pair[1].2,
                (pair[1].0, pair[1].1)
            );
        }
    }

    // Deliveries the channel accepted: every interrupted incident's, and nothing else.
    // Delivery is at-least-once (a crash between the channel's 2xx and the store's record
    // re-sends), so a duplicate is allowed for each of the three kills, no more.
    // A burst of escalations for one reason arrives as a digest listing its incidents.
    let mut accepted: BTreeMap<i64, usize> = BTreeMap::new();
    for request in capture.requests().iter().filter(|r| r.status == 200) {
        let body = request.json();
        let ids: Vec<i64> = if body["digest"] == true {
            body["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["incident_id"].as_i64().unwrap())
                .collect()
        } else {
            vec![body["incident_id"].as_i64().unwrap()]
        };
        for id in ids {
            *accepted.entry(id).or_default() += 1;
        }
    }
    let interrupted: BTreeSet<i64> = history
        .iter()
        .filter(|i| i["state"] == "interrupted")
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        accepted.keys().copied().collect::<BTreeSet<_>>(),
        interrupted,
        "accepted escalations vs interrupted incidents"
    );
    let duplicates: usize = accepted.values().map(|count| count - 1).sum();
    assert!(
        duplicates <= kills,
        "{duplicates} duplicate deliveries for {kills} kill(s)"
    );
    assert!(
        !interrupted.is_empty() && (resumed > 0 || !cut_both_kinds),
        "the kills cut no non-idempotent run ({}) or no idempotent one ({resumed})",
        interrupted.len()
    );

    format!(
        "states {states:?}; crash recovery found runs {cut_was:?}, re-ran {reruns} idempotent command(s) \
         ({resumed} resumed), held {held} incident(s) for a cut command; {} escalation(s) accepted, \
         {duplicates} duplicate(s); {} command(s) ran on the target",
        accepted.values().sum::<usize>(),
        target_runs.len()
    )
}
