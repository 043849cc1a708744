//! The remediation stage: takes `matched` incidents, runs their commands on the target
//! over SSH (one incident at a time per host, first come first served; different hosts
//! in parallel up to a bound), then polls the recipe's checks until they all pass or
//! `within` ends. Every step and every poll is journaled; a command is journaled before
//! it starts and after it ends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use chrono::{DateTime, Utc};

use crate::alert::AlertStatus;
use crate::config::LimitSettings;
use crate::engine::CutCommand;
use crate::incident::event::{CommandRecord, StepEnd, VerifyWindow};
use crate::incident::{Event, Incident, IncidentId, State};
use crate::metrics::Metrics;
use crate::metrics::RecipeLabel;
use crate::plan::{Plan, PlannedTarget, PlannedVerify};
// The remote line and its lifetime are pure shell text (`recipe::shell`); re-exported here for
// the engine's other users.
use crate::recipe::shell::{remote_lifetime, remote_line};
use crate::ssh::{CommandOutput, Executor, SshError};
use crate::store::{BreakerLimit, RunGate, Store, StoreError};
use crate::verify::{CheckResult, Verifier};

/// Runs of a recipe without a `[breaker]` are still logged, over this window.
pub const UNBOUNDED_WINDOW: Duration = Duration::from_secs(3600);

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
    limits: RateLimits,
    /// Set at shutdown: workers finish the incident in hand and take no other.
    stopping: tokio_util::sync::CancellationToken,
    /// Wakes the engine when an incident ends (it may need escalating).
    wake: Arc<tokio::sync::Notify>,
    /// Per-host FIFO queues; a host has a worker task while its queue is non-empty.
    hosts: Mutex<HashMap<String, VecDeque<Incident>>>,
    /// Incidents queued or running, so a dispatch pass never takes one twice.
    in_flight: Mutex<HashSet<IncidentId>>,
    /// Hosts nothing may start on before the given time: a command the last process ran
    /// there may still be running (see `restore_holds`). Mirrors the store's holds.
    held: Mutex<HashMap<String, (Instant, String)>>,
    /// One async lock per host, taken by a remediation (from `begin_run` to its last
    /// check) and by the escalator's diagnostics (`host_turn`), so the two never overlap.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Arc<Metrics>,
}

/// Why a run stopped early, for the incident's reason.
struct StepFailure(String);

/// How remediations are bounded: checks, parallelism, rates.
pub struct Bounds {
    /// Bound for check commands (remediation commands use the recipe's timeout).
    pub check_timeout: Duration,
    /// Remediations running at once, across hosts.
    pub max_parallel: usize,
    pub limits: RateLimits,
}

