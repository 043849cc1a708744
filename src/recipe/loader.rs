//! Loads and validates `recipes/*.toml`, collecting every problem with its file and line.
//! Reads files, but never renders a template against alert data or runs anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::plan::Mode;
use crate::tomlspan;

use super::matcher::Matcher;
use super::model::{
    Breaker, Check, CheckFile, Param, ParamFile, ParamSource, Recipe, RecipeFile, RecipeMode,
    RemediateFile, Verify, VerifyFile,
};
use super::template::{RecipeTemplates, TemplateKind};
use super::{Problem, RecipeSet};

const DEFAULT_REMEDIATE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HTTP_STATUS: u16 = 200;

/// Recipe names end up in metrics labels, breaker keys and CLI arguments: keep them plain.
static RECIPE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$").expect("static regex"));
/// Param names are template variables.
static PARAM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$").expect("static regex"));
/// Names a param may not take: they are the other template variables (or minijinja's own).
const RESERVED_PARAM_NAMES: [&str; 7] = [
    "target",
    "target_name",
    "host_labels",
    "labels",
    "annotations",
    "loop",
    "self",
];

/// Values a pattern that restricts anything refuses: shell syntax, whitespace, quotes,
/// control characters. A param without an allow-list whose pattern accepts one of them is
/// a `salve check` warning (it is still quoted, but the alert chooses almost freely).
const HOSTILE_PROBES: [&str; 12] = [
    "x; reboot",
    "a b",
    "$(reboot)",
    "`id`",
    "it's",
    "\"x\"",
    "line\nbreak",
    "a|b",
    "a&b",
    "a>b",
    "*",
    "\\x",
];

/// Loads every `*.toml` file directly in `dir` (not subdirectories, so `recipes/tests/`
/// fixtures are not mistaken for recipes), in file-name order, and validates each against
/// the known escalation `channels`. Returns every problem in every file, not only the
/// first; a missing `dir` is a problem, an empty one is an empty set. Recipe names must be
/// unique across files.
pub fn load_dir(dir: &Path, channels: &BTreeSet<String>) -> Result<RecipeSet, Vec<Problem>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            return Err(vec![Problem::new(
                dir,
                0,
                format!("cannot read recipe directory: {error}"),
            )]);
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                // `is_file` follows symlinks, so a linked recipe counts and a directory never does.
                if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                    files.push(path);
                }
            }
            Err(error) => problems.push(Problem::new(
                dir,
                0,
                format!("cannot list recipe directory: {error}"),
            )),
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let templates = RecipeTemplates::new();
    let mut recipes: Vec<Recipe> = Vec::new();
    let mut first_file_of_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                problems.push(Problem::new(
                    &file,
                    0,
                    format!("cannot read recipe: {error}"),
                ));
                continue;
            }
        };
        match load_recipe(&file, &text, channels, &templates) {
            Ok(recipe) => {
                if let Some(first) = first_file_of_name.get(&recipe.name) {
                    let line = tomlspan::line_of_path(&text, &["name"]).unwrap_or(1);
                    problems.push(Problem::new(
                        &file,
                        line,
                        format!(
                            "duplicate recipe name {:?} (also in {})",
                            recipe.name,
                            first.display()
                        ),
                    ));
                } else {
                    first_file_of_name.insert(recipe.name.clone(), file.clone());
                    recipes.push(recipe);
                }
            }
            Err(mut file_problems) => problems.append(&mut file_problems),
        }
    }
    if problems.is_empty() {
        Ok(RecipeSet::new(recipes))
    } else {
        Err(problems)
    }
}

/// Parses and validates one recipe file's `text`; `file` is used for problems and kept in
/// the recipe. Every problem found is returned (syntax errors first stop the rest, since
/// nothing else can be trusted then).
pub fn load_recipe(
    file: &Path,
    text: &str,
    channels: &BTreeSet<String>,
    templates: &RecipeTemplates,
) -> Result<Recipe, Vec<Problem>> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let mut problems: Vec<Problem> = syntax_errors
            .iter()
            .map(|error| {
                let line = tomlspan::line_of_offset(
                    text,
                    error.span().map(|span| span.start).unwrap_or(0),
                );
                Problem::new(
                    file,
                    line,
                    format!("TOML syntax error: {}", error.message()),
                )
            })
            .collect();
        // Recovery may report a cascade on one line; the first message per line is the useful one.
        problems.sort_by_key(|problem| problem.line);
        problems.dedup_by_key(|problem| problem.line);
        return Err(problems);
    }
    let shape = match deserialize_root(root.clone()) {
        Ok(shape) => shape,
        Err(_) => return Err(shape_problems(file, text, &root)),
    };
    Validator {
        file,
        text,
        channels,
        templates,
        problems: Vec::new(),
        warnings: Vec::new(),
    }
    .validate(shape)
}

fn deserialize_root(root: Spanned<DeTable<'_>>) -> Result<RecipeFile, toml::de::Error> {
    RecipeFile::deserialize(toml::de::Deserializer::from(root))
}

