//! The journal's events: one tagged enum defines every event salve writes and its fields.
//! The engine and the store write variants; history, the API, the escalation report and
//! crash recovery read them. Stored as a `kind` column plus the remaining fields as JSON
//! (`to_row` / `from_row`); nothing outside this file builds or picks apart that JSON.
//! A leaf: it never imports the engine, the store, the channels or the config.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertStatus, Source};
use crate::incident::{EscalationReason, IncidentId, State};
use crate::plan::{Mode, PlanOutcome, PlannedTarget};

/// One event of an incident's journal. The store stamps the time (`JournalEntry::at`).
/// The JSON of a variant minus its `kind` is the row's `detail`, exactly as salve wrote it
/// before this type existed: rows of older processes parse, and the API shows the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A new incident from a notification.
    Received {
        status: AlertStatus,
        #[serde(with = "journal_time")]
        received_at: DateTime<Utc>,
    },
    /// The monitor said the alert resolved.
    Resolved {
        #[serde(with = "journal_time::optional")]
        ends_at: Option<DateTime<Utc>>,
        #[serde(with = "journal_time")]
        received_at: DateTime<Utc>,
    },
    /// Firing again before anything ran, with the new start if it moved.
    Refired {
        #[serde(with = "journal_time")]
        received_at: DateTime<Utc>,
        #[serde(flatten)]
        new_start: Option<NewStart>,
    },
    /// A start salve had assumed (the sender gave none) replaced by the monitor's.
    StartKnown {
        #[serde(flatten)]
        start: NewStart,
        source: Source,
    },
    /// The planner's outcome, and the state it put the incident in.
    Planned {
        outcome: PlanOutcome,
        recipe: Option<String>,
        mode: Mode,
        state: State,
    },
    /// The breaker let the run start (`matched` → `remediating`).
    RemediationStarted {
        target: PlannedTarget,
        steps: usize,
        sudo: bool,
        /// The user salve logs in as: the target's own `user`, else `[ssh] user`. Absent
        /// in entries journaled before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssh_user: Option<String>,
    },
    /// Committed before step `step` (1-based) is sent: `executed` is the exact line.
    StepStarted {
        step: usize,
        command: String,
        executed: String,
    },
    StepFinished {
        step: usize,
        command: String,
        #[serde(flatten)]
        end: StepEnd,
    },
    /// The incident waited for its host (a command cut earlier may still run there).
    HostHeld {
        host: String,
        #[serde(rename = "wait_ms", with = "millis")]
        wait: Duration,
        why: String,
    },
    /// `remediating` → `verifying`; no window when the recipe has no checks.
    VerifyStarted {
        checks: usize,
        #[serde(flatten)]
        window: Option<VerifyWindow>,
    },
    CheckPoll {
        poll: u32,
        passed: bool,
        results: Vec<CheckResult>,
    },
    /// Final: verified, or commands done and no checks (then no `results`).
    Succeeded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        results: Option<Vec<CheckResult>>,
        reason: String,
    },
    /// Final: a step failed, timed out, the host was unreachable, or there was no target.
    Failed { reason: String },
    /// Final: the last poll's results, still failing when `within` ended.
    VerifyFailed {
        results: Vec<CheckResult>,
        reason: String,
    },
    /// Final, not run: the runs the breaker counted, under which key (absent in rows
    /// written before breaker keys: the target).
    BreakerOpen {
        runs: Vec<RunRecord>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Final, not run: no rate-limit token within `limits.max_wait`.
    RateLimited { reason: String },
    /// Final, not run: the alert resolved while the incident waited.
    ResolvedBeforeRun { reason: String },
    /// After a restart: it was mid-run (`was`), and is escalated rather than re-run.
    Interrupted { was: State },
    /// After a restart: it was mid-run (`was`), and its idempotent recipe runs again.
    Resumed { was: State },
    EscalationQueued {
        reason: EscalationReason,
        channels: Vec<String>,
    },
    /// A channel accepted it (alone or in a digest). `attempt` counts from 1.
    EscalationSent {
        channel: String,
        reason: EscalationReason,
        attempt: i64,
        #[serde(flatten)]
        digest: Option<InDigest>,
    },
    /// A channel refused one delivery attempt; the next is at `next_attempt_at`.
    EscalationFailed {
        channel: String,
        reason: EscalationReason,
        attempt: i64,
        error: String,
        #[serde(with = "journal_time")]
        next_attempt_at: DateTime<Utc>,
        #[serde(flatten)]
        digest: Option<InDigest>,
    },
    /// Someone (`by`: an API token's name, `cli:USER`) forgot the runs of (recipe, key);
    /// `target` is that of the incident it is journaled on. `key` is absent in rows written
    /// before breaker keys (then it was the target).
    BreakerReset {
        recipe: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        by: String,
        runs_forgotten: usize,
    },
    /// A page of this incident will be followed up on `channel` ("resolved"): `cause` is
    /// `resolved` (its alert resolved) or `succeeded` (incident `by` of the same alert
    /// was fixed and verified).
    FollowUpQueued {
        channel: String,
        cause: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<IncidentId>,
    },
    /// `channel` accepted the follow-up (PagerDuty `resolve`, webhook `resolved`, a
    /// threaded mail). `attempt` counts from 1.
    FollowUpSent { channel: String, attempt: i64 },
    /// An approve-mode plan now waits for a human, until `expires_at`; links and
    /// approvals are for the plan with this digest only (`Plan::digest`).
    ApprovalRequested {
        plan_digest: String,
        #[serde(with = "journal_time")]
        expires_at: DateTime<Utc>,
    },
    /// `by` (an API token's name, `cli:USER`, or `link`) approved the plan with
    /// `plan_digest`, whose `commands` are these; it goes through the gates again.
    Approved {
        by: String,
        plan_digest: String,
        commands: Vec<String>,
    },
    /// `by` denied the plan with `plan_digest`, saying `reason`; nothing runs.
    Denied {
        by: String,
        reason: String,
        plan_digest: String,
    },
    /// No one decided before `expires_at`; nothing runs.
    ApprovalExpired {
        #[serde(with = "journal_time")]
        expires_at: DateTime<Utc>,
    },
    /// A silence in Alertmanager (`createdBy` salve) for the life of the fix, lapsing by
    /// itself at `ends_at` if salve never expires it.
    Silenced {
        silence_id: String,
        #[serde(with = "journal_time")]
        ends_at: DateTime<Utc>,
    },
    /// The fix's silence expired: the incident ended, or a restart found it orphaned.
    SilenceExpired { silence_id: String },
    /// A silence could not be made or expired; the fix went on regardless.
    SilenceFailed { reason: String },
    /// Final, not run: a pause (`pause` is `#ID`) or a maintenance window (`maintenance
    /// NAME`) covers its recipe and host; `by` made the pause (the window's name for a
    /// window). `silent`: journaled, not escalated.
    Paused {
        pause: String,
        by: String,
        silent: bool,
        reason: String,
    },
    /// This failure spent the fleet error budget: pause `pause` stops every remediation
    /// until a human resumes it; the one page (to `channels`) lists `failures`.
    ErrorBudgetTripped {
        pause: i64,
        failures: Vec<IncidentId>,
        max_failures: u32,
        window: String,
        channels: Vec<String>,
    },
    /// A stored row that is no event this version knows (another version's kind, a
    /// detail that does not parse): shown as it is stored, never dropped and never a
    /// failed read. Only reading makes it; salve never writes one.
    #[serde(skip)]
    Unreadable {
        kind: String,
        detail: serde_json::Value,
        /// Why it did not parse, for a human.
        error: String,
    },
}

