//! Several salve replicas on one PostgreSQL behave as one salve: the storm of `storm.rs`
//! (1,000 alerts for 100 hosts, one real sshd playing them all) through two clustered
//! Alertmanagers to three replicas, one killed with `kill -9` mid-command and one stopped
//! with SIGTERM. What must hold is checked on the target (its per-host lock and run log) and
//! in the journal, as for one salve; and the killed replica's runs are taken over within its
//! lease and a few seconds.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::storm::{
    ALERTS, BATCH, CLI_POLL, HOSTS, assert_storm, finished, slow_commands_running, state_counts,
    storm_alert, wait_for_all_final, wait_for_every_escalation_delivered,
};
use crate::support::{
    Alertmanager, Database, Enforcing, FINAL, Inventory, SalveProcess, SshHost, TOKEN,
    WebhookCapture, fresh_database, wait_until, wait_until_every, wait_until_every_saying,
};

/// The replicas' lease: short, so the takeover is seen soon; the test allows it and a few
/// seconds more (a heartbeat every third of the lease, a takeover pass after it).
const LEASE: Duration = Duration::from_secs(5);
const TAKEOVER_SLACK: Duration = Duration::from_secs(8);

/// The replica number (`replicas.id`) of the running salve process `salve`.
async fn replica_number(db: &Database, salve: &SalveProcess) -> i64 {
    let pid = salve.pid().expect("salve runs");
    let rows = db
        .query(&format!(
            "SELECT id FROM replicas WHERE name LIKE '% pid {pid} on %' AND stopped_at IS NULL"
        ))
        .await;
    assert_eq!(rows.len(), 1, "replica rows for pid {pid}: {rows:?}");
    rows[0][0].parse().unwrap()
}

/// Running incidents (`remediating`/`verifying`) by owning replica.
async fn running_by_owner(db: &Database) -> Vec<(i64, i64)> {
    db.query(
        "SELECT owner, id FROM incidents WHERE state IN ('remediating', 'verifying') AND owner IS NOT NULL ORDER BY id",
    )
    .await
    .into_iter()
    .map(|row| (row[0].parse().unwrap(), row[1].parse().unwrap()))
    .collect()
}

