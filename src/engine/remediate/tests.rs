//! The remediator's state machine in-process: paused tokio time, a scripted runner instead
//! of SSH, the real SQLite store on a temp file. Each test drives the `Remediator` directly
//! (not the engine loop, whose idle poll is a timer that paused time would jump to while
//! the store answers) and reads the outcome from the journal and the runner's log, in tokio
//! time. The same behaviour on a real sshd is covered by `tests/it`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::alert::Alert;
use crate::config::LimitSettings;
use crate::incident::{Event, IncidentId, State};
use crate::metrics::Metrics;
use crate::plan::{
    Mode, Plan, PlanOutcome, PlannedBreaker, PlannedCheck, PlannedTarget, PlannedVerify,
};
use crate::recipe::shell::remote_lifetime;
use crate::ssh::{CommandOutput, CommandRunner, SshError};
use crate::store::sqlite::SqliteStore;
use crate::store::{IncidentDetail, Store};
use crate::verify::Verifier;

use super::{Bounds, Clock, RateLimits, Remediator};

/// How the scripted target answers a command.
#[derive(Debug, Clone)]
enum Reply {
    /// Exits with `code` after `after`.
    Exits { code: i32, after: Duration },
    /// Never answers: `run` gives up at its timeout, as the executor does.
    Hangs,
}

/// A `CommandRunner` that answers from a script (the first rule whose text the line
/// contains) and logs when each line arrived, in tokio time.
struct ScriptedRunner {
    rules: Vec<(&'static str, Reply)>,
    calls: Mutex<Vec<(Instant, String)>>,
}

/// What the scripted runner says `connect_bound` is (it bounds host holds).
const CONNECT_BOUND: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl CommandRunner for ScriptedRunner {
    async fn run(
        &self,
        _target: &PlannedTarget,
        line: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SshError> {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), line.to_owned()));
        let reply = self
            .rules
            .iter()
            .find(|(text, _)| line.contains(text))
            .map(|(_, reply)| reply.clone())
            .unwrap_or_else(|| panic!("no scripted reply for {line:?}"));
        match reply {
            Reply::Exits { code, after } if after < timeout => {
                tokio::time::sleep(after).await;
                Ok(CommandOutput {
                    exit_status: Some(code),
                    stdout: String::new(),
                    stderr: String::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    duration: after,
                })
            }
            Reply::Exits { .. } | Reply::Hangs => {
                tokio::time::sleep(timeout).await;
                Err(SshError::Timeout { after: timeout })
            }
        }
    }

    fn connect_bound(&self) -> Duration {
        CONNECT_BOUND
    }
}

impl ScriptedRunner {
    /// When each line containing `text` arrived, in order.
    fn arrivals(&self, text: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains(text))
            .map(|(at, _)| *at)
            .collect()
    }
}

fn exits(code: i32) -> Reply {
    Reply::Exits {
        code,
        after: Duration::ZERO,
    }
}

/// Wall-clock time at the start of each test: fixed, then moving only with tokio's clock.
fn origin() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .to_utc()
}

fn target(host: &str) -> PlannedTarget {
    PlannedTarget {
        name: host.to_owned(),
        address: "127.0.0.1".to_owned(),
        port: 22,
        user: None,
    }
}

/// An enforced plan of recipe `fix` running `commands` on `host`, with no checks or breaker.
fn plan(host: &str, commands: &[&str]) -> Plan {
    Plan {
        mode: Mode::Enforce,
        target: Some(target(host)),
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        command_timeout: Duration::from_secs(30),
        ..Plan::inert(
            PlanOutcome::Planned,
            Some("fix".into()),
            String::new(),
            vec![],
        )
    }
}

fn generous_limits() -> LimitSettings {
    LimitSettings {
        remediations_per_minute: 1000,
        per_host_per_minute: 1000,
        max_wait: Duration::from_secs(60),
    }
}

struct Bed {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    runner: Arc<ScriptedRunner>,
    remediator: Arc<Remediator>,
    alerts: u32,
}

