//! The remediation stage: takes `matched` incidents, runs their commands on the target
//! over SSH (one incident at a time per host, first come first served; different hosts
//! in parallel up to a bound), then polls the recipe's checks until they all pass or
//! `within` ends. Every step and every poll is journaled; a command is journaled before
//! it starts and after it ends.
//!
//! `remediate` reads as the state machine: the gates (`gates.rs`: host hold, alert
//! resolved, pause (`pause.rs`), rate limit, slot, breaker) each admit the incident or
//! say why not, then the steps run (`steps.rs`), then the checks are polled
//! (`verification.rs`), then `finish` records the final state. Time comes from tokio's clock and `Clock` (`clock.rs`),
//! commands go through a `CommandRunner`, so the whole machine runs in-process in tests
//! (`tests.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::engine::CutCommand;
use crate::incident::{Event, Incident, IncidentId, State};
use crate::metrics::Metrics;
use crate::plan::PlannedTarget;
use crate::ssh::{CommandOutput, CommandRunner, SshError};
use crate::store::{Store, StoreError};
use crate::verify::Verifier;

mod approval;
mod clock;
mod gates;
mod holds;
mod pause;
mod rate;
mod silence;
mod steps;
#[cfg(test)]
mod tests;
mod verification;

pub use approval::{DEFAULT_APPROVAL_TIMEOUT, expire_due};
pub use clock::Clock;
pub use pause::PauseSettings;
pub use rate::RateLimits;
pub use silence::expire_orphan_silences;

use gates::{Admission, Admitted, Refusal};
use holds::{HELD_AFTER_CRASH, HELD_AFTER_CUT, HostHolds, surely_over};

/// Runs of a recipe without a `[breaker]` are still logged, over this window.
pub const UNBOUNDED_WINDOW: Duration = Duration::from_secs(3600);

/// How many `matched` incidents one dispatch pass takes from the store.
const DISPATCH_BATCH: usize = 1024;

/// A replica claims the queues of at most this many hosts per slot (`max_parallel`): enough
/// that a slot freed finds work queued, few enough that other replicas get hosts too.
const CLAIM_HOSTS_PER_SLOT: usize = 2;

pub struct Remediator {
    store: Arc<dyn Store>,
    /// Runs remediation steps, command checks and (for the escalator) diagnostics.
    runner: Arc<dyn CommandRunner>,
    verifier: Verifier,
    /// Bound for check commands (remediation commands use the recipe's timeout).
    check_timeout: Duration,
    /// Remediations running at once, across hosts.
    slots: Semaphore,
    /// Most hosts whose queues this replica claims at once (the rest are left to others).
    claim_hosts: usize,
    limits: RateLimits,
    /// Set at shutdown: workers finish the incident in hand and take no other.
    stopping: tokio_util::sync::CancellationToken,
    /// Wakes the engine when an incident ends (it may need escalating).
    wake: Arc<tokio::sync::Notify>,
    /// Queues, incidents in flight, holds and host turns, under one lock (never held
    /// across an `.await`).
    state: Mutex<RemediatorState>,
    metrics: Arc<Metrics>,
    /// Wall-clock time for what the store records (hold ends, breaker windows).
    clock: Clock,
    /// Alertmanager silences for the life of each fix (`silence.rs`), when configured.
    silences: Option<silence::FixSilences>,
    /// How long an approve-mode plan waits for a decision (`[approval] timeout`).
    approval_timeout: Duration,
    /// Maintenance windows and the fleet error budget (`pause.rs`).
    pauses: PauseSettings,
}

/// What the remediator keeps in memory between incidents.
#[derive(Default)]
struct RemediatorState {
    /// Per-host FIFO queues; a host has a worker task while its queue is non-empty.
    queues: HashMap<String, VecDeque<Incident>>,
    /// Incidents queued or running, so a dispatch pass never takes one twice.
    in_flight: HashSet<IncidentId>,
    /// Hosts nothing may start on yet: a command may still run there (see `holds.rs`).
    /// Mirrors the store's holds.
    holds: HostHolds,
    /// One async lock per host, taken by a remediation (from `begin_run` to its last
    /// check) and by the escalator's diagnostics (`host_turn`), so the two never overlap.
    turns: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// How recently the incident a host worker is about to run was read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Read by the dispatch pass that started the worker a moment ago: not read again
    /// before `begin_run` (which checks the state and the alert itself, in its transaction).
    JustRead,
    /// It waited behind another run (or a hold): read again, the alert may have resolved
    /// or another replica may have taken it.
    MayBeStale,
}

/// How remediations are bounded: checks, parallelism, rates.
pub struct Bounds {
    /// Bound for check commands (remediation commands use the recipe's timeout).
    pub check_timeout: Duration,
    /// Remediations running at once, across hosts.
    pub max_parallel: usize,
    pub limits: RateLimits,
}

