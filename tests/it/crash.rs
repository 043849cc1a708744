//! Acknowledged means durable: `kill -9` right after a 2xx loses nothing, and the
//! restarted engine plans what was journaled but not yet planned.

use std::time::Duration;

use serde_json::json;

use crate::support::{BEARER, SalveConfig, on_both_stores, only, post_json, shipped_recipes};

on_both_stores! {
async fn kill_9_right_after_2xx_keeps_the_incident(store: StoreKind) {
    let on_store = store.config().await;
    let mut salve = on_store(SalveConfig::standard()).start_with_shipped_recipes().await;
    let alert = json!({ "labels": {
        "alertname": "ServiceDown", "instance": "web2:9100", "service": "postgresql"
    }});
    let response = post_json(
        &format!("{}/hooks/generic", salve.base_url()),
        &alert,
        &[BEARER],
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    // No wait of any kind between the acknowledgement and the kill.
    salve.kill9();

    salve.restart().await;
    let incidents = salve
        .wait_for_incidents("the acknowledged incident after restart", |all| {
            all.iter().any(|i| i["state"] == "dry_run")
        })
        .await;
    assert_eq!(incidents.len(), 1);
    let history = salve.history_json().await;
    let incident = only(&history, "ServiceDown");
    assert_eq!(incident["plan"]["target"]["name"], "web2");
    assert_eq!(
        incident["plan"]["commands"][0],
        "systemctl restart 'postgresql'"
    );
}
}

/// The SSH control dirs of killed salves do not pile up in the temp dir: the next start
/// removes those whose process is gone, and a clean stop removes its own.
#[tokio::test]
async fn control_dirs_of_dead_salves_are_removed_and_a_clean_stop_removes_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    // A PID that is gone: a child that exited and was reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let stale = tmp.path().join(format!("salve-{gone_pid}"));
    let alive = tmp.path().join(format!("salve-{}", std::process::id()));
    let unrelated = tmp.path().join("salve-notes");
    for dir in [&stale, &alive, &unrelated] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("left-behind"), "").unwrap();
    }
    let mut salve = SalveConfig::standard()
        .enforce()
        .known_hosts(&known_hosts)
        .salve()
        .recipes_dir(&shipped_recipes())
        .env("TMPDIR", tmp.path().to_str().unwrap())
        .start()
        .await;
    let own = tmp.path().join(format!("salve-{}", salve.pid().unwrap()));
    assert!(own.is_dir(), "salve's own control dir {own:?}");
    assert!(
        !stale.exists(),
        "the dead salve's control dir is still there"
    );
    assert!(
        alive.exists() && unrelated.exists(),
        "removed a dir it does not own"
    );

    let status = salve.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}\n{}", salve.stderr_tail());
    assert!(!own.exists(), "a clean stop left its control dir {own:?}");
}

mod mid_remediation {
    //! Crash safety during remediation: `kill -9` mid-command escalates `interrupted`
    //! once (or re-runs an idempotent recipe); SIGTERM answers 503, lets the running
    //! remediation finish, leaves queued ones resumable, and exits 0.

    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::support::{
        BEARER, Enforcing, Inventory, SalveProcess, SshHost, WebhookCapture, by_label, events,
        on_both_stores, wait_until,
    };

    async fn wait_for_steps_started(salve: &SalveProcess, count: usize) {
        wait_until(
            Duration::from_secs(20),
            "remediations to be running",
            || async {
                let history = salve.history_json().await;
                let running = history
                    .iter()
                    .filter(|i| !events(i, "step_started").is_empty())
                    .count();
                (running >= count).then_some(())
            },
        )
        .await;
    }