/// Finds every shape problem (unknown key, wrong type, missing field in a section) by
/// deserializing each top-level key on its own, each param on its own and each check on its
/// own: serde stops at the first error, and one typo should not hide the next.
fn shape_problems<'i>(file: &Path, text: &'i str, root: &Spanned<DeTable<'i>>) -> Vec<Problem> {
    let span = root.span();
    let single = |key: &Spanned<toml::de::DeString<'i>>, value: Spanned<DeValue<'i>>| {
        let mut table = DeTable::new();
        table.insert(key.clone(), value);
        Spanned::new(span.clone(), table)
    };
    let mut candidates = Vec::new();
    for (key, value) in root.get_ref().iter() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("params", DeValue::Table(params)) if !params.is_empty() => {
                for (param_key, param_value) in params.iter() {
                    let mut one = DeTable::new();
                    one.insert(param_key.clone(), param_value.clone());
                    candidates.push(single(key, Spanned::new(value.span(), DeValue::Table(one))));
                }
            }
            ("verify", DeValue::Table(verify)) => {
                let checks = verify
                    .iter()
                    .find(|(k, _)| k.get_ref() == "checks")
                    .and_then(|(k, v)| match v.get_ref() {
                        DeValue::Array(array) if !array.is_empty() => {
                            Some((k.clone(), v.span(), array.clone()))
                        }
                        _ => None,
                    });
                match checks {
                    // One candidate per check, each with the other verify keys alongside.
                    Some((checks_key, checks_span, array)) => {
                        for check in array.iter() {
                            let mut one_check = DeArray::new();
                            one_check.push(check.clone());
                            let mut one = verify.clone();
                            one.insert(
                                checks_key.clone(),
                                Spanned::new(checks_span.clone(), DeValue::Array(one_check)),
                            );
                            candidates
                                .push(single(key, Spanned::new(value.span(), DeValue::Table(one))));
                        }
                    }
                    None => candidates.push(single(key, value.clone())),
                }
            }
            _ => candidates.push(single(key, value.clone())),
        }
    }
    let mut problems: Vec<Problem> = Vec::new();
    for candidate in candidates {
        if let Err(error) = deserialize_root(candidate) {
            let line =
                tomlspan::line_of_offset(text, error.span().map(|span| span.start).unwrap_or(0));
            let problem = Problem::new(file, line, error.message().to_owned());
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    problems.sort_by_key(|problem| problem.line);
    problems
}

/// Parses a duration like `60s`, `10m`, `1h 30m`; zero is refused (a zero timeout or window
/// would disable the very limit it is meant to set).
fn parse_duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse(text) {
        Ok(duration) if duration.is_zero() => {
            Err(format!("duration {text:?} must be greater than zero"))
        }
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "bad duration {text:?}: {error} (examples: \"5s\", \"10m\", \"1h\")"
        )),
    }
}

