//! The journal. Everything salve knows about incidents lives behind the `Store` trait;
//! no SQL exists outside this module. SQLite (`sqlite.rs`) is the embedded default;
//! PostgreSQL (`postgres.rs`) fills the same trait for several replicas.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, JournalEntry, State};
use crate::plan::Plan;

#[cfg(test)]
mod contract;
pub mod postgres;
pub mod sqlite;

/// Open the store `settings.url` names: SQLite (the embedded default) or PostgreSQL
/// (several replicas), migrated. `password` is the resolved `store.password`.
pub async fn open(
    settings: &crate::config::StoreSettings,
    password: Option<crate::secret::Secret>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if settings.is_postgres() {
        let store = postgres::PgStore::connect(&postgres::PgConnect {
            url: settings.url.clone(),
            password,
            ca_file: settings.ca_file.clone(),
            pool_size: settings.pool_size,
        })
        .await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(
            &settings.url,
        )?))
    }
}

/// RFC 3339 in UTC with exactly nine fractional digits, the journal's time format in
/// both stores: fixed width, so SQL text comparison and ORDER BY agree with time order,
/// and the key of an alert is the same text whichever precision the monitor sent.
pub(crate) fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A time stored by [`time_text`] (any RFC 3339 text, in fact), or why not.
pub(crate) fn parse_time_text(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| format!("bad time {text:?}: {e}"))
}

/// The candidates (oldest first) on hosts this replica works already, and on up to
/// `max_hosts` hosts in all: a replica takes no more hosts than it can work, so the
/// others get theirs.
pub(crate) fn pick_within_hosts(
    candidates: Vec<(i64, Option<String>)>,
    mut hosts: std::collections::BTreeSet<String>,
    max_hosts: usize,
) -> Vec<i64> {
    let mut picked = Vec::new();
    for (id, target) in candidates {
        match target {
            // Planned without a target: it fails at the alert gate, on no host.
            None => picked.push(id),
            Some(target) if hosts.contains(&target) => picked.push(id),
            Some(target) if hosts.len() < max_hosts => {
                hosts.insert(target);
                picked.push(id);
            }
            Some(_) => {}
        }
    }
    picked
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not commit or read (disk, lock, I/O). Intake answers 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A store URL or schema problem found at open time.
    #[error("store configuration: {0}")]
    Config(String),
    /// A state change that the current state does not allow (lost a race, or a bug).
    #[error("incident {id}: expected state {expected}, found {found}")]
    StateConflict {
        id: IncidentId,
        expected: State,
        found: State,
    },
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    /// A write to a running incident by a replica that does not own it (its lease ran
    /// out and another replica took the incident over): nothing was written.
    #[error("incident {id} is owned by replica {owner:?}, not this one (its lease ran out?)")]
    NotOwner { id: IncidentId, owner: Option<i64> },
    /// `resolved_before_run` refused: the incident's alert fired again since it was read,
    /// so it must run (or escalate) instead.
    #[error("incident {0}: its alert is firing again")]
    AlertFiring(IncidentId),
}

/// What ingesting one alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub id: IncidentId,
    /// A new incident; `false` for a re-send or HA copy of a known one.
    pub created: bool,
    /// This notification moved the incident from firing to resolved.
    pub resolved_now: bool,
}

/// Whether a remediation may start (the circuit breaker's answer).
#[derive(Debug, Clone, PartialEq)]
pub enum RunGate {
    /// The run is recorded and the incident is `remediating`.
    Started,
    /// The breaker is open: the incident was not touched. `runs` are those counted.
    BreakerOpen { runs: Vec<RunRecord> },
    /// The alert resolved while the incident waited: nothing was recorded or changed.
    AlertResolved,
    /// Another incident runs on the target now (on any replica), or the target is held
    /// (a command may still run there): nothing was recorded; ask again after `retry_after`.
    HostBusy {
        why: String,
        retry_after: std::time::Duration,
    },
}

