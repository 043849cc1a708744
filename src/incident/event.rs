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
    /// Final, not run: the runs the breaker counted.
    BreakerOpen {
        runs: Vec<RunRecord>,
        reason: String,
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
    /// Someone (`by`: an API token's name, `cli:USER`) forgot the pair's runs.
    BreakerReset {
        recipe: String,
        target: String,
        by: String,
        runs_forgotten: usize,
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