/// Semantic validation of one parsed file. Each check records a problem at the line of the
/// offending key and carries on, so the operator sees everything at once.
struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
    channels: &'a BTreeSet<String>,
    templates: &'a RecipeTemplates,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Validator<'_> {
    fn report(&mut self, path: &[&str], message: impl Into<String>) {
        let line = tomlspan::line_of_path(self.text, path).unwrap_or(1);
        self.problems
            .push(Problem::new(self.file, line, message.into()));
    }

    fn warn(&mut self, path: &[&str], message: impl Into<String>) {
        let line = tomlspan::line_of_path(self.text, path).unwrap_or(1);
        self.warnings
            .push(Problem::new(self.file, line, message.into()));
    }

    fn duration(&mut self, path: &[&str], text: Option<&str>, default: Duration) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(duration)) => duration,
            Some(Err(message)) => {
                self.report(path, format!("{}: {message}", display_path(path)));
                default
            }
        }
    }

    fn template(
        &mut self,
        path: &[&str],
        kind: TemplateKind,
        source: &str,
        params: &BTreeSet<String>,
    ) {
        let label = display_path(path);
        for message in self.templates.check(kind, source, params) {
            self.report(path, format!("{label}: {message}"));
        }
    }

    fn validate(mut self, shape: RecipeFile) -> Result<Recipe, Vec<Problem>> {
        let name = shape.name.unwrap_or_default();
        if name.is_empty() {
            self.report(&["name"], "missing required key `name`");
        } else if !RECIPE_NAME.is_match(&name) {
            self.report(
                &["name"],
                format!(
                    "recipe name {name:?} must be 1-64 of A-Z a-z 0-9 . _ - (starting alphanumeric)"
                ),
            );
        }

        let matcher_texts = shape.matchers.unwrap_or_default();
        let annotation_texts = shape.match_annotations.unwrap_or_default();
        if matcher_texts.is_empty() && annotation_texts.is_empty() {
            self.report(&["match"], "recipe has no matchers: `match` (or `match_annotations`) needs at least one (e.g. ['alertname=\"ServiceDown\"'])");
        }
        let matchers = self.matchers("match", &matcher_texts);
        let annotation_matchers = self.matchers("match_annotations", &annotation_texts);

        let param_files = shape.params.unwrap_or_default();
        let declared: BTreeSet<String> = param_files.keys().cloned().collect();
        let mut params = BTreeMap::new();
        for (param_name, param_file) in param_files {
            if let Some(param) = self.param(&param_name, param_file) {
                params.insert(param_name, param);
            }
        }

        let target = shape.target.unwrap_or_default();
        if target.is_empty() {
            self.report(
                &["target"],
                "missing required key `target` (e.g. \"{{ labels.instance | host }}\")",
            );
        } else {
            self.template(&["target"], TemplateKind::Target, &target, &declared);
        }

        let notify_only = shape.remediate.is_none();
        let (run, timeout) = self.remediate(shape.remediate, &declared);
        if notify_only {
            // Nothing runs, so nothing to verify, count or re-run: a key that cannot take
            // effect is a mistake the operator should hear about.
            for (present, key) in [
                (shape.verify.is_some(), "verify"),
                (shape.breaker.is_some(), "breaker"),
                (shape.idempotent.is_some(), "idempotent"),
            ] {
                if present {
                    self.report(
                        &[key],
                        format!("`{key}` has no effect in a notify-only recipe (one without [remediate])"),
                    );
                }
            }
        }
        let verify = shape
            .verify
            .map(|verify| self.verify(verify, &declared, &params));
        let breaker = shape.breaker.map(|breaker| {
            match breaker.key.as_deref() {
                Some("") => self.report(
                    &["breaker", "key"],
                    "breaker.key is empty (leave it out to count runs per target)",
                ),
                Some(key) => self.template(
                    &["breaker", "key"],
                    TemplateKind::BreakerKey,
                    key,
                    &declared,
                ),
                None => {}
            }
            Breaker {
                max_runs: breaker.max_runs,
                window: self.duration(
                    &["breaker", "window"],
                    Some(&breaker.window),
                    Duration::from_secs(600),
                ),
                key: breaker.key,
            }
        });
        if breaker
            .as_ref()
            .is_some_and(|breaker| breaker.max_runs == 0)
        {
            self.report(
                &["breaker", "max_runs"],
                "breaker.max_runs must be at least 1",
            );
        }

        let escalate = shape.escalate.unwrap_or_default();
        for (index, channel) in escalate.to.iter().enumerate() {
            if !self.channels.contains(channel) {
                let known = self.channels.iter().cloned().collect::<Vec<_>>().join(", ");
                self.report(
                    &["escalate", "to", &index.to_string()],
                    format!("unknown escalation channel {channel:?} (known: {known})"),
                );
            }
        }
        for (index, attach) in escalate.attach.iter().enumerate() {
            self.template(
                &["escalate", "attach", &index.to_string()],
                TemplateKind::Command,
                attach,
                &declared,
            );
        }

        if !self.problems.is_empty() {
            self.problems.sort_by_key(|problem| problem.line);
            return Err(self.problems);
        }
        Ok(Recipe {
            name,
            description: shape.description,
            runbook: shape.runbook,
            file: self.file.to_owned(),
            matchers,
            annotation_matchers,
            target,
            mode: match shape.mode {
                Some(RecipeMode::Enforce | RecipeMode::Approve) => Mode::Enforce,
                Some(RecipeMode::DryRun) | None => Mode::DryRun,
            },
            approval: shape.mode == Some(RecipeMode::Approve),
            priority: shape.priority.unwrap_or(0),
            sudo: shape.sudo.unwrap_or(false),
            idempotent: shape.idempotent.unwrap_or(false),
            params,
            run,
            timeout,
            verify,
            breaker,
            escalate_to: escalate.to,
            attach: escalate.attach,
            warnings: self.warnings,
        })
    }

    /// Parses the matchers of `key` (`match` or `match_annotations`), reporting each bad
    /// one at its line.
    fn matchers(&mut self, key: &str, texts: &[String]) -> Vec<Matcher> {
        let mut matchers = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(matcher) => matchers.push(matcher),
                Err(error) => self.report(&[key, &index.to_string()], error.to_string()),
            }
        }
        matchers
    }

    fn param(&mut self, name: &str, file: ParamFile) -> Option<Param> {
        let problems_before = self.problems.len();
        if !PARAM_NAME.is_match(name) || RESERVED_PARAM_NAMES.contains(&name) {
            self.report(
                &["params", name],
                format!(
                    "param name {name:?} must be an identifier ([A-Za-z_][A-Za-z0-9_]*) and not one of {}",
                    RESERVED_PARAM_NAMES.join(", ")
                ),
            );
        }
        let source = if let Some(key) = file
            .from
            .strip_prefix("labels.")
            .filter(|key| !key.is_empty())
        {
            Some(ParamSource::Label(key.to_owned()))
        } else if let Some(key) = file
            .from
            .strip_prefix("annotations.")
            .filter(|key| !key.is_empty())
        {
            Some(ParamSource::Annotation(key.to_owned()))
        } else {
            self.report(
                &["params", name, "from"],
                format!(
                    "params.{name}.from {:?} must be \"labels.NAME\" or \"annotations.NAME\"",
                    file.from
                ),
            );
            None
        };
        let pattern = match Regex::new(&format!("^(?:{})$", file.pattern)) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                self.report(
                    &["params", name, "pattern"],
                    format!(
                        "params.{name}.pattern is not a valid regex: {}",
                        regex_reason(&error)
                    ),
                );
                None
            }
        };
        if let (Some(pattern), Some(default)) = (&pattern, &file.default)
            && !pattern.is_match(default)
        {
            self.report(
                &["params", name, "default"],
                format!(
                    "params.{name}.default {default:?} does not match its own pattern {:?}",
                    file.pattern
                ),
            );
        }
        let deny = self.deny_list(name, file.deny.as_deref().unwrap_or_default());
        let denied_by = |value: &str| {
            deny.iter()
                .find(|(_, regex)| regex.is_match(value))
                .map(|(text, _)| text.clone())
        };
        if let Some(default) = &file.default
            && let Some(rule) = denied_by(default)
        {
            self.report(
                &["params", name, "default"],
                format!("params.{name}.default {default:?} is denied by {rule:?}"),
            );
        }
        if let Some(one_of) = &file.one_of {
            if one_of.is_empty() {
                self.report(
                    &["params", name, "one_of"],
                    format!("params.{name}.one_of is empty: no value could ever pass"),
                );
            }
            for (index, value) in one_of.iter().enumerate() {
                let at = ["params", name, "one_of", &index.to_string()];
                if let Some(pattern) = &pattern
                    && !pattern.is_match(value)
                {
                    self.report(
                        &at,
                        format!(
                            "params.{name}.one_of[{index}] {value:?} does not match the pattern {:?}",
                            file.pattern
                        ),
                    );
                } else if let Some(rule) = denied_by(value) {
                    self.report(
                        &at,
                        format!("params.{name}.one_of[{index}] {value:?} is denied by {rule:?}"),
                    );
                }
            }
            if file.one_of_host_label.is_none()
                && let Some(default) = &file.default
                && !one_of.contains(default)
            {
                self.report(
                    &["params", name, "default"],
                    format!("params.{name}.default {default:?} is not one of params.{name}.one_of"),
                );
            }
        }
        if let Some(label) = &file.one_of_host_label
            && label.trim().is_empty()
        {
            self.report(
                &["params", name, "one_of_host_label"],
                format!("params.{name}.one_of_host_label must name an inventory host label"),
            );
        }
        if self.problems.len() != problems_before {
            return None;
        }
        let pattern = pattern?;
        if file.one_of.is_none()
            && file.one_of_host_label.is_none()
            && let Some(probe) = HOSTILE_PROBES.iter().find(|probe| pattern.is_match(probe))
        {
            self.warn(
                &["params", name, "pattern"],
                format!(
                    "params.{name}.pattern {:?} accepts values like {probe:?}: it hardly restricts \
                     what an alert may choose (the value is still one quoted word); tighten it, \
                     or list the allowed values with `one_of` / `one_of_host_label`",
                    file.pattern
                ),
            );
        }
        Some(Param {
            name: name.to_owned(),
            source: source?,
            pattern_text: file.pattern,
            pattern,
            default: file.default,
            one_of: file.one_of,
            one_of_host_label: file.one_of_host_label,
            deny,
        })
    }

    /// Compiles `params.NAME.deny`, anchored like patterns; a bad regex is a problem.
    fn deny_list(&mut self, name: &str, texts: &[String]) -> Vec<(String, Regex)> {
        let mut deny = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            match Regex::new(&format!("^(?:{text})$")) {
                Ok(regex) => deny.push((text.clone(), regex)),
                Err(error) => self.report(
                    &["params", name, "deny", &index.to_string()],
                    format!(
                        "params.{name}.deny[{index}] is not a valid regex: {}",
                        regex_reason(&error)
                    ),
                ),
            }
        }
        deny
    }

    fn remediate(
        &mut self,
        remediate: Option<RemediateFile>,
        declared: &BTreeSet<String>,
    ) -> (Vec<String>, Duration) {
        // No [remediate] at all: a notify-only recipe. An empty `run` stays a mistake.
        let Some(remediate) = remediate else {
            return (Vec::new(), DEFAULT_REMEDIATE_TIMEOUT);
        };
        if remediate.run.is_empty() {
            self.report(
                &["remediate", "run"],
                "remediate.run is empty: a recipe must run at least one command",
            );
        }
        for (index, command) in remediate.run.iter().enumerate() {
            self.template(
                &["remediate", "run", &index.to_string()],
                TemplateKind::Command,
                command,
                declared,
            );
        }
        let timeout = self.duration(
            &["remediate", "timeout"],
            remediate.timeout.as_deref(),
            DEFAULT_REMEDIATE_TIMEOUT,
        );
        (remediate.run, timeout)
    }

    fn verify(
        &mut self,
        verify: VerifyFile,
        declared: &BTreeSet<String>,
        params: &BTreeMap<String, Param>,
    ) -> Verify {
        let fallback = Duration::from_secs(1);
        let within = self.duration(&["verify", "within"], Some(&verify.within), fallback);
        let interval = self.duration(&["verify", "interval"], Some(&verify.interval), fallback);
        if within < interval {
            self.report(
                &["verify", "within"],
                format!(
                    "verify.within ({}) is shorter than verify.interval ({})",
                    verify.within, verify.interval
                ),
            );
        }
        if verify.checks.is_empty() {
            self.report(
                &["verify", "checks"],
                "verify.checks is empty: add a check or remove [verify]",
            );
        }
        let checks = verify
            .checks
            .into_iter()
            .enumerate()
            .filter_map(|(index, check)| self.check(index, check, declared, params))
            .collect();
        Verify {
            within,
            interval,
            checks,
        }
    }

    fn check(
        &mut self,
        index: usize,
        check: CheckFile,
        declared: &BTreeSet<String>,
        params: &BTreeMap<String, Param>,
    ) -> Option<Check> {
        let index_text = index.to_string();
        let at = |key: &'static str| ["verify", "checks", index_text.as_str(), key];
        match (check.command, check.http) {
            (Some(command), None) => {
                let http_only = [
                    ("status", check.status.is_some()),
                    ("body_contains", check.body_contains.is_some()),
                    ("timeout", check.timeout.is_some()),
                    ("tls_verify", check.tls_verify.is_some()),
                ];
                for (key, _) in http_only.iter().filter(|(_, present)| *present) {
                    self.report(
                        &at(key),
                        format!("verify.checks[{index}]: `{key}` only applies to http checks"),
                    );
                }
                if let (Some(below), Some(above)) = (check.below, check.above)
                    && below <= above
                {
                    self.report(
                        &at("below"),
                        format!(
                            "verify.checks[{index}]: below ({below}) must be greater than above ({above}), \
                             or no value can pass"
                        ),
                    );
                }
                self.template(&at("command"), TemplateKind::Command, &command, declared);
                Some(Check::Command {
                    command,
                    below: check.below,
                    above: check.above,
                })
            }
            (None, Some(url)) => {
                for (key, _) in [
                    ("below", check.below.is_some()),
                    ("above", check.above.is_some()),
                ]
                .iter()
                .filter(|(_, present)| *present)
                {
                    self.report(
                        &at(key),
                        format!("verify.checks[{index}]: `{key}` only applies to command checks"),
                    );
                }
                let status = check.status.unwrap_or(DEFAULT_HTTP_STATUS);
                if !(100..=599).contains(&status) {
                    self.report(
                        &at("status"),
                        format!("verify.checks[{index}].status {status} is not an HTTP status"),
                    );
                }
                let timeout = self.duration(
                    &at("timeout"),
                    check.timeout.as_deref(),
                    DEFAULT_HTTP_TIMEOUT,
                );
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.report(
                        &at("http"),
                        format!("verify.checks[{index}].http must start with http:// or https://"),
                    );
                }
                self.template(&at("http"), TemplateKind::Url, &url, declared);
                for message in url_authority_problems(&url, params) {
                    self.report(
                        &at("http"),
                        format!("verify.checks[{index}].http: {message}"),
                    );
                }
                Some(Check::Http {
                    url,
                    status,
                    body_contains: check.body_contains,
                    timeout,
                    tls_verify: check.tls_verify.unwrap_or(true),
                })
            }
            (Some(_), Some(_)) => {
                self.report(
                    &at("http"),
                    format!(
                        "verify.checks[{index}] has both `command` and `http`; use one per check"
                    ),
                );
                None
            }
            (None, None) => {
                self.report(
                    &at(""),
                    format!("verify.checks[{index}] needs `command` or `http`"),
                );
                None
            }
        }
    }
}

