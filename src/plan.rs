//! The plan: what salve would do (or did decide) for one alert. Produced by the pure
//! planner in `recipe::planner`, journaled by the engine, shown by `simulate` and `history`.
//! A plan holds only rendered text; it never holds a way to render more.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What planning concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    /// A recipe matched and every param and the target checked out.
    Planned,
    /// No recipe matched: a novel failure for a human.
    Unmatched,
    /// A recipe matched but the alert cannot be acted on safely (param failed its
    /// pattern, target outside the inventory, ...). Never executed.
    Refused,
    /// A notify-only recipe (no `[remediate]`) matched and checked out: nothing is run
    /// but its `attach` diagnostics, and a human is paged with them and its runbook.
    NotifyOnly,
}

impl PlanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanOutcome::Planned => "planned",
            PlanOutcome::Unmatched => "unmatched",
            PlanOutcome::Refused => "refused",
            PlanOutcome::NotifyOnly => "notify_only",
        }
    }
}

/// Whether the plan would run its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Enforce,
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
        }
    }
}

/// The inventory host a plan targets (copied from the inventory at planning time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTarget {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: Option<String>,
}

/// One verification check, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlannedCheck {
    /// A command run on the target; passes on exit 0, or when the first number in its
    /// stdout is below/above a threshold.
    Command {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
    },
    /// An HTTP GET from salve.
    Http {
        url: String,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_contains: Option<String>,
        #[serde(with = "humantime_serde_compat")]
        timeout: Duration,
        #[serde(default = "default_true")]
        tls_verify: bool,
    },
}

fn default_true() -> bool {
    true
}

/// Durations in plans serialise as humantime text ("60s") so history stays readable.
pub mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedVerify {
    #[serde(with = "humantime_serde_compat")]
    pub within: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    pub checks: Vec<PlannedCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedBreaker {
    pub max_runs: u32,
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    /// What runs are counted by, with the recipe: the rendered `[breaker] key`, or the
    /// target's inventory name. Empty in plans stored before keys existed (the target).
    #[serde(default)]
    pub key: String,
}

/// A recipe that almost matched an unmatched alert: how many of its matchers held, and
/// the first that did not, against the alert's value (`None`: no such label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearMiss {
    pub recipe: String,
    pub matched: usize,
    pub matchers: usize,
    /// The matcher as written canonically (`severity="critical"`).
    pub failed: String,
    pub got: Option<String>,
}

impl std::fmt::Display for NearMiss {
    /// `svc (1 of 2 matchers; severity="critical" vs got "warning")`; the alert's value is
    /// escaped and cut to 100 characters (it is untrusted text).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} of {} matchers; {} vs ",
            self.recipe, self.matched, self.matchers, self.failed
        )?;
        match &self.got {
            Some(value) if value.chars().count() > 100 => {
                let head: String = value.chars().take(100).collect();
                write!(f, "got {head:?}…)")
            }
            Some(value) => write!(f, "got {value:?})"),
            None => {
                let label = self.failed.split(['=', '!']).next().unwrap_or_default();
                write!(f, "no label {label})")
            }
        }
    }
}

/// Everything salve decided for one alert. Commands are complete shell lines in which
/// every value that came from the alert is exactly one single-quoted word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub outcome: PlanOutcome,
    /// The recipe that matched (also set for `refused`).
    pub recipe: Option<String>,
    /// Why: for `unmatched` and `refused` the reason a human reads; for `planned` which
    /// rule chose the recipe (e.g. other recipes that also matched).
    pub reason: Option<String>,
    pub mode: Mode,
    pub target: Option<PlannedTarget>,
    /// Validated params by name, as substituted (unquoted here, for reading).
    pub params: BTreeMap<String, String>,
    pub sudo: bool,
    /// The recipe says running it twice is harmless: after a crash mid-run it is re-run
    /// rather than escalated as interrupted.
    #[serde(default)]
    pub idempotent: bool,
    pub commands: Vec<String>,
    #[serde(with = "humantime_serde_compat")]
    pub command_timeout: Duration,
    pub verify: Option<PlannedVerify>,
    pub breaker: Option<PlannedBreaker>,
    /// Escalation channel names, in order.
    pub escalate: Vec<String>,
    /// Diagnostic commands to run for the human at escalation time.
    pub attach: Vec<String>,
    /// The recipe's `description` and `runbook`, carried to the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// For `unmatched`: the recipes that came closest and the first matcher each failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<NearMiss>,
    /// The recipe says `mode = "approve"` (and salve enforces): the plan runs only after a
    /// human approves it (link, CLI or API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
}

impl Plan {
    /// What an approval is for: hex SHA-256 of the plan's JSON (fields in declaration
    /// order, maps sorted), so a plan that changed in any way has another digest.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).expect("a plan always serialises");
        hex::encode(sha2::Sha256::digest(&json))
    }

    /// The key the breaker counts this plan's runs by (with the recipe): the planned
    /// `[breaker] key`, else the target's inventory name; `None` without a target.
    pub fn breaker_key(&self) -> Option<&str> {
        match &self.breaker {
            Some(breaker) if !breaker.key.is_empty() => Some(&breaker.key),
            _ => self.target.as_ref().map(|target| target.name.as_str()),
        }
    }

    /// A plan that acts on nothing (unmatched or refused).
    pub fn inert(
        outcome: PlanOutcome,
        recipe: Option<String>,
        reason: String,
        escalate: Vec<String>,
    ) -> Plan {
        Plan {
            outcome,
            recipe,
            reason: Some(reason),
            mode: Mode::DryRun,
            target: None,
            params: BTreeMap::new(),
            sudo: false,
            idempotent: false,
            commands: Vec::new(),
            command_timeout: Duration::ZERO,
            verify: None,
            breaker: None,
            escalate,
            attach: Vec::new(),
            description: None,
            runbook: None,
            near_misses: Vec::new(),
            approval: false,
        }
    }
}
