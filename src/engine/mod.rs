//! The engine: the only writer of incident state transitions. It takes journaled
//! incidents and moves them forward: planning (match → params → target → plan), then for
//! enforced plans remediation and verification (`remediate/`). It never parses
//! webhooks and never answers HTTP.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::incident::{Event, Incident, IncidentId, State, state_for};
use crate::metrics::Metrics;
use crate::plan::Mode;
use crate::recipe::PlanContext;
use crate::store::{Store, StoreError};

pub mod escalate;
pub mod outbox;
pub mod remediate;
pub mod replica;
pub mod retention;

pub use escalate::Escalator;
pub use outbox::Outbox;
pub use remediate::Remediator;

/// How many received incidents one planning pass takes.
const PLAN_BATCH: usize = 256;

/// Safety net: the engine also looks for work this often without being woken, so an
/// incident journaled by another process (or before a crash) is never stranded.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Gauges read from the store (open breakers, success ratio) are refreshed this often.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

/// Idle SSH connections are looked for this often.
const IDLE_SWEEP: Duration = Duration::from_secs(30);

pub struct Engine {
    pub store: Arc<dyn Store>,
    /// Recipes, inventory and escalation routes: swapped whole by a reload; each planning
    /// pass reads the set in force at its start.
    pub live: crate::reload::Live,
    pub mode: Mode,
    pub metrics: Arc<Metrics>,
    /// Notified by intake after a commit that created incidents.
    pub wake: Arc<Notify>,
    /// Runs enforced plans; `None` when nothing may run (dry-run).
    pub remediator: Option<Arc<Remediator>>,
    /// Queues escalations for incidents that need a human.
    pub escalator: Arc<Escalator>,
    /// On shutdown, running remediations get this long to finish.
    pub shutdown_grace: Duration,
}

/// What `recover_interrupted` found and did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Idempotent incidents put back in `matched` to run again.
    pub resumed: usize,
    /// Incidents now `interrupted` (to be escalated).
    pub interrupted: usize,
    /// Commands the last process sent, or was about to send, and never saw end. They may
    /// still be running: a command on the target outlives the SSH channel that started it.
    pub cut_commands: Vec<CutCommand>,
}

/// A remediation command whose end the journal never recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CutCommand {
    pub incident: IncidentId,
    /// The inventory name of the host it ran on.
    pub host: String,
    /// When its `step_started` was journaled (just before it was sent).
    pub started_at: DateTime<Utc>,
    /// The recipe's command timeout, which the target's own `timeout` backstop enforces.
    pub timeout: Duration,
}

/// After a restart: incidents the previous process left mid-run. A command may have
/// half-run, so they are not silently re-run: they become `interrupted` and are escalated
/// — unless their recipe declares `idempotent = true` and this process may act, in which
/// case they go back to `matched` and run again. Either way, a command they may still be
/// running is reported in `cut_commands`, so nothing new starts on that host beside it.
///
/// Only incidents no live replica runs are taken (`Store::claim_orphans`): at startup, those
/// of the last process (SQLite) or of replicas whose lease ran out (PostgreSQL); while
/// serving, `replica::Replica` calls this again for replicas that die.
pub async fn recover_interrupted(
    store: &dyn Store,
    mode: Mode,
    remediator: Option<&Remediator>,
) -> Result<Recovered, StoreError> {
    let mut recovered = Recovered::default();
    for incident in store.claim_orphans().await? {
        let state = incident.state;
        {
            let cut = cut_command(store, &incident).await?;
            let idempotent = incident.plan.as_ref().is_some_and(|p| p.idempotent);
            let (to, event, reason) = if idempotent && mode == Mode::Enforce {
                recovered.resumed += 1;
                (
                    State::Matched,
                    Event::Resumed { was: state },
                    format!(
                        "salve restarted while this incident was {state}; the recipe is idempotent, so it runs again"
                    ),
                )
            } else {
                recovered.interrupted += 1;
                (
                    State::Interrupted,
                    Event::Interrupted { was: state },
                    format!(
                        "salve stopped while this incident was {state}; a command may have half-run, so it is not re-run"
                    ),
                )
            };
            // The host is held in the store before the incident stops counting as running,
            // so no replica starts anything there beside a command that may still run.
            if let (Some(cut), Some(remediator)) = (&cut, remediator) {
                remediator.hold_cut(cut).await?;
            }
            let result = store
                .transition(incident.id, state, to, Some(reason), event)
                .await;
            match result {
                Ok(()) | Err(StoreError::StateConflict { .. } | StoreError::NotOwner { .. }) => {}
                Err(e) => return Err(e),
            }
            recovered.cut_commands.extend(cut);
        }
    }
    Ok(recovered)
}

/// The incident's last command, if the journal shows it starting but not finishing.
async fn cut_command(
    store: &dyn Store,
    incident: &Incident,
) -> Result<Option<CutCommand>, StoreError> {
    let (Some(plan), Some(target)) = (
        incident.plan.as_ref(),
        incident.plan.as_ref().and_then(|p| p.target.as_ref()),
    ) else {
        return Ok(None);
    };
    let Some(detail) = store.incident(incident.id).await? else {
        return Ok(None);
    };
    let events = &detail.events;
    let Some(last_start) = events
        .iter()
        .rposition(|e| matches!(e.event, Event::StepStarted { .. }))
    else {
        return Ok(None);
    };
    if events[last_start..]
        .iter()
        .any(|e| matches!(e.event, Event::StepFinished { .. }))
    {
        return Ok(None);
    }
    Ok(Some(CutCommand {
        incident: incident.id,
        host: target.name.clone(),
        started_at: events[last_start].at,
        timeout: plan.command_timeout,
    }))
}