/// What is wrong with where a URL template's placeholders sit in its authority: the host
/// may only be literal text, `{{ target }}` or `{{ target_name }}` (never alert data, which
/// would choose where salve connects); no userinfo at all (credentials would be journaled);
/// and a port
/// only literal digits or a param whose pattern admits nothing but ASCII digits (the
/// rendered number is checked against 1-65535 when planning). Template tags are refused in
/// the authority: they could emit anything there.
fn url_authority_problems(url: &str, params: &BTreeMap<String, Param>) -> Vec<String> {
    use super::template::{Piece, UrlPart, url_authority};
    let Some(parts) = url_authority(url) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (part, piece) in parts {
        match (part, piece) {
            (UrlPart::Port, Piece::Text(text)) if !text.bytes().all(|b| b.is_ascii_digit()) => {
                problems.push(format!("the port {text:?} is not a number"));
            }
            // Recipe text is trusted, but a URL's credentials are a secret, and the planned
            // URL is journaled and shown in history, the API and pages.
            (UrlPart::UserInfo, Piece::Text(_)) => problems.push(
                "the URL has a `user:password@` part: a check URL is journaled and shown in \
                 history, the API and pages, so it may not carry credentials"
                    .to_owned(),
            ),
            (_, Piece::Text(_)) => {}
            (_, Piece::Tag(tag)) => problems.push(format!(
                "a `{{% {tag} %}}` tag in the URL's host, port or userinfo could emit anything there; \
                 write that part literally"
            )),
            (UrlPart::UserInfo, Piece::Expr(expr)) => problems.push(format!(
                "`{{{{ {expr} }}}}` is in the URL's userinfo (`user:password@`): write credentials \
                 literally, never from a template"
            )),
            (UrlPart::Host, Piece::Expr(expr)) => {
                if expr != "target" && expr != "target_name" {
                    problems.push(format!(
                        "`{{{{ {expr} }}}}` is in the URL's host: the host may only be literal text, \
                         `{{{{ target }}}}` or `{{{{ target_name }}}}` (alert data must never choose \
                         where salve connects)"
                    ));
                }
            }
            (UrlPart::Port, Piece::Expr(expr)) => match params.get(&expr) {
                Some(param) if pattern_admits_only_digits(&param.pattern_text) => {}
                Some(param) => problems.push(format!(
                    "`{{{{ {expr} }}}}` is the URL's port, but params.{expr}.pattern {:?} admits \
                     more than ASCII digits: use e.g. '[0-9]{{1,5}}'",
                    param.pattern_text
                )),
                None => problems.push(format!(
                    "`{{{{ {expr} }}}}` is the URL's port: a port may only be literal digits or \
                     one param whose pattern admits only digits"
                )),
            },
        }
    }
    problems
}

