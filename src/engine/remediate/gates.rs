//! The gates an incident passes before its commands run, in order: host hold, alert
//! resolved, (pause and approval: issue 12), rate limit, slot, breaker. Each admits the
//! incident (`Ok`) or says why not (`Refusal`); a gate that must wait (a hold, a token, a
//! turn) waits inside. Only the breaker gate changes the incident's state to `remediating`.

use tokio::sync::{OwnedMutexGuard, SemaphorePermit};

use crate::alert::AlertStatus;
use crate::incident::{Event, Incident, IncidentId, State};
use crate::metrics::RecipeLabel;
use crate::plan::{Plan, PlannedTarget};
use crate::recipe::shell::{RunAs, remote_line};
use crate::store::{BreakerLimit, RunGate, StoreError};

use super::steps::step_started;
use super::{Freshness, Remediator, UNBOUNDED_WINDOW};

/// A gate's decision: admitted (with what the next step needs), or why not.
pub(super) type Admission<T> = Result<T, Refusal>;

/// Why an incident did not get past a gate.
#[derive(Debug)]
pub(super) enum Refusal {
    /// It is not run: it ends, from `matched`, with this final event.
    NotRun(Event),
    /// Nothing more to do with it here: it is no longer `matched` (another replica or a
    /// recovery took it), salve is stopping (it stays `matched`), or the gate ended it.
    Over,
    /// The store failed; the incident stays in its last journaled state.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Refusal {
        Refusal::Store(error)
    }
}

/// An incident past the alert gate: what will run, and where.
pub(super) struct RunPlan {
    pub(super) id: IncidentId,
    pub(super) plan: Plan,
    pub(super) target: PlannedTarget,
    /// The exact lines sent, each rendered once: journaled before it runs, then run.
    pub(super) executed: Vec<String>,
    /// When salve first received the alert (for `salve_alert_to_first_command_seconds`).
    pub(super) first_seen: chrono::DateTime<chrono::Utc>,
}

impl RunPlan {
    /// The recipe's name as the breaker counts it.
    pub(super) fn recipe(&self) -> &str {
        self.plan.recipe.as_deref().unwrap_or_default()
    }

    /// The key the breaker counts this run by, with the recipe (the target's name unless
    /// the recipe sets `[breaker] key`).
    fn breaker_key(&self) -> &str {
        self.plan.breaker_key().unwrap_or(&self.target.name)
    }

    fn breaker_limit(&self) -> BreakerLimit {
        BreakerLimit {
            max_runs: self.plan.breaker.as_ref().map(|b| b.max_runs),
            window: self
                .plan
                .breaker
                .as_ref()
                .map_or(UNBOUNDED_WINDOW, |b| b.window),
        }
    }
}

/// The host's turn and a slot among `max_parallel`, held from `begin_run` to the last check.
pub(super) struct Turn<'a> {
    _host: OwnedMutexGuard<()>,
    _slot: SemaphorePermit<'a>,
}

/// An incident through every gate: `remediating`, its first step journaled.
pub(super) struct Admitted<'a> {
    pub(super) run: RunPlan,
    pub(super) turn: Turn<'a>,
}

/// How long a run waits before asking again when the store says its host is busy.
const BUSY_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const BUSY_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

const RESOLVED_BEFORE_RUN: &str =
    "the alert resolved before its remediation started; nothing was run";

impl Remediator {
    /// Host hold: a command salve stopped waiting for may still run on the host; wait
    /// until it surely ended (journaled as `host_held`). After a wait the incident is read
    /// again.
    pub(super) async fn host_hold_gate(
        &self,
        incident: &Incident,
        read: Freshness,
    ) -> Admission<Freshness> {
        let host = incident.target_name();
        let Some((wait, why)) = self.held_for(host) else {
            return Ok(read);
        };
        self.store
            .append_event(
                incident.id,
                Event::HostHeld {
                    host: host.to_owned(),
                    wait,
                    why,
                },
            )
            .await?;
        tokio::time::sleep(wait).await;
        if self.is_stopping() {
            // Not started: it stays `matched` for the next process.
            return Err(Refusal::Over);
        }
        Ok(Freshness::MayBeStale)
    }

    /// Alert resolved: an incident whose alert resolved while it waited its turn ends
    /// `resolved_before_run` (unless it fired again since, then it runs). Also refuses an
    /// incident no longer `matched` or planned without a target.
    pub(super) async fn alert_gate(
        &self,
        incident: Incident,
        read: Freshness,
    ) -> Admission<RunPlan> {
        let id = incident.id;
        let current = match read {
            Freshness::JustRead => incident,
            Freshness::MayBeStale => match self.store.incident(id).await? {
                Some(current) => current.incident,
                None => return Err(Refusal::Over),
            },
        };
        if current.state != State::Matched {
            return Err(Refusal::Over);
        }
        let first_seen = current.first_seen;
        let (Some(target), Some(plan)) = (
            current.plan.as_ref().and_then(|plan| plan.target.clone()),
            current.plan,
        ) else {
            return Err(Refusal::NotRun(Event::Failed {
                reason: "planned without a target; nothing was run".into(),
            }));
        };
        if current.alert_status == AlertStatus::Resolved {
            match self.resolved_before_run(id, plan.recipe.as_deref()).await {
                // It fired again since it was read: it runs after all.
                Err(StoreError::AlertFiring(_)) => {}
                Ok(()) => return Err(Refusal::Over),
                Err(e) => return Err(e.into()),
            }
        }
        let executed = plan
            .commands
            .iter()
            .map(|command| remote_line(command, RunAs::sudo_if(plan.sudo), plan.command_timeout))
            .collect();
        Ok(RunPlan {
            id,
            plan,
            target,
            executed,
            first_seen,
        })
    }

