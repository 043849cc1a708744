//! The remediation stage: takes `matched` incidents, runs their commands on the target
//! over SSH (one incident at a time per host, first come first served; different hosts
//! in parallel up to a bound), then polls the recipe's checks until they all pass or
//! `within` ends. Every step and every poll is journaled; a command is journaled before
//! it starts and after it ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::alert::AlertStatus;
use crate::incident::{Incident, IncidentId, State};
use crate::metrics::Metrics;
use crate::plan::{Plan, PlannedTarget, PlannedVerify};
use crate::recipe::shell_quote;
use crate::ssh::{CommandOutput, Executor, SshError};
use crate::store::{NewEvent, Store, StoreError};
use crate::verify::{CheckResult, Verifier};

/// How many `matched` incidents one dispatch pass takes from the store.
const DISPATCH_BATCH: usize = 1024;

pub struct Remediator {
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    verifier: Verifier,
    /// Bound for check commands (remediation commands use the recipe's timeout).
    check_timeout: Duration,
    /// Remediations running at once, across hosts.
    slots: Semaphore,
    /// Per-host FIFO queues; a host has a worker task while its queue is non-empty.
    hosts: Mutex<HashMap<String, VecDeque<Incident>>>,
    /// Incidents queued or running, so a dispatch pass never takes one twice.
    in_flight: Mutex<HashSet<IncidentId>>,
    metrics: Arc<Metrics>,
}

/// Why a run stopped early, for the incident's reason.
struct StepFailure(String);