/// Whether every string `pattern` can match consists of ASCII digits only, read from the
/// regex's syntax (as the `regex` crate parses it, Unicode on: `\d` is any Unicode digit
/// and therefore fails here). Empty matches count as digits-only; the port check at plan
/// time refuses an empty or out-of-range number.
fn pattern_admits_only_digits(pattern: &str) -> bool {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn digits_only(hir: &Hir) -> bool {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => true,
            HirKind::Literal(literal) => literal.0.iter().all(u8::is_ascii_digit),
            HirKind::Class(Class::Unicode(class)) => class
                .ranges()
                .iter()
                .all(|range| range.start() >= '0' && range.end() <= '9'),
            HirKind::Class(Class::Bytes(class)) => class
                .ranges()
                .iter()
                .all(|range| range.start() >= b'0' && range.end() <= b'9'),
            HirKind::Repetition(repetition) => digits_only(&repetition.sub),
            HirKind::Capture(capture) => digits_only(&capture.sub),
            HirKind::Concat(parts) | HirKind::Alternation(parts) => parts.iter().all(digits_only),
        }
    }
    regex_syntax::Parser::new()
        .parse(pattern)
        .is_ok_and(|hir| digits_only(&hir))
}

/// The one-line reason of a regex compile error (its `error:` line), else the whole text.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .unwrap_or(text)
}

