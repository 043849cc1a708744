//! The planner: one alert in, one `Plan` out (which recipe, which host, the exact commands).
//! Pure: it never runs, connects to or resolves anything outside the given inventory.

use std::collections::BTreeMap;

use crate::alert::Alert;
use crate::inventory::Inventory;
use crate::plan::{Mode, Plan, PlanOutcome, PlannedBreaker, PlannedCheck, PlannedVerify};

use super::RecipeSet;
use super::model::{Check, ParamSource, Recipe};
use super::template::CommandContext;

/// Longest alert value quoted back in a reason; alert text is untrusted and may be huge.
const MAX_QUOTED_VALUE: usize = 100;
/// Longest rendered `[breaker] key`.
const MAX_BREAKER_KEY: usize = 200;

/// What the planner needs besides the alert and the recipes.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    /// The allow-list; a rendered target must resolve here.
    pub inventory: &'a Inventory,
    /// The global switch: a plan enforces only when this AND the recipe say `enforce`.
    pub global_mode: Mode,
    /// Channels for unmatched alerts and for recipes without `escalate.to`: what
    /// `[[escalation.routes]]` give this alert's labels (`recipe::Routes::channels_for`).
    pub default_escalation: &'a [String],
}

/// `{:?}` of at most [`MAX_QUOTED_VALUE`] characters: escaped (no raw newlines or control
/// characters reach a log line or an email subject) and bounded.
fn quoted(value: &str) -> String {
    if value.chars().count() <= MAX_QUOTED_VALUE {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_QUOTED_VALUE).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    }
}

impl RecipeSet {
    /// Plans what to do for `alert`.
    ///
    /// **Which recipe wins:** every recipe whose matchers all match the alert's labels is a
    /// candidate; the one with the highest `priority` wins, and among equal priorities the
    /// one whose file name sorts first. The plan's `reason` then names the other candidates
    /// (`"also matched: a, b"`) so an overlap is visible in `simulate` and history.
    ///
    /// Outcomes: `unmatched` when no recipe matches (escalated to the default route);
    /// `refused` when the winner cannot act safely — a param is missing without a default or
    /// fails its pattern, the target does not render or is not in the inventory, or a
    /// template fails to render — escalated to the recipe's channels (or the default route);
    /// otherwise `planned`, with every template rendered and `mode` = enforce only if both
    /// the recipe and `ctx.global_mode` say enforce. A refused winner does not fall through
    /// to the next candidate: the most specific recipe's refusal is what a human must see.
    pub fn plan(&self, alert: &Alert, ctx: &PlanContext) -> Plan {
        let candidates: Vec<&Recipe> = self
            .recipes
            .iter()
            .filter(|recipe| recipe.matches(&alert.labels, &alert.annotations))
            .collect();
        // `max_by_key` returns the last maximum; iterate in reverse file order so ties go to
        // the first file name.
        let Some(winner) = candidates
            .iter()
            .rev()
            .max_by_key(|recipe| recipe.priority)
            .copied()
        else {
            let alertname = alert
                .alertname()
                .map(quoted)
                .unwrap_or_else(|| "(none)".to_owned());
            let near_misses = self.near_misses(&alert.labels);
            let nearest: Vec<String> = near_misses.iter().map(ToString::to_string).collect();
            let mut plan = Plan::inert(
                PlanOutcome::Unmatched,
                None,
                if nearest.is_empty() {
                    format!("no recipe matched alertname={alertname}")
                } else {
                    format!(
                        "no recipe matched alertname={alertname}; nearest: {}",
                        nearest.join(", ")
                    )
                },
                ctx.default_escalation.to_vec(),
            );
            plan.near_misses = near_misses;
            return plan;
        };
        let others: Vec<&str> = candidates
            .iter()
            .filter(|recipe| recipe.name != winner.name)
            .map(|recipe| recipe.name.as_str())
            .collect();
        let escalate = if winner.escalate_to.is_empty() {
            ctx.default_escalation.to_vec()
        } else {
            winner.escalate_to.clone()
        };
        let refuse = |reason: String| {
            Plan::inert(
                PlanOutcome::Refused,
                Some(winner.name.clone()),
                reason,
                escalate.clone(),
            )
        };

        let params = match resolve_params(winner, alert) {
            Ok(params) => params,
            Err(reason) => return refuse(reason),
        };
        let rendered_target =
            match self
                .templates
                .render_target(&winner.target, &alert.labels, &alert.annotations)
            {
                Ok(target) => target,
                Err(error) => return refuse(format!("target: template failed: {error}")),
            };
        let Some(host) = ctx.inventory.resolve(&rendered_target) else {
            return refuse(format!(
                "target {} is not in the inventory",
                quoted(&rendered_target)
            ));
        };
        if let Err(reason) = check_allow_lists(winner, &params, host) {
            return refuse(reason);
        }
        let context = CommandContext {
            params: params.clone(),
            target: host.address().to_owned(),
            target_name: host.name.clone(),
            host_labels: host.labels.clone(),
        };

        let render_all = |what: &str, sources: &[String]| -> Result<Vec<String>, String> {
            sources
                .iter()
                .enumerate()
                .map(|(index, source)| {
                    self.templates
                        .render_command(source, &context)
                        .map_err(|error| format!("{what}[{index}]: {error}"))
                })
                .collect()
        };
        let commands = match render_all("remediate.run", &winner.run) {
            Ok(commands) => commands,
            Err(reason) => return refuse(reason),
        };
        let attach = match render_all("escalate.attach", &winner.attach) {
            Ok(attach) => attach,
            Err(reason) => return refuse(reason),
        };
        let verify = match &winner.verify {
            None => None,
            Some(verify) => {
                let mut checks = Vec::with_capacity(verify.checks.len());
                for (index, check) in verify.checks.iter().enumerate() {
                    match self.render_check(check, &context) {
                        Ok(check) => checks.push(check),
                        Err(error) => return refuse(format!("verify.checks[{index}]: {error}")),
                    }
                }
                Some(PlannedVerify {
                    within: verify.within,
                    interval: verify.interval,
                    checks,
                })
            }
        };

        let breaker = match self.plan_breaker(winner, &context) {
            Ok(breaker) => breaker,
            Err(reason) => return refuse(reason),
        };

        let mode = if winner.mode == Mode::Enforce && ctx.global_mode == Mode::Enforce {
            Mode::Enforce
        } else {
            Mode::DryRun
        };
        let also_matched =
            (!others.is_empty()).then(|| format!("also matched: {}", others.join(", ")));
        // A notify-only recipe pages in every mode: there is nothing for dry-run to hold back.
        let (outcome, reason) = if winner.is_notify_only() {
            let notify = format!(
                "recipe {} is notify-only: a known failure that a human fixes",
                winner.name
            );
            (
                PlanOutcome::NotifyOnly,
                Some(match also_matched {
                    Some(others) => format!("{notify}; {others}"),
                    None => notify,
                }),
            )
        } else {
            (PlanOutcome::Planned, also_matched)
        };
        Plan {
            outcome,
            recipe: Some(winner.name.clone()),
            reason,
            mode,
            target: Some(host.planned_target()),
            params,
            sudo: winner.sudo,
            idempotent: winner.idempotent,
            commands,
            command_timeout: winner.timeout,
            verify,
            breaker,
            escalate,
            attach,
            description: winner.description.clone(),
            runbook: winner.runbook.clone(),
            near_misses: Vec::new(),
            // Dry-run never waits for approval: it runs nothing anyway.
            approval: winner.approval && mode == Mode::Enforce && !winner.is_notify_only(),
        }
    }

