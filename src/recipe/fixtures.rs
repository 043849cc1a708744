//! `salve test`: recipe fixtures, alert in → expected plan out, like `promtool test rules`.
//! Reads fixture files and plans; it never runs a command or touches a host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
use crate::inventory::{Host, Inventory};
use crate::plan::{Mode, Plan, PlanOutcome, PlannedCheck};
use crate::tomlspan;

use super::{PlanContext, Problem, RecipeSet, Routes};

/// One `recipes/tests/*.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    /// Global mode for these cases; dry-run when absent.
    mode: Option<Mode>,
    /// Inventory for these cases; the caller's inventory when absent.
    hosts: Option<Vec<Host>>,
    #[serde(default)]
    case: Vec<CaseFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: String,
    /// The alert as labels and annotations; or else `body`.
    alert: Option<AlertFile>,
    /// The raw webhook body as the monitor POSTs it (one firing alert in it), instead of
    /// `alert`: the case then also tests how the intake reads that monitor's JSON.
    body: Option<String>,
    /// `body`'s source: `alertmanager`, `grafana` or `generic`; detected from its shape
    /// when absent.
    source: Option<Source>,
    #[serde(default)]
    expect: Expect,
}

impl CaseFile {
    /// The alert this case plans for, or why it has none.
    fn alert(&self) -> Result<Alert, String> {
        match (&self.alert, &self.body) {
            (Some(alert), None) => {
                if self.source.is_some() {
                    return Err("`source` goes with `body`, not with `alert`".to_owned());
                }
                Ok(Alert {
                    source: Source::Generic,
                    fingerprint: Fingerprint::of_labels(&alert.labels),
                    status: AlertStatus::Firing,
                    labels: alert.labels.clone(),
                    annotations: alert.annotations.clone(),
                    starts_at: None,
                    ends_at: None,
                    generator_url: None,
                    external_url: None,
                })
            }
            (None, Some(body)) => {
                let limits = crate::intake::Limits::default();
                let parsed = match self.source {
                    Some(source) => crate::intake::parse(source, body.as_bytes(), &limits),
                    None => crate::intake::detect_and_parse(body.as_bytes(), &limits),
                };
                let mut alerts = parsed.map_err(|error| format!("body: {error}"))?.alerts;
                if alerts.len() != 1 {
                    return Err(format!(
                        "body: a case plans one alert, this body has {}",
                        alerts.len()
                    ));
                }
                Ok(alerts.remove(0))
            }
            (Some(_), Some(_)) => Err("give `alert` or `body`, not both".to_owned()),
            (None, None) => {
                Err("a case needs `alert` (labels) or `body` (a webhook body)".to_owned())
            }
        }
    }
}

/// One fixture case for `salve simulate --case`: its alert, and the inventory and global
/// mode its file plans with (`None`: the caller's).
#[derive(Debug)]
pub struct FixtureCase {
    pub alert: Alert,
    pub inventory: Option<Inventory>,
    pub mode: Mode,
}