/// `["remediate", "run", "0"]` → `remediate.run[0]`, as the operator would name it.
fn display_path(path: &[&str]) -> String {
    let mut text = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            text.push_str(&format!("[{segment}]"));
        } else {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(segment);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::test_support::SERVICE_RESTART;

    fn channels() -> BTreeSet<String> {
        ["oncall-email", "tickets"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Writes `files` into a temporary recipe directory and loads it.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<RecipeSet, Vec<Problem>>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let result = load_dir(dir.path(), &channels());
        (dir, result)
    }

    /// Loads one file and returns its problems as `line: message`.
    fn problems_of(text: &str) -> Vec<String> {
        let (_dir, result) = load(&[("r.toml", text)]);
        match result {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .iter()
                .map(|p| format!("{}: {}", p.line, p.message))
                .collect(),
        }
    }

    /// `expected` are `(line, fragment)` pairs, one per problem, in line order.
    fn check(text: &str, expected: &[(usize, &str)]) {
        let problems = problems_of(text);
        assert_eq!(problems.len(), expected.len(), "problems: {problems:#?}");
        for (problem, (line, fragment)) in problems.iter().zip(expected) {
            assert!(
                problem.starts_with(&format!("{line}: ")),
                "{problem:?} is not on line {line}"
            );
            assert!(problem.contains(fragment), "{problem:?} lacks {fragment:?}");
        }
    }

    const GOOD: &str = SERVICE_RESTART;

    #[test]
    fn a_good_recipe_loads_with_defaults() {
        let (_dir, result) = load(&[("svc.toml", GOOD)]);
        let set = result.unwrap();
        let recipe = set.get("svc").unwrap();
        assert_eq!(recipe.mode, Mode::DryRun);
        assert_eq!(recipe.priority, 0);
        assert!(!recipe.sudo && !recipe.idempotent);
        assert_eq!(recipe.timeout, Duration::from_secs(60));
        assert!(recipe.verify.is_none() && recipe.breaker.is_none());
    }

    #[test]
    fn syntax_errors_have_lines() {
        check(
            "name = \"x\"\nmatch = [\n'a=\"b\"'\ntarget = = 3\n",
            &[(4, "TOML syntax error")],
        );
    }

    #[test]
    fn every_shape_problem_is_reported() {
        let text = format!(
            "{GOOD}timeout = \"5s\"\ntiemout = 3\n\n[verify]\nwithin = \"60s\"\ninterval = \"5s\"\nchecks = [\n  {{ command = \"true\", bellow = 3 }},\n  {{ http = \"http://x/\", status = \"200\" }},\n]\n"
        );
        check(
            &text,
            &[
                (12, "unknown field `tiemout`"),
                (18, "unknown field `bellow`"),
                (19, "invalid type: string \"200\""),
            ],
        );
        check(
            &GOOD.replace("name = \"svc\"", "name = 7\npriority = \"high\""),
            &[(1, "invalid type"), (2, "invalid type")],
        );
        check(
            &GOOD.replace("from =", "form ="),
            &[(6, "unknown field `form`")],
        );
        // A top-level key written after [remediate] belongs to [remediate]: a classic TOML trap.
        check(
            &format!("{GOOD}\nmode = \"enforce\""),
            &[(12, "unknown field `mode`")],
        );
        check(
            &GOOD.replace("name = \"svc\"", "name = \"svc\"\nmode = \"enforced\""),
            &[(2, "unknown variant `enforced`")],
        );
        check(
            &GOOD.replace("pattern = '[a-z]+'\n", ""),
            &[(5, "missing field `pattern`")],
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_its_line() {
        let text = r#"name = "bad name!"
match = ['alertname=="x"', 'job=~"("', 'ok="1"']
target = "{{ labels.instance | hots }}"

[params.service]
from = "label.service"
pattern = '[a-z'

[params.port]
from = "labels.port"
pattern = '[0-9]+'
default = "http"

[remediate]
run = ["systemctl restart {{ servce }}", "echo '{{ port }}'", "echo {{ labels.x }}"]
timeout = "sixty"

[verify]
within = "5s"
interval = "10s"
checks = [
  { command = "true", status = 200 },
  { http = "ftp://{{ target }}/" },
  { command = "a", http = "http://b/" },
]

[breaker]
max_runs = 0
window = "0s"

[escalate]
to = ["oncall-email", "pager"]
attach = ["journalctl -u {{ service }}"]
"#;
        check(
            text,
            &[
                (1, "recipe name \"bad name!\""),
                (2, "unescaped double quote"),
                (2, "invalid regex"),
                (
                    3,
                    "target: template does not render: filter hots is unknown",
                ),
                (6, "must be \"labels.NAME\" or \"annotations.NAME\""),
                (7, "not a valid regex"),
                (12, "default \"http\" does not match its own pattern"),
                (
                    15,
                    "remediate.run[0]: template uses unknown variable `servce`",
                ),
                (15, "remediate.run[1]: a `{{ … }}` is inside shell quotes"),
                (15, "remediate.run[2]: template uses `labels`"),
                (16, "bad duration \"sixty\""),
                (
                    19,
                    "verify.within (5s) is shorter than verify.interval (10s)",
                ),
                (22, "`status` only applies to http checks"),
                (23, "must start with http:// or https://"),
                (24, "has both `command` and `http`"),
                (28, "max_runs must be at least 1"),
                (29, "must be greater than zero"),
                (
                    32,
                    "unknown escalation channel \"pager\" (known: oncall-email, tickets)",
                ),
            ],
        );
    }

    #[test]
    fn a_breaker_key_names_only_params_and_the_target() {
        let with_key = |key: &str| {
            format!("{GOOD}\n[breaker]\nmax_runs = 1\nwindow = \"1m\"\nkey = {key:?}\n")
        };
        for good in [
            "{{ service }}",
            "{{ target_name }}/{{ service }}",
            "{{ target }}",
        ] {
            check(&with_key(good), &[]);
        }
        check(
            &with_key("{{ labels.service }}"),
            &[(15, "breaker.key: template uses `labels`: raw alert text")],
        );
        check(
            &with_key("{{ servce }}"),
            &[(15, "breaker.key: template uses unknown variable `servce`")],
        );
        check(
            &with_key("{{ service | hots }}"),
            &[(
                15,
                "breaker.key: template does not render: filter hots is unknown",
            )],
        );
        check(&with_key(""), &[(15, "breaker.key is empty")]);
    }

    #[test]
    fn annotation_matchers_are_checked_like_label_matchers() {
        let text = GOOD.replace(
            "match = ['alertname=\"ServiceDown\"']",
            "match = ['alertname=\"ServiceDown\"']\nmatch_annotations = [\n  'summary=~\"disk.*\"',\n  'a-b=\"x\"',\n  'x=~\"(\"',\n]",
        );
        check(&text, &[(5, "bad matcher"), (6, "invalid regex")]);
        let only = GOOD.replace(
            "match = ['alertname=\"ServiceDown\"']",
            "match_annotations = ['summary=\"x\"']",
        );
        let (_dir, result) = load(&[("r.toml", &only)]);
        let set = result.unwrap();
        let recipe = set.get("svc").unwrap();
        assert!(recipe.matchers.is_empty());
        assert_eq!(recipe.annotation_matchers[0].to_string(), "summary=\"x\"");
    }

    #[test]
    fn a_recipe_without_remediate_is_notify_only_and_takes_no_run_keys() {
        let notify = GOOD.replace(
            "[remediate]\nrun = [\"systemctl restart {{ service }}\"]\n",
            "",
        );
        let (_dir, result) = load(&[("r.toml", &notify)]);
        let set = result.unwrap();
        let recipe = set.get("svc").unwrap();
        assert!(recipe.is_notify_only() && recipe.run.is_empty());
        let (_dir, result) = load(&[("r.toml", GOOD)]);
        assert!(!result.unwrap().get("svc").unwrap().is_notify_only());
        check(
            &format!(
                "idempotent = true\n{notify}\n[verify]\nwithin = \"5s\"\ninterval = \"1s\"\nchecks = [{{ command = \"true\" }}]\n\n[breaker]\nmax_runs = 1\nwindow = \"1m\"\n"
            ),
            &[
                (1, "`idempotent` has no effect in a notify-only recipe"),
                (11, "`verify` has no effect"),
                (16, "`breaker` has no effect"),
            ],
        );
    }

    #[test]
    fn missing_required_parts_are_reported() {
        check(
            "description = \"x\"\n",
            &[(1, "`name`"), (1, "no matchers"), (1, "`target`")],
        );
        check(
            &GOOD.replace("run = [\"systemctl restart {{ service }}\"]", "run = []"),
            &[(10, "remediate.run is empty")],
        );
        check(
            &GOOD.replace("['alertname=\"ServiceDown\"']", "[]"),
            &[(2, "no matchers")],
        );
        check(
            &GOOD.replace("from = \"labels.service\"", "from = \"labels.\""),
            &[(6, "must be \"labels.NAME\"")],
        );
        check(
            &GOOD
                .replace("[params.service]", "[params.target]")
                .replace("{{ service }}", "x"),
            &[(5, "param name \"target\"")],
        );
    }

    #[test]
    fn allow_and_deny_lists_are_checked_at_their_lines() {
        let text = r#"name = "svc"
match = ['alertname="ServiceDown"']
target = "{{ labels.instance | host }}"

[params.service]
from = "labels.service"
pattern = '[a-z.]+'
default = "reboot.target"
one_of = ["nginx", "NGINX", "poweroff.target"]
deny = ['.*\.target', '(']

[params.other]
from = "labels.other"
pattern = '[a-z]+'
default = "x"
one_of = []

[params.third]
from = "labels.third"
pattern = '[a-z]+'
one_of_host_label = " "

[remediate]
run = ["systemctl restart {{ service }} {{ other }} {{ third }}"]
"#;
        check(
            text,
            &[
                (
                    8,
                    "default \"reboot.target\" is denied by \".*\\\\.target\"",
                ),
                (
                    8,
                    "default \"reboot.target\" is not one of params.service.one_of",
                ),
                (9, "one_of[1] \"NGINX\" does not match the pattern"),
                (9, "one_of[2] \"poweroff.target\" is denied by"),
                (10, "params.service.deny[1] is not a valid regex"),
                (15, "default \"x\" is not one of"),
                (16, "params.other.one_of is empty"),
                (21, "one_of_host_label must name an inventory host label"),
            ],
        );
    }

    #[test]
    fn loose_patterns_without_an_allow_list_are_warnings() {
        for (pattern, extra, warns) in [
            ("(?s).*", "", true),
            ("(?s)^.*$", "", true),
            ("[\\s\\S]*", "", true),
            (".*", "", true),
            ("[^/]+", "", true),
            ("[A-Za-z0-9 ]+", "", true),
            ("[a-z]+", "", false),
            ("(?s).*", "one_of = [\"a\"]\n", false),
            ("(?s).*", "one_of_host_label = \"svc\"\n", false),
        ] {
            let text = GOOD.replace(
                "pattern = '[a-z]+'\n",
                &format!("pattern = '{pattern}'\n{extra}"),
            );
            let (_dir, result) = load(&[("r.toml", &text)]);
            let set = result.unwrap_or_else(|p| panic!("{pattern}: {p:#?}"));
            let warnings: Vec<String> = set
                .warnings()
                .map(|w| format!("{}: {}", w.line, w.message))
                .collect();
            assert_eq!(
                !warnings.is_empty(),
                warns,
                "{pattern} {extra}: {warnings:?}"
            );
            if warns {
                assert!(
                    warnings[0].starts_with("7: params.service.pattern"),
                    "{warnings:?}"
                );
            }
        }
    }

    #[test]
    fn url_hosts_userinfo_and_ports_take_no_alert_data() {
        let recipe = |url: &str, port_pattern: &str| {
            format!(
                "{GOOD}\n[params.port]\nfrom = \"labels.port\"\npattern = '{port_pattern}'\ndefault = \"80\"\n\n\
                 [verify]\nwithin = \"5s\"\ninterval = \"1s\"\nchecks = [\n  {{ http = \"{url}\" }},\n]\n"
            )
            .replace("{{ service }}\"]", "{{ service }} {{ port }}\"]")
        };
        for (url, port_pattern) in [
            (
                "http://{{ target }}:{{ port }}/x/{{ service }}?q={{ service }}#{{ port }}",
                "[0-9]{1,5}",
            ),
            ("https://{{ target_name }}.example.com:8443/", "[0-9]+"),
            ("http://{{ target }}:{{ port }}/", "(?-u:\\d)+|[1-9][0-9]*"),
            ("http://[::1]:{{ port }}/{{ service }}", "(80|443|[0-9]{4})"),
            (
                "http://{{ target }}/a@{{ service }}:{{ service }}",
                "[0-9]+",
            ),
        ] {
            check(&recipe(url, port_pattern), &[]);
        }
        for (url, port_pattern, fragment) in [
            (
                "http://{{ service }}:80/",
                "[0-9]+",
                "`{{ service }}` is in the URL's host",
            ),
            (
                "http://{{ service }}.example.com/",
                "[0-9]+",
                "is in the URL's host",
            ),
            ("http://x{{ service }}/", "[0-9]+", "is in the URL's host"),
            (
                "http://{{ target | lower }}/",
                "[0-9]+",
                "is in the URL's host",
            ),
            ("http://{{ service }}@{{ target }}/", "[0-9]+", "userinfo"),
            (
                "http://user:pw@{{ target }}/",
                "[0-9]+",
                "may not carry credentials",
            ),
            ("http://u:{{ service }}@{{ target }}/", "[0-9]+", "userinfo"),
            (
                "http://{{ target }}:{{ port }}/",
                "[^/]+",
                "admits more than ASCII digits",
            ),
            (
                "http://{{ target }}:{{ port }}/",
                "\\d+",
                "admits more than ASCII digits",
            ),
            (
                "http://{{ target }}:{{ port }}/",
                "[0-9a]+",
                "admits more than ASCII digits",
            ),
            (
                "http://{{ target }}:{{ service }}/",
                "[0-9]+",
                "admits more than ASCII digits",
            ),
            (
                "http://{{ target }}:{{ target }}/",
                "[0-9]+",
                "a port may only be",
            ),
            (
                "http://{{ target }}:8o/",
                "[0-9]+",
                "the port \"8o\" is not a number",
            ),
            (
                "http://{% if port %}{{ target }}{% endif %}/",
                "[0-9]+",
                "tag in the URL's host",
            ),
        ] {
            let problems = problems_of(&recipe(url, port_pattern));
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(fragment) && p.starts_with("21: ")),
                "{url} with {port_pattern}: {problems:#?}"
            );
        }
    }

    #[test]
    fn digits_only_patterns_are_read_from_the_syntax() {
        for digits in [
            "[0-9]+",
            "[0-9]{1,5}",
            "(?-u:\\d)+",
            "8080|[1-9][0-9]{0,3}",
            "0*",
            "(?:[0-9])?",
        ] {
            assert!(pattern_admits_only_digits(digits), "{digits}");
        }
        for not_only in [
            "\\d+",
            "[0-9a]+",
            ".+",
            "[^a]",
            "8080|x",
            "[0-9]+ ",
            "(?i)[0-9]k",
            "[",
        ] {
            assert!(!pattern_admits_only_digits(not_only), "{not_only}");
        }
    }

    #[test]
    fn duplicate_names_across_files_point_at_the_later_file() {
        let (dir, result) = load(&[("a.toml", GOOD), ("b.toml", GOOD)]);
        let problems = result.unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            format!(
                "{}:1: duplicate recipe name \"svc\" (also in {})",
                dir.path().join("b.toml").display(),
                dir.path().join("a.toml").display()
            )
        );
    }

    #[test]
    fn directories_missing_empty_and_with_subdirectories() {
        let missing = load_dir(Path::new("/nonexistent/salve/recipes"), &channels()).unwrap_err();
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0]
                .to_string()
                .starts_with("/nonexistent/salve/recipes: cannot read recipe directory")
        );

        let (_dir, empty) = load(&[]);
        assert!(empty.unwrap().is_empty());

        // Fixtures live in a subdirectory and other extensions are ignored.
        let (dir, _) = load(&[
            ("b.toml", &GOOD.replace("svc", "second")),
            ("a.toml", GOOD),
            ("notes.md", "x"),
        ]);
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/x.toml"), "[[case]]\n").unwrap();
        let set = load_dir(dir.path(), &channels()).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["svc", "second"]);
    }

    #[test]
    fn the_broken_recipe_directory_reports_each_mistake() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-recipes");
        let problems = load_dir(&dir, &channels()).unwrap_err();
        let lines: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p.file.file_name().unwrap().to_string_lossy(),
                    p.line
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "a-unknown-key.toml:12",
                "b-bad-matcher.toml:3",
                "c-bad-regex.toml:8",
                "d-unknown-param.toml:11",
                "e-unknown-channel.toml:15",
                "f-bad-duration.toml:12",
            ],
            "{problems:#?}"
        );
    }
}