/// The alert's new start (the monitor's, replacing the one salve knew).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStart {
    #[serde(with = "journal_time")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "journal_time")]
    pub previous_starts_at: DateTime<Utc>,
}

/// How a step ended, tagged by its `outcome`: a command that ran has its output; one
/// that did not end (or never started) has the error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepEnd {
    /// Exit status 0.
    Ok(CommandRecord),
    /// Any other exit status, or killed by a signal (`exit_status` null).
    Failed(CommandRecord),
    /// salve stopped waiting after the recipe's timeout.
    Timeout { error: String },
    /// It could not run: no connection, a lost session, a busy host.
    Error { error: String },
}

impl StepEnd {
    pub fn outcome(&self) -> StepOutcome {
        match self {
            StepEnd::Ok(_) => StepOutcome::Ok,
            StepEnd::Failed(_) => StepOutcome::Failed,
            StepEnd::Timeout { .. } => StepOutcome::Timeout,
            StepEnd::Error { .. } => StepOutcome::Error,
        }
    }

    /// The command's output, if it ran to an exit.
    pub fn record(&self) -> Option<&CommandRecord> {
        match self {
            StepEnd::Ok(record) | StepEnd::Failed(record) => Some(record),
            StepEnd::Timeout { .. } | StepEnd::Error { .. } => None,
        }
    }

