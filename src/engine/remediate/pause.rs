//! The pause gate and the fleet error budget. The gate ends an incident `paused` when an
//! active pause in the store (any process's: CLI, API, the budget) or an open
//! `[[maintenance]]` window covers its recipe and host; it runs before the rate limit, so a
//! paused incident takes no token and nothing is sent to the host. The budget counts the
//! fleet's `failed` and `verify_failed` runs in the store after each one and, when they
//! reach `max_failures`, pauses everything and pages once. Neither ever resumes a pause:
//! only a human does.

use std::collections::BTreeMap;

use chrono::SecondsFormat;

use crate::config::ErrorBudget;
use crate::incident::{EscalationReason, Event, IncidentId};
use crate::maintenance::MaintenanceWindow;
use crate::notify::Escalation;
use crate::store::{BudgetFailure, BudgetState, BudgetTrip, ERROR_BUDGET_BY, StoreError};

use super::Remediator;
use super::gates::{Admission, Refusal, RunPlan};

/// What the pause gate and the error budget know beyond the store.
#[derive(Debug, Clone, Default)]
pub struct PauseSettings {
    /// `[[maintenance]]`, validated.
    pub windows: Vec<MaintenanceWindow>,
    pub error_budget: Option<ErrorBudget>,
    /// Where the budget's one page goes (`escalation.default`).
    pub budget_channels: Vec<String>,
}

impl Remediator {
    /// The same remediator with maintenance windows and an error budget.
    pub fn with_pauses(self, pauses: PauseSettings) -> Remediator {
        Remediator { pauses, ..self }
    }

    /// Pause: an active pause, then an open maintenance window, covering the recipe and
    /// the host ends the incident `paused`, before anything is sent to the host.
    pub(super) async fn pause_gate(&self, run: &RunPlan) -> Admission<()> {
        let now = self.clock.now_utc();
        let (recipe, host) = (run.recipe(), run.target.name.as_str());
        let active = self.store.active_pauses(now).await?;
        let budget_paused = active
            .iter()
            .any(|pause| pause.created_by == ERROR_BUDGET_BY);
        self.metrics
            .error_budget_tripped
            .set(i64::from(budget_paused));
        if let Some(pause) = active.iter().find(|pause| pause.covers(recipe, host)) {
            let until = pause.until.map_or_else(
                || "until resumed".to_owned(),
                |until| format!("until {}", until.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            return Err(Refusal::NotRun(Event::Paused {
                pause: format!("#{}", pause.id),
                by: pause.created_by.clone(),
                silent: pause.silent,
                reason: format!(
                    "paused by pause #{} ({}: {}) {until}; {recipe} not run on {host}",
                    pause.id, pause.created_by, pause.reason
                ),
            }));
        }
        if let Some(window) = self
            .pauses
            .windows
            .iter()
            .find(|window| window.covers(recipe, host, now))
        {
            return Err(Refusal::NotRun(Event::Paused {
                pause: format!("maintenance {}", window.name),
                by: "config".to_owned(),
                silent: window.silent,
                reason: format!(
                    "in maintenance window {} ({}); {recipe} not run on {host}",
                    window.name,
                    window.view().schedule
                ),
            }));
        }
        Ok(())
    }

    /// After incident `id` ended `failed` or `verify_failed`: trips the error budget when
    /// the failures in its window reach `max_failures`. A store error is logged (the
    /// next failure counts again), never the incident's problem.
    pub(super) async fn spend_error_budget(&self, id: IncidentId) {
        let Some(budget) = self.pauses.error_budget else {
            return;
        };
        if let Err(e) = self.trip_if_spent(id, budget).await {
            tracing::error!(incident = %id, error = %e, "error budget not checked");
        }
    }

    async fn trip_if_spent(&self, id: IncidentId, budget: ErrorBudget) -> Result<(), StoreError> {
        let now = self.clock.now_utc();
        let failures = match self.store.error_budget(budget.window, now).await? {
            BudgetState::Tripped(_) => return Ok(()),
            BudgetState::Counting(failures) => failures,
        };
        if failures.len() < budget.max_failures as usize {
            return Ok(());
        }
        let window = humantime::format_duration(budget.window).to_string();
        let reason = format!(
            "error budget spent: {} remediations failed or failed verification in the last {window} (max_failures {}): {}",
            failures.len(),
            budget.max_failures,
            failures
                .iter()
                .map(|f| format!("#{}", f.incident_id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let page = budget_page(id, &reason, &failures, now);
        let trip = BudgetTrip {
            incident: id,
            reason: reason.clone(),
            failures: failures.iter().map(|f| f.incident_id).collect(),
            max_failures: budget.max_failures,
            window,
            channels: self.pauses.budget_channels.clone(),
            payload: serde_json::to_value(&page).unwrap_or(serde_json::Value::Null),
        };
        if let Some(pause) = self.store.trip_error_budget(trip, now).await? {
            self.metrics.error_budget_tripped.set(1);
            tracing::error!(incident = %id, pause = pause.id, reason = %reason, "error budget spent: every remediation is paused until a human runs salve resume");
        }
        Ok(())
    }
}

/// The one page of a spent budget: what failed, and how to go on.
fn budget_page(
    id: IncidentId,
    reason: &str,
    failures: &[BudgetFailure],
    now: chrono::DateTime<chrono::Utc>,
) -> Escalation {
    let list: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "#{} {} {} on {} at {}",
                f.incident_id,
                f.state,
                f.alertname.as_deref().unwrap_or("alert"),
                f.target.as_deref().unwrap_or("no target"),
                f.at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )
        })
        .collect();
    Escalation {
        incident_id: id.0,
        reason: EscalationReason::ErrorBudget,
        state: "paused".to_owned(),
        summary: format!(
            "error budget spent: {} remediations failed; salve paused all remediation",
            failures.len()
        ),
        why: format!("{reason}\n\n{}", list.join("\n")),
        alertname: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        severity: None,
        recipe: None,
        target: None,
        breaker: None,
        steps: Vec::new(),
        checks: Vec::new(),
        diagnostics: Vec::new(),
        generator_url: None,
        silence_url: None,
        created_at: now,
        diagnostics_omitted: None,
        recipe_description: None,
        approve_url: None,
        deny_url: None,
        approval_expires_at: None,
        runbook: Some(
            "Nothing runs until a human resumes: look at each failure (salve history --id ID), \
             fix the cause, then `salve pause list` and `salve resume ID`."
                .to_owned(),
        ),
    }
}
