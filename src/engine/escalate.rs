//! The escalation stage: every incident in an escalating state (failed, verify_failed,
//! unmatched, refused, breaker_open, rate_limited, interrupted) without a queued escalation gets the
//! report a human needs — what happened and why, each step with its output, each check's
//! last result, the breaker's runs, diagnostics run now over SSH — written to the store's
//! outbox once per channel. Delivery is `outbox.rs`'s job; nothing here sends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::engine::remediate::remote_line;
use crate::escalate::{
    BreakerWindow, CheckReport, Diagnostic, Escalation, EscalationReason, RunSummary, StepReport,
    silence_url,
};
use crate::incident::{Incident, IncidentId, State};
use crate::metrics::Metrics;
use crate::ssh::Executor;
use crate::store::{IncidentDetail, Store, StoreError};

/// How many incidents one pass takes.
const ESCALATE_BATCH: usize = 64;

pub struct Escalator {
    store: Arc<dyn Store>,
    /// For the recipe's `attach` diagnostics; `None` in dry-run (nothing is run then).
    executor: Option<Arc<Executor>>,
    default_route: Vec<String>,
    diagnostic_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Incidents being escalated now, so a pass never takes one twice.
    in_progress: Mutex<HashSet<IncidentId>>,
    /// Tells the outbox there is something to deliver.
    outbox_wake: Arc<Notify>,
}