impl Remediator {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<Executor>,
        verifier: Verifier,
        bounds: Bounds,
        metrics: Arc<Metrics>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Remediator {
        Remediator {
            store,
            executor,
            verifier,
            check_timeout: bounds.check_timeout,
            slots: Semaphore::new(bounds.max_parallel),
            limits: bounds.limits,
            stopping: tokio_util::sync::CancellationToken::new(),
            wake,
            hosts: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            held: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// At startup, before the engine runs: holds each host with a command cut by the last
    /// stop until that command is over for sure, and restores the holds earlier processes
    /// recorded (a crash loop must not forget them). Closing an SSH channel does not stop a
    /// command without a terminal, and a killed salve could not even close it, so the
    /// target's `timeout` backstop is the one bound: the command was sent at most a connect
    /// after its `step_started`, and is killed at the latest `remote_lifetime` after that.
    pub async fn restore_holds(&self, cut: &[CutCommand]) -> Result<(), StoreError> {
        for command in cut {
            let until = self.surely_over(command.started_at, command.timeout);
            if until > Utc::now() {
                // Into the store only: the loop below loads every hold into memory.
                self.store
                    .hold_host(&command.host, until, HELD_AFTER_CRASH)
                    .await?;
            }
        }
        for hold in self.store.host_holds().await? {
            let left = (hold.until - Utc::now()).to_std().unwrap_or_default();
            tracing::warn!(
                host = %hold.host,
                wait = %humantime::format_duration(round_to_ms(left)),
                why = %hold.why,
                "holding a host: a command may still run there"
            );
            self.hold_in_memory(&hold.host, hold.until, &hold.why);
        }
        Ok(())
    }

    /// When a command sent at most a connect after `started_at`, with the recipe's
    /// `timeout`, has surely ended on the target: the target's `timeout` backstop kills it
    /// at the latest `remote_lifetime` after it started.
    fn surely_over(&self, started_at: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
        saturating_after(
            started_at,
            self.executor.connect_bound() + remote_lifetime(timeout),
        )
    }

    /// Keeps `host` free of new remediations until `until` (or later, if already held),
    /// in the store first, so a crash does not lose it.
    async fn hold(&self, host: &str, until: DateTime<Utc>, why: &str) -> Result<(), StoreError> {
        self.store.hold_host(host, until, why).await?;
        self.hold_in_memory(host, until, why);
        Ok(())
    }

    fn hold_in_memory(&self, host: &str, until: DateTime<Utc>, why: &str) {
        // Negative when it is over already.
        let Ok(left) = (until - Utc::now()).to_std() else {
            return;
        };
        let until = Instant::now() + left;
        let mut held = self.held.lock().expect("held lock");
        match held.get_mut(host) {
            Some(entry) if entry.0 >= until => {}
            Some(entry) => *entry = (until, why.to_owned()),
            None => {
                held.insert(host.to_owned(), (until, why.to_owned()));
            }
        }
    }

    /// Waits until nothing else runs on `host` (no remediation, no diagnostics) and
    /// keeps it so until the guard is dropped. First come, first served.
    pub async fn host_turn(&self, host: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.turns
                .lock()
                .expect("turns lock")
                .entry(host.to_owned())
                .or_default(),
        );
        lock.lock_owned().await
    }

    /// After a command that is not a remediation (diagnostics) was cut by its timeout:
    /// hold `host` until the target's backstop has surely ended it, as for a remediation.
    pub async fn hold_after_cut(
        &self,
        host: &str,
        started_at: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let until = self.surely_over(started_at, timeout);
        self.hold(host, until, HELD_AFTER_CUT).await
    }

    /// How long `host` is still held, and why, if it is.
    pub fn held_for(&self, host: &str) -> Option<(Duration, String)> {
        let held = self.held.lock().expect("held lock");
        let (until, why) = held.get(host)?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| (left, why.clone()))
    }

    /// Finish what is running, start nothing more.
    pub fn stop_taking_work(&self) {
        self.stopping.cancel();
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Queue every `matched` incident not already queued; returns how many were new.
    pub async fn dispatch(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        if self.stopping.is_cancelled() {
            return Ok(0);
        }
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
            let host = incident.target_name().to_owned();
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
        // The first incident was read by the dispatch pass that started this worker a
        // moment ago; the ones after it waited behind a run and are read again.
        let mut fresh = true;
        loop {
            let next = {
                let mut hosts = self.hosts.lock().expect("hosts lock");
                if self.stopping.is_cancelled() {
                    // The rest of the queue stays `matched` in the store: resumable.
                    if let Some(queue) = hosts.remove(&host) {
                        let mut in_flight = self.in_flight.lock().expect("in_flight lock");
                        for incident in queue {
                            in_flight.remove(&incident.id);
                        }
                    }
                    return;
                }
                match hosts.get_mut(&host).and_then(VecDeque::pop_front) {
                    Some(incident) => incident,
                    None => {
                        hosts.remove(&host);
                        return;
                    }
                }
            };
            let id = next.id;
            if let Err(e) = self.remediate(next, std::mem::take(&mut fresh)).await {
                // The store failed mid-run; the incident stays in its last journaled
                // state for the operator (and, later, crash recovery) to see.
                tracing::error!(incident = %id, host = %host, error = %e, "remediation not recorded");
            }
            self.in_flight.lock().expect("in_flight lock").remove(&id);
        }
    }

    async fn resolved_before_run(&self, id: IncidentId) -> Result<(), StoreError> {
        let reason = "the alert resolved before its remediation started; nothing was run";
        self.finish(
            id,
            State::Matched,
            Event::ResolvedBeforeRun {
                reason: reason.into(),
            },
        )
        .await
    }

    /// Runs one incident. `fresh`: it was read from the store just now, so it is not read
    /// again before `begin_run` (which checks the state and the alert itself, in its
    /// transaction).
    async fn remediate(&self, incident: Incident, fresh: bool) -> Result<(), StoreError> {
        let id = incident.id;
        let host = incident.target_name();
        let held = self.held_for(host);
        if let Some((wait, why)) = &held {
            self.store
                .append_event(
                    id,
                    Event::HostHeld {
                        host: host.to_owned(),
                        wait: *wait,
                        why: why.clone(),
                    },
                )
                .await?;
            tokio::time::sleep(*wait).await;
            if self.stopping.is_cancelled() {
                // Not started: it stays `matched` for the next process.
                return Ok(());
            }
        }
        // Re-read: while it waited its turn the alert may have resolved, or another
        // replica may have taken it.
        let current = if fresh && held.is_none() {
            incident
        } else {
            let Some(current) = self.store.incident(id).await? else {
                return Ok(());
            };
            current.incident
        };
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
                    Event::Failed {
                        reason: "planned without a target; nothing was run".into(),
                    },
                )
                .await;
        };
        if current.alert_status == AlertStatus::Resolved {
            match self.resolved_before_run(id).await {
                // It fired again since it was read: it runs after all.
                Err(StoreError::AlertFiring(_)) => {}
                done => return done,
            }
        }