    /// The recipe's breaker with its key rendered (the target's inventory name without
    /// `[breaker] key`). A key that renders empty, too long or with control characters is
    /// refused: it names a breaker in the CLI, the API and pages.
    fn plan_breaker(
        &self,
        recipe: &Recipe,
        context: &CommandContext,
    ) -> Result<Option<PlannedBreaker>, String> {
        let Some(breaker) = &recipe.breaker else {
            return Ok(None);
        };
        let key = match &breaker.key {
            None => context.target_name.clone(),
            Some(source) => {
                let key = self
                    .templates
                    .render_breaker_key(source, context)
                    .map_err(|error| format!("breaker.key: template failed: {error}"))?;
                if key.trim().is_empty() {
                    return Err("breaker.key rendered empty".to_owned());
                }
                if key.chars().count() > MAX_BREAKER_KEY || key.chars().any(char::is_control) {
                    return Err(format!(
                        "breaker.key {} is longer than {MAX_BREAKER_KEY} characters or has control characters",
                        quoted(&key)
                    ));
                }
                key
            }
        };
        Ok(Some(PlannedBreaker {
            max_runs: breaker.max_runs,
            window: breaker.window,
            key,
        }))
    }

    fn render_check(
        &self,
        check: &Check,
        context: &CommandContext,
    ) -> Result<PlannedCheck, String> {
        Ok(match check {
            Check::Command {
                command,
                below,
                above,
            } => PlannedCheck::Command {
                command: self
                    .templates
                    .render_command(command, context)
                    .map_err(|error| error.to_string())?,
                below: *below,
                above: *above,
            },
            Check::Http {
                url,
                status,
                body_contains,
                timeout,
                tls_verify,
            } => PlannedCheck::Http {
                url: self
                    .templates
                    .render_url(url, context)
                    .map_err(|error| error.to_string())
                    .and_then(|url| check_url_port(&url).map(|()| url))?,
                status: *status,
                body_contains: body_contains.clone(),
                timeout: *timeout,
                tls_verify: *tls_verify,
            },
        })
    }
}