impl Bed {
    /// Must be called inside the paused runtime: the clocks start now.
    fn new(rules: Vec<(&'static str, Reply)>, limits: LimitSettings) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_path(&dir.path().join("salve.db")).unwrap());
        let runner = Arc::new(ScriptedRunner {
            rules,
            calls: Mutex::new(Vec::new()),
        });
        let remediator = Remediator::new(
            store.clone(),
            runner.clone(),
            Verifier::new().unwrap(),
            Bounds {
                check_timeout: Duration::from_secs(10),
                max_parallel: 4,
                limits: RateLimits::new(&limits),
            },
            Metrics::new(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .with_clock(Clock::tokio_from(origin()));
        Bed {
            _dir: dir,
            store,
            runner,
            remediator: Arc::new(remediator),
            alerts: 0,
        }
    }

    /// A new firing alert planned with `plan`: a `matched` incident.
    async fn matched(&mut self, plan: &Plan) -> IncidentId {
        self.alerts += 1;
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "Broken".to_owned()),
            ("n".to_owned(), self.alerts.to_string()),
        ]);
        let alert = Alert {
            starts_at: Some(Utc::now()),
            ..Alert::firing_generic(labels)
        };
        let id = self.store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
        self.store
            .record_plan(id, State::Received, State::Matched, plan)
            .await
            .unwrap();
        id
    }

    /// One dispatch pass, then every worker it started, to the end.
    async fn run_matched(&self) {
        let mut tasks = JoinSet::new();
        self.remediator.dispatch(&mut tasks).await.unwrap();
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }

    async fn detail(&self, id: IncidentId) -> IncidentDetail {
        self.store.incident(id).await.unwrap().unwrap()
    }

    async fn state(&self, id: IncidentId) -> State {
        self.detail(id).await.incident.state
    }
}

