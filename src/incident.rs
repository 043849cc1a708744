//! Incidents: one per (source, fingerprint, startsAt), with the persisted state the
//! engine moves forward. Only the engine changes `state`; intake only creates and updates.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertStatus, Fingerprint, Source};
use crate::plan::{Mode, Plan, PlanOutcome};

pub mod event;

pub use event::{Event, JournalEntry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(pub i64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The incident state machine of DESIGN.md:
/// `received → matched | unmatched | refused | dry_run`, then for matched (enforce)
/// incidents `→ remediating → verifying → succeeded | failed | verify_failed`, or
/// `matched → resolved_before_run`. Escalation states come with the escalation stage.
/// An approve-mode plan goes `matched → awaiting_approval`, then back to `matched` when
/// approved, or `denied` / `approval_expired` / `resolved_before_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Journaled, not yet planned.
    Received,
    /// Planned in enforce mode; waiting for the remediation stage.
    Matched,
    /// No recipe matched (a novel failure).
    Unmatched,
    /// A recipe matched but the alert could not be acted on safely.
    Refused,
    /// Planned in dry-run: the plan is the outcome.
    DryRun,
    /// The alert resolved before its remediation started: nothing was run.
    ResolvedBeforeRun,
    /// Running the recipe's commands on the target.
    Remediating,
    /// Commands done; polling the checks.
    Verifying,
    /// Every check passed within the recipe's `within`.
    Succeeded,
    /// A command failed, timed out, or the target could not be reached.
    Failed,
    /// Commands ran but the checks did not all pass before `within` expired.
    VerifyFailed,
    /// Not run: the recipe already ran `max_runs` times for its breaker key (by default
    /// the target) in its window.
    BreakerOpen,
    /// Not run: the remediation rate limit stayed exhausted past `limits.max_wait`.
    RateLimited,
    /// salve stopped (crash, kill) while this incident's remediation was running; a
    /// command may have half-run, so it is escalated rather than re-run.
    Interrupted,
    /// A notify-only recipe matched: nothing was run but its diagnostics, and a human is
    /// paged with them (reason `known`), in enforce and dry-run alike.
    Notified,
    /// An approve-mode recipe's plan waits for a human's approve or deny (link, CLI, API).
    AwaitingApproval,
    /// A human denied the plan: nothing was run.
    Denied,
    /// No one approved the plan within `approval.timeout`: nothing was run.
    ApprovalExpired,
    /// Not run: a pause or a maintenance window covers its recipe and host (journaled
    /// `paused`); escalated (reason `paused`) unless the pause is silent.
    Paused,
}

impl State {
    pub const ALL: [State; 19] = [
        State::Received,
        State::Matched,
        State::Unmatched,
        State::Refused,
        State::DryRun,
        State::ResolvedBeforeRun,
        State::Remediating,
        State::Verifying,
        State::Succeeded,
        State::Failed,
        State::VerifyFailed,
        State::BreakerOpen,
        State::RateLimited,
        State::Interrupted,
        State::Notified,
        State::AwaitingApproval,
        State::Denied,
        State::ApprovalExpired,
        State::Paused,
    ];

    /// States in which a human is paged (with the escalation reason).
    pub fn escalation_reason(self) -> Option<EscalationReason> {
        match self {
            State::Failed => Some(EscalationReason::Failed),
            State::VerifyFailed => Some(EscalationReason::VerifyFailed),
            State::Unmatched => Some(EscalationReason::Novel),
            State::Refused => Some(EscalationReason::Refused),
            State::BreakerOpen => Some(EscalationReason::BreakerOpen),
            State::RateLimited => Some(EscalationReason::RateLimited),
            State::Interrupted => Some(EscalationReason::Interrupted),
            State::Notified => Some(EscalationReason::Known),
            State::AwaitingApproval => Some(EscalationReason::Approval),
            State::Denied => Some(EscalationReason::Denied),
            State::ApprovalExpired => Some(EscalationReason::ApprovalExpired),
            State::Paused => Some(EscalationReason::Paused),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => "received",
            State::Matched => "matched",
            State::Unmatched => "unmatched",
            State::Refused => "refused",
            State::DryRun => "dry_run",
            State::ResolvedBeforeRun => "resolved_before_run",
            State::Remediating => "remediating",
            State::Verifying => "verifying",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::VerifyFailed => "verify_failed",
            State::BreakerOpen => "breaker_open",
            State::RateLimited => "rate_limited",
            State::Interrupted => "interrupted",
            State::Notified => "notified",
            State::AwaitingApproval => "awaiting_approval",
            State::Denied => "denied",
            State::ApprovalExpired => "approval_expired",
            State::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a human is being asked to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// A remediation step failed, timed out, or the host was unreachable.
    Failed,
    /// The commands ran but the checks did not pass within the recipe's `within`.
    VerifyFailed,
    /// No recipe matched: a failure nobody has automated yet.
    Novel,
    /// A recipe matched but the alert could not be acted on safely.
    Refused,
    /// The same fix ran too often for its breaker key (by default the target): the
    /// circuit breaker stopped it.
    BreakerOpen,
    /// Remediations were over their rate limit for too long.
    RateLimited,
    /// salve stopped in the middle of a remediation; it is not re-run blindly.
    Interrupted,
    /// A notify-only recipe knows this failure; a human fixes it (the page names the
    /// recipe and carries its diagnostics and runbook).
    Known,
    /// An approve-mode recipe's plan waits for a human: the page carries approve/deny links.
    Approval,
    /// A human denied the plan; nothing was run.
    Denied,
    /// No one approved the plan in time; nothing was run.
    ApprovalExpired,
    /// A pause or a maintenance window kept salve from running the fix.
    Paused,
    /// Too many remediations failed fleet-wide: salve paused every remediation until a
    /// human resumes it (one page listing the failures).
    ErrorBudget,
}

impl EscalationReason {
    pub const ALL: [EscalationReason; 13] = [
        EscalationReason::Failed,
        EscalationReason::VerifyFailed,
        EscalationReason::Novel,
        EscalationReason::Refused,
        EscalationReason::BreakerOpen,
        EscalationReason::RateLimited,
        EscalationReason::Interrupted,
        EscalationReason::Known,
        EscalationReason::Approval,
        EscalationReason::Denied,
        EscalationReason::ApprovalExpired,
        EscalationReason::Paused,
        EscalationReason::ErrorBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::Failed => "failed",
            EscalationReason::VerifyFailed => "verify_failed",
            EscalationReason::Novel => "novel",
            EscalationReason::Refused => "refused",
            EscalationReason::BreakerOpen => "breaker_open",
            EscalationReason::RateLimited => "rate_limited",
            EscalationReason::Interrupted => "interrupted",
            EscalationReason::Known => "known",
            EscalationReason::Approval => "approval",
            EscalationReason::Denied => "denied",
            EscalationReason::ApprovalExpired => "approval_expired",
            EscalationReason::Paused => "paused",
            EscalationReason::ErrorBudget => "error_budget",
        }
    }

    pub fn parse(text: &str) -> Option<EscalationReason> {
        EscalationReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }

    /// The reason in words, for the first line of the report.
    pub fn headline(self) -> &'static str {
        match self {
            EscalationReason::Failed => "the remediation failed",
            EscalationReason::VerifyFailed => "the remediation ran but verification failed",
            EscalationReason::Novel => "no recipe handles this alert",
            EscalationReason::Refused => "salve refused to act on this alert",
            EscalationReason::BreakerOpen => {
                "the circuit breaker is open: this fix ran too often for this breaker key"
            }
            EscalationReason::RateLimited => "remediations were rate limited for too long",
            EscalationReason::Interrupted => "salve was interrupted during the remediation",
            EscalationReason::Known => {
                "a known failure that its recipe leaves to a human (notify-only)"
            }
            EscalationReason::Approval => "its recipe runs only after a human approves the plan",
            EscalationReason::Denied => "a human denied the plan; nothing was run",
            EscalationReason::ApprovalExpired => {
                "no one approved the plan in time; nothing was run"
            }
            EscalationReason::Paused => {
                "remediation is paused for this host or recipe: nothing was run"
            }
            EscalationReason::ErrorBudget => {
                "too many remediations failed: salve paused all remediation until a human resumes it"
            }
        }
    }
}

impl fmt::Display for EscalationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a plan puts its incident in.
pub fn state_for(plan: &Plan) -> State {
    match (plan.outcome, plan.mode) {
        (PlanOutcome::Unmatched, _) => State::Unmatched,
        (PlanOutcome::Refused, _) => State::Refused,
        (PlanOutcome::NotifyOnly, _) => State::Notified,
        (PlanOutcome::Planned, Mode::DryRun) => State::DryRun,
        (PlanOutcome::Planned, Mode::Enforce) => State::Matched,
    }
}

/// An incident as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub source: Source,
    pub fingerprint: Fingerprint,
    pub alertname: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// The alert's latest status as the monitor reported it.
    pub alert_status: AlertStatus,
    pub ends_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Shown (API, `history --json`) with any `user:password@` part redacted.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub generator_url: Option<String>,
    #[serde(serialize_with = "serialize_redacted_url")]
    pub external_url: Option<String>,
    pub state: State,
    /// Why the incident is in its state, for a human (refusal reason, ...).
    pub reason: Option<String>,
    pub plan: Option<Plan>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// How many notifications carried this alert (re-sends, HA copies, resolves).
    pub receive_count: i64,
    /// When its escalation was queued, if it was escalated.
    #[serde(default)]
    pub escalated_at: Option<DateTime<Utc>>,
}