impl Remediator {
    /// A remediator on the system clock (`with_clock` to change it).
    pub fn new(
        store: Arc<dyn Store>,
        runner: Arc<dyn CommandRunner>,
        verifier: Verifier,
        bounds: Bounds,
        metrics: Arc<Metrics>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Remediator {
        Remediator {
            store,
            runner,
            verifier,
            check_timeout: bounds.check_timeout,
            slots: Semaphore::new(bounds.max_parallel),
            claim_hosts: bounds
                .max_parallel
                .saturating_mul(CLAIM_HOSTS_PER_SLOT)
                .max(1),
            limits: bounds.limits,
            stopping: tokio_util::sync::CancellationToken::new(),
            wake,
            state: Mutex::new(RemediatorState::default()),
            metrics,
            clock: Clock::system(),
            pauses: PauseSettings::default(),
            silences: None,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }

    /// The same remediator, letting approve-mode plans wait `timeout` for a decision.
    pub fn with_approval_timeout(self, timeout: Duration) -> Remediator {
        Remediator {
            approval_timeout: timeout,
            ..self
        }
    }

    /// The same remediator, reading wall-clock time from `clock`.
    pub fn with_clock(self, clock: Clock) -> Remediator {
        Remediator { clock, ..self }
    }

    /// The same remediator, taking no new work once `stop` is cancelled (a child of the
    /// process's one shutdown token); `stop_taking_work` cancels it too.
    pub fn stopping_with(self, stop: tokio_util::sync::CancellationToken) -> Remediator {
        Remediator {
            stopping: stop,
            ..self
        }
    }

    fn state(&self) -> MutexGuard<'_, RemediatorState> {
        self.state.lock().expect("remediator state lock")
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
            if until > self.clock.now_utc() {
                // Into the store only: the loop below loads every hold into memory.
                self.store
                    .hold_host(&command.host, until, HELD_AFTER_CRASH)
                    .await?;
            }
        }
        for hold in self.store.host_holds().await? {
            let left = (hold.until - self.clock.now_utc())
                .to_std()
                .unwrap_or_default();
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

    /// Holds the host of `cut` (a command a stopped process may have left running) until
    /// that command surely ended, in the store and here.
    pub async fn hold_cut(&self, cut: &CutCommand) -> Result<(), StoreError> {
        let until = self.surely_over(cut.started_at, cut.timeout);
        if until > self.clock.now_utc() {
            self.hold(&cut.host, until, HELD_AFTER_CRASH).await?;
        }
        Ok(())
    }

    /// When a command sent at most a connect after `started_at`, with the recipe's
    /// `timeout`, has surely ended on the target.
    fn surely_over(&self, started_at: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
        surely_over(started_at, self.runner.connect_bound(), timeout)
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
        let Ok(left) = (until - self.clock.now_utc()).to_std() else {
            return;
        };
        self.state().holds.hold(host, left, why);
    }

    /// Waits until nothing else runs on `host` (no remediation, no diagnostics) and
    /// keeps it so until the guard is dropped. First come, first served.
    pub async fn host_turn(&self, host: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(self.state().turns.entry(host.to_owned()).or_default());
        lock.lock_owned().await
    }

    /// Runs one line on `target` through the runner and times it. A command salve stopped
    /// waiting for (timeout, lost session) may go on until the target's backstop ends it,
    /// so its host is held until then; the second result says whether that hold was
    /// recorded. The one way a remediation step or a diagnostic reaches a host.
    pub async fn run_holding_if_cut(
        &self,
        target: &PlannedTarget,
        line: &str,
        timeout: Duration,
    ) -> (Result<CommandOutput, SshError>, Result<(), StoreError>) {
        let (started, started_at) = (Instant::now(), self.clock.now_utc());
        let outcome = self.runner.run(target, line, timeout).await;
        self.metrics
            .ssh_command_duration
            .observe(started.elapsed().as_secs_f64());
        let held = match outcome {
            Err(SshError::Timeout { .. } | SshError::Session(_)) => {
                let until = self.surely_over(started_at, timeout);
                self.hold(&target.name, until, HELD_AFTER_CUT).await
            }
            _ => Ok(()),
        };
        (outcome, held)
    }

    /// How long `host` is still held, and why, if it is.
    pub fn held_for(&self, host: &str) -> Option<(Duration, String)> {
        self.state().holds.left(host)
    }

    /// Finish what is running, start nothing more.
    pub fn stop_taking_work(&self) {
        self.stopping.cancel();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// What runs commands on targets (the SSH executor in production).
    pub fn executor(&self) -> &Arc<dyn CommandRunner> {
        &self.runner
    }

    /// Split the rate limits across `replicas` live replicas.
    pub fn set_replicas(&self, replicas: usize) {
        self.limits.set_replicas(replicas);
    }

    /// Claim `matched` incidents (whole host queues, on hosts no other replica works) and
    /// queue those not already queued; returns how many were new.
    pub async fn dispatch(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<usize, StoreError> {
        if self.is_stopping() {
            return Ok(0);
        }
        let waiting = self
            .store
            .claim_matched(DISPATCH_BATCH, self.claim_hosts)
            .await?;
        let mut queued = 0;
        let mut state = self.state();
        for incident in waiting {
            if !state.in_flight.insert(incident.id) {
                continue;
            }
            queued += 1;
            let host = incident.target_name().to_owned();
            let start_worker = !state.queues.contains_key(&host);
            state
                .queues
                .entry(host.clone())
                .or_default()
                .push_back(incident);
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
        let mut freshness = Freshness::JustRead;
        loop {
            let next = {
                let mut state = self.state();
                if self.is_stopping() {
                    // The rest of the queue stays `matched` in the store: resumable.
                    if let Some(queue) = state.queues.remove(&host) {
                        for incident in queue {
                            state.in_flight.remove(&incident.id);
                        }
                    }
                    return;
                }
                match state.queues.get_mut(&host).and_then(VecDeque::pop_front) {
                    Some(incident) => incident,
                    None => {
                        state.queues.remove(&host);
                        return;
                    }
                }
            };
            let id = next.id;
            let read = std::mem::replace(&mut freshness, Freshness::MayBeStale);
            if let Err(e) = self.remediate(next, read).await {
                // The store failed mid-run; the incident stays in its last journaled
                // state for the operator (and, later, crash recovery) to see.
                tracing::error!(incident = %id, host = %host, error = %e, "remediation not recorded");
            }
            self.state().in_flight.remove(&id);
        }
    }

    /// Runs one incident: through the gates, then its steps, then its checks.
    async fn remediate(&self, incident: Incident, read: Freshness) -> Result<(), StoreError> {
        let id = incident.id;
        // A `matched` incident's plan never changes: its recipe is the one in hand.
        let recipe = incident.plan.as_ref().and_then(|plan| plan.recipe.clone());
        let admitted = match self.admit(incident, read).await {
            Ok(admitted) => admitted,
            Err(Refusal::NotRun(ending)) => {
                return self
                    .finish(id, State::Matched, recipe.as_deref(), ending)
                    .await;
            }
            Err(Refusal::Over) => return Ok(()),
            Err(Refusal::Store(e)) => return Err(e),
        };
        self.run(admitted).await
    }

    /// The gates, in order; each admits the incident or says why it does not run.
    async fn admit(&self, incident: Incident, read: Freshness) -> Admission<Admitted<'_>> {
        let read = self.host_hold_gate(&incident, read).await?;
        let run = self.alert_gate(incident, read).await?;
        // Pause and approval gates go here (issue 12): before the rate limit, so a paused
        // or unapproved incident takes no token.
        self.pause_gate(&run).await?;
        self.approval_gate(&run).await?;
        self.rate_limit_gate(&run).await?;
        let turn = self.slot_gate(&run).await?;
        self.breaker_gate(&run).await?;
        Ok(Admitted { run, turn })
    }

    /// An admitted incident (now `remediating`): its steps, then its checks.
    async fn run(&self, admitted: Admitted<'_>) -> Result<(), StoreError> {
        // The host turn and the slot are held until the last check.
        let Admitted { run, turn: _turn } = admitted;
        tracing::info!(incident = %run.id, recipe = run.plan.recipe.as_deref().unwrap_or(""), target = %run.target.name, "remediation started");
        self.silence_fix(&run).await;
        if let Err(steps::StepFailure(reason)) = self.run_steps(&run).await? {
            return self
                .finish(
                    run.id,
                    State::Remediating,
                    run.plan.recipe.as_deref(),
                    Event::Failed { reason },
                )
                .await;
        }
        self.verify(&run).await
    }

    /// Moves `id` from `from` to the final state `ending` names, journaling `ending`, and
    /// counts it under `recipe` (the caller's; the incident is not read again).
    async fn finish(
        &self,
        id: IncidentId,
        from: State,
        recipe: Option<&str>,
        ending: Event,
    ) -> Result<(), StoreError> {
        let (to, reason) = match &ending {
            Event::Succeeded { reason, .. } => (State::Succeeded, reason.clone()),
            Event::Failed { reason } => (State::Failed, reason.clone()),
            Event::VerifyFailed { reason, .. } => (State::VerifyFailed, reason.clone()),
            Event::BreakerOpen { reason, .. } => (State::BreakerOpen, reason.clone()),
            Event::RateLimited { reason } => (State::RateLimited, reason.clone()),
            Event::ResolvedBeforeRun { reason } => (State::ResolvedBeforeRun, reason.clone()),
            Event::Paused { reason, .. } => (State::Paused, reason.clone()),
            other => unreachable!("finish is given a final event, not {other:?}"),
        };
        self.store
            .transition(id, from, to, Some(reason.clone()), ending)
            .await?;
        self.end_silence(id).await;
        self.metrics.incident_outcome(to);
        if let Some(recipe) = recipe {
            self.metrics.remediation(recipe, to);
        }
        if let Ok((attempts, successes)) = self.store.remediation_totals().await
            && attempts > 0
        {
            self.metrics
                .success_ratio
                .set(successes as f64 / attempts as f64);
        }
        tracing::info!(incident = %id, state = to.as_str(), reason = %reason, "remediation finished");
        if matches!(to, State::Failed | State::VerifyFailed) {
            self.spend_error_budget(id).await;
        }
        self.wake.notify_one();
        Ok(())
    }
}

fn round_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}
