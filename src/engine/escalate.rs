//! The escalation stage: every incident in an escalating state (failed, verify_failed,
//! unmatched, refused, breaker_open, rate_limited, interrupted, notified, awaiting_approval
//! — with its signed approve/deny links —, denied, approval_expired) without a queued escalation gets the
//! report a human needs — what happened and why, each step with its output, each check's
//! last result, the breaker's runs, diagnostics run now over SSH — written to the store's
//! outbox once per channel. Delivery is `outbox.rs`'s job; nothing here sends.
//! Diagnostics never run beside a remediation on the same host (they take the
//! remediator's host turn), and for an incident that was not run (breaker open, rate
//! limited) at most once per breaker window per (recipe, target).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::engine::Remediator;
use crate::engine::remediate::UNBOUNDED_WINDOW;
use crate::incident::{Event, Incident, IncidentId, State};
use crate::notify::{
    BreakerWindow, CheckReport, Diagnostic, Escalation, EscalationReason, RunSummary, StepReport,
    safe_link, silence_url,
};
use crate::plan::{Plan, PlannedTarget};
use crate::recipe::Routes;
use crate::recipe::shell::{RunAs, remote_line};
use crate::store::{DiagnosticsClaim, IncidentDetail, Store, StoreError};

/// How many incidents one pass takes: a flood (1,000 unmatched alerts in one
/// notification) is taken in one pass, so a real page behind it is not a dozen passes away.
const ESCALATE_BATCH: usize = 2048;
/// A notify-only recipe's diagnostics run at most once per this window per target.
const NOTIFIED_DIAGNOSTICS_WINDOW: Duration = Duration::from_secs(60);
/// Escalations being prepared at once (each reads the journal, maybe runs diagnostics).
const ESCALATE_PARALLEL: usize = 64;

pub struct Escalator {
    store: Arc<dyn Store>,
    /// Runs the recipe's `attach` diagnostics (its executor and host turns); `None` in
    /// dry-run (nothing is run then).
    remediator: Option<Arc<Remediator>>,
    /// Channels for an incident whose plan names none (routes by its labels, then the
    /// default); the planner already routed every plan it made.
    routes: Arc<Routes>,
    diagnostic_timeout: Duration,
    /// Incidents being escalated now, so a pass never takes one twice.
    in_progress: Mutex<HashSet<IncidentId>>,
    /// Tells the outbox there is something to deliver.
    outbox_wake: Arc<Notify>,
    /// Bounds the escalations prepared at once (first come, first served).
    slots: Arc<tokio::sync::Semaphore>,
    /// Signs the approve/deny links of an `approval` page; `None` without `[approval]`.
    approval_links: Option<Arc<crate::approval::LinkSigner>>,
    /// Counts `denied` outcomes when they are paged: a deny is decided in the store, by
    /// this process (link, API) or another (`salve deny`), and every one is paged once.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The routes a reload brought in (`routes` is the start's, for a salve without one).
    live: Option<crate::reload::Live>,
}

impl Escalator {
    pub fn new(
        store: Arc<dyn Store>,
        remediator: Option<Arc<Remediator>>,
        routes: Arc<Routes>,
        diagnostic_timeout: Duration,
        outbox_wake: Arc<Notify>,
    ) -> Escalator {
        Escalator {
            store,
            remediator,
            routes,
            diagnostic_timeout,
            in_progress: Mutex::new(HashSet::new()),
            outbox_wake,
            slots: Arc::new(tokio::sync::Semaphore::new(ESCALATE_PARALLEL)),
            approval_links: None,
            metrics: None,
            live: None,
        }
    }

    /// The same escalator, counting the `denied` outcomes it pages in `metrics`.
    pub fn with_metrics(self, metrics: Arc<crate::metrics::Metrics>) -> Escalator {
        Escalator {
            metrics: Some(metrics),
            ..self
        }
    }

    /// The same escalator, routing plans that name no channel by the routes in force
    /// now (a reload's), not the start's.
    pub fn with_live_routes(self, live: crate::reload::Live) -> Escalator {
        Escalator {
            live: Some(live),
            ..self
        }
    }