        // Rate limits first (without holding a slot other hosts could use), then a slot,
        // then the breaker, which records the run in the same transaction it checks.
        if let Err(waited) = self.limits.wait(&target.name).await {
            let reason = format!(
                "remediation rate limit ({}) still exhausted after waiting {}; not run",
                self.limits.describe(),
                humantime::format_duration(waited)
            );
            return self
                .finish(id, State::Matched, Event::RateLimited { reason })
                .await;
        }
        // No diagnostics run on the host from here to the last check.
        let _turn = self.host_turn(&target.name).await;
        // Diagnostics cut by their timeout while this waited for its turn hold the host.
        if let Some((wait, why)) = self.held_for(&target.name) {
            self.store
                .append_event(
                    id,
                    Event::HostHeld {
                        host: target.name.clone(),
                        wait,
                        why,
                    },
                )
                .await?;
            tokio::time::sleep(wait).await;
        }
        let _slot = self.slots.acquire().await.expect("semaphore never closed");
        let recipe = plan.recipe.clone().unwrap_or_default();
        let limit = BreakerLimit {
            max_runs: plan.breaker.as_ref().map(|b| b.max_runs),
            window: plan
                .breaker
                .as_ref()
                .map(|b| b.window)
                .unwrap_or(UNBOUNDED_WINDOW),
        };
        // The exact lines sent, each rendered once: journaled before it runs, then run.
        let executed: Vec<String> = plan
            .commands
            .iter()
            .map(|command| remote_line(command, plan.sudo, plan.command_timeout))
            .collect();
        // The store decides in its own transactions: resolved → not started; and closing it
        // as resolved is refused if it fired again in between, so then it starts after all.
        let gate = loop {
            let gate = match self
                .store
                .begin_run(
                    id,
                    &recipe,
                    &target.name,
                    limit,
                    Event::RemediationStarted {
                        target: target.clone(),
                        steps: plan.commands.len(),
                        sudo: plan.sudo,
                    },
                    plan.commands
                        .first()
                        .map(|command| step_started(0, command, &executed[0])),
                )
                .await
            {
                Ok(gate) => gate,
                // Another replica (or a SIGTERM drain's recovery) took it meanwhile.
                Err(StoreError::StateConflict { found, .. }) => {
                    tracing::debug!(incident = %id, state = %found, "not started: no longer matched");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if gate != RunGate::AlertResolved {
                break gate;
            }
            match self.resolved_before_run(id).await {
                Err(StoreError::AlertFiring(_)) => continue,
                done => return done,
            }
        };
        if let RunGate::BreakerOpen { runs } = gate {
            let reason = format!(
                "circuit breaker open: {} already ran {} time(s) on {} in the last {} (max_runs {}); not run",
                recipe,
                runs.len(),
                target.name,
                humantime::format_duration(limit.window),
                limit.max_runs.unwrap_or_default()
            );
            self.metrics
                .breaker_open
                .get_or_create(&RecipeLabel {
                    recipe: recipe.clone(),
                })
                .set(1);
            return self
                .finish(id, State::Matched, Event::BreakerOpen { runs, reason })
                .await;
        }
        tracing::info!(incident = %id, recipe = plan.recipe.as_deref().unwrap_or(""), target = %target.name, "remediation started");

        if let Err(StepFailure(reason)) = self.run_steps(id, &plan, &executed, &target).await? {
            return self
                .finish(id, State::Remediating, Event::Failed { reason })
                .await;
        }

        let Some(verify) = &plan.verify else {
            self.store
                .transition(
                    id,
                    State::Remediating,
                    State::Verifying,
                    None,
                    Event::VerifyStarted {
                        checks: 0,
                        window: None,
                    },
                )
                .await?;
            return self
                .finish(
                    id,
                    State::Verifying,
                    Event::Succeeded {
                        results: None,
                        reason: "commands succeeded; the recipe defines no checks".into(),
                    },
                )
                .await;
        };
        self.store
            .transition(
                id,
                State::Remediating,
                State::Verifying,
                None,
                Event::VerifyStarted {
                    checks: verify.checks.len(),
                    window: Some(VerifyWindow {
                        within: verify.within,
                        interval: verify.interval,
                    }),
                },
            )
            .await?;
        self.verify(id, verify, &target).await
    }

    /// Runs the commands in order; the first that fails stops the run.
    async fn run_steps(
        &self,
        id: IncidentId,
        plan: &Plan,
        executed: &[String],
        target: &PlannedTarget,
    ) -> Result<Result<(), StepFailure>, StoreError> {
        for (index, (command, executed)) in plan.commands.iter().zip(executed).enumerate() {
            // The first step's `step_started` was committed with `begin_run`.
            if index > 0 {
                self.store
                    .append_event(id, step_started(index, command, executed))
                    .await?;
            }
            let (started, started_at) = (Instant::now(), Utc::now());
            let outcome = self
                .executor
                .run(target, executed, plan.command_timeout)
                .await;
            self.metrics
                .ssh_command_duration
                .observe(started.elapsed().as_secs_f64());
            if matches!(
                outcome,
                Err(SshError::Timeout { .. } | SshError::Session(_))
            ) {
                // salve stopped waiting, but the command may go on until the target's
                // backstop ends it: nothing else starts on this host before then.
                let until = self.surely_over(started_at, plan.command_timeout);
                self.hold(&target.name, until, HELD_AFTER_CUT).await?;
            }
            let (end, failure) =
                step_end(index + 1, command, target, plan.command_timeout, &outcome);
            let finished = Event::StepFinished {
                step: index + 1,
                command: command.clone(),
                end,
            };
            self.store.append_event(id, finished).await?;
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
                    Event::CheckPoll {
                        poll,
                        passed,
                        results: results.clone(),
                    },
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
                        Event::Succeeded {
                            results: Some(results),
                            reason,
                        },
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
                        Event::VerifyFailed { results, reason },
                    )
                    .await;
            }
            tokio::time::sleep(verify.interval.min(deadline - now)).await;
        }
    }

    /// Moves `id` from `from` to the final state `ending` names, journaling `ending`.
    async fn finish(&self, id: IncidentId, from: State, ending: Event) -> Result<(), StoreError> {
        let (to, reason) = match &ending {
            Event::Succeeded { reason, .. } => (State::Succeeded, reason.clone()),
            Event::Failed { reason } => (State::Failed, reason.clone()),
            Event::VerifyFailed { reason, .. } => (State::VerifyFailed, reason.clone()),
            Event::BreakerOpen { reason, .. } => (State::BreakerOpen, reason.clone()),
            Event::RateLimited { reason } => (State::RateLimited, reason.clone()),
            Event::ResolvedBeforeRun { reason } => (State::ResolvedBeforeRun, reason.clone()),
            other => unreachable!("finish is given a final event, not {other:?}"),
        };
        self.store
            .transition(id, from, to, Some(reason.clone()), ending)
            .await?;
        self.metrics.incident_outcome(to);
        if let Some(recipe) = recipe_of(&self.store, id).await {
            self.metrics.remediation(&recipe, to);
        }
        if let Ok((attempts, successes)) = self.store.remediation_totals().await
            && attempts > 0
        {
            self.metrics
                .success_ratio
                .set(successes as f64 / attempts as f64);
        }
        tracing::info!(incident = %id, state = to.as_str(), reason = %reason, "remediation finished");
        self.wake.notify_one();
        Ok(())
    }
}