/// What a replica's heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Replicas whose lease runs now, this one included.
    pub live_replicas: usize,
    /// This replica's lease had run out before the renewal (a stall, a lost database):
    /// a lapsed identity is dead, so the process now serves under a new replica number,
    /// and the runs it had claimed are taken over like a dead replica's (maybe by itself).
    pub lapsed: bool,
}

/// A host nothing may start on before `until` (see `Store::hold_host`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostHold {
    pub host: String,
    pub until: DateTime<Utc>,
    pub why: String,
}

/// One remediation run counted by a breaker (also journaled, in `breaker_open`).
pub use crate::incident::event::RunRecord;

/// What a breaker reset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BreakerReset {
    /// The incident whose journal records the reset (and who did it).
    pub incident: IncidentId,
    /// Runs counted since the previous reset, now forgotten.
    pub runs_forgotten: usize,
}

/// What `reset_breaker` did: reset, or why there was nothing to reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerResetOutcome {
    Reset(BreakerReset),
    /// No run of the recipe was ever recorded (no such recipe, or it never ran).
    UnknownRecipe,
    /// The recipe ran, but never under that key; `known_keys` are some it ran under.
    UnknownKey {
        known_keys: Vec<String>,
    },
}

/// A recipe's breaker setting, as planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerLimit {
    /// `None`: the recipe has no breaker (runs are still counted).
    pub max_runs: Option<u32>,
    pub window: std::time::Duration,
}

/// One (recipe, breaker key) breaker, for `salve breaker list` and the metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerStatus {
    pub recipe: String,
    /// The recipe's rendered `[breaker] key`, or the target's name without one.
    pub key: String,
    /// The target of the newest run.
    pub target: String,
    pub runs_in_window: i64,
    pub max_runs: Option<u32>,
    pub window_seconds: i64,
    pub open: bool,
    pub last_run: DateTime<Utc>,
    pub reset_at: Option<DateTime<Utc>>,
}

/// A queued escalation to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: IncidentId,
    pub reason: EscalationReason,
    pub channel: String,
    pub payload: serde_json::Value,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// Why a page is followed up ("resolved"): its alert resolved, or a later incident of the
/// same alert (its id) was fixed and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpCause {
    Resolved,
    Succeeded(IncidentId),
}

/// A sent page whose incident is over (see `FollowUpCause`), not yet looked at for a
/// follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpCandidate {
    /// The page's outbox row.
    pub page_id: i64,
    pub incident_id: IncidentId,
    pub channel: String,
    /// The page as queued (an `Escalation`).
    pub payload: serde_json::Value,
    pub cause: FollowUpCause,
    /// The page went out in a digest (no thread or dedup key of its own to close).
    pub digested: bool,
}

/// A queued follow-up to one channel, with the page it follows.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUpItem {
    pub id: i64,
    pub incident_id: IncidentId,
    pub channel: String,
    pub page: serde_json::Value,
    pub cause: FollowUpCause,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// Whether an incident may run the recipe's `attach` diagnostics now.
#[derive(Debug, Clone, PartialEq)]
pub enum DiagnosticsClaim {
    /// Yes; the run is recorded for its (recipe, target).
    Granted,
    /// No: they ran for the same (recipe, target) at `at`, for `incident`, within the window.
    Recent {
        at: DateTime<Utc>,
        incident: IncidentId,
    },
}

/// An alertname salve could not handle on its own, for `salve gaps`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Gap {
    pub alertname: String,
    /// Incidents with no recipe or that ended escalated.
    pub incidents: i64,
    pub unmatched: i64,
    pub escalated: i64,
    pub last_seen: DateTime<Utc>,
    pub last_reason: Option<String>,
}

/// An approval request of an approve-mode plan, as the store holds it (`approvals`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRequest {
    pub incident: IncidentId,
    /// `Plan::digest` of the plan waiting; links and decisions are for this plan only.
    pub plan_digest: String,
    /// Carried by the request's links; a new request (a new plan) has a new one.
    pub nonce: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `approved`, `denied`, `expired` or `resolved`; `None` while it waits.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
}