/// The port of a rendered HTTP check URL, when it has one, must be 1-65535 (a param in the
/// port position passed a digits-only pattern at load time, but `99999` or `0` would too).
fn check_url_port(url: &str) -> Result<(), String> {
    let Some(port) = super::template::url_port(url) else {
        return Ok(());
    };
    match port.parse::<u32>() {
        Ok(number) if (1..=65535).contains(&number) && port.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(())
        }
        _ => Err(format!("URL port {} is not 1-65535", quoted(port))),
    }
}

/// `items` as `"a", "b"` for a reason, at most 10 of them.
fn listed(items: &[&str]) -> String {
    let mut shown: Vec<String> = items.iter().take(10).map(|item| quoted(item)).collect();
    if items.len() > 10 {
        shown.push(format!("… ({} in all)", items.len()));
    }
    if shown.is_empty() {
        "(none)".to_owned()
    } else {
        shown.join(", ")
    }
}

/// The allow-lists that need the resolved host: a param with `one_of` and/or
/// `one_of_host_label` passes when its value is in `one_of` or in the host's label (either
/// list allows it). Deny lists were already applied in [`resolve_params`].
fn check_allow_lists(
    recipe: &Recipe,
    params: &BTreeMap<String, String>,
    host: &crate::inventory::Host,
) -> Result<(), String> {
    for param in recipe
        .params
        .values()
        .filter(|param| param.has_allow_list())
    {
        let Some(value) = params.get(&param.name) else {
            continue;
        };
        let fixed: Vec<&str> = param.one_of.iter().flatten().map(String::as_str).collect();
        if fixed.contains(&value.as_str()) {
            continue;
        }
        let Some(label) = &param.one_of_host_label else {
            return Err(format!(
                "param {}: value {} is not one of {}",
                param.name,
                quoted(value),
                listed(&fixed)
            ));
        };
        let Some(label_value) = host.labels.get(label) else {
            return Err(format!(
                "param {}: value {} is not allowed: host {} has no label {} listing the values \
                 salve may use{}",
                param.name,
                quoted(value),
                quoted(&host.name),
                quoted(label),
                if fixed.is_empty() {
                    String::new()
                } else {
                    format!(" (and it is not one of {})", listed(&fixed))
                }
            ));
        };
        let items = label_value.items();
        if !items.contains(&value.as_str()) {
            return Err(format!(
                "param {}: value {} is not in host {}'s label {} ({}){}",
                param.name,
                quoted(value),
                quoted(&host.name),
                quoted(label),
                listed(&items),
                if fixed.is_empty() {
                    String::new()
                } else {
                    format!(" nor one of {}", listed(&fixed))
                }
            ));
        }
    }
    Ok(())
}