impl Remediator {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<Executor>,
        verifier: Verifier,
        check_timeout: Duration,
        max_parallel: usize,
        metrics: Arc<Metrics>,
    ) -> Remediator {
        Remediator {
            store,
            executor,
            verifier,
            check_timeout,
            slots: Semaphore::new(max_parallel),
            hosts: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Queue every `matched` incident not already queued; returns how many were new.
    pub async fn dispatch(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        let waiting = self
            .store
            .incidents_in_state(State::Matched, DISPATCH_BATCH)
            .await?;
        let mut queued = 0;
        for incident in waiting {
            if !self
                .in_flight
                .lock()
                .expect("in_flight lock")
                .insert(incident.id)
            {
                continue;
            }
            queued += 1;
            let host = incident
                .plan
                .as_ref()
                .and_then(|plan| plan.target.as_ref())
                .map(|target| target.name.clone())
                .unwrap_or_default();
            let mut hosts = self.hosts.lock().expect("hosts lock");
            let start_worker = !hosts.contains_key(&host);
            hosts.entry(host.clone()).or_default().push_back(incident);
            if start_worker {
                let this = Arc::clone(self);
                tasks.spawn(async move { this.host_worker(host).await });
            }
        }
        Ok(queued)
    }

    /// Runs one host's queue in order until it is empty.
    async fn host_worker(self: Arc<Self>, host: String) {
        loop {
            let next = {
                let mut hosts = self.hosts.lock().expect("hosts lock");
                match hosts.get_mut(&host).and_then(VecDeque::pop_front) {
                    Some(incident) => incident,
                    None => {
                        hosts.remove(&host);
                        return;
                    }
                }
            };
            let id = next.id;
            {
                let _slot = self.slots.acquire().await.expect("semaphore never closed");
                if let Err(e) = self.remediate(next).await {
                    // The store failed mid-run; the incident stays in its last journaled
                    // state for the operator (and, later, crash recovery) to see.
                    tracing::error!(incident = %id, host = %host, error = %e, "remediation not recorded");
                }
            }
            self.in_flight.lock().expect("in_flight lock").remove(&id);
        }
    }

    async fn remediate(&self, incident: Incident) -> Result<(), StoreError> {
        let id = incident.id;
        // Re-read: while it waited its turn the alert may have resolved, or another
        // replica may have taken it.
        let Some(current) = self.store.incident(id).await? else {
            return Ok(());
        };
        let current = current.incident;
        if current.state != State::Matched {
            return Ok(());
        }
        let (Some(plan), Some(target)) = (
            current.plan.clone(),
            current.plan.as_ref().and_then(|p| p.target.clone()),
        ) else {
            return self
                .finish(
                    id,
                    State::Matched,
                    State::Failed,
                    "planned without a target; nothing was run".into(),
                    json!({}),
                )
                .await;
        };
        if current.alert_status == AlertStatus::Resolved {
            return self
                .finish(
                    id,
                    State::Matched,
                    State::ResolvedBeforeRun,
                    "the alert resolved before its remediation started; nothing was run".into(),
                    json!({}),
                )
                .await;
        }

        self.store
            .transition(
                id,
                State::Matched,
                State::Remediating,
                None,
                NewEvent::new(
                    "remediation_started",
                    json!({ "target": target, "steps": plan.commands.len(), "sudo": plan.sudo }),
                ),
            )
            .await?;
        tracing::info!(incident = %id, recipe = plan.recipe.as_deref().unwrap_or(""), target = %target.name, "remediation started");

        if let Err(StepFailure(reason)) = self.run_steps(id, &plan, &target).await? {
            return self
                .finish(id, State::Remediating, State::Failed, reason, json!({}))
                .await;
        }

        let Some(verify) = &plan.verify else {
            self.store
                .transition(
                    id,
                    State::Remediating,
                    State::Verifying,
                    None,
                    NewEvent::new("verify_started", json!({ "checks": 0 })),
                )
                .await?;
            return self
                .finish(
                    id,
                    State::Verifying,
                    State::Succeeded,
                    "commands succeeded; the recipe defines no checks".into(),
                    json!({}),
                )
                .await;
        };
        self.store
            .transition(
                id,
                State::Remediating,
                State::Verifying,
                None,
                NewEvent::new(
                    "verify_started",
                    json!({
                        "checks": verify.checks.len(),
                        "within": humantime::format_duration(verify.within).to_string(),
                        "interval": humantime::format_duration(verify.interval).to_string(),
                    }),
                ),
            )
            .await?;
        self.verify(id, verify, &target).await
    }

    /// Runs the commands in order; the first that fails stops the run.
    async fn run_steps(
        &self,
        id: IncidentId,
        plan: &Plan,
        target: &PlannedTarget,
    ) -> Result<Result<(), StepFailure>, StoreError> {
        for (index, command) in plan.commands.iter().enumerate() {
            let executed = remote_line(command, plan.sudo, plan.command_timeout);
            self.store
                .append_event(
                    id,
                    NewEvent::new(
                        "step_started",
                        json!({ "step": index + 1, "command": command, "executed": executed }),
                    ),
                )
                .await?;
            let outcome = self
                .executor
                .run(target, &executed, plan.command_timeout)
                .await;
            let (record, failure) =
                step_record(index + 1, command, target, plan.command_timeout, &outcome);
            self.store
                .append_event(id, NewEvent::new("step_finished", record))
                .await?;
            if let Some(reason) = failure {
                return Ok(Err(StepFailure(reason)));
            }
        }
        Ok(Ok(()))
    }

    /// Polls every check each `interval` until all pass in one poll (succeeded) or
    /// `within` has passed (verify_failed, with the last result of every check).
    async fn verify(
        &self,
        id: IncidentId,
        verify: &PlannedVerify,
        target: &PlannedTarget,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let deadline = started + verify.within;
        let mut poll = 0u32;
        loop {
            poll += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            // A poll never outlives `within` by more than one short bound.
            let bound = self
                .check_timeout
                .min(remaining.max(Duration::from_secs(1)));
            let results: Vec<CheckResult> = join_all(
                verify
                    .checks
                    .iter()
                    .map(|check| self.verifier.run(&self.executor, target, check, bound)),
            )
            .await;
            let passed = results.iter().all(|r| r.passed);
            self.store
                .append_event(
                    id,
                    NewEvent::new(
                        "check_poll",
                        json!({ "poll": poll, "passed": passed, "results": results }),
                    ),
                )
                .await?;
            if passed {
                let reason = format!(
                    "verified: all {} check(s) passed on poll {poll}, {} after the fix",
                    results.len(),
                    humantime::format_duration(round_to_ms(started.elapsed()))
                );
                return self
                    .finish(
                        id,
                        State::Verifying,
                        State::Succeeded,
                        reason,
                        json!({ "results": results }),
                    )
                    .await;
            }
            let now = Instant::now();
            if now >= deadline {
                let failing: Vec<String> = results
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| format!("{}: {}", r.check, r.detail))
                    .collect();
                let reason = format!(
                    "checks still failing after {} ({poll} polls): {}",
                    humantime::format_duration(verify.within),
                    failing.join("; ")
                );
                return self
                    .finish(
                        id,
                        State::Verifying,
                        State::VerifyFailed,
                        reason,
                        json!({ "results": results }),
                    )
                    .await;
            }
            tokio::time::sleep(verify.interval.min(deadline - now)).await;
        }
    }

    async fn finish(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        reason: String,
        mut detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        detail["reason"] = json!(reason);
        self.store
            .transition(
                id,
                from,
                to,
                Some(reason.clone()),
                NewEvent::new(to.as_str(), detail),
            )
            .await?;
        self.metrics.incident_outcome(to);
        tracing::info!(incident = %id, state = to.as_str(), reason = %reason, "remediation finished");
        Ok(())
    }
}

/// How long after salve gave up on a command the target's own `timeout` kills it.
const REMOTE_BACKSTOP: Duration = Duration::from_secs(5);