/// An operator's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalDecision {
    Approve,
    Deny { reason: String },
}

/// How much of a denial's reason is kept: it is read on pages and terminals.
pub const MAX_DENY_REASON_CHARS: usize = 500;

impl ApprovalDecision {
    /// A denial, whoever gives it (link, web UI, API, CLI): `reason` trimmed and cut to
    /// [`MAX_DENY_REASON_CHARS`]; `fallback` when it is empty.
    pub fn deny(reason: Option<&str>, fallback: &str) -> ApprovalDecision {
        let reason: String = reason
            .unwrap_or_default()
            .trim()
            .chars()
            .take(MAX_DENY_REASON_CHARS)
            .collect();
        ApprovalDecision::Deny {
            reason: if reason.is_empty() {
                fallback.to_owned()
            } else {
                reason
            },
        }
    }
}

/// What a link proves about the request it was issued for (CLI and API have none: they
/// decide on the plan the incident holds now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProof {
    pub plan_digest: String,
    pub nonce: String,
}

/// What `decide_approval` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Recorded: approved (the incident is `matched` again) or denied (`denied`).
    Decided { plan_digest: String },
    /// Nothing was written, for this reason.
    Refused(ApprovalRefusal),
}

/// Why a decision was not taken. Each is said to the human who tried (page, CLI, API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error("incident {0} does not exist")]
    NotFound(IncidentId),
    #[error("incident {id} is {state}, not awaiting approval")]
    NotAwaiting { id: IncidentId, state: State },
    #[error("this approval request was already decided: {decision} by {by}")]
    AlreadyDecided { decision: String, by: String },
    #[error("this approval request expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the plan changed since this link was sent (a new plan waits; use its link)")]
    PlanChanged,
    #[error("the alert resolved: the plan is no longer needed")]
    AlertResolved,
}

/// An incident with its journal, for history and the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub events: Vec<JournalEntry>,
}

/// Which incidents a listing shows (`GET /api/v1/incidents`); every condition given must
/// hold. `host` is the plan's target name, `recipe` the plan's recipe.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub state: Option<State>,
    pub alertname: Option<String>,
    pub host: Option<String>,
    pub recipe: Option<String>,
    /// First seen at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Cursor: only ids below this one.
    pub before: Option<IncidentId>,
}

/// Who the fleet error budget's own pause is `created_by`.
pub const ERROR_BUDGET_BY: &str = "error-budget";

/// An operator's pause (or the error budget's), as stored: active while not resumed and
/// `until` is absent (until a human resumes it) or later than now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pause {
    pub id: i64,
    /// `None`: every recipe.
    pub recipe: Option<String>,
    /// `None`: every host.
    pub host: Option<String>,
    pub reason: String,
    /// Paused incidents are journaled but not escalated.
    pub silent: bool,
    /// An API token's name, `cli:USER`, or `error-budget`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub resumed_at: Option<DateTime<Utc>>,
    pub resumed_by: Option<String>,
}

impl Pause {
    /// This pause stops `recipe` on `host` (exact names; an absent one is any).
    pub fn covers(&self, recipe: &str, host: &str) -> bool {
        self.recipe.as_deref().is_none_or(|r| r == recipe)
            && self.host.as_deref().is_none_or(|h| h == host)
    }
}

/// A pause to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPause {
    pub recipe: Option<String>,
    pub host: Option<String>,
    pub reason: String,
    pub silent: bool,
    pub created_by: String,
    /// `None`: until a human resumes it.
    pub until: Option<DateTime<Utc>>,
}

/// One run the fleet error budget counts: it failed or failed verification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetFailure {
    pub incident_id: IncidentId,
    pub state: State,
    pub at: DateTime<Utc>,
    pub alertname: Option<String>,
    pub target: Option<String>,
}