/// Every declared param's value, validated. A missing or empty label/annotation takes the
/// default (empty counts as missing, as it does for matchers); a present value must fully
/// match the param's pattern; any value (default too) matching a `deny` regex is refused.
/// The allow-lists are checked once the host is known ([`check_allow_lists`]). The error is
/// the reason a human reads.
fn resolve_params(recipe: &Recipe, alert: &Alert) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for param in recipe.params.values() {
        let source_map = match &param.source {
            ParamSource::Label(_) => &alert.labels,
            ParamSource::Annotation(_) => &alert.annotations,
        };
        let value = match source_map
            .get(param.source.key())
            .filter(|value| !value.is_empty())
        {
            Some(value) => {
                if !param.pattern.is_match(value) {
                    return Err(format!(
                        "param {}: value {} does not match pattern {:?}",
                        param.name,
                        quoted(value),
                        param.pattern_text
                    ));
                }
                value.clone()
            }
            None => match &param.default {
                Some(default) => default.clone(),
                None => {
                    return Err(format!(
                        "param {}: {} {:?} is missing and has no default",
                        param.name,
                        param.source.kind(),
                        param.source.key()
                    ));
                }
            },
        };
        if let Some(rule) = param.denied_by(&value) {
            return Err(format!(
                "param {}: value {} is denied by {rule:?}",
                param.name,
                quoted(&value)
            ));
        }
        values.insert(param.name.clone(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::alert::{AlertStatus, Fingerprint, Source};
    use crate::inventory::Host;
    use crate::recipe::loader::load_recipe;
    use crate::recipe::template::RecipeTemplates;

    fn recipe(file: &str, text: &str) -> Recipe {
        let channels: BTreeSet<String> = ["oncall-email", "tickets"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        load_recipe(Path::new(file), text, &channels, &RecipeTemplates::new())
            .unwrap_or_else(|p| panic!("{p:#?}"))
    }

    /// A small recipe; `extra` is appended at top level (before any table).
    fn simple(name: &str, matcher: &str, extra: &str) -> String {
        format!(
            r#"name = "{name}"
match = ['{matcher}']
target = "{{{{ labels.instance | host }}}}"
{extra}

[params.service]
from = "labels.service"
pattern = '[a-z][a-z0-9-]*'

[params.note]
from = "annotations.note"
pattern = '(?s).*'
default = "none"

[remediate]
run = ["systemctl restart {{{{ service }}}}", "logger {{{{ note }}}} {{{{ target_name }}}}"]
timeout = "30s"

[verify]
within = "20s"
interval = "2s"
checks = [
  {{ command = "systemctl is-active {{{{ service }}}}", below = 1 }},
  {{ http = "http://{{{{ target }}}}:8080/s/{{{{ service }}}}" }},
]

[breaker]
max_runs = 2
window = "5m"
"#
        )
    }

    fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        let to_map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let labels = to_map(labels);
        Alert {
            source: Source::Generic,
            fingerprint: Fingerprint::of_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations: to_map(annotations),
            starts_at: None,
            ends_at: None,
            generator_url: None,
            external_url: None,
        }
    }

    fn inventory() -> Inventory {
        Inventory::new(vec![Host {
            name: "web1".into(),
            address: Some("10.0.0.5".into()),
            port: 2222,
            user: Some("salve".into()),
            labels: BTreeMap::new(),
        }])
    }

    const DEFAULT_ROUTE: &[String] = &[];

    fn plan_with(set: &RecipeSet, alert: &Alert, global_mode: Mode) -> Plan {
        let inventory = inventory();
        let default_escalation = vec!["oncall-email".to_owned()];
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode,
            default_escalation: &default_escalation,
        };
        set.plan(alert, &ctx)
    }

    fn down(service: &str) -> Alert {
        alert(
            &[
                ("alertname", "Down"),
                ("instance", "web1:9100"),
                ("service", service),
            ],
            &[],
        )
    }

    #[test]
    fn a_matching_alert_is_fully_planned() {
        let set = RecipeSet::new(vec![recipe(
            "a.toml",
            &simple("a", "alertname=Down", "sudo = true"),
        )]);
        let plan = plan_with(&set, &down("nginx"), Mode::Enforce);
        assert_eq!(plan.outcome, PlanOutcome::Planned);
        assert_eq!(plan.recipe.as_deref(), Some("a"));
        assert_eq!(plan.reason, None);
        assert_eq!(plan.mode, Mode::DryRun, "the recipe did not say enforce");
        assert!(plan.sudo);
        let target = plan.target.unwrap();
        assert_eq!(
            (target.name.as_str(), target.address.as_str(), target.port),
            ("web1", "10.0.0.5", 2222)
        );
        assert_eq!(
            plan.commands,
            ["systemctl restart 'nginx'", "logger 'none' 'web1'"]
        );
        assert_eq!(plan.command_timeout, Duration::from_secs(30));
        let verify = plan.verify.unwrap();
        assert_eq!(
            (verify.within, verify.interval),
            (Duration::from_secs(20), Duration::from_secs(2))
        );
        assert_eq!(
            verify.checks,
            [
                PlannedCheck::Command {
                    command: "systemctl is-active 'nginx'".into(),
                    below: Some(1.0),
                    above: None
                },
                PlannedCheck::Http {
                    url: "http://10.0.0.5:8080/s/nginx".into(),
                    status: 200,
                    body_contains: None,
                    timeout: Duration::from_secs(5),
                    tls_verify: true,
                },
            ]
        );
        assert_eq!(
            plan.breaker,
            Some(PlannedBreaker {
                max_runs: 2,
                window: Duration::from_secs(300),
                key: "web1".into(),
            }),
            "without [breaker] key, the target's inventory name"
        );
        assert_eq!(
            plan.escalate,
            ["oncall-email"],
            "no escalate.to: the default route"
        );
        assert_eq!(
            plan.params.get("service").map(String::as_str),
            Some("nginx")
        );
    }

    #[test]
    fn the_breaker_key_renders_params_and_target_as_plain_text() {
        let keyed = |key: &str| {
            simple("a", "alertname=Down", "").replace(
                "window = \"5m\"\n",
                &format!("window = \"5m\"\nkey = {key:?}\n"),
            )
        };
        let at_most = "k".repeat(MAX_BREAKER_KEY);
        let too_long = "k".repeat(MAX_BREAKER_KEY + 1);
        for (key, note, expected) in [
            ("{{ service }}", "n", Ok("nginx")),
            ("{{ target_name }}/{{ service }}", "n", Ok("web1/nginx")),
            ("{{ target }}:{{ note }}", "it's x", Ok("10.0.0.5:it's x")),
            ("{{ note }}", at_most.as_str(), Ok(at_most.as_str())),
            ("{{ note }}", " ", Err("breaker.key rendered empty")),
            ("{{ note }}", "a\nb", Err("control characters")),
            ("{{ note }}", "a\u{1b}[2Jb", Err("control characters")),
            (
                "{{ note }}",
                too_long.as_str(),
                Err("longer than 200 characters"),
            ),
        ] {
            let set = RecipeSet::new(vec![recipe("a.toml", &keyed(key))]);
            let mut alert = down("nginx");
            alert.annotations.insert("note".into(), note.into());
            let plan = plan_with(&set, &alert, Mode::Enforce);
            match expected {
                Ok(expected) => {
                    assert_eq!(plan.outcome, PlanOutcome::Planned, "{key}: {plan:?}");
                    assert_eq!(plan.breaker.unwrap().key, expected, "{key}");
                }
                Err(reason) => {
                    assert_eq!(plan.outcome, PlanOutcome::Refused, "{key}");
                    assert!(plan.reason.unwrap().contains(reason), "{key}");
                }
            }
        }
    }

    #[test]
    fn mode_enforces_only_when_recipe_and_global_agree() {
        for (recipe_mode, global, expected) in [
            ("enforce", Mode::Enforce, Mode::Enforce),
            ("enforce", Mode::DryRun, Mode::DryRun),
            ("dry-run", Mode::Enforce, Mode::DryRun),
            ("dry-run", Mode::DryRun, Mode::DryRun),
        ] {
            let text = simple("a", "alertname=Down", &format!("mode = \"{recipe_mode}\""));
            let set = RecipeSet::new(vec![recipe("a.toml", &text)]);
            assert_eq!(
                plan_with(&set, &down("nginx"), global).mode,
                expected,
                "{recipe_mode} / {global:?}"
            );
        }
    }

    #[test]
    fn highest_priority_wins_then_first_file_name() {
        let set = RecipeSet::new(vec![
            recipe("a.toml", &simple("a", "alertname=Down", "")),
            recipe("b.toml", &simple("b", "service=~\"ng.*\"", "priority = 5")),
            recipe("c.toml", &simple("c", "instance!=\"\"", "priority = 5")),
            recipe("d.toml", &simple("d", "alertname=Other", "priority = 9")),
        ]);
        let plan = plan_with(&set, &down("nginx"), Mode::DryRun);
        assert_eq!(plan.recipe.as_deref(), Some("b"));
        assert_eq!(plan.reason.as_deref(), Some("also matched: a, c"));
        let plan = plan_with(&set, &down("redis"), Mode::DryRun);
        assert_eq!(plan.recipe.as_deref(), Some("c"));
        assert_eq!(plan.reason.as_deref(), Some("also matched: a"));
    }

    #[test]
    fn unmatched_alerts_go_to_the_default_route() {
        let set = RecipeSet::new(vec![recipe("a.toml", &simple("a", "alertname=Down", ""))]);
        let plan = plan_with(&set, &alert(&[("alertname", "Up\nx")], &[]), Mode::Enforce);
        assert_eq!(plan.outcome, PlanOutcome::Unmatched);
        assert_eq!(plan.recipe, None);
        assert_eq!(
            plan.reason.as_deref(),
            Some("no recipe matched alertname=\"Up\\nx\"")
        );
        assert_eq!(plan.escalate, ["oncall-email"]);
        assert!(plan.commands.is_empty() && plan.target.is_none());
        let plan = plan_with(&set, &alert(&[], &[]), Mode::Enforce);
        assert_eq!(
            plan.reason.as_deref(),
            Some("no recipe matched alertname=(none)")
        );
        assert_eq!(
            plan_with(&RecipeSet::default(), &down("x"), Mode::DryRun).outcome,
            PlanOutcome::Unmatched
        );
    }

    fn check_refused(alert: &Alert, expected_reason: &str) {
        let extra = "[escalate]\nto = [\"tickets\"]\n";
        let set = RecipeSet::new(vec![recipe(
            "a.toml",
            &format!("{}{extra}", simple("a", "alertname=Down", "")),
        )]);
        let plan = plan_with(&set, alert, Mode::Enforce);
        assert_eq!(plan.outcome, PlanOutcome::Refused, "{plan:?}");
        assert_eq!(plan.recipe.as_deref(), Some("a"));
        assert_eq!(plan.reason.as_deref(), Some(expected_reason));
        assert_eq!(plan.escalate, ["tickets"]);
        assert!(plan.commands.is_empty() && plan.target.is_none() && plan.attach.is_empty());
    }

    #[test]
    fn unsafe_alerts_are_refused_with_a_reason() {
        check_refused(
            &down("nginx; rm -rf /"),
            "param service: value \"nginx; rm -rf /\" does not match pattern \"[a-z][a-z0-9-]*\"",
        );
        check_refused(
            &down("$(reboot)"),
            "param service: value \"$(reboot)\" does not match pattern \"[a-z][a-z0-9-]*\"",
        );
        // Anchored: a valid prefix is not enough.
        check_refused(
            &down("nginx\n"),
            "param service: value \"nginx\\n\" does not match pattern \"[a-z][a-z0-9-]*\"",
        );
        check_refused(
            &alert(&[("alertname", "Down"), ("instance", "web1:9100")], &[]),
            "param service: label \"service\" is missing and has no default",
        );
        check_refused(
            &alert(
                &[
                    ("alertname", "Down"),
                    ("instance", "web1:9100"),
                    ("service", ""),
                ],
                &[],
            ),
            "param service: label \"service\" is missing and has no default",
        );
        check_refused(
            &alert(
                &[
                    ("alertname", "Down"),
                    ("instance", "db9:9100"),
                    ("service", "nginx"),
                ],
                &[],
            ),
            "target \"db9\" is not in the inventory",
        );
        check_refused(
            &alert(&[("alertname", "Down"), ("service", "nginx")], &[]),
            "target: template failed: undefined value: `host` got a missing value (is the label set on the alert?)",
        );
        // The annotation param accepts anything but NUL cannot be one shell word.
        check_refused(
            &alert(
                &[
                    ("alertname", "Down"),
                    ("instance", "web1:9100"),
                    ("service", "nginx"),
                ],
                &[("note", "a\0b")],
            ),
            "remediate.run[1]: invalid operation: value contains a NUL byte, which no shell word can carry",
        );
        let long = "x".repeat(500);
        let plan_reason = {
            let set = RecipeSet::new(vec![recipe("a.toml", &simple("a", "alertname=Down", ""))]);
            plan_with(&set, &down(&format!("{long};")), Mode::DryRun)
                .reason
                .unwrap()
        };
        assert!(
            plan_reason.len() < 200 && plan_reason.contains("(501 characters)"),
            "{plan_reason}"
        );
    }

    #[test]
    fn hostile_annotation_values_are_one_word() {
        let set = RecipeSet::new(vec![recipe("a.toml", &simple("a", "alertname=Down", ""))]);
        let hostile = alert(
            &[
                ("alertname", "Down"),
                ("instance", "10.0.0.5"),
                ("service", "nginx"),
            ],
            &[("note", "it's $(reboot) `id`; \"x\"\nnext")],
        );
        let plan = plan_with(&set, &hostile, Mode::Enforce);
        assert_eq!(
            plan.commands[1],
            "logger 'it'\\''s $(reboot) `id`; \"x\"\nnext' 'web1'"
        );
        assert_eq!(plan.target.unwrap().name, "web1", "resolved by address");
    }

    /// A recipe whose `service` param has `extra` (one_of / one_of_host_label / deny) and
    /// a command and URL that read host labels.
    fn listed_recipe(extra: &str) -> RecipeSet {
        let text = format!(
            r#"name = "a"
match = ['alertname=Down']
target = "{{{{ labels.instance | host }}}}"

[params.service]
from = "labels.service"
pattern = '[a-z][a-z0-9.-]*'
{extra}

[remediate]
run = ["systemctl restart {{{{ service }}}}", "logger {{{{ host_labels.role }}}}"]
"#
        );
        RecipeSet::new(vec![recipe("a.toml", &text)])
    }

    fn plan_on(
        set: &RecipeSet,
        labels: &[(&str, crate::inventory::LabelValue)],
        service: &str,
    ) -> Plan {
        let inventory = Inventory::new(vec![Host {
            name: "web1".into(),
            address: Some("10.0.0.5".into()),
            port: 22,
            user: None,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .chain([("role".to_owned(), "web; $(x)".into())])
                .collect(),
        }]);
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::Enforce,
            default_escalation: &[],
        };
        set.plan(&down(service), &ctx)
    }

    #[test]
    fn allow_lists_come_from_the_recipe_or_the_host_and_deny_wins() {
        use crate::inventory::LabelValue;
        let by_host =
            listed_recipe("one_of_host_label = \"services\"\ndeny = ['.*\\.target', 'sshd?']");
        let text = LabelValue::from("nginx, app,poweroff.target,sshd");
        let list = LabelValue::List(vec!["nginx".into(), "app".into()]);
        for labels in [&text, &list] {
            let plan = plan_on(&by_host, &[("services", labels.clone())], "app");
            assert_eq!(plan.outcome, PlanOutcome::Planned, "{plan:?}");
            assert_eq!(
                plan.commands,
                ["systemctl restart 'app'", "logger 'web; $(x)'"],
                "host labels are quoted like any value"
            );
        }
        let reason = |plan: Plan| {
            assert_eq!(plan.outcome, PlanOutcome::Refused, "{plan:?}");
            assert!(plan.commands.is_empty());
            plan.reason.unwrap()
        };
        assert_eq!(
            reason(plan_on(
                &by_host,
                &[("services", text.clone())],
                "poweroff.target"
            )),
            "param service: value \"poweroff.target\" is denied by \".*\\\\.target\""
        );
        assert_eq!(
            reason(plan_on(&by_host, &[("services", text.clone())], "sshd")),
            "param service: value \"sshd\" is denied by \"sshd?\""
        );
        assert_eq!(
            reason(plan_on(&by_host, &[("services", list.clone())], "mysql")),
            "param service: value \"mysql\" is not in host \"web1\"'s label \"services\" (\"nginx\", \"app\")"
        );
        assert_eq!(
            reason(plan_on(&by_host, &[], "nginx")),
            "param service: value \"nginx\" is not allowed: host \"web1\" has no label \"services\" listing the values salve may use"
        );
        assert!(
            reason(plan_on(&by_host, &[("services", "".into())], "nginx"))
                .ends_with("label \"services\" ((none))")
        );

        let fixed = listed_recipe("one_of = [\"nginx\"]");
        assert_eq!(plan_on(&fixed, &[], "nginx").outcome, PlanOutcome::Planned);
        assert_eq!(
            reason(plan_on(&fixed, &[("services", list.clone())], "app")),
            "param service: value \"app\" is not one of \"nginx\""
        );

        // Both: either list allows a value.
        let both = listed_recipe("one_of = [\"nginx\"]\none_of_host_label = \"services\"");
        assert_eq!(plan_on(&both, &[], "nginx").outcome, PlanOutcome::Planned);
        assert_eq!(
            plan_on(&both, &[("services", "app".into())], "app").outcome,
            PlanOutcome::Planned
        );
        assert!(
            reason(plan_on(&both, &[("services", "app".into())], "db"))
                .ends_with("(\"app\") nor one of \"nginx\"")
        );
    }

    #[test]
    fn a_rendered_url_port_must_be_1_to_65535() {
        assert_eq!(check_url_port("http://h:8080/x"), Ok(()));
        assert_eq!(
            check_url_port("http://h/x:99999"),
            Ok(()),
            "a path is no port"
        );
        assert_eq!(check_url_port("http://[::1]:65535/"), Ok(()));
        assert_eq!(
            check_url_port("http://u:p@h/"),
            Ok(()),
            "a password is no port"
        );
        for bad in [
            "http://h:0/",
            "http://h:65536/",
            "http://h:99999999999999999999/",
            "http://[::1]:0",
        ] {
            assert!(check_url_port(bad).is_err(), "{bad}");
        }
    }

    /// `match_annotations` uses the matcher syntax and semantics of `match` on the
    /// annotations: regexes anchored, a missing annotation is the empty string, and every
    /// matcher of both lists must hold.
    #[test]
    fn annotations_match_like_labels_anchored_and_together_with_labels() {
        let text = simple(
            "a",
            "alertname=Down",
            r#"match_annotations = ['summary=~"disk (full|nearly full)"', 'runbook!="skip"']"#,
        );
        let set = RecipeSet::new(vec![recipe("a.toml", &text)]);
        let with = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| {
            let base = [("instance", "web1:9100"), ("service", "nginx")];
            let labels: Vec<(&str, &str)> = base.iter().chain(labels).copied().collect();
            plan_with(&set, &alert(&labels, annotations), Mode::DryRun).outcome
        };
        let down = [("alertname", "Down")];
        for (annotations, expected) in [
            (&[("summary", "disk full")][..], PlanOutcome::Planned),
            (&[("summary", "disk nearly full")], PlanOutcome::Planned),
            // Anchored: a prefix, a suffix or an embedded match is no match.
            (
                &[("summary", "disk full; rm -rf /")],
                PlanOutcome::Unmatched,
            ),
            (&[("summary", "the disk full")], PlanOutcome::Unmatched),
            (&[("summary", "disk full\n")], PlanOutcome::Unmatched),
            (&[("summary", "disk full\nx")], PlanOutcome::Unmatched),
            (&[("summary", "disk ful")], PlanOutcome::Unmatched),
            // Alternation grouped before anchoring.
            (&[("summary", "disk full|x")], PlanOutcome::Unmatched),
            (
                &[("summary", "disk full"), ("runbook", "skip")],
                PlanOutcome::Unmatched,
            ),
            (
                &[("summary", "disk full"), ("runbook", "skip ")],
                PlanOutcome::Planned,
            ),
            // The annotation is missing: the empty string, which the regex does not match.
            (&[], PlanOutcome::Unmatched),
        ] {
            assert_eq!(with(&down, annotations), expected, "{annotations:?}");
        }
        // A label of the same name does not stand in for the annotation, nor the reverse.
        assert_eq!(
            with(&[("alertname", "Down"), ("summary", "disk full")], &[]),
            PlanOutcome::Unmatched
        );
        assert_eq!(
            with(&[], &[("summary", "disk full"), ("alertname", "Down")]),
            PlanOutcome::Unmatched
        );
    }

    #[test]
    fn a_recipe_may_match_on_annotations_alone() {
        let text = simple("a", "x=y", "").replace(
            "match = ['x=y']",
            r#"match_annotations = ['summary="disk full"']"#,
        );
        let set = RecipeSet::new(vec![recipe("a.toml", &text)]);
        let plan = plan_with(
            &set,
            &alert(
                &[("instance", "web1:9100"), ("service", "nginx")],
                &[("summary", "disk full")],
            ),
            Mode::DryRun,
        );
        assert_eq!(plan.outcome, PlanOutcome::Planned, "{plan:?}");
        assert_eq!(plan.recipe.as_deref(), Some("a"));
    }

    const NOTIFY_ONLY: &str = r#"name = "disk-report"
description = "The data disk fills up: nothing safe to delete automatically"
runbook = "1. Look at the du report.\n2. Ask the owner."
match = ['alertname=Down']
target = "{{ labels.instance | host }}"
sudo = true

[params.service]
from = "labels.service"
pattern = '[a-z]+'

[escalate]
to = ["tickets"]
attach = ["journalctl -u {{ service }} -n 20"]
"#;

    #[test]
    fn a_notify_only_recipe_plans_diagnostics_and_a_page_in_any_mode() {
        let set = RecipeSet::new(vec![
            recipe("a.toml", &simple("a", "alertname=Down", "")),
            recipe("b.toml", &NOTIFY_ONLY.replace("sudo", "priority = 1\nsudo")),
        ]);
        for global in [Mode::Enforce, Mode::DryRun] {
            let plan = plan_with(&set, &down("nginx"), global);
            assert_eq!(plan.outcome, PlanOutcome::NotifyOnly, "{plan:?}");
            assert_eq!(
                crate::incident::state_for(&plan),
                crate::incident::State::Notified
            );
            assert_eq!(plan.recipe.as_deref(), Some("disk-report"));
            assert_eq!(
                plan.reason.as_deref(),
                Some(
                    "recipe disk-report is notify-only: a known failure that a human fixes; also matched: a"
                )
            );
            assert!(plan.commands.is_empty() && plan.verify.is_none() && plan.breaker.is_none());
            assert_eq!(plan.attach, ["journalctl -u 'nginx' -n 20"]);
            assert_eq!(plan.target.as_ref().unwrap().name, "web1");
            assert_eq!(plan.escalate, ["tickets"]);
            assert!(
                plan.description
                    .as_deref()
                    .unwrap()
                    .starts_with("The data disk")
            );
            assert_eq!(
                plan.runbook.as_deref(),
                Some("1. Look at the du report.\n2. Ask the owner.")
            );
        }
        // Its params are checked like any recipe's: alert text reaches diagnostics only
        // as a validated, quoted word.
        let plan = plan_with(&set, &down("nginx; reboot"), Mode::Enforce);
        assert_eq!(plan.outcome, PlanOutcome::Refused, "{plan:?}");
        assert!(plan.attach.is_empty());
    }

    #[test]
    fn an_empty_default_escalation_is_allowed() {
        let set = RecipeSet::new(vec![recipe("a.toml", &simple("a", "alertname=Down", ""))]);
        let inventory = inventory();
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::DryRun,
            default_escalation: DEFAULT_ROUTE,
        };
        assert!(set.plan(&down("nginx"), &ctx).escalate.is_empty());
    }
}