#[tokio::test(start_paused = true)]
async fn checks_that_keep_failing_end_verify_failed_when_within_has_passed() {
    let mut bed = Bed::new(
        vec![("restart-it", exits(0)), ("is-it-up", exits(1))],
        generous_limits(),
    );
    let plan = Plan {
        verify: Some(PlannedVerify {
            within: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            checks: vec![PlannedCheck::Command {
                command: "is-it-up".into(),
                below: None,
                above: None,
            }],
        }),
        ..plan("web1", &["restart-it"])
    };
    let id = bed.matched(&plan).await;

    let started = Instant::now();
    bed.run_matched().await;

    assert_eq!(bed.state(id).await, State::VerifyFailed);
    // Polls at 0, 10, ..., 60 s: the seventh finds the window over.
    let polls = bed.runner.arrivals("is-it-up");
    let offsets: Vec<Duration> = polls.iter().map(|at| *at - started).collect();
    let expected: Vec<Duration> = (0..7).map(|n| Duration::from_secs(10 * n)).collect();
    assert_eq!(offsets, expected);
    let detail = bed.detail(id).await;
    let journaled_polls = detail
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::CheckPoll { passed: false, .. }))
        .count();
    assert_eq!(journaled_polls, 7);
    assert_eq!(
        detail.incident.reason.as_deref(),
        Some("checks still failing after 1m (7 polls): is-it-up: exited 1")
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_at_max_runs_and_lets_runs_again_once_they_left_the_window() {
    let mut bed = Bed::new(vec![("restart-it", exits(0))], generous_limits());
    let plan = Plan {
        breaker: Some(PlannedBreaker {
            max_runs: 3,
            window: Duration::from_secs(600),
            key: String::new(),
        }),
        ..plan("web1", &["restart-it"])
    };
    for _ in 0..3 {
        let id = bed.matched(&plan).await;
        bed.run_matched().await;
        assert_eq!(bed.state(id).await, State::Succeeded);
        tokio::time::advance(Duration::from_secs(60)).await;
    }
    // 3 runs in the last 10 minutes (at 0, 1 and 2 min; now 3 min).
    let fourth = bed.matched(&plan).await;
    bed.run_matched().await;
    assert_eq!(bed.state(fourth).await, State::BreakerOpen);
    let runs = bed
        .detail(fourth)
        .await
        .events
        .into_iter()
        .find_map(|e| match e.event {
            Event::BreakerOpen { runs, .. } => Some(runs),
            _ => None,
        });
    assert_eq!(runs.map(|runs| runs.len()), Some(3));

    // 10 min after the first run, it has left the window: 2 runs counted, one more may go.
    tokio::time::advance(Duration::from_secs(7 * 60 + 1)).await;
    let fifth = bed.matched(&plan).await;
    bed.run_matched().await;
    assert_eq!(bed.state(fifth).await, State::Succeeded);
    let started_at = bed
        .detail(fifth)
        .await
        .events
        .into_iter()
        .find_map(|e| matches!(e.event, Event::RemediationStarted { .. }).then_some(e.at));
    assert_eq!(
        started_at,
        Some(origin() + chrono::Duration::seconds(10 * 60 + 1))
    );
    // Now 3 runs in the window again (at 1, 2 and 10 min): open.
    let sixth = bed.matched(&plan).await;
    bed.run_matched().await;
    assert_eq!(bed.state(sixth).await, State::BreakerOpen);
    assert_eq!(bed.runner.arrivals("restart-it").len(), 4);
}

/// Two units on one host under one recipe whose breaker key is the unit: the one that
/// keeps failing verification opens its own breaker, the other still restarts.
#[tokio::test(start_paused = true)]
async fn a_flapping_unit_opens_only_its_own_breaker_key() {
    let mut bed = Bed::new(
        vec![
            ("restart flappy", exits(0)),
            ("restart steady", exits(0)),
            ("is-up flappy", exits(1)),
            ("is-up steady", exits(0)),
        ],
        generous_limits(),
    );
    let unit = |name: &str| Plan {
        verify: Some(PlannedVerify {
            within: Duration::from_secs(10),
            interval: Duration::from_secs(5),
            checks: vec![PlannedCheck::Command {
                command: format!("is-up {name}"),
                below: None,
                above: None,
            }],
        }),
        breaker: Some(PlannedBreaker {
            max_runs: 2,
            window: Duration::from_secs(600),
            key: format!("web1/{name}"),
        }),
        ..plan("web1", &[&format!("restart {name}")])
    };
    for _ in 0..2 {
        let id = bed.matched(&unit("flappy")).await;
        bed.run_matched().await;
        assert_eq!(bed.state(id).await, State::VerifyFailed);
    }
    let third = bed.matched(&unit("flappy")).await;
    bed.run_matched().await;
    assert_eq!(bed.state(third).await, State::BreakerOpen);
    let detail = bed.detail(third).await;
    assert!(detail.events.iter().any(|e| matches!(
        &e.event,
        Event::BreakerOpen { key: Some(key), runs, .. } if key == "web1/flappy" && runs.len() == 2
    )));
    let reason = detail.incident.reason.unwrap();
    assert!(reason.contains("breaker key \"web1/flappy\""), "{reason}");

    let steady = bed.matched(&unit("steady")).await;
    bed.run_matched().await;
    assert_eq!(bed.state(steady).await, State::Succeeded);
    assert_eq!(bed.runner.arrivals("restart flappy").len(), 2);
    assert_eq!(bed.runner.arrivals("restart steady").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cut_command_holds_its_host_until_it_surely_ended_then_the_next_incident_runs() {
    let mut bed = Bed::new(
        vec![("hanging-fix", Reply::Hangs), ("restart-it", exits(0))],
        generous_limits(),
    );
    let cut = bed.matched(&plan("web1", &["hanging-fix"])).await;
    let next = bed.matched(&plan("web1", &["restart-it"])).await;

    bed.run_matched().await;

    assert_eq!(bed.state(cut).await, State::Failed);
    assert_eq!(bed.state(next).await, State::Succeeded);
    // The hanging command was sent at t0 and the target's backstop ends it at the latest
    // a connect plus its lifetime later: the next command on web1 is sent exactly then.
    let hung_at = bed.runner.arrivals("hanging-fix")[0];
    let surely_over = hung_at + CONNECT_BOUND + remote_lifetime(Duration::from_secs(30));
    let runs = bed.runner.arrivals("restart-it");
    assert_eq!(runs.len(), 1);
    let web1_run = runs[0];
    assert!(
        web1_run >= surely_over && web1_run - surely_over < Duration::from_secs(1),
        "next command {:?} after the cut one, hold ends {:?} after",
        web1_run - hung_at,
        surely_over - hung_at
    );
    let waited = bed
        .detail(next)
        .await
        .events
        .into_iter()
        .find_map(|e| match e.event {
            Event::HostHeld { host, wait, .. } => Some((host, wait)),
            _ => None,
        });
    let (host, wait) = waited.expect("the next incident journaled host_held");
    assert_eq!(host, "web1");
    // Held from the moment the cut command's timeout (30 s) gave up.
    let expected = surely_over - (hung_at + Duration::from_secs(30));
    assert!(
        wait <= expected && expected - wait < Duration::from_secs(1),
        "{wait:?} vs {expected:?}"
    );
}

/// Limits that allow one remediation per host per minute, waiting up to `max_wait`.
fn one_per_host_per_minute(max_wait: Duration) -> LimitSettings {
    LimitSettings {
        remediations_per_minute: 1000,
        per_host_per_minute: 1,
        max_wait,
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_that_arrives_within_max_wait_runs_the_incident_after_the_wait() {
    let mut bed = Bed::new(
        vec![("restart-it", exits(0))],
        one_per_host_per_minute(Duration::from_secs(90)),
    );
    let first = bed.matched(&plan("web1", &["restart-it"])).await;
    let second = bed.matched(&plan("web1", &["restart-it"])).await;

    bed.run_matched().await;

    assert_eq!(bed.state(first).await, State::Succeeded);
    assert_eq!(bed.state(second).await, State::Succeeded);
    let runs = bed.runner.arrivals("restart-it");
    let gap = runs[1] - runs[0];
    assert!(
        gap >= Duration::from_secs(60) && gap < Duration::from_secs(61),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_token_within_max_wait_is_rate_limited_after_max_wait() {
    let mut bed = Bed::new(
        vec![("restart-it", exits(0))],
        one_per_host_per_minute(Duration::from_secs(45)),
    );
    let first = bed.matched(&plan("web1", &["restart-it"])).await;
    let second = bed.matched(&plan("web1", &["restart-it"])).await;

    let started = Instant::now();
    bed.run_matched().await;

    assert_eq!(bed.state(first).await, State::Succeeded);
    assert_eq!(bed.state(second).await, State::RateLimited);
    assert_eq!(started.elapsed(), Duration::from_secs(45));
    assert_eq!(bed.runner.arrivals("restart-it").len(), 1);
    assert_eq!(
        bed.detail(second).await.incident.reason.as_deref(),
        Some(
            "remediation rate limit (1000/min overall, 1/min per host) still exhausted after waiting 45s; not run"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn the_overall_bucket_makes_another_host_wait_for_its_token() {
    let mut bed = Bed::new(
        vec![("restart-it", exits(0))],
        LimitSettings {
            remediations_per_minute: 2,
            per_host_per_minute: 1000,
            max_wait: Duration::from_secs(60),
        },
    );
    // Two hosts take the burst of 2 (run on their own, so no other timer is pending
    // while they wait for the store: paused time would jump to it).
    for host in ["web1", "web2"] {
        bed.matched(&plan(host, &["restart-it"])).await;
    }
    bed.run_matched().await;
    assert_eq!(bed.runner.arrivals("restart-it").len(), 2);
    let third = bed.matched(&plan("web3", &["restart-it"])).await;

    let started = Instant::now();
    bed.run_matched().await;

    // One token every 30 s: web3, whose own bucket is full, waits for the overall one.
    assert_eq!(bed.state(third).await, State::Succeeded);
    let waited = bed.runner.arrivals("restart-it")[2] - started;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
}