/// The case named `name` in the fixture file `file`, checked as `salve test` checks it.
pub fn fixture_case(file: &Path, name: &str) -> Result<FixtureCase, Vec<Problem>> {
    let text = std::fs::read_to_string(file).map_err(|error| {
        vec![Problem::new(
            file,
            0,
            format!("cannot read fixture: {error}"),
        )]
    })?;
    let fixture: FixtureFile = toml::from_str(&text).map_err(|error| {
        let line =
            tomlspan::line_of_offset(&text, error.span().map(|span| span.start).unwrap_or(0));
        vec![Problem::new(file, line, error.message().to_owned())]
    })?;
    let Some((index, case)) = fixture
        .case
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == name)
    else {
        let names: Vec<&str> = fixture.case.iter().map(|c| c.name.as_str()).collect();
        return Err(vec![Problem::new(
            file,
            0,
            format!("no case named {name:?}; the cases are: {names:?}"),
        )]);
    };
    let alert = case.alert().map_err(|message| {
        let line = tomlspan::line_of_path(&text, &["case", &index.to_string()]).unwrap_or(1);
        vec![Problem::new(file, line, message)]
    })?;
    Ok(FixtureCase {
        alert,
        inventory: fixture.hosts.map(Inventory::new),
        mode: fixture.mode.unwrap_or(Mode::DryRun),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertFile {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// `[case.expect]`: every field is optional; only the given ones are compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: Option<PlanOutcome>,
    recipe: Option<String>,
    /// Inventory name of the target.
    target: Option<String>,
    mode: Option<Mode>,
    sudo: Option<bool>,
    params: Option<BTreeMap<String, String>>,
    /// Exact rendered remediate commands.
    commands: Option<Vec<String>>,
    /// Rendered checks: the command line of command checks, the URL of http checks.
    checks: Option<Vec<String>>,
    escalate: Option<Vec<String>>,
    attach: Option<Vec<String>>,
    reason_contains: Option<String>,
}

/// The result of one fixture case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub file: PathBuf,
    /// Line of the case's `[[case]]` header.
    pub line: usize,
    pub name: String,
    /// One readable entry per expectation that did not hold; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// All cases of all fixture files, in file then case order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureReport {
    pub cases: Vec<CaseResult>,
}

impl FixtureReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|case| case.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for FixtureReport {
    /// One line per case (`PASS`/`FAIL file:line name`), failures indented below, then a
    /// summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            let verdict = if case.passed() { "PASS" } else { "FAIL" };
            writeln!(
                f,
                "{verdict} {}:{} {}",
                case.file.display(),
                case.line,
                case.name
            )?;
            for failure in &case.failures {
                for line in failure.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs every `dir/*.toml` fixture file (file-name order) against `recipes`. Each file uses
/// its own `[[hosts]]` if it has any, else `default_ctx.inventory`; its `mode` (dry-run when
/// absent) as the global mode; and `default_ctx.default_escalation`. Files that cannot be
/// read or parsed are problems (`Err`); failing cases are in the report (`Ok`).
pub fn run_fixtures(
    dir: &Path,
    recipes: &RecipeSet,
    default_ctx: &PlanContext,
) -> Result<FixtureReport, Vec<Problem>> {
    let routes = Routes::new(Vec::new(), default_ctx.default_escalation.to_vec());
    run_fixtures_routed(dir, recipes, default_ctx, &routes)
}

/// [`run_fixtures`] with `[[escalation.routes]]`: each case's default escalation is what
/// `routes` give its labels, as `serve` plans it (`default_ctx.default_escalation` unused).
pub fn run_fixtures_routed(
    dir: &Path,
    recipes: &RecipeSet,
    default_ctx: &PlanContext,
    routes: &Routes,
) -> Result<FixtureReport, Vec<Problem>> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        vec![Problem::new(
            dir,
            0,
            format!("cannot read fixture directory: {error}"),
        )]
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

    let mut problems = Vec::new();
    let mut report = FixtureReport::default();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match run_fixture_file(&file, &text, recipes, default_ctx, routes) {
                Ok(mut cases) => report.cases.append(&mut cases),
                Err(mut file_problems) => problems.append(&mut file_problems),
            },
            Err(error) => problems.push(Problem::new(
                &file,
                0,
                format!("cannot read fixture: {error}"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems)
    }
}

fn run_fixture_file(
    file: &Path,
    text: &str,
    recipes: &RecipeSet,
    default_ctx: &PlanContext,
    routes: &Routes,
) -> Result<Vec<CaseResult>, Vec<Problem>> {
    let fixture: FixtureFile = toml::from_str(text).map_err(|error| {
        let line = tomlspan::line_of_offset(text, error.span().map(|span| span.start).unwrap_or(0));
        vec![Problem::new(file, line, error.message().to_owned())]
    })?;
    let mut problems = Vec::new();
    if fixture.case.is_empty() {
        problems.push(Problem::new(file, 1, "fixture file has no [[case]]"));
    }
    let own_inventory = fixture.hosts.map(Inventory::new);
    if let Some(inventory) = &own_inventory {
        for (index, message) in inventory.problems() {
            let line = tomlspan::line_of_path(text, &["hosts", &index.to_string()]).unwrap_or(1);
            problems.push(Problem::new(file, line, message));
        }
    }
    let mut alerts = Vec::new();
    for (index, case) in fixture.case.iter().enumerate() {
        match case.alert() {
            Ok(alert) => alerts.push(alert),
            Err(message) => {
                let line = tomlspan::line_of_path(text, &["case", &index.to_string()]).unwrap_or(1);
                problems.push(Problem::new(file, line, message));
            }
        }
        if fixture.case[..index]
            .iter()
            .any(|earlier| earlier.name == case.name)
        {
            let line =
                tomlspan::line_of_path(text, &["case", &index.to_string(), "name"]).unwrap_or(1);
            problems.push(Problem::new(
                file,
                line,
                format!("duplicate case name {:?}", case.name),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let ctx = PlanContext {
        inventory: own_inventory.as_ref().unwrap_or(default_ctx.inventory),
        global_mode: fixture.mode.unwrap_or(Mode::DryRun),
        default_escalation: default_ctx.default_escalation,
    };
    Ok(fixture
        .case
        .iter()
        .zip(alerts)
        .enumerate()
        .map(|(index, (case, alert))| {
            let ctx = PlanContext {
                default_escalation: routes.channels_for(&alert.labels),
                ..ctx
            };
            let plan = recipes.plan(&alert, &ctx);
            CaseResult {
                file: file.to_owned(),
                line: tomlspan::line_of_path(text, &["case", &index.to_string()]).unwrap_or(1),
                name: case.name.clone(),
                failures: compare(&case.expect, &plan),
            }
        })
        .collect())
}

/// Each expectation that does not hold, as a readable message with expected vs actual.
fn compare(expect: &Expect, plan: &Plan) -> Vec<String> {
    let mut failures = Vec::new();
    let mut scalar = |field: &str, expected: Option<String>, actual: String| {
        if let Some(expected) = expected
            && expected != actual
        {
            failures.push(format!("{field}: expected {expected}, got {actual}"));
        }
    };
    let show =
        |value: Option<&str>| value.map_or_else(|| "none".to_owned(), |value| format!("{value:?}"));
    scalar(
        "outcome",
        expect.outcome.map(|o| o.as_str().to_owned()),
        plan.outcome.as_str().to_owned(),
    );
    scalar(
        "recipe",
        expect.recipe.as_deref().map(|r| show(Some(r))),
        show(plan.recipe.as_deref()),
    );
    scalar(
        "target",
        expect.target.as_deref().map(|t| show(Some(t))),
        show(plan.target.as_ref().map(|target| target.name.as_str())),
    );
    scalar(
        "mode",
        expect.mode.map(|m| m.as_str().to_owned()),
        plan.mode.as_str().to_owned(),
    );
    scalar(
        "sudo",
        expect.sudo.map(|s| s.to_string()),
        plan.sudo.to_string(),
    );
    scalar(
        "params",
        expect.params.as_ref().map(|p| format!("{p:?}")),
        format!("{:?}", plan.params),
    );

    if let Some(fragment) = &expect.reason_contains {
        let reason = plan.reason.as_deref().unwrap_or("");
        if !reason.contains(fragment.as_str()) {
            failures.push(format!(
                "reason: expected to contain {fragment:?}, got {}",
                show(plan.reason.as_deref())
            ));
        }
    }
    let checks: Vec<String> = plan
        .verify
        .iter()
        .flat_map(|verify| verify.checks.iter())
        .map(|check| match check {
            PlannedCheck::Command { command, .. } => command.clone(),
            PlannedCheck::Http { url, .. } => url.clone(),
        })
        .collect();
    for (field, expected, actual) in [
        ("commands", &expect.commands, &plan.commands),
        ("checks", &expect.checks, &checks),
        ("escalate", &expect.escalate, &plan.escalate),
        ("attach", &expect.attach, &plan.attach),
    ] {
        if let Some(expected) = expected
            && expected != actual
        {
            failures.push(list_diff(field, expected, actual));
        }
    }
    failures
}

/// A list difference, item by item: `  [i]` equal, `- [i]` expected, `+ [i]` actual.
fn list_diff(field: &str, expected: &[String], actual: &[String]) -> String {
    let mut text = format!("{field} differ (- expected, + actual):");
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if e == a => text.push_str(&format!("\n    [{index}] {e}")),
            (e, a) => {
                if let Some(e) = e {
                    text.push_str(&format!("\n  - [{index}] {e}"));
                }
                if let Some(a) = a {
                    text.push_str(&format!("\n  + [{index}] {a}"));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::recipe::loader::load_dir;
    use crate::recipe::test_support::{SERVICE_RESTART, inventory_of};

    /// The base recipe, in enforce mode.
    fn recipe() -> String {
        SERVICE_RESTART.replace("target = ", "mode = \"enforce\"\ntarget = ")
    }

    /// A recipe dir with `recipe()` and a `tests/` dir with the given fixture files.
    fn setup(fixtures: &[(&str, &str)]) -> (tempfile::TempDir, RecipeSet) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.toml"), recipe()).unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        for (name, text) in fixtures {
            std::fs::write(dir.path().join("tests").join(name), text).unwrap();
        }
        let set = load_dir(dir.path(), &BTreeSet::new()).unwrap();
        (dir, set)
    }

    fn run(fixtures: &[(&str, &str)]) -> Result<FixtureReport, Vec<Problem>> {
        let (dir, set) = setup(fixtures);
        let inventory = inventory_of("callers-host", BTreeMap::new());
        let route = vec!["default-route".to_owned()];
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::Enforce,
            default_escalation: &route,
        };
        run_fixtures(&dir.path().join("tests"), &set, &ctx)
    }

    const PASSING: &str = r#"
[[hosts]]
name = "web1"

[[case]]
name = "restart"
alert = { labels = { alertname = "ServiceDown", instance = "web1:9100", service = "nginx" } }
[case.expect]
outcome = "planned"
recipe = "svc"
target = "web1"
mode = "dry-run"
commands = ["systemctl restart 'nginx'"]
escalate = ["default-route"]
"#;

    #[test]
    fn cases_are_routed_by_their_labels_as_serve_routes_them() {
        let (dir, set) = setup(&[(
            "a.toml",
            r#"
[[hosts]]
name = "web1"

[[case]]
name = "critical restart"
alert = { labels = { alertname = "ServiceDown", instance = "web1:9100", service = "nginx", severity = "critical" } }
[case.expect]
escalate = ["pager"]

[[case]]
name = "novel"
alert = { labels = { alertname = "Novel" } }
[case.expect]
outcome = "unmatched"
escalate = ["default-route"]
"#,
        )]);
        let inventory = inventory_of("callers-host", BTreeMap::new());
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::Enforce,
            default_escalation: &[],
        };
        let critical = crate::recipe::Route {
            matchers: vec![crate::recipe::Matcher::parse(r#"severity="critical""#).unwrap()],
            to: vec!["pager".to_owned()],
            resolve: true,
        };
        let routes = Routes::new(vec![critical], vec!["default-route".to_owned()]);
        let report = run_fixtures_routed(&dir.path().join("tests"), &set, &ctx, &routes).unwrap();
        assert_eq!((report.passed(), report.failed()), (2, 0), "{report}");
    }

    #[test]
    fn passing_cases_pass() {
        let report = run(&[("a.toml", PASSING)]).unwrap();
        assert_eq!((report.passed(), report.failed()), (1, 0), "{report}");
        assert!(report.is_success());
        assert!(report.to_string().starts_with("PASS "), "{report}");
        assert!(
            report
                .to_string()
                .ends_with("a.toml:5 restart\n1 passed, 0 failed\n"),
            "{report}"
        );
    }

    #[test]
    fn failing_cases_show_expected_and_actual() {
        let failing = PASSING
            .replace(
                "systemctl restart 'nginx'\"]",
                "systemctl restart nginx\", \"extra\"]",
            )
            .replace(
                "mode = \"dry-run\"",
                "mode = \"enforce\"\nreason_contains = \"nope\"",
            );
        let report = run(&[("a.toml", &failing)]).unwrap();
        assert_eq!(report.failed(), 1);
        let text = report.to_string();
        for fragment in [
            "FAIL ",
            "mode: expected enforce, got dry-run",
            "reason: expected to contain \"nope\", got none",
            "commands differ (- expected, + actual):",
            "  - [0] systemctl restart nginx",
            "  + [0] systemctl restart 'nginx'",
            "  - [1] extra",
            "0 passed, 1 failed",
        ] {
            assert!(
                text.contains(fragment),
                "{fragment:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn without_hosts_the_callers_inventory_and_dry_run_apply() {
        let fixture = r#"
[[case]]
name = "caller inventory"
alert = { labels = { alertname = "ServiceDown", instance = "callers-host", service = "x" } }
expect = { outcome = "planned", target = "callers-host", mode = "dry-run" }

[[case]]
name = "fixture hosts are not there"
alert = { labels = { alertname = "ServiceDown", instance = "web1", service = "x" } }
expect = { outcome = "refused", reason_contains = 'target "web1" is not in the inventory' }
"#;
        let report = run(&[("a.toml", fixture)]).unwrap();
        assert!(report.is_success(), "{report}");
    }

    #[test]
    fn broken_fixture_files_are_problems_with_lines() {
        let problems = run(&[
            ("a.toml", "[[case]]\nname = \"x\"\nalert = {}\n[case.expect]\noutcom = \"planned\"\n"),
            ("b.toml", "[[case]]\nname = \"x\"\nalert = {}\n[[case]]\nname = \"x\"\nalert = {}\n"),
            ("c.toml", "mode = \"enforce\"\n"),
            ("d.toml", "[[hosts]]\nname = \"h\"\n[[hosts]]\nname = \"h\"\n[[case]]\nname = \"x\"\nalert = {}\n"),
        ])
        .unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}",
                    p.file.file_name().unwrap().to_string_lossy(),
                    p.line,
                    p.message
                )
            })
            .collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(
            text[0].starts_with("a.toml:5: unknown field `outcom`"),
            "{text:#?}"
        );
        assert_eq!(text[1], "b.toml:5: duplicate case name \"x\"");
        assert_eq!(text[2], "c.toml:1: fixture file has no [[case]]");
        assert_eq!(text[3], "d.toml:3: duplicate host name \"h\"");
    }

    #[test]
    fn a_case_may_give_the_raw_webhook_body_and_its_source() {
        let body = r#"{"labels": {"alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx"}}"#;
        let case = |extra: &str| {
            format!(
                "[[hosts]]\nname = \"web1\"\n[[case]]\nname = \"raw\"\n{extra}\n\
                 [case.expect]\nrecipe = \"svc\"\ncommands = [\"systemctl restart 'nginx'\"]\n"
            )
        };
        let report = run(&[
            ("detected.toml", &case(&format!("body = '{body}'"))),
            (
                "named.toml",
                &case(&format!("source = \"generic\"\nbody = '{body}'")),
            ),
        ])
        .unwrap();
        assert_eq!((report.passed(), report.failed()), (2, 0), "{report}");

        let problems = run(&[
            (
                "both.toml",
                &case(&format!("body = '{body}'\nalert = {{}}")),
            ),
            ("neither.toml", &case("")),
            (
                "bad.toml",
                &case("source = \"alertmanager\"\nbody = '{\"alerts\": 3}'"),
            ),
            ("stray.toml", &case("source = \"generic\"\nalert = {}")),
        ])
        .unwrap_err();
        let messages: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}",
                    p.file.file_name().unwrap().to_string_lossy(),
                    p.line,
                    p.message
                )
            })
            .collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(
            messages[0].starts_with("bad.toml:3: body: "),
            "{messages:#?}"
        );
        assert_eq!(messages[1], "both.toml:3: give `alert` or `body`, not both");
        assert!(
            messages[2].starts_with("neither.toml:3: a case needs `alert`"),
            "{messages:#?}"
        );
        assert_eq!(
            messages[3],
            "stray.toml:3: `source` goes with `body`, not with `alert`"
        );
    }

    #[test]
    fn a_missing_fixture_directory_is_a_problem() {
        let inventory = Inventory::default();
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::DryRun,
            default_escalation: &[],
        };
        let problems =
            run_fixtures(Path::new("/nonexistent/tests"), &RecipeSet::default(), &ctx).unwrap_err();
        assert_eq!(problems.len(), 1);
    }
}