    /// Why it has no exit status.
    pub fn error(&self) -> Option<&str> {
        match self {
            StepEnd::Ok(_) | StepEnd::Failed(_) => None,
            StepEnd::Timeout { error } | StepEnd::Error { error } => Some(error),
        }
    }
}

/// A step's outcome in one word, as journaled and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Ok,
    Failed,
    Timeout,
    Error,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Ok => "ok",
            StepOutcome::Failed => "failed",
            StepOutcome::Timeout => "timeout",
            StepOutcome::Error => "error",
        }
    }
}

/// What a command that ran printed (bounded by the executor) and how it exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// `None`: killed by a signal.
    pub exit_status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
}

/// A verification window, as the recipe set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyWindow {
    #[serde(with = "humantime_text")]
    pub within: Duration,
    #[serde(with = "humantime_text")]
    pub interval: Duration,
}

/// The digest an escalation went out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDigest {
    pub digest: i64,
    pub digest_size: usize,
}

/// One check's result in one poll, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The command or URL, for the reader.
    pub check: String,
    pub passed: bool,
    /// Why it passed or failed, in words.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The number read from stdout for threshold checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    pub duration_ms: u64,
}

/// One remediation run counted by a breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub incident_id: IncidentId,
    pub started_at: DateTime<Utc>,
    /// The incident's state now (how that run ended, or that it is still running).
    pub state: State,
}

/// One entry of an incident's journal as read back: when, and what. Shown (API,
/// `history --json`) as `{"at", "kind", "detail"}`, the row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub at: DateTime<Utc>,
    pub event: Event,
}

impl Serialize for JournalEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let (kind, detail) = self.event.to_row();
        let mut entry = serializer.serialize_struct("JournalEntry", 3)?;
        entry.serialize_field("at", &self.at)?;
        entry.serialize_field("kind", &kind)?;
        entry.serialize_field("detail", &detail)?;
        entry.end()
    }
}

impl Event {
    /// The stored form: the `kind` column and the `detail` JSON object.
    pub fn to_row(&self) -> (String, serde_json::Value) {
        if let Event::Unreadable { kind, detail, .. } = self {
            return (kind.clone(), detail.clone());
        }
        let mut value =
            serde_json::to_value(self).expect("an event always serialises to a JSON object");
        let kind = match value
            .as_object_mut()
            .and_then(|fields| fields.remove("kind"))
        {
            Some(serde_json::Value::String(kind)) => kind,
            _ => unreachable!("the enum is tagged with a string `kind`"),
        };
        (kind, value)
    }

    /// Reads a stored row; one this version cannot read becomes `Unreadable`.
    pub fn from_row(kind: &str, detail: &str) -> Event {
        let unreadable = |detail: serde_json::Value, error: String| Event::Unreadable {
            kind: kind.to_owned(),
            detail,
            error,
        };
        let mut value: serde_json::Value = match serde_json::from_str(detail) {
            Ok(value) => value,
            Err(e) => return unreadable(detail.into(), format!("detail is not JSON: {e}")),
        };
        let Some(fields) = value.as_object_mut() else {
            return unreadable(value, "detail is not a JSON object".into());
        };
        fields.insert("kind".into(), kind.into());
        match Event::deserialize(&value) {
            Ok(event) => event,
            Err(e) => {
                if let Some(fields) = value.as_object_mut() {
                    fields.remove("kind");
                }
                unreadable(value, e.to_string())
            }
        }
    }
}

