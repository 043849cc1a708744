//! The recipe file format (serde shapes, every table denying unknown keys) and the validated
//! `Recipe` the loader builds from it. Shapes only: no validation logic and no I/O here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::plan::Mode;

use super::matcher::Matcher;

// ---------------------------------------------------------------------------------------
// File shapes. Top-level fields are all optional so that each top-level key can be
// deserialized on its own (the loader does that to report every shape problem, not only the
// first); required keys are enforced by the loader with their own messages.
// ---------------------------------------------------------------------------------------

/// One `recipes/*.toml` file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecipeFile {
    pub name: Option<String>,
    pub description: Option<String>,
    /// What a human should do, shown on the page (notify-only recipes above all).
    pub runbook: Option<String>,
    #[serde(rename = "match")]
    pub matchers: Option<Vec<String>>,
    /// Matchers on the alert's annotations, same syntax as `match`.
    pub match_annotations: Option<Vec<String>>,
    pub target: Option<String>,
    pub mode: Option<RecipeMode>,
    pub priority: Option<i64>,
    pub sudo: Option<bool>,
    pub idempotent: Option<bool>,
    pub params: Option<BTreeMap<String, ParamFile>>,
    pub remediate: Option<RemediateFile>,
    pub verify: Option<VerifyFile>,
    pub breaker: Option<BreakerFile>,
    pub escalate: Option<EscalateFile>,
}

/// A recipe's `mode`: `dry-run` (the default), `enforce`, or `approve` (enforce, but each
/// plan waits for a human's approval first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RecipeMode {
    Enforce,
    DryRun,
    Approve,
}

/// `[params.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParamFile {
    pub from: String,
    pub pattern: String,
    pub default: Option<String>,
    /// A fixed list of allowed values.
    pub one_of: Option<Vec<String>>,
    /// The inventory host label whose items are allowed values (on the resolved host).
    pub one_of_host_label: Option<String>,
    /// Regexes (anchored) of values never allowed, whatever else says so.
    pub deny: Option<Vec<String>>,
}

/// `[remediate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemediateFile {
    pub run: Vec<String>,
    pub timeout: Option<String>,
}

/// `[verify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyFile {
    pub within: String,
    pub interval: String,
    pub checks: Vec<CheckFile>,
}

/// One entry of `verify.checks`: either `command` (with `below`/`above`) or `http` (with
/// `status`, `body_contains`, `timeout`, `tls_verify`). One flat shape rather than an
/// untagged enum, because serde's untagged errors ("did not match any variant") do not say
/// which key is wrong; the loader checks the combination itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckFile {
    pub command: Option<String>,
    pub below: Option<f64>,
    pub above: Option<f64>,
    pub http: Option<String>,
    pub status: Option<u16>,
    pub body_contains: Option<String>,
    pub timeout: Option<String>,
    pub tls_verify: Option<bool>,
}

/// `[breaker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerFile {
    pub max_runs: u32,
    pub window: String,
    pub key: Option<String>,
}

/// `[escalate]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscalateFile {
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub attach: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Validated recipe: built only by the loader, so every field holds a checked value.
// ---------------------------------------------------------------------------------------

/// Where a param's value comes from in the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    Label(String),
    Annotation(String),
}

impl ParamSource {
    /// `"label"` or `"annotation"`, for reasons a human reads.
    pub fn kind(&self) -> &'static str {
        match self {
            ParamSource::Label(_) => "label",
            ParamSource::Annotation(_) => "annotation",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            ParamSource::Label(key) | ParamSource::Annotation(key) => key,
        }
    }
}

/// A declared param: alert data that may reach a command, after it fully matched `pattern`.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub source: ParamSource,
    /// The pattern as written (for messages).
    pub pattern_text: String,
    /// The pattern anchored as `^(?:pattern)$`: a partial match never passes.
    pub pattern: Regex,
    /// Used when the label/annotation is missing or empty; already checked against `pattern`.
    pub default: Option<String>,
    /// Allowed values beyond the pattern: when `one_of` or `one_of_host_label` is set, a value
    /// must be in `one_of` or in the resolved host's label `one_of_host_label` (either list
    /// allows it). Neither set: the pattern alone decides.
    pub one_of: Option<Vec<String>>,
    pub one_of_host_label: Option<String>,
    /// Values never allowed, checked after the pattern and before the allow-lists, so a deny
    /// wins over `one_of` and the inventory: (the regex as written, anchored).
    pub deny: Vec<(String, Regex)>,
}

impl Param {
    /// Whether the value must also be in an allow-list (`one_of` / `one_of_host_label`).
    pub fn has_allow_list(&self) -> bool {
        self.one_of.is_some() || self.one_of_host_label.is_some()
    }

    /// The first deny regex (as written) that `value` matches.
    pub fn denied_by(&self, value: &str) -> Option<&str> {
        self.deny
            .iter()
            .find(|(_, regex)| regex.is_match(value))
            .map(|(text, _)| text.as_str())
    }
}

/// A verification check; its text fields are templates, rendered by the planner.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Command {
        command: String,
        below: Option<f64>,
        above: Option<f64>,
    },
    Http {
        url: String,
        status: u16,
        body_contains: Option<String>,
        timeout: Duration,
        tls_verify: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    pub within: Duration,
    pub interval: Duration,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub max_runs: u32,
    pub window: Duration,
    /// `[breaker] key`: a template over the declared params, `target` and `target_name`
    /// whose rendered text is what runs are counted by (with the recipe). `None`: the
    /// target's inventory name, so each host has its own breaker.
    pub key: Option<String>,
}

/// One validated recipe. Template fields hold template source that already parsed and names
/// only allowed variables; the planner renders them.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub description: Option<String>,
    /// Free text for the human who is paged (steps, a link); never rendered as a template.
    pub runbook: Option<String>,
    /// The file it was loaded from (ties between equal priorities go by file name).
    pub file: PathBuf,
    pub matchers: Vec<Matcher>,
    /// `match_annotations`: the same matchers, read against the alert's annotations
    /// (Grafana and many rule files put the telling text there).
    pub annotation_matchers: Vec<Matcher>,
    pub target: String,
    /// What the recipe asks for; the plan enforces only if the global mode agrees.
    pub mode: Mode,
    /// `mode = "approve"`: enforce, after a human approved each plan (`mode` is `Enforce`).
    pub approval: bool,
    pub priority: i64,
    pub sudo: bool,
    pub idempotent: bool,
    /// Declared params, by name.
    pub params: BTreeMap<String, Param>,
    /// The remediation commands; empty for a notify-only recipe (no `[remediate]`).
    pub run: Vec<String>,
    pub timeout: Duration,
    pub verify: Option<Verify>,
    pub breaker: Option<Breaker>,
    /// Channel names; empty means the configured default escalation route.
    pub escalate_to: Vec<String>,
    pub attach: Vec<String>,
    /// What `salve check` warns about (e.g. a param pattern that restricts nothing); the
    /// recipe loads and runs anyway.
    pub warnings: Vec<super::Problem>,
}

impl Recipe {
    /// A recipe without `[remediate]`: a known failure that is not automated. Its alerts
    /// become `notified` incidents that page with the recipe's diagnostics and runbook.
    pub fn is_notify_only(&self) -> bool {
        self.run.is_empty()
    }

    /// Whether every matcher matches (AND): `match` against the labels and
    /// `match_annotations` against the annotations. A recipe always has at least one.
    pub fn matches(
        &self,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> bool {
        self.matchers.iter().all(|matcher| matcher.matches(labels))
            && self
                .annotation_matchers
                .iter()
                .all(|matcher| matcher.matches(annotations))
    }
}