async fn recipe_of(store: &Arc<dyn Store>, id: IncidentId) -> Option<String> {
    store
        .incident(id)
        .await
        .ok()
        .flatten()?
        .incident
        .plan?
        .recipe
}

/// The remediation rate limits: token buckets overall and per host (`governor`).
pub struct RateLimits {
    overall: governor::DefaultDirectRateLimiter,
    per_host: governor::DefaultKeyedRateLimiter<String>,
    settings: LimitSettings,
}

impl RateLimits {
    /// Buckets for `[limits]`, as configured (a 0 the config check refuses reads as 1).
    pub fn new(settings: &LimitSettings) -> RateLimits {
        use governor::{Quota, RateLimiter};
        use std::num::NonZeroU32;
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"));
        RateLimits {
            overall: RateLimiter::direct(quota(settings.remediations_per_minute)),
            per_host: RateLimiter::keyed(quota(settings.per_host_per_minute)),
            settings: settings.clone(),
        }
    }

    /// Wait for a token from both buckets, at most `max_wait`; `Err(waited)` if none came.
    /// The per-host token is taken first so a busy host does not drain the overall bucket
    /// while it waits.
    async fn wait(&self, host: &str) -> Result<(), Duration> {
        let started = Instant::now();
        let host = host.to_owned();
        let both = async {
            self.per_host.until_key_ready(&host).await;
            self.overall.until_ready().await;
        };
        tokio::time::timeout(self.settings.max_wait, both)
            .await
            .map_err(|_| started.elapsed())
    }