/// Where the fleet error budget stands.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetState {
    /// Its pause is active: nothing to count until a human resumes it.
    Tripped(Pause),
    /// The failures in the window, after the last resume of its pause (oldest first).
    Counting(Vec<BudgetFailure>),
}

/// The error budget trips: pause everything and page once, journaled on `incident`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetTrip {
    /// The run whose failure spent the budget.
    pub incident: IncidentId,
    /// The pause's reason.
    pub reason: String,
    pub failures: Vec<IncidentId>,
    /// The budget as configured, for the journal.
    pub max_failures: u32,
    pub window: String,
    /// The page goes to these channels, once (reason `error_budget`).
    pub channels: Vec<String>,
    pub payload: serde_json::Value,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Journal the alerts of one notification; returns only once they are durable.
    /// Concurrent callers share commits (group commit). Keyed by (fingerprint, startsAt)
    /// whatever the source: a known key updates last-seen, the receive counter
    /// (saturating) and the alert status, and never creates a second incident. An alert
    /// without startsAt joins the open incident of its fingerprint; a firing alert whose
    /// incident resolved but has not started yet (`received`/`matched`) fires that
    /// incident again rather than opening a second one.
    async fn ingest(
        &self,
        alerts: Vec<Alert>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError>;

    /// Incidents waiting in `state`, oldest first.
    async fn incidents_in_state(
        &self,
        state: State,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Record the plan and move `id` from `from` to `to`, journaling both, atomically.
    async fn record_plan(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        plan: &Plan,
    ) -> Result<(), StoreError>;

    /// `record_plan` for several incidents (a planning pass), each with its own answer;
    /// a store may share one transaction among them (nothing is written for one that is
    /// no longer in its `from` state).
    async fn record_plans(
        &self,
        plans: &[(IncidentId, State, State, &Plan)],
    ) -> Vec<Result<(), StoreError>> {
        futures_util::future::join_all(
            plans
                .iter()
                .map(|(id, from, to, plan)| self.record_plan(*id, *from, *to, plan)),
        )
        .await
    }

    /// Move `id` from `from` to `to` and journal `event`, atomically; `StateConflict`
    /// (and nothing written) when the incident is not in `from`, `AlertFiring` when `to`
    /// is `resolved_before_run` but the alert fires (again). `reason`, when set,
    /// replaces the incident's reason.
    async fn transition(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        reason: Option<String>,
        event: Event,
    ) -> Result<(), StoreError>;

    /// Journal one event (a step starting or ending, a check poll) without a state change.
    async fn append_event(&self, id: IncidentId, event: Event) -> Result<(), StoreError>;

    /// Start a remediation if the breaker allows, atomically: count the runs of
    /// (recipe, key) since `window` ago (or the last reset, if later); below
    /// `max_runs`, record this run, move `id` from `matched` to `remediating` and journal
    /// `started` (`remediation_started`) — and `first_step` after it, in the same
    /// transaction, so the first command's `step_started` costs no commit of its own;
    /// otherwise change nothing. An incident whose alert has resolved is not started
    /// (`AlertResolved`); one no longer `matched` is a `StateConflict`. `now` is the
    /// caller's clock: the window ends there and the run is recorded at it.
    #[allow(clippy::too_many_arguments)]
    async fn begin_run(
        &self,
        id: IncidentId,
        recipe: &str,
        target: &str,
        key: &str,
        limit: BreakerLimit,
        started: Event,
        first_step: Option<Event>,
        now: DateTime<Utc>,
    ) -> Result<RunGate, StoreError>;

    /// Records that nothing may start on `host` before `until` (keeps a later `until`
    /// already recorded). Holds past their time are dropped.
    async fn hold_host(
        &self,
        host: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError>;

    /// The holds not yet over, by host.
    async fn host_holds(&self) -> Result<Vec<HostHold>, StoreError>;

    /// Runs of (recipe, breaker key) counted in the window now (after any reset), oldest first.
    async fn runs_in_window(
        &self,
        recipe: &str,
        key: &str,
        window: std::time::Duration,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Every (recipe, breaker key) with a run in its window, open or not.
    async fn breakers(&self) -> Result<Vec<BreakerStatus>, StoreError>;

    /// Forget the runs of (recipe, breaker key) so far: the next incident runs. `by` (an
    /// API token's name, `cli:USER`) is journaled as a `breaker_reset` event on the key's
    /// newest incident, in the same transaction. Nothing is written when no incident ever
    /// ran or was stopped by that breaker (`UnknownRecipe` / `UnknownKey`).
    async fn reset_breaker(
        &self,
        recipe: &str,
        key: &str,
        by: &str,
    ) -> Result<BreakerResetOutcome, StoreError>;

    /// Put `matched` incident `id` in `awaiting_approval` for the plan with `plan_digest`,
    /// until `expires_at`, replacing any earlier request (its links stop working), and
    /// journal `approval_requested`, atomically.
    async fn request_approval(
        &self,
        id: IncidentId,
        plan_digest: &str,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The approval request of `id`, decided or not.
    async fn approval(&self, id: IncidentId) -> Result<Option<ApprovalRequest>, StoreError>;

    /// Decide `id`'s approval request as `by`, atomically, only if the incident is still
    /// `awaiting_approval`, the request is undecided and not expired, the alert has not
    /// resolved, and the plan is still the one requested (and, with a `link`, the one the
    /// link was issued for, under the same request). Approved: back to `matched` (the
    /// gates run again); denied: `denied`, to be escalated once.
    async fn decide_approval(
        &self,
        id: IncidentId,
        decision: ApprovalDecision,
        by: &str,
        link: Option<LinkProof>,
    ) -> Result<ApprovalOutcome, StoreError>;

    /// Ends the undecided requests past their time at `now` (`approval_expired`) and those
    /// whose alert resolved (`resolved_before_run`); returns the incidents ended.
    async fn expire_approvals(&self, now: DateTime<Utc>) -> Result<Vec<IncidentId>, StoreError>;

    /// Incidents in an escalating state whose escalation is not queued yet, claimed for
    /// this replica (none another live replica claimed), so one replica escalates each.
    async fn incidents_to_escalate(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;

    /// Queue `payload` for each channel (once per incident, reason and channel), mark the
    /// incident escalated and journal it, atomically.
    async fn enqueue_escalation(
        &self,
        id: IncidentId,
        reason: EscalationReason,
        channels: &[String],
        payload: &serde_json::Value,
    ) -> Result<(), StoreError>;

    /// Pending escalations whose next attempt is due, oldest first, claimed for this
    /// replica for a while (none another live replica is delivering): each row is
    /// delivered by one replica at a time.
    async fn due_escalations(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// The channel accepted it: mark sent and journal it on the incident.
    async fn escalation_sent(&self, item: &OutboxItem) -> Result<(), StoreError>;

    /// The channel refused or failed: count the attempt, keep the error, try again at
    /// `next_attempt_at`, and journal it on the incident.
    async fn escalation_failed(
        &self,
        item: &OutboxItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Escalations not yet accepted by their channel.
    async fn outbox_pending(&self) -> Result<i64, StoreError>;

    /// May incident `id` run the `attach` diagnostics of (recipe, target) now? With a
    /// `window`, not if they ran for that key within it (`Recent`, nothing written);
    /// otherwise (and always without a window) the run is recorded, atomically.
    async fn claim_diagnostics(
        &self,
        recipe: &str,
        target: &str,
        id: IncidentId,
        window: Option<std::time::Duration>,
    ) -> Result<DiagnosticsClaim, StoreError>;

    /// A new digest number for `size` escalations of `reason` to `channel`.
    async fn new_digest(&self, channel: &str, reason: &str, size: usize)
    -> Result<i64, StoreError>;

    /// The channel accepted digest `digest`: mark it and each of its rows sent, and journal
    /// `escalation_sent` (with the digest's number) on each incident, atomically.
    async fn digest_sent(&self, digest: i64, items: &[OutboxItem]) -> Result<(), StoreError>;

    /// The channel refused digest `digest`: as `escalation_failed` for each of its rows,
    /// atomically (they are retried, maybe in another digest).
    async fn digest_failed(
        &self,
        digest: i64,
        items: &[OutboxItem],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Alertnames with no recipe or that ended escalated, most frequent first.
    async fn gaps(&self, limit: usize) -> Result<Vec<Gap>, StoreError>;

    /// (remediations attempted, verified successes), all time.
    async fn remediation_totals(&self) -> Result<(i64, i64), StoreError>;

    /// Newest first, at most `limit`, only ids below `before` when given (the cursor of
    /// the next page). One query; no journals.
    async fn list_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// `list_incidents` narrowed by `filter`: newest first, at most `limit`, no journals.
    async fn incidents_matching(
        &self,
        filter: &IncidentFilter,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Retention: delete up to `batch` incidents in a final state whose last
    /// notification and newest journal entry are before `cutoff`, with their journal,
    /// runs, approval and delivered outbox/follow-up rows, atomically; returns how many.
    /// Never one with an undelivered outbox or follow-up row, an undecided approval, an
    /// escalation not yet queued, or a run a breaker window (ending at `now`) still counts.
    async fn prune_finished(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError>;

    /// Hand the journal's write-ahead log back to the file and truncate it (after prunes).
    /// Best effort: busy readers only make it do less.
    async fn checkpoint(&self) -> Result<(), StoreError>;

    /// `list_incidents` with each incident's journal, read in one snapshot (two queries,
    /// however many incidents). Callers page with small limits: journals can be large.
    async fn incident_details(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<IncidentDetail>, StoreError>;

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>, StoreError>;

    /// Number of incidents per state (for metrics at startup and `/readyz`).
    async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError>;

    /// Record a pause; it is active at once for every process on this store.
    async fn create_pause(&self, pause: NewPause) -> Result<Pause, StoreError>;

    /// Resume the active pause `id` (every active pause when `None`), recording `by` and
    /// when; returns those resumed (none: no such active pause).
    async fn resume_pauses(&self, id: Option<i64>, by: &str) -> Result<Vec<Pause>, StoreError>;

    /// The pauses active at `now`, oldest first.
    async fn active_pauses(&self, now: DateTime<Utc>) -> Result<Vec<Pause>, StoreError>;

    /// The fleet error budget at `now`: tripped (its pause active), or the `failed` and
    /// `verify_failed` finals of the last `window` since its pause was last resumed.
    async fn error_budget(
        &self,
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<BudgetState, StoreError>;

    /// Trip the error budget, atomically: unless its pause is already active, record an
    /// open-ended pause of everything by `error-budget`, queue the page on each channel
    /// (reason `error_budget`, on `trip.incident`, leaving that incident's own escalation
    /// alone) and journal `error_budget_tripped` there. `None` when it had tripped already.
    async fn trip_error_budget(
        &self,
        trip: BudgetTrip,
        now: DateTime<Utc>,
    ) -> Result<Option<Pause>, StoreError>;

    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Sent pages not yet looked at for a follow-up whose incident's alert resolved or
    /// whose alert (same fingerprint and labels) a later incident fixed, oldest first.
    async fn follow_up_candidates(
        &self,
        limit: usize,
    ) -> Result<Vec<FollowUpCandidate>, StoreError>;

    /// For each candidate, queue its follow-up (`true`; once per incident and channel,
    /// journaled `follow_up_queued`) or record that it gets none, atomically.
    async fn decide_follow_ups(
        &self,
        decisions: Vec<(FollowUpCandidate, bool)>,
    ) -> Result<(), StoreError>;

    /// Pending follow-ups whose next attempt is due, oldest first, claimed as
    /// `due_escalations` claims.
    async fn due_follow_ups(&self, limit: usize) -> Result<Vec<FollowUpItem>, StoreError>;

    /// The channel accepted the follow-up: mark it sent and journal `follow_up_sent`.
    async fn follow_up_sent(&self, item: &FollowUpItem) -> Result<(), StoreError>;

    /// The channel refused or failed: count the attempt, keep the error, try again at
    /// `next_attempt_at`.
    async fn follow_up_failed(
        &self,
        item: &FollowUpItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Serve this store as a replica named `name` (host and pid, for humans), with a
    /// lease of `lease` that `heartbeat` renews. Returns its number: new and larger for
    /// every process, never reused, and the fencing token of what it claims. SQLite serves
    /// one replica at a time: joining ends every earlier one.
    async fn join_replicas(
        &self,
        name: &str,
        lease: std::time::Duration,
    ) -> Result<i64, StoreError>;

    /// Renew this replica's lease while it runs, else join again under a new number (see
    /// `Heartbeat::lapsed`); says how many replicas are live.
    async fn heartbeat(&self) -> Result<Heartbeat, StoreError>;

    /// End this replica's lease now (a clean stop) and release the `matched` incidents it
    /// claimed, so other replicas take them at once.
    async fn leave_replicas(&self) -> Result<(), StoreError>;

    /// Claim `matched` incidents for this replica to run, oldest first: those no live
    /// replica owns, and only on targets where no other live replica owns a `matched`,
    /// `remediating` or `verifying` incident (one replica works a host's queue, in order).
    /// Includes those this replica already owns.
    /// Takes new hosts only up to `max_hosts` hosts in all, so other replicas get theirs.
    async fn claim_matched(
        &self,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Claim the `remediating`/`verifying` incidents whose owner is no longer live (it
    /// died, stopped, or predates replicas), to be recovered like a restart does:
    /// `interrupted`, or run again when idempotent.
    async fn claim_orphans(&self) -> Result<Vec<Incident>, StoreError>;
}

#[cfg(test)]
mod approval_decision_tests {
    use super::{ApprovalDecision, MAX_DENY_REASON_CHARS};

    #[test]
    fn a_denial_keeps_a_sentence_of_reason_and_names_one_when_given_none() {
        let fallback = "denied by CLI (no reason given)";
        let reason = |decision| match decision {
            ApprovalDecision::Deny { reason } => reason,
            ApprovalDecision::Approve => unreachable!(),
        };
        assert_eq!(
            reason(ApprovalDecision::deny(Some("  not now \n"), fallback)),
            "not now"
        );
        assert_eq!(
            reason(ApprovalDecision::deny(Some(" \t"), fallback)),
            fallback
        );
        assert_eq!(reason(ApprovalDecision::deny(None, fallback)), fallback);
        let huge = "x".repeat(1 << 20);
        let kept = reason(ApprovalDecision::deny(Some(&huge), fallback));
        assert_eq!(kept.chars().count(), MAX_DENY_REASON_CHARS);
    }
}

#[cfg(test)]
mod claim_tests {
    use super::pick_within_hosts;

    #[test]
    fn a_claim_takes_whole_host_queues_up_to_its_share_of_hosts() {
        let candidates = vec![
            (1, Some("a".to_owned())),
            (2, Some("b".to_owned())),
            (3, Some("a".to_owned())),
            (4, Some("c".to_owned())),
            (5, None),
            (6, Some("b".to_owned())),
        ];
        assert_eq!(
            pick_within_hosts(candidates.clone(), Default::default(), 2),
            vec![1, 2, 3, 5, 6]
        );
        let mine = ["c".to_owned()].into_iter().collect();
        assert_eq!(pick_within_hosts(candidates, mine, 2), vec![1, 3, 4, 5]);
    }
}