/// The line the target's shell runs for `command`. Closing an SSH channel does not kill a
/// process that has no terminal, so the target's coreutils `timeout` is a backstop: it
/// sends TERM shortly after salve stopped waiting, and KILL 5 s later. With `sudo`, the
/// whole thing runs under `sudo -n` (which never prompts: where a password would be needed
/// it fails at once), so the backstop can stop root processes too. The command is one
/// quoted word for `sh -c`, so its own quoting holds.
pub fn remote_line(command: &str, sudo: bool, timeout: Duration) -> String {
    let Ok(quoted) = shell_quote(command) else {
        // Rendered commands never contain NUL (the planner refuses it); keep the
        // impossible case safe rather than panic: it fails on the target.
        return "false".to_owned();
    };
    let seconds = timeout.as_secs().max(1) + REMOTE_BACKSTOP.as_secs();
    let bounded = format!("timeout -k 5 {seconds} sh -c {quoted}");
    if sudo {
        format!("sudo -n -- {bounded}")
    } else {
        bounded
    }
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// The journal record of a finished step, and the run's failure reason if it failed.
fn step_record(
    step: usize,
    command: &str,
    target: &PlannedTarget,
    timeout: Duration,
    outcome: &Result<CommandOutput, SshError>,
) -> (serde_json::Value, Option<String>) {
    match outcome {
        Ok(output) => {
            let ok = output.exit_status == Some(0);
            let record = json!({
                "step": step,
                "command": command,
                "outcome": if ok { "ok" } else { "failed" },
                "exit_status": output.exit_status,
                "stdout": output.stdout,
                "stderr": output.stderr,
                "stdout_truncated": output.stdout_truncated,
                "stderr_truncated": output.stderr_truncated,
                "duration_ms": output.duration.as_millis() as u64,
            });
            if ok {
                return (record, None);
            }
            let status = match output.exit_status {
                Some(code) => format!("exited {code}"),
                None => "was killed by a signal".to_owned(),
            };
            let mut reason = format!("step {step} {status}: {command}");
            if let Some(line) = output.stderr.lines().find(|l| !l.trim().is_empty()) {
                reason.push_str(&format!(" ({})", line.trim()));
            }
            if output.stderr.contains("a password is required") {
                reason.push_str(&format!(
                    "; sudo on {} needs a password: give the SSH user passwordless sudo for this recipe's commands",
                    target.name
                ));
            }
            (record, Some(reason))
        }
        Err(error) => {
            let (kind, reason) = match error {
                SshError::Timeout { .. } => (
                    "timeout",
                    format!(
                        "step {step} timed out after {}: {command}",
                        humantime::format_duration(timeout)
                    ),
                ),
                SshError::Connect(why) => (
                    "error",
                    format!(
                        "cannot reach {} ({}:{}): {why}",
                        target.name, target.address, target.port
                    ),
                ),
                other => (
                    "error",
                    format!("step {step} could not run on {}: {other}", target.name),
                ),
            };
            let record = json!({
                "step": step,
                "command": command,
                "outcome": kind,
                "error": error.to_string(),
            });
            (record, Some(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_lines_quote_the_command_as_one_word_under_a_backstop() {
        assert_eq!(
            remote_line("systemctl restart 'nginx'", true, Duration::from_secs(60)),
            r"sudo -n -- timeout -k 5 65 sh -c 'systemctl restart '\''nginx'\'''"
        );
        assert_eq!(
            remote_line(
                "df --output=pcent / | tail -n 1",
                false,
                Duration::from_millis(1500)
            ),
            "timeout -k 5 6 sh -c 'df --output=pcent / | tail -n 1'"
        );
    }

    fn target() -> PlannedTarget {
        PlannedTarget {
            name: "web1".into(),
            address: "127.0.0.1".into(),
            port: 22,
            user: None,
        }
    }

    fn output(code: i32, stderr: &str) -> Result<CommandOutput, SshError> {
        Ok(CommandOutput {
            exit_status: Some(code),
            stdout: String::new(),
            stderr: stderr.to_owned(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration: Duration::from_millis(4),
        })
    }

    #[test]
    fn failure_reasons_say_what_happened() {
        let t = target();
        let timeout = Duration::from_secs(60);
        let (record, failure) = step_record(1, "true", &t, timeout, &output(0, ""));
        assert_eq!(record["outcome"], "ok");
        assert!(failure.is_none());

        let (_, failure) = step_record(
            2,
            "sudo x",
            &t,
            timeout,
            &output(1, "sudo: a password is required\n"),
        );
        let failure = failure.unwrap();
        assert!(
            failure.starts_with("step 2 exited 1: sudo x (sudo: a password is required)"),
            "{failure}"
        );
        assert!(failure.contains("passwordless sudo"));

        let (record, failure) = step_record(
            1,
            "sleep 99",
            &t,
            timeout,
            &Err(SshError::Timeout { after: timeout }),
        );
        assert_eq!(record["outcome"], "timeout");
        assert_eq!(failure.unwrap(), "step 1 timed out after 1m: sleep 99");

        let (_, failure) = step_record(
            1,
            "true",
            &t,
            timeout,
            &Err(SshError::Connect("Host key verification failed.".into())),
        );
        assert_eq!(
            failure.unwrap(),
            "cannot reach web1 (127.0.0.1:22): Host key verification failed."
        );
    }
}