    fn describe(&self) -> String {
        format!(
            "{}/min overall, {}/min per host",
            self.settings.remediations_per_minute, self.settings.per_host_per_minute
        )
    }
}

/// Why a host is held (`host_held` events).
const HELD_AFTER_CRASH: &str =
    "a command salve ran on this host before it last stopped may still be running";
const HELD_AFTER_CUT: &str = "a command salve stopped waiting for (timeout or lost connection) may still be running on this host until the target's timeout backstop ends it";

/// The journal entry that must be committed before step `index` (0-based) is sent.
fn step_started(index: usize, command: &str, executed: &str) -> Event {
    Event::StepStarted {
        step: index + 1,
        command: command.to_owned(),
        executed: executed.to_owned(),
    }
}

/// `at + duration`, or the end of time where that does not fit.
fn saturating_after(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| at.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// How a step ended, for its `step_finished`, and the run's failure reason if it failed.
fn step_end(
    step: usize,
    command: &str,
    target: &PlannedTarget,
    timeout: Duration,
    outcome: &Result<CommandOutput, SshError>,
) -> (StepEnd, Option<String>) {
    match outcome {
        Ok(output) => {
            let record = CommandRecord {
                exit_status: output.exit_status,
                stdout: output.stdout.clone(),
                stderr: output.stderr.clone(),
                stdout_truncated: output.stdout_truncated,
                stderr_truncated: output.stderr_truncated,
                duration: output.duration,
            };
            if output.exit_status == Some(0) {
                return (StepEnd::Ok(record), None);
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
            (StepEnd::Failed(record), Some(reason))
        }
        Err(error) => {
            let (kind, reason): (fn(String) -> StepEnd, _) = match error {
                SshError::Timeout { .. } => (
                    |error| StepEnd::Timeout { error },
                    format!(
                        "step {step} timed out after {}: {command}",
                        humantime::format_duration(timeout)
                    ),
                ),
                SshError::Connect(why) => (
                    |error| StepEnd::Error { error },
                    format!(
                        "cannot reach {} ({}:{}): {why}",
                        target.name, target.address, target.port
                    ),
                ),
                other => (
                    |error| StepEnd::Error { error },
                    format!("step {step} could not run on {}: {other}", target.name),
                ),
            };
            (kind(error.to_string()), Some(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (record, failure) = step_end(1, "true", &t, timeout, &output(0, ""));
        assert!(matches!(record, StepEnd::Ok(_)), "{record:?}");
        assert!(failure.is_none());

        let (_, failure) = step_end(
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

        let (record, failure) = step_end(
            1,
            "sleep 99",
            &t,
            timeout,
            &Err(SshError::Timeout { after: timeout }),
        );
        assert!(matches!(record, StepEnd::Timeout { .. }), "{record:?}");
        assert_eq!(failure.unwrap(), "step 1 timed out after 1m: sleep 99");

        let (_, failure) = step_end(
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