    on_both_stores! {
    async fn kill_9_mid_command_escalates_interrupted_once_and_reruns_idempotent(store: StoreKind) {
        let on_store = store.config().await;
        let first = SshHost::start().await;
        let second = SshHost::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
        let capture = WebhookCapture::start().await;
        let mut enforcing = Enforcing::builder(
            vec![
                Inventory::of("web1", &first),
                Inventory::of("web2", &second),
            ],
            &[&first, &second],
        )
        .config(|config| on_store(config.webhook_channel("oncall-email", &capture.url("/oncall"))))
        .start()
        .await;
        enforcing
            .salve
            .post_generic(json!({ "alerts": [
                { "labels": { "alertname": "Long", "instance": "web1:9100" } },
                { "labels": { "alertname": "LongIdempotent", "instance": "web2:9100" } },
            ]}))
            .await;
        wait_for_steps_started(&enforcing.salve, 2).await;
        enforcing.salve.kill9();
        enforcing.salve.restart().await;
        let salve = &enforcing.salve;

        // The re-run waits until the cut `sleep 3` is over for sure (~19 s, see
        // Remediator::hold_hosts), since nothing stopped it on the target.
        let history = salve.wait_for_final(2, Duration::from_secs(60)).await;
        let long = by_label(&history, "alertname", "Long");
        assert_eq!(long["state"], "interrupted", "{long:#}");
        assert_eq!(
            events(long, "step_started").len(),
            1,
            "a non-idempotent command ran twice"
        );
        let again = by_label(&history, "alertname", "LongIdempotent");
        assert_eq!(again["state"], "succeeded", "{again:#}");
        assert_eq!(
            events(again, "step_started").len(),
            2,
            "the idempotent recipe should run again"
        );
        assert_eq!(events(again, "host_held").len(), 1, "{again:#}");

        let posts: Vec<Value> = wait_until(
            Duration::from_secs(20),
            "the interrupted escalation",
            || async {
                let posts = capture.requests();
                (!posts.is_empty()).then(|| posts.iter().map(|p| p.json()).collect())
            },
        )
        .await;
        // Give a duplicate every chance to show up before counting.
        wait_until(Duration::from_secs(10), "the outbox to drain", || async {
            let history = salve.history_json().await;
            history
                .iter()
                .all(|i| events(i, "escalation_queued").len() == events(i, "escalation_sent").len())
                .then_some(())
        })
        .await;
        assert_eq!(capture.requests().len(), 1, "escalated once: {posts:#?}");
        assert_eq!(posts[0]["reason"], "interrupted");
    }
    }

    on_both_stores! {
    async fn sigterm_drains_503s_webhooks_finishes_running_work_and_exits_0(store: StoreKind) {
        let on_store = store.config().await;
        let host = SshHost::start().await;
        let mut enforcing = Enforcing::on(&host).config(on_store).start().await;
        enforcing
            .salve
            .post_generic(json!({ "alerts": [
                { "labels": { "alertname": "Long", "instance": "web1:9100", "n": "1" } },
                { "labels": { "alertname": "Long", "instance": "web1:9100", "n": "2" } },
            ]}))
            .await;
        wait_for_steps_started(&enforcing.salve, 1).await;
        let hook = format!("{}/hooks/generic", enforcing.salve.base_url());
        let pid = enforcing.salve.pid().expect("salve runs");
        // SIGTERM without waiting, so the webhook below lands while salve drains.
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let refused = wait_until(Duration::from_secs(10), "a 503 while draining", || async {
            let response = crate::support::http_client()
                .post(&hook)
                .header(BEARER.0, BEARER.1)
                .json(&json!({ "labels": { "alertname": "Late" } }))
                .send()
                .await
                .ok()?;
            Some(response.status().as_u16())
        })
        .await;
        assert_eq!(
            refused, 503,
            "webhooks must be refused (not acknowledged) while draining"
        );

        let exit = enforcing.salve.terminate(Duration::from_secs(40)).await;
        assert!(exit.success(), "salve exited {exit:?}");
        let history = enforcing.salve.run_cli(&["history", "--json"]).await;
        let history: Vec<Value> = serde_json::from_slice(&history.stdout).unwrap();
        let first = by_label(&history, "n", "1");
        assert_eq!(
            first["state"], "succeeded",
            "the running remediation should finish: {first:#}\n{}",
            enforcing.salve.stderr_tail()
        );
        let second = by_label(&history, "n", "2");
        assert_eq!(
            second["state"], "matched",
            "the queued one is left to resume: {second:#}"
        );
        assert!(history.iter().all(|i| i["labels"]["alertname"] != "Late"));

        enforcing.salve.restart().await;
        let history = enforcing
            .salve
            .wait_for_final(2, Duration::from_secs(30))
            .await;
        assert_eq!(by_label(&history, "n", "2")["state"], "succeeded");
    }
    }
}