/// Journal times as the store writes them: RFC 3339 UTC, nine fractional digits.
mod journal_time {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Nanos, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<DateTime<Utc>>::deserialize(d)
        }
    }
}

/// A duration as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A duration as humantime text (`30s`, `1m 30s`).
mod humantime_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn check(ok: bool) -> CheckResult {
        CheckResult {
            check: "curl -fsS http://127.0.0.1:8080/health".into(),
            passed: ok,
            detail: if ok { "status 200" } else { "status 500" }.into(),
            exit_status: None,
            http_status: Some(if ok { 200 } else { 500 }),
            value: None,
            output: String::new(),
            duration_ms: 3,
        }
    }

    fn record(exit_status: Option<i32>) -> CommandRecord {
        CommandRecord {
            exit_status,
            stdout: "restarted\n".into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: true,
            duration: Duration::from_millis(1234),
        }
    }

    /// One value of every variant salve writes (every shape: with and without options).
    fn samples() -> Vec<Event> {
        let at = time("2026-11-28T10:00:01.5Z");
        let start = NewStart {
            starts_at: time("2026-11-28T09:59:00Z"),
            previous_starts_at: time("2026-11-28T10:00:01.123456789Z"),
        };
        let digest = Some(InDigest {
            digest: 7,
            digest_size: 12,
        });
        let reason = || "why it ended".to_owned();
        vec![
            Event::Received {
                status: AlertStatus::Firing,
                received_at: at,
            },
            Event::Resolved {
                ends_at: None,
                received_at: at,
            },
            Event::Resolved {
                ends_at: Some(at),
                received_at: at,
            },
            Event::Refired {
                received_at: at,
                new_start: None,
            },
            Event::Refired {
                received_at: at,
                new_start: Some(start.clone()),
            },
            Event::StartKnown {
                start,
                source: Source::Grafana,
            },
            Event::Planned {
                outcome: PlanOutcome::Planned,
                recipe: Some("service-restart".into()),
                mode: Mode::DryRun,
                state: State::DryRun,
            },
            Event::Planned {
                outcome: PlanOutcome::Unmatched,
                recipe: None,
                mode: Mode::Enforce,
                state: State::Unmatched,
            },
            Event::RemediationStarted {
                target: PlannedTarget {
                    name: "web1".into(),
                    address: "127.0.0.1".into(),
                    port: 2222,
                    user: Some("salve".into()),
                },
                steps: 2,
                sudo: true,
                ssh_user: Some("salve".into()),
            },
            Event::StepStarted {
                step: 1,
                command: "systemctl restart 'nginx'".into(),
                executed: "sudo -n -- timeout -k 5 65 systemctl restart 'nginx'".into(),
            },
            Event::StepFinished {
                step: 1,
                command: "true".into(),
                end: StepEnd::Ok(record(Some(0))),
            },
            Event::StepFinished {
                step: 2,
                command: "false".into(),
                end: StepEnd::Failed(record(None)),
            },
            Event::StepFinished {
                step: 1,
                command: "sleep 99".into(),
                end: StepEnd::Timeout {
                    error: "timed out after 1s".into(),
                },
            },
            Event::StepFinished {
                step: 1,
                command: "true".into(),
                end: StepEnd::Error {
                    error: "cannot connect".into(),
                },
            },
            Event::HostHeld {
                host: "web1".into(),
                wait: Duration::from_millis(64_001),
                why: "a command may still run".into(),
            },
            Event::VerifyStarted {
                checks: 0,
                window: None,
            },
            Event::VerifyStarted {
                checks: 2,
                window: Some(VerifyWindow {
                    within: Duration::from_secs(90),
                    interval: Duration::from_millis(1500),
                }),
            },
            Event::CheckPoll {
                poll: 3,
                passed: false,
                results: vec![
                    check(false),
                    CheckResult {
                        exit_status: Some(0),
                        http_status: None,
                        value: Some(81.5),
                        output: "81.5\n".into(),
                        ..check(true)
                    },
                ],
            },
            Event::Succeeded {
                results: None,
                reason: reason(),
            },
            Event::Succeeded {
                results: Some(vec![check(true)]),
                reason: reason(),
            },
            Event::Failed { reason: reason() },
            Event::VerifyFailed {
                results: vec![check(false)],
                reason: reason(),
            },
            Event::BreakerOpen {
                runs: vec![RunRecord {
                    incident_id: IncidentId(4),
                    started_at: time("2026-11-28T09:00:00.25Z"),
                    state: State::Succeeded,
                }],
                reason: reason(),
                key: Some("web1/nginx".into()),
            },
            Event::RateLimited { reason: reason() },
            Event::ResolvedBeforeRun { reason: reason() },
            Event::Interrupted {
                was: State::Remediating,
            },
            Event::Resumed {
                was: State::Verifying,
            },
            Event::EscalationQueued {
                reason: EscalationReason::VerifyFailed,
                channels: vec!["ops-mail".into(), "tickets".into()],
            },
            Event::EscalationSent {
                channel: "ops-mail".into(),
                reason: EscalationReason::Novel,
                attempt: 1,
                digest: None,
            },
            Event::EscalationSent {
                channel: "ops-mail".into(),
                reason: EscalationReason::Novel,
                attempt: 3,
                digest,
            },
            Event::EscalationFailed {
                channel: "tickets".into(),
                reason: EscalationReason::BreakerOpen,
                attempt: 2,
                error: "HTTP 500".into(),
                next_attempt_at: at,
                digest: None,
            },
            Event::EscalationFailed {
                channel: "tickets".into(),
                reason: EscalationReason::Interrupted,
                attempt: 2,
                error: "HTTP 500".into(),
                next_attempt_at: at,
                digest,
            },
            Event::BreakerReset {
                recipe: "service-restart".into(),
                target: "web1".into(),
                key: Some("web1/nginx".into()),
                by: "cli:root".into(),
                runs_forgotten: 3,
            },
            Event::FollowUpQueued {
                channel: "pager".into(),
                cause: "resolved".into(),
                by: None,
            },
            Event::FollowUpQueued {
                channel: "pager".into(),
                cause: "succeeded".into(),
                by: Some(IncidentId(9)),
            },
            Event::FollowUpSent {
                channel: "pager".into(),
                attempt: 1,
            },
            Event::ApprovalRequested {
                plan_digest: "ab".repeat(32),
                expires_at: at,
            },
            Event::Approved {
                by: "link".into(),
                plan_digest: "ab".repeat(32),
                commands: vec!["systemctl restart 'nginx'".into()],
            },
            Event::Denied {
                by: "ops".into(),
                reason: "not during the release".into(),
                plan_digest: "ab".repeat(32),
            },
            Event::ApprovalExpired { expires_at: at },
            Event::Silenced {
                silence_id: "5d1c2a0e-7b8f-4c8e-9a51-0f3e4b2d6c11".into(),
                ends_at: at,
            },
            Event::SilenceExpired {
                silence_id: "5d1c2a0e-7b8f-4c8e-9a51-0f3e4b2d6c11".into(),
            },
            Event::SilenceFailed {
                reason: "no Alertmanager answered: 127.0.0.1:9093: cannot connect".into(),
            },
            Event::Paused {
                pause: "#3".into(),
                by: "cli:root".into(),
                silent: false,
                reason: reason(),
            },
            Event::ErrorBudgetTripped {
                pause: 4,
                failures: vec![IncidentId(1), IncidentId(2)],
                max_failures: 2,
                window: "15m".into(),
                channels: vec!["pager".into()],
            },
        ]
    }

    #[test]
    fn every_variant_round_trips_through_its_stored_row() {
        let mut kinds: Vec<String> = Vec::new();
        for event in samples() {
            let (kind, detail) = event.to_row();
            assert!(detail.is_object(), "{kind}: {detail}");
            assert!(detail.get("kind").is_none(), "{kind}: {detail}");
            let read = Event::from_row(&kind, &detail.to_string());
            assert_eq!(read, event, "{kind}: {detail}");
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        // Every variant but `Unreadable` (which is never written) has a sample.
        assert_eq!(kinds.len(), 34, "{kinds:?}");
    }

    /// Rows exactly as salve wrote them before this type existed (the `json!` of each
    /// writer, keys sorted as serde_json stores them): each parses into its variant and
    /// is written back byte for byte.
    #[test]
    fn rows_written_by_earlier_salve_parse_and_are_written_back_unchanged() {
        let rows: &[(&str, &str)] = &[
            (
                "received",
                r#"{"received_at":"2026-11-28T10:00:01.000000000Z","status":"firing"}"#,
            ),
            (
                "resolved",
                r#"{"ends_at":null,"received_at":"2026-11-28T10:05:00.000000000Z"}"#,
            ),
            (
                "resolved",
                r#"{"ends_at":"2026-11-28T10:04:00.000000000Z","received_at":"2026-11-28T10:05:00.000000000Z"}"#,
            ),
            (
                "refired",
                r#"{"received_at":"2026-11-28T10:06:00.000000000Z"}"#,
            ),
            (
                "refired",
                r#"{"previous_starts_at":"2026-11-28T10:00:00.000000000Z","received_at":"2026-11-28T10:06:00.000000000Z","starts_at":"2026-11-28T10:05:30.000000000Z"}"#,
            ),
            (
                "start_known",
                r#"{"previous_starts_at":"2026-11-28T10:00:01.000000000Z","source":"alertmanager","starts_at":"2026-11-28T09:58:00.000000000Z"}"#,
            ),
            (
                "planned",
                r#"{"mode":"dry-run","outcome":"refused","recipe":"disk-space","state":"refused"}"#,
            ),
            (
                "planned",
                r#"{"mode":"enforce","outcome":"unmatched","recipe":null,"state":"unmatched"}"#,
            ),
            (
                "remediation_started",
                r#"{"steps":1,"sudo":false,"target":{"address":"127.0.0.1","name":"web1","port":22,"user":null}}"#,
            ),
            (
                "step_started",
                r#"{"command":"systemctl restart 'nginx'","executed":"timeout -k 5 65 systemctl restart 'nginx'","step":1}"#,
            ),
            (
                "step_finished",
                r#"{"command":"true","duration_ms":4,"exit_status":0,"outcome":"ok","stderr":"","stderr_truncated":false,"stdout":"hi\n","stdout_truncated":false,"step":1}"#,
            ),
            (
                "step_finished",
                r#"{"command":"kill -9 $$","duration_ms":12,"exit_status":null,"outcome":"failed","stderr":"","stderr_truncated":false,"stdout":"","stdout_truncated":false,"step":2}"#,
            ),
            (
                "step_finished",
                r#"{"command":"sleep 99","error":"command timed out after 1s","outcome":"timeout","step":1}"#,
            ),
            (
                "step_finished",
                r#"{"command":"true","error":"cannot connect: refused","outcome":"error","step":1}"#,
            ),
            (
                "host_held",
                r#"{"host":"web1","wait_ms":64999,"why":"a command salve ran on this host before it last stopped may still be running"}"#,
            ),
            ("verify_started", r#"{"checks":0}"#),
            (
                "verify_started",
                r#"{"checks":1,"interval":"1s","within":"1m 30s"}"#,
            ),
            (
                "check_poll",
                r#"{"passed":false,"poll":1,"results":[{"check":"systemctl is-active nginx","detail":"exited 3","duration_ms":40,"exit_status":3,"output":"inactive\n","passed":false},{"check":"http://127.0.0.1/","detail":"status 200","duration_ms":2,"http_status":200,"passed":true},{"check":"df --output=pcent /","detail":"81 < 90","duration_ms":9,"exit_status":0,"passed":true,"value":81.0}]}"#,
            ),
            (
                "succeeded",
                r#"{"reason":"commands succeeded; the recipe defines no checks"}"#,
            ),
            (
                "succeeded",
                r#"{"reason":"verified: all 1 check(s) passed on poll 2, 1.2s after the fix","results":[{"check":"true","detail":"exited 0","duration_ms":5,"exit_status":0,"passed":true}]}"#,
            ),
            ("failed", r#"{"reason":"step 1 exited 1: false"}"#),
            (
                "verify_failed",
                r#"{"reason":"checks still failing after 2s (2 polls): false: exited 1","results":[{"check":"false","detail":"exited 1","duration_ms":5,"exit_status":1,"passed":false}]}"#,
            ),
            (
                "breaker_open",
                r#"{"reason":"circuit breaker open","runs":[{"incident_id":1,"started_at":"2026-11-28T10:00:01.123456789Z","state":"succeeded"},{"incident_id":2,"started_at":"2026-11-28T10:01:00Z","state":"remediating"}]}"#,
            ),
            (
                "rate_limited",
                r#"{"reason":"remediation rate limit (1/min overall, 1/min per host) still exhausted after waiting 2s; not run"}"#,
            ),
            (
                "resolved_before_run",
                r#"{"reason":"the alert resolved before its remediation started; nothing was run"}"#,
            ),
            ("interrupted", r#"{"was":"remediating"}"#),
            ("resumed", r#"{"was":"verifying"}"#),
            (
                "escalation_queued",
                r#"{"channels":["ops-mail","tickets"],"reason":"novel"}"#,
            ),
            (
                "escalation_queued",
                r#"{"channels":[],"reason":"rate_limited"}"#,
            ),
            (
                "escalation_sent",
                r#"{"attempt":1,"channel":"ops-mail","reason":"failed"}"#,
            ),
            (
                "escalation_sent",
                r#"{"attempt":2,"channel":"ops-mail","digest":3,"digest_size":40,"reason":"novel"}"#,
            ),
            (
                "escalation_failed",
                r#"{"attempt":1,"channel":"tickets","error":"HTTP 500","next_attempt_at":"2026-11-28T10:00:31.000000000Z","reason":"verify_failed"}"#,
            ),
            (
                "escalation_failed",
                r#"{"attempt":4,"channel":"tickets","digest":9,"digest_size":2,"error":"HTTP 503","next_attempt_at":"2026-11-28T10:08:00.000000000Z","reason":"breaker_open"}"#,
            ),
            (
                "breaker_reset",
                r#"{"by":"cli:root","recipe":"service-restart","runs_forgotten":2,"target":"web1"}"#,
            ),
            (
                "breaker_reset",
                r#"{"by":"ops","key":"web1/nginx","recipe":"service-restart","runs_forgotten":1,"target":"web1"}"#,
            ),
            (
                "approval_requested",
                r#"{"expires_at":"2026-11-28T10:15:00.000000000Z","plan_digest":"ab12"}"#,
            ),
            (
                "approved",
                r#"{"by":"link","commands":["systemctl restart 'nginx'"],"plan_digest":"ab12"}"#,
            ),
            (
                "denied",
                r#"{"by":"cli:root","plan_digest":"ab12","reason":"not now"}"#,
            ),
            (
                "approval_expired",
                r#"{"expires_at":"2026-11-28T10:15:00.000000000Z"}"#,
            ),
            (
                "follow_up_queued",
                r#"{"by":9,"cause":"succeeded","channel":"pager"}"#,
            ),
            ("follow_up_sent", r#"{"attempt":1,"channel":"pager"}"#),
            (
                "silenced",
                r#"{"ends_at":"2026-11-28T10:07:05.000000000Z","silence_id":"5d1c2a0e-7b8f-4c8e-9a51-0f3e4b2d6c11"}"#,
            ),
            (
                "silence_expired",
                r#"{"silence_id":"5d1c2a0e-7b8f-4c8e-9a51-0f3e4b2d6c11"}"#,
            ),
            (
                "silence_failed",
                r#"{"reason":"Alertmanager answered 400: bad matcher"}"#,
            ),
            (
                "paused",
                r##"{"by":"cli:root","pause":"#3","reason":"paused by #3 (cli:root: deploy); not run","silent":false}"##,
            ),
            (
                "error_budget_tripped",
                r#"{"channels":["pager"],"failures":[1,2],"max_failures":2,"pause":4,"window":"15m"}"#,
            ),
        ];
        let mut kinds = Vec::new();
        for (kind, detail) in rows {
            let event = Event::from_row(kind, detail);
            assert!(
                !matches!(event, Event::Unreadable { .. }),
                "{kind} {detail}: {event:?}"
            );
            let (written_kind, written) = event.to_row();
            assert_eq!(
                (written_kind.as_str(), written.to_string().as_str()),
                (*kind, *detail)
            );
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        assert_eq!(kinds.len(), 34, "every kind salve writes has a row here");

        // And into the right variant, with its values typed.
        let finished = Event::from_row("step_finished", rows[10].1);
        let Event::StepFinished {
            step: 1,
            end: StepEnd::Ok(record),
            ..
        } = finished
        else {
            panic!("{finished:?}");
        };
        assert_eq!(
            (record.exit_status, record.duration),
            (Some(0), Duration::from_millis(4))
        );
        let held = Event::from_row("host_held", rows[14].1);
        assert!(
            matches!(held, Event::HostHeld { wait, .. } if wait == Duration::from_millis(64_999)),
            "{held:?}"
        );
        let started = Event::from_row("verify_started", rows[16].1);
        assert!(
            matches!(started, Event::VerifyStarted { checks: 1, window: Some(VerifyWindow { within, .. }) } if within == Duration::from_secs(90)),
            "{started:?}"
        );
        let sent = Event::from_row("escalation_sent", rows[30].1);
        assert!(
            matches!(
                sent,
                Event::EscalationSent {
                    reason: EscalationReason::Novel,
                    digest: Some(InDigest {
                        digest: 3,
                        digest_size: 40
                    }),
                    ..
                }
            ),
            "{sent:?}"
        );
        let interrupted = Event::from_row("interrupted", rows[25].1);
        assert_eq!(
            interrupted,
            Event::Interrupted {
                was: State::Remediating
            }
        );
    }

    #[test]
    fn a_row_this_version_cannot_read_is_kept_as_stored() {
        for (kind, detail, raw) in [
            (
                "approved",
                r#"{"by":"ops"}"#,
                serde_json::json!({ "by": "ops" }),
            ),
            (
                "step_started",
                r#"{"index":0}"#,
                serde_json::json!({ "index": 0 }),
            ),
            (
                "interrupted",
                r#"{"was":"exploded"}"#,
                serde_json::json!({ "was": "exploded" }),
            ),
            ("received", "[1]", serde_json::json!([1])),
            ("received", "not json", serde_json::json!("not json")),
        ] {
            let event = Event::from_row(kind, detail);
            let Event::Unreadable {
                kind: kept,
                detail: kept_detail,
                error,
            } = &event
            else {
                panic!("{kind} {detail}: {event:?}");
            };
            assert_eq!((kept.as_str(), kept_detail), (kind, &raw));
            assert!(!error.is_empty());
            assert_eq!(event.to_row(), (kind.to_owned(), raw));
        }
    }

    /// The API and `history --json` show an entry as the row: `at`, `kind`, `detail`.
    #[test]
    fn a_journal_entry_is_shown_as_at_kind_and_detail() {
        let at = time("2026-11-28T10:00:01.5Z");
        let entry = JournalEntry {
            at,
            event: Event::Interrupted {
                was: State::Verifying,
            },
        };
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({
                "at": "2026-11-28T10:00:01.500Z",
                "kind": "interrupted",
                "detail": { "was": "verifying" },
            })
        );
        let odd = JournalEntry {
            at,
            event: Event::from_row("approved", r#"{"by":"ops"}"#),
        };
        assert_eq!(
            serde_json::to_value(&odd).unwrap()["detail"],
            serde_json::json!({ "by": "ops" })
        );
    }
}