    /// Rate limit: a token from the host's bucket and the overall one, waiting at most
    /// `max_wait` (without holding a slot other hosts could use); `rate_limited` if none came.
    pub(super) async fn rate_limit_gate(&self, run: &RunPlan) -> Admission<()> {
        // A stop ends the wait: the incident stays `matched` for the next process.
        let waited = tokio::select! {
            waited = self.limits.wait(&run.target.name) => waited,
            () = self.stopping.cancelled() => return Err(Refusal::Over),
        };
        match waited {
            Ok(()) => Ok(()),
            Err(waited) => Err(Refusal::NotRun(Event::RateLimited {
                reason: format!(
                    "remediation rate limit ({}) still exhausted after waiting {}; not run",
                    self.limits.describe(),
                    humantime::format_duration(waited)
                ),
            })),
        }
    }

    /// Slot: the host's turn (no diagnostics run on it from here to the last check), a
    /// hold diagnostics set while this waited for it, then one of the `max_parallel` slots.
    pub(super) async fn slot_gate(&self, run: &RunPlan) -> Admission<Turn<'_>> {
        let host = tokio::select! {
            host = self.host_turn(&run.target.name) => host,
            () = self.stopping.cancelled() => return Err(Refusal::Over),
        };
        // Diagnostics cut by their timeout while this waited for its turn hold the host.
        if let Some((wait, why)) = self.held_for(&run.target.name) {
            self.store
                .append_event(
                    run.id,
                    Event::HostHeld {
                        host: run.target.name.clone(),
                        wait,
                        why,
                    },
                )
                .await?;
            tokio::time::sleep(wait).await;
        }
        let slot = tokio::select! {
            slot = self.slots.acquire() => slot.expect("semaphore never closed"),
            () = self.stopping.cancelled() => return Err(Refusal::Over),
        };
        Ok(Turn {
            _host: host,
            _slot: slot,
        })
    }

    /// Breaker: the store counts the window's runs of (recipe, breaker key) and, below
    /// `max_runs`, records this run and moves the incident to `remediating` with its first
    /// `step_started`, in one transaction; at `max_runs`, `breaker_open`. The store also
    /// refuses to start a resolved alert; closing it `resolved_before_run` is refused in
    /// turn if it fired again in between, and then it starts after all.
    pub(super) async fn breaker_gate(&self, run: &RunPlan) -> Admission<()> {
        let limit = run.breaker_limit();
        loop {
            let gate = match self
                .store
                .begin_run(
                    run.id,
                    run.recipe(),
                    &run.target.name,
                    run.breaker_key(),
                    limit,
                    Event::RemediationStarted {
                        target: run.target.clone(),
                        steps: run.plan.commands.len(),
                        sudo: run.plan.sudo,
                        ssh_user: self.runner.user_for(&run.target),
                    },
                    run.plan
                        .commands
                        .first()
                        .map(|command| step_started(0, command, &run.executed[0])),
                    self.clock.now_utc(),
                )
                .await
            {
                Ok(gate) => gate,
                // Another replica (or a SIGTERM drain's recovery) took it meanwhile.
                Err(StoreError::StateConflict { found, .. }) => {
                    tracing::debug!(incident = %run.id, state = %found, "not started: no longer matched");
                    return Err(Refusal::Over);
                }
                Err(StoreError::NotOwner { owner, .. }) => {
                    tracing::warn!(incident = %run.id, owner = ?owner, "not started: another replica claimed it");
                    return Err(Refusal::Over);
                }
                Err(e) => return Err(e.into()),
            };
            match gate {
                RunGate::Started => return Ok(()),
                // Another replica runs something on the host, or holds it: wait a little
                // and ask again (the store decides; nothing was recorded).
                RunGate::HostBusy { why, retry_after } => {
                    tracing::debug!(incident = %run.id, host = %run.target.name, why = %why, "host busy; waiting");
                    tokio::time::sleep(retry_after.clamp(BUSY_RETRY_MIN, BUSY_RETRY_MAX)).await;
                    if self.is_stopping() {
                        return Err(Refusal::Over);
                    }
                    continue;
                }
                RunGate::BreakerOpen { runs } => {
                    let key = run.breaker_key();
                    let reason = format!(
                        "circuit breaker open: {} already ran {} time(s) for breaker key {:?} in the last {} (max_runs {}); not run on {}",
                        run.recipe(),
                        runs.len(),
                        key,
                        humantime::format_duration(limit.window),
                        limit.max_runs.unwrap_or_default(),
                        run.target.name,
                    );
                    self.metrics
                        .breaker_open
                        .get_or_create(&RecipeLabel {
                            recipe: run.recipe().to_owned(),
                        })
                        .set(1);
                    return Err(Refusal::NotRun(Event::BreakerOpen {
                        runs,
                        reason,
                        key: Some(key.to_owned()),
                    }));
                }
                RunGate::AlertResolved => {
                    match self
                        .resolved_before_run(run.id, run.plan.recipe.as_deref())
                        .await
                    {
                        Err(StoreError::AlertFiring(_)) => continue,
                        Ok(()) => return Err(Refusal::Over),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Ends `id` `resolved_before_run`; `AlertFiring` if its alert fired again meanwhile.
    async fn resolved_before_run(
        &self,
        id: IncidentId,
        recipe: Option<&str>,
    ) -> Result<(), StoreError> {
        let ending = Event::ResolvedBeforeRun {
            reason: RESOLVED_BEFORE_RUN.into(),
        };
        self.finish(id, State::Matched, recipe, ending).await
    }
}