#[tokio::test]
async fn three_replicas_behind_two_alertmanagers_remediate_a_storm_once_through_kill_9_and_sigterm()
{
    let started = Instant::now();
    let db = fresh_database().await;
    let host = SshHost::start().await;
    let capture = WebhookCapture::start().await;
    let names: Vec<String> = (0..HOSTS).map(|i| format!("host{i}")).collect();
    let inventory: Vec<Inventory> = names.iter().map(|n| Inventory::of(n, &host)).collect();
    // The limits of storm.rs (opened up: the guard tests cover rate limiting), split by the
    // replicas; the lease short.
    let first = Enforcing::builder(inventory, &[&host])
        .config(|config| {
            config
                .webhook_channel("oncall-email", &capture.url("/oncall"))
                .store_url(db.url())
                .store_setting("lease", &format!("\"{}s\"", LEASE.as_secs()))
                // A kill may interrupt more runs than `digest_after`; the rest then waits a
                // digest window, which the default (1 min) makes longer than the test's wait.
                .escalation_setting("digest_window", "\"5s\"")
        })
        .limit("remediations_per_minute", "30000")
        .limit("per_host_per_minute", "180")
        .limit("max_wait", "\"60s\"")
        .start()
        .await;
    let mut second = first.salve.replica().await;
    let mut third = first.salve.replica().await;
    let salves = [&first.salve, &second, &third];
    let urls: Vec<String> = salves
        .iter()
        .map(|salve| format!("{}/hooks/alertmanager", salve.base_url()))
        .collect();
    let (am_a, am_b) = Alertmanager::builder(&urls[0])
        .more_webhooks(&urls[1..])
        .bearer_token(TOKEN)
        .start_pair()
        .await;
    let numbers = [
        replica_number(&db, &first.salve).await,
        replica_number(&db, &second).await,
        replica_number(&db, &third).await,
    ];
    eprintln!("replicas: {numbers:?}, {:.1?} to start", started.elapsed());

    // Like Prometheus: every alert to both Alertmanagers, with the same startsAt.
    let starts_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let poster = tokio::spawn({
        let (a, b) = (am_a.url(), am_b.url());
        async move {
            for chunk in (0..ALERTS).collect::<Vec<_>>().chunks(BATCH) {
                let alerts: Vec<Value> =
                    chunk.iter().map(|&n| storm_alert(n, &starts_at)).collect();
                for base in [&a, &b] {
                    let response = crate::support::http_client()
                        .post(format!("{base}/api/v2/alerts"))
                        .json(&Value::Array(alerts.clone()))
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                }
            }
        }
    });

    // kill -9 the replica (not the first: its CLI reads the journal) running a slow
    // non-idempotent command on the target, while it runs there: the kill then surely cuts
    // a run that must not run again.
    let (victim, victim_runs) = wait_until(
        Duration::from_secs(120),
        "a slow non-idempotent command running on the target, run by the 2nd or 3rd replica",
        || async {
            let slow = slow_commands_running(&host, "once").await;
            if slow.is_empty() {
                return None;
            }
            let numbers_in = slow
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let owners: Vec<i64> = db
                .query(&format!(
                    "SELECT DISTINCT owner FROM incidents
                     WHERE state IN ('remediating', 'verifying') AND owner IS NOT NULL
                       AND labels::jsonb ->> 'alertname' = 'StormOnce'
                       AND labels::jsonb ->> 'n' IN ({numbers_in})"
                ))
                .await
                .into_iter()
                .map(|row| row[0].parse().unwrap())
                .collect();
            let running = running_by_owner(&db).await;
            [1, 2]
                .into_iter()
                .find(|&index| owners.contains(&numbers[index]))
                .map(|index| {
                    let runs: Vec<i64> = running
                        .iter()
                        .filter(|(owner, _)| *owner == numbers[index])
                        .map(|(_, id)| *id)
                        .collect();
                    (index, runs)
                })
        },
    )
    .await;
    let killed_at = Instant::now();
    if victim == 1 {
        second.kill9();
    } else {
        third.kill9();
    }
    eprintln!(
        "replicas: kill -9 of replica {} after {:.1?}, running incidents {victim_runs:?}",
        numbers[victim],
        started.elapsed()
    );
    // Within the lease and a few seconds, another replica has ended or re-queued each.
    let taken_over = wait_until_every(
        LEASE + TAKEOVER_SLACK + Duration::from_secs(20),
        Duration::from_millis(200),
        "the killed replica's runs taken over",
        || async {
            let still = running_by_owner(&db)
                .await
                .into_iter()
                .filter(|(owner, _)| *owner == numbers[victim])
                .count();
            (still == 0).then(|| killed_at.elapsed())
        },
    )
    .await;
    eprintln!("replicas: the killed replica's runs were taken over after {taken_over:.1?}");
    if taken_over > LEASE + TAKEOVER_SLACK {
        // What the survivors said about leases and takeovers, and the replicas' rows.
        let needles = ["replica", "lease", "took over", "takeover", "heartbeat"];
        let survivors: Vec<String> = [&first.salve, &second, &third]
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != victim)
            .map(|(index, salve)| {
                format!(
                    "replica {}:\n{}",
                    numbers[index],
                    salve.stderr_lines_with(&needles)
                )
            })
            .collect();
        let replicas = db
            .query(
                "SELECT id, heartbeat_at, lease_until, stopped_at, now() FROM replicas ORDER BY id",
            )
            .await;
        panic!(
            "takeover took {taken_over:?}, more than the lease {LEASE:?} and {TAKEOVER_SLACK:?}\n\
             replicas {replicas:?}\n{}",
            survivors.join("\n")
        );
    }

    // Later, SIGTERM the other of the two: it finishes its running work and leaves.
    wait_until_every(
        Duration::from_secs(180),
        CLI_POLL,
        "600 incidents finished",
        || async { (finished(&state_counts(&first.salve).await) >= 600).then_some(()) },
    )
    .await;
    let stopped = if victim == 1 { &mut third } else { &mut second };
    let status = stopped.terminate(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "SIGTERM: exit {status:?}\n{}",
        stopped.stderr_tail()
    );
    eprintln!(
        "replicas: SIGTERM of the other after {:.1?}",
        started.elapsed()
    );
    poster.await.unwrap();

    let salve = &first.salve;
    // All final, or a timeout that names what is not (rows, owners, the replicas' leases)
    // well before nextest's own limit for this test would kill it without a word.
    let finals = FINAL
        .iter()
        .map(|state| format!("'{state}'"))
        .collect::<Vec<_>>()
        .join(", ");
    wait_until_every_saying(
        Duration::from_secs(120),
        CLI_POLL,
        "every incident final",
        || async {
            let open = db
                .query(&format!(
                    "SELECT id, state, owner, target FROM incidents
                     WHERE state NOT IN ({finals}) ORDER BY id LIMIT 20"
                ))
                .await;
            if open.is_empty() {
                return Ok(());
            }
            let replicas = db
                .query("SELECT id, lease_until > now(), stopped_at FROM replicas ORDER BY id")
                .await;
            Err(format!(
                "not final (id, state, owner, target): {open:?}\nreplicas (id, live, stopped): {replicas:?}"
            ))
        },
    )
    .await;
    wait_for_all_final(salve, Duration::from_secs(30)).await;
    let all_final = started.elapsed();
    let history = wait_for_every_escalation_delivered(salve).await;
    let runs = host.file_lines("/tmp/storm-runs").await;
    let overlaps = host.file_lines("/tmp/storm-overlaps").await;
    // One kill -9 may re-send one page (at-least-once); the SIGTERM drains first.
    // In the journal a start is stamped when its replica asked to start it (before waiting
    // for the database), and a takeover's end when the taker began: under load those can
    // cross by a fraction of a second. The target's own lock above is the authority.
    let report = assert_storm(
        &history,
        &runs,
        &overlaps,
        &capture,
        1,
        false,
        chrono::Duration::seconds(1),
    );
    // The work was shared: a succeeded incident stays owned by the replica that ran it.
    let by_owner = db
        .query("SELECT owner, count(*) FROM incidents WHERE state = 'succeeded' GROUP BY owner ORDER BY owner")
        .await;
    eprintln!(
        "replicas: {report}; succeeded by replica {by_owner:?}; all final after {all_final:.1?}, whole test {:.1?}",
        started.elapsed()
    );
    assert!(
        by_owner.len() >= 2,
        "the runs were not shared between replicas: {by_owner:?}"
    );
}