    /// The same escalator, putting approve/deny links signed by `links` on approval pages.
    pub fn with_approval_links(self, links: Option<Arc<crate::approval::LinkSigner>>) -> Escalator {
        Escalator {
            approval_links: links,
            ..self
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
                let _slot = Arc::clone(&this.slots).acquire_owned().await;
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
        let mut escalation = self.report(&detail, reason).await;
        if reason == EscalationReason::Approval {
            self.approval_links(&mut escalation, incident.id).await?;
        }
        let plan = detail.incident.plan.as_ref();
        let channels = match plan.map(|p| p.escalate.clone()).filter(|c| !c.is_empty()) {
            Some(channels) => channels,
            None => match &self.live {
                Some(live) => live
                    .current()
                    .escalation_routes
                    .channels_for(&incident.labels)
                    .to_vec(),
                None => self.routes.channels_for(&incident.labels).to_vec(),
            },
        };
        // A silent pause journals the incident and pages no one (queued to no channel).
        let silent = detail
            .events
            .iter()
            .any(|entry| matches!(entry.event, Event::Paused { silent: true, .. }));
        let channels = if silent { Vec::new() } else { channels };
        if channels.is_empty() && !silent {
            tracing::warn!(incident = %incident.id, reason = %reason, "no escalation route: neither the recipe, nor a route, nor escalation.default names a channel");
        }
        let payload = serde_json::to_value(&escalation).unwrap_or(Value::Null);
        self.store
            .enqueue_escalation(incident.id, reason, &channels, &payload)
            .await?;
        tracing::info!(incident = %incident.id, reason = %reason, channels = ?channels, "escalation queued");
        if let Some(metrics) = &self.metrics
            && incident.state == State::Denied
        {
            metrics.incident_outcome(State::Denied);
        }
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// The approve and deny links of the incident's open approval request, signed.
    async fn approval_links(
        &self,
        escalation: &mut Escalation,
        id: IncidentId,
    ) -> Result<(), StoreError> {
        let (Some(signer), Some(request)) = (&self.approval_links, self.store.approval(id).await?)
        else {
            return Ok(());
        };
        let link = |action| {
            signer.link(&crate::approval::LinkClaim {
                incident: id,
                action,
                expires_at: request.expires_at,
                plan_digest: request.plan_digest.clone(),
                nonce: request.nonce.clone(),
            })
        };
        escalation.approve_url = Some(link(crate::approval::LinkAction::Approve));
        escalation.deny_url = Some(link(crate::approval::LinkAction::Deny));
        escalation.approval_expires_at = Some(request.expires_at);
        Ok(())
    }

    /// Everything the human needs, from the journal plus diagnostics run now.
    async fn report(&self, detail: &IncidentDetail, reason: EscalationReason) -> Escalation {
        let incident = &detail.incident;
        let plan = incident.plan.as_ref();
        let target = plan.and_then(|p| p.target.clone());
        let recipe = plan.and_then(|p| p.recipe.clone());
        let alertname = incident.alertname.clone();
        let summary = match (reason, &target) {
            (EscalationReason::Novel, _) => format!(
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
        let breaker_key = plan.and_then(Plan::breaker_key);
        let breaker = match (plan.and_then(|p| p.breaker.as_ref()), &recipe, breaker_key) {
            (Some(breaker), Some(recipe), Some(key)) => {
                let runs = self
                    .store
                    .runs_in_window(recipe, key, breaker.window)
                    .await
                    .unwrap_or_default();
                Some(BreakerWindow {
                    key: key.to_owned(),
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
                | State::Notified
        );
        let (diagnostics, diagnostics_omitted) = match (plan, &target, &self.remediator) {
            (Some(plan), Some(target), Some(remediator))
                if wants_diagnostics && !plan.attach.is_empty() =>
            {
                match self.diagnostics(remediator, incident, plan, target).await {
                    Ok(diagnostics) => (diagnostics, None),
                    Err(omitted) => (Vec::new(), Some(omitted)),
                }
            }
            // In dry-run salve connects nowhere, diagnostics included; the page says so.
            (Some(plan), Some(_), None)
                if incident.state == State::Notified && !plan.attach.is_empty() =>
            {
                (
                    Vec::new(),
                    Some("salve runs in dry-run: nothing is run on any host".to_owned()),
                )
            }
            _ => (Vec::new(), None),
        };
        Escalation {
            incident_id: incident.id.0,
            reason,
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
            diagnostics_omitted,
            // Only http(s) links, without credentials: a `javascript:` generatorURL or a
            // `user:password@` externalURL from the sender never reaches a page.
            generator_url: incident.generator_url.as_deref().and_then(safe_link),
            silence_url: incident
                .external_url
                .as_deref()
                .and_then(safe_link)
                .map(|url| silence_url(&url, &incident.labels)),
            created_at: Utc::now(),
            recipe_description: plan.and_then(|p| p.description.clone()),
            runbook: plan.and_then(|p| p.runbook.clone()),
            approve_url: None,
            deny_url: None,
            approval_expires_at: None,
        }
    }

    /// The recipe's `attach` commands run now on the target, or why they were not: an
    /// incident that was not run collects them at most once per breaker window per
    /// (recipe, target); none run while a remediation runs on the host (they wait for its
    /// turn, at most `diagnostic_timeout`) or while the host is held for a cut command.
    async fn diagnostics(
        &self,
        remediator: &Remediator,
        incident: &Incident,
        plan: &Plan,
        target: &PlannedTarget,
    ) -> Result<Vec<Diagnostic>, String> {
        let was_run = matches!(
            incident.state,
            State::Failed | State::VerifyFailed | State::Interrupted
        );
        // A notify-only recipe has no breaker; its diagnostics are bounded per target by a
        // short window of their own, so a flood of one alert runs them once, not per copy.
        let window = match (&plan.breaker, incident.state) {
            (Some(breaker), _) => breaker.window,
            (None, State::Notified) => NOTIFIED_DIAGNOSTICS_WINDOW,
            (None, _) => UNBOUNDED_WINDOW,
        };
        let recipe = plan.recipe.as_deref().unwrap_or_default();
        // Claimed before waiting for the host, so a flood of not-run incidents for one
        // target has one waiter, not hundreds.
        let claim = self
            .store
            .claim_diagnostics(
                recipe,
                &target.name,
                incident.id,
                (!was_run).then_some(window),
            )
            .await
            .map_err(|e| format!("the store could not record them ({e})"))?;
        if let DiagnosticsClaim::Recent { at, incident: by } = claim {
            return Err(format!(
                "last collected at {} for incident #{} (at most once per {} for {} on {})",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                by.0,
                humantime::format_duration(window),
                recipe,
                target.name
            ));
        }
        let Ok(_turn) =
            tokio::time::timeout(self.diagnostic_timeout, remediator.host_turn(&target.name)).await
        else {
            return Err(format!(
                "a remediation was still running on {} after {}; diagnostics never run beside one",
                target.name,
                humantime::format_duration(self.diagnostic_timeout)
            ));
        };
        if let Some((left, why)) = remediator.held_for(&target.name) {
            return Err(format!(
                "{} is held for another {} ({why})",
                target.name,
                humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
            ));
        }
        let mut diagnostics = Vec::new();
        for command in &plan.attach {
            diagnostics.push(self.diagnose(remediator, target, command, plan.sudo).await);
        }
        Ok(diagnostics)
    }

    async fn diagnose(
        &self,
        remediator: &Remediator,
        target: &PlannedTarget,
        command: &str,
        sudo: bool,
    ) -> Diagnostic {
        let line = remote_line(command, RunAs::sudo_if(sudo), self.diagnostic_timeout);
        let (outcome, held) = remediator
            .run_holding_if_cut(target, &line, self.diagnostic_timeout)
            .await;
        if let Err(e) = held {
            tracing::error!(host = %target.name, error = %e, "cannot record the hold after a cut diagnostic");
        }
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
        .filter_map(|e| match &e.event {
            Event::StepFinished { step, command, end } => {
                let record = end.record();
                let text = |pick: fn(&crate::incident::event::CommandRecord) -> &String| {
                    record.map(pick).cloned().unwrap_or_default()
                };
                Some(StepReport {
                    step: u32::try_from(*step).unwrap_or(u32::MAX),
                    command: command.clone(),
                    outcome: end.outcome(),
                    exit_status: record.and_then(|r| r.exit_status),
                    stdout: text(|r| &r.stdout),
                    stderr: text(|r| &r.stderr),
                    stdout_truncated: record.is_some_and(|r| r.stdout_truncated),
                    stderr_truncated: record.is_some_and(|r| r.stderr_truncated),
                    duration_ms: record.map(|r| r.duration.as_millis() as u64),
                    error: end.error().map(str::to_owned),
                })
            }
            _ => None,
        })
        .collect()
}

/// The last poll's result of every check.
fn last_checks(detail: &IncidentDetail) -> Vec<CheckReport> {
    detail
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::CheckPoll { results, .. } => {
                Some(results.iter().map(CheckReport::from).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}