impl Escalator {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Option<Arc<Executor>>,
        default_route: Vec<String>,
        diagnostic_timeout: Duration,
        metrics: Arc<Metrics>,
        outbox_wake: Arc<Notify>,
    ) -> Escalator {
        Escalator {
            store,
            executor,
            default_route,
            diagnostic_timeout,
            metrics,
            in_progress: Mutex::new(HashSet::new()),
            outbox_wake,
        }
    }

    /// Start escalating every incident that needs it; returns how many started.
    pub async fn queue_pending(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> Result<usize, StoreError> {
        let mut started = 0;
        for incident in self.store.incidents_to_escalate(ESCALATE_BATCH).await? {
            if !self
                .in_progress
                .lock()
                .expect("in_progress lock")
                .insert(incident.id)
            {
                continue;
            }
            started += 1;
            let this = Arc::clone(self);
            tasks.spawn(async move {
                let id = incident.id;
                if let Err(e) = this.escalate(incident).await {
                    // Not queued: the incident still has no escalated_at, so the next
                    // pass tries again.
                    tracing::error!(incident = %id, error = %e, "escalation not queued; will retry");
                }
                this.in_progress.lock().expect("in_progress lock").remove(&id);
            });
        }
        Ok(started)
    }

    async fn escalate(&self, incident: Incident) -> Result<(), StoreError> {
        let Some(reason) = incident.state.escalation_reason() else {
            return Ok(());
        };
        let Some(detail) = self.store.incident(incident.id).await? else {
            return Ok(());
        };
        let escalation = self.report(&detail, reason).await;
        let plan = detail.incident.plan.as_ref();
        let channels = match plan.map(|p| p.escalate.clone()).filter(|c| !c.is_empty()) {
            Some(channels) => channels,
            None => self.default_route.clone(),
        };
        if channels.is_empty() {
            tracing::warn!(incident = %incident.id, reason, "no escalation route: neither the recipe nor escalation.default names a channel");
        }
        let payload = serde_json::to_value(&escalation).unwrap_or(Value::Null);
        self.store
            .enqueue_escalation(incident.id, reason, &channels, &payload)
            .await?;
        tracing::info!(incident = %incident.id, reason, channels = ?channels, "escalation queued");
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// Everything the human needs, from the journal plus diagnostics run now.
    async fn report(&self, detail: &IncidentDetail, reason: &str) -> Escalation {
        let incident = &detail.incident;
        let plan = incident.plan.as_ref();
        let target = plan.and_then(|p| p.target.clone());
        let recipe = plan.and_then(|p| p.recipe.clone());
        let alertname = incident.alertname.clone();
        let summary = match (reason, &target) {
            ("novel", _) => format!(
                "novel: no recipe handles {}",
                alertname.as_deref().unwrap_or("this alert")
            ),
            (_, Some(target)) => format!(
                "{reason}: {} on {} ({})",
                alertname.as_deref().unwrap_or("alert"),
                target.name,
                recipe.as_deref().unwrap_or("no recipe")
            ),
            (_, None) => format!("{reason}: {}", alertname.as_deref().unwrap_or("alert")),
        };
        let breaker = match (plan.and_then(|p| p.breaker.as_ref()), &recipe, &target) {
            (Some(breaker), Some(recipe), Some(target)) => {
                let runs = self
                    .store
                    .runs_in_window(recipe, &target.name, breaker.window)
                    .await
                    .unwrap_or_default();
                Some(BreakerWindow {
                    max_runs: breaker.max_runs,
                    window: humantime::format_duration(breaker.window).to_string(),
                    runs: runs
                        .into_iter()
                        .map(|run| RunSummary {
                            incident_id: run.incident_id.0,
                            started_at: run.started_at,
                            state: run.state.as_str().to_owned(),
                        })
                        .collect(),
                })
            }
            _ => None,
        };
        let wants_diagnostics = matches!(
            incident.state,
            State::Failed
                | State::VerifyFailed
                | State::BreakerOpen
                | State::RateLimited
                | State::Interrupted
        );
        let diagnostics = match (plan, &target, &self.executor) {
            (Some(plan), Some(target), Some(executor)) if wants_diagnostics => {
                let mut diagnostics = Vec::new();
                for command in &plan.attach {
                    diagnostics.push(self.diagnose(executor, target, command, plan.sudo).await);
                }
                diagnostics
            }
            _ => Vec::new(),
        };
        Escalation {
            incident_id: incident.id.0,
            reason: serde_json::from_value(json!(reason)).unwrap_or(EscalationReason::Failed),
            state: incident.state.as_str().to_owned(),
            summary,
            why: incident.reason.clone().unwrap_or_default(),
            alertname,
            severity: incident.labels.get("severity").cloned(),
            labels: incident.labels.clone(),
            annotations: incident.annotations.clone(),
            recipe,
            target,
            breaker,
            steps: steps(detail),
            checks: last_checks(detail),
            diagnostics,
            generator_url: incident.generator_url.clone(),
            silence_url: incident
                .external_url
                .as_deref()
                .map(|url| silence_url(url, &incident.labels)),
            created_at: Utc::now(),
        }
    }

    async fn diagnose(
        &self,
        executor: &Executor,
        target: &crate::plan::PlannedTarget,
        command: &str,
        sudo: bool,
    ) -> Diagnostic {
        let line = remote_line(command, sudo, self.diagnostic_timeout);
        let started = Instant::now();
        let outcome = executor.run(target, &line, self.diagnostic_timeout).await;
        self.metrics
            .ssh_command_duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(output) => {
                let mut text = output.stdout;
                if output.exit_status != Some(0) && !output.stderr.trim().is_empty() {
                    text.push_str(&output.stderr);
                }
                Diagnostic {
                    command: command.to_owned(),
                    exit_status: output.exit_status,
                    output: text,
                    truncated: output.stdout_truncated || output.stderr_truncated,
                    error: None,
                }
            }
            Err(e) => Diagnostic {
                command: command.to_owned(),
                exit_status: None,
                output: String::new(),
                truncated: false,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Each finished step, from the journal.
fn steps(detail: &IncidentDetail) -> Vec<StepReport> {
    detail
        .events
        .iter()
        .filter(|e| e.kind == "step_finished")
        .map(|e| {
            let d = &e.detail;
            let text = |key: &str| d[key].as_str().unwrap_or_default().to_owned();
            StepReport {
                step: d["step"].as_u64().unwrap_or_default() as u32,
                command: text("command"),
                outcome: text("outcome"),
                exit_status: d["exit_status"].as_i64().map(|c| c as i32),
                stdout: text("stdout"),
                stderr: text("stderr"),
                stdout_truncated: d["stdout_truncated"] == true,
                stderr_truncated: d["stderr_truncated"] == true,
                duration_ms: d["duration_ms"].as_u64(),
                error: d["error"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// The last poll's result of every check.
fn last_checks(detail: &IncidentDetail) -> Vec<CheckReport> {
    detail
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "check_poll")
        .and_then(|e| e.detail["results"].as_array())
        .map(|results| {
            results
                .iter()
                .map(|r| CheckReport {
                    check: r["check"].as_str().unwrap_or_default().to_owned(),
                    passed: r["passed"] == true,
                    detail: r["detail"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