/// A URL from the alert as shown to anyone: its credentials are a secret.
fn serialize_redacted_url<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    url.as_deref()
        .map(redact_url_credentials)
        .serialize(serializer)
}

/// `url` for display (API, history): its `user:password@` part redacted, the rest as
/// given. Text that is not an absolute URL is returned unchanged.
pub fn redact_url_credentials(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("redacted");
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Incident {
    /// The inventory name of the host its plan targets ("" when it has none).
    pub fn target_name(&self) -> &str {
        self.plan
            .as_ref()
            .and_then(|plan| plan.target.as_ref())
            .map_or("", |target| target.name.as_str())
    }

    /// The alert as it stands in the journal, for planning.
    pub fn to_alert(&self) -> crate::alert::Alert {
        crate::alert::Alert {
            source: self.source,
            fingerprint: self.fingerprint.clone(),
            status: self.alert_status,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: Some(self.starts_at),
            ends_at: self.ends_at,
            generator_url: self.generator_url.clone(),
            external_url: self.external_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are stored (outbox rows, journal) and shown: they never change.
    #[test]
    fn escalating_states_give_their_typed_reason_with_the_stored_words() {
        let reasons: Vec<(State, &str)> = State::ALL
            .into_iter()
            .filter_map(|state| state.escalation_reason().map(|r| (state, r.as_str())))
            .collect();
        assert_eq!(
            reasons,
            [
                (State::Unmatched, "novel"),
                (State::Refused, "refused"),
                (State::Failed, "failed"),
                (State::VerifyFailed, "verify_failed"),
                (State::BreakerOpen, "breaker_open"),
                (State::RateLimited, "rate_limited"),
                (State::Interrupted, "interrupted"),
                (State::Notified, "known"),
                (State::AwaitingApproval, "approval"),
                (State::Denied, "denied"),
                (State::ApprovalExpired, "approval_expired"),
                (State::Paused, "paused"),
            ]
        );
        for reason in EscalationReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
            assert_eq!(EscalationReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(EscalationReason::parse("Failed"), None);
    }
}