impl Engine {
    /// Run until `shutdown` is cancelled. Each plan is recorded in one transaction; running
    /// remediations get `shutdown_grace` to finish, then are cut off and stay in their
    /// last journaled state (the next start marks them `interrupted`).
    pub async fn run(self, shutdown: CancellationToken) {
        let live = self.live.current();
        tracing::info!(
            recipes = live.recipes.len(),
            hosts = live.inventory.hosts().len(),
            mode = self.mode.as_str(),
            "engine started"
        );
        let mut tasks = JoinSet::new();
        let mut last_sweep = tokio::time::Instant::now();
        self.refresh_gauges().await;
        let mut last_gauges = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let planned = match self.plan_pending().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "planning pass failed; retrying");
                    0
                }
            };
            if let Some(remediator) = &self.remediator {
                if let Err(e) = remediator.dispatch(&mut tasks).await {
                    tracing::warn!(error = %e, "dispatch pass failed; retrying");
                }
                if last_sweep.elapsed() >= IDLE_SWEEP {
                    remediator.executor().close_idle().await;
                    last_sweep = tokio::time::Instant::now();
                }
            }
            match remediate::expire_due(self.store.as_ref()).await {
                Ok(ended) => self.count_outcomes(&ended).await,
                Err(e) => tracing::warn!(error = %e, "approval expiry pass failed; retrying"),
            }
            if let Err(e) = self.escalator.queue_pending(&mut tasks).await {
                tracing::warn!(error = %e, "escalation pass failed; retrying");
            }
            if last_gauges.elapsed() >= GAUGE_REFRESH {
                self.refresh_gauges().await;
                last_gauges = tokio::time::Instant::now();
            }
            while tasks.try_join_next().is_some() {}
            if planned == PLAN_BATCH {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        // Nothing new starts; queued incidents stay `matched` for the next process.
        if let Some(remediator) = &self.remediator {
            remediator.stop_taking_work();
        }
        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), "waiting for running remediations");
            let drained = tokio::time::timeout(self.shutdown_grace, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(running = tasks.len(), "remediations cut off at shutdown");
                tasks.shutdown().await;
            }
        }
        if let Some(remediator) = &self.remediator {
            remediator.executor().shutdown().await;
        }
        tracing::info!("engine stopped");
    }

    /// Counts the final outcomes of `ended` (as the store now has them): for incidents a
    /// store-side pass ended, outside the planner and the remediator.
    async fn count_outcomes(&self, ended: &[crate::incident::IncidentId]) {
        for id in ended {
            if let Ok(Some(detail)) = self.store.incident(*id).await {
                self.metrics.incident_outcome(detail.incident.state);
            }
        }
    }

    /// Store-derived gauges: open breakers by recipe, the all-time success ratio.
    async fn refresh_gauges(&self) {
        if let Ok(breakers) = self.store.breakers().await {
            let mut open: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
            for breaker in &breakers {
                *open.entry(breaker.recipe.as_str()).or_default() += i64::from(breaker.open);
            }
            let live = self.live.current();
            for recipe in live.recipes.names() {
                open.entry(recipe).or_default();
                self.metrics.remediation_series(recipe);
            }
            for (recipe, count) in open {
                self.metrics
                    .breaker_open
                    .get_or_create(&crate::metrics::RecipeLabel {
                        recipe: recipe.to_owned(),
                    })
                    .set(count);
            }
        }
        if let Ok((attempts, successes)) = self.store.remediation_totals().await
            && attempts > 0
        {
            self.metrics
                .success_ratio
                .set(successes as f64 / attempts as f64);
        }
    }

    /// Plan every incident waiting in `received` (one batch); returns how many it took.
    pub async fn plan_pending(&self) -> Result<usize, StoreError> {
        let batch = self
            .store
            .incidents_in_state(State::Received, PLAN_BATCH)
            .await?;
        let live = self.live.current();
        let planned: Vec<_> = batch
            .iter()
            .map(|incident| {
                let context = PlanContext {
                    inventory: &live.inventory,
                    global_mode: self.mode,
                    default_escalation: live.escalation_routes.channels_for(&incident.labels),
                };
                let plan = live.recipes.plan(&incident.to_alert(), &context);
                (incident, state_for(&plan), plan)
            })
            .collect();
        // Recorded together so the store commits them in few transactions.
        let changes: Vec<_> = planned
            .iter()
            .map(|(incident, to, plan)| (incident.id, State::Received, *to, plan))
            .collect();
        let results = self.store.record_plans(&changes).await;
        for ((incident, to, plan), result) in planned.iter().zip(results) {
            match result {
                Ok(()) => {
                    self.metrics.incident_outcome(*to);
                    tracing::info!(
                        incident = %incident.id,
                        alertname = incident.alertname.as_deref().unwrap_or(""),
                        state = to.as_str(),
                        recipe = plan.recipe.as_deref().unwrap_or(""),
                        target = plan.target.as_ref().map(|t| t.name.as_str()).unwrap_or(""),
                        reason = plan.reason.as_deref().unwrap_or(""),
                        "incident planned"
                    );
                }
                // Someone else moved it first (another replica): theirs stands.
                Err(StoreError::StateConflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(batch.len())
    }
}
