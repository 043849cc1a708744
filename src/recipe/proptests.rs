//! Property tests for the places alert text meets recipe logic: label matching (it must
//! mean exactly what Alertmanager's matchers mean, for any value), shell quoting (any
//! value must reach the target as one word, byte for byte) and the shipped recipes'
//! allow/deny lists (no value restarts an unlisted or denied unit); plus the load-time
//! template scans taking any text. Pure except one `sh` per quoting case.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::loader::load_recipe;
use super::matcher::{MatchOp, Matcher};
use super::shell::{RunAs, is_simple_command, remote_line, shell_quote};
use super::template::RecipeTemplates;
use super::test_support::inventory_of;
use super::{PlanContext, RecipeSet};
use crate::alert::Alert;
use crate::plan::{Mode, PlanOutcome};

/// Few cases and no regression files: the suite must stay fast, and a failure prints its
/// minimal input, which then becomes a named unit test next to the code it breaks.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Label values: arbitrary Unicode, plus a small alphabet heavy in the characters matcher
/// syntax escapes (`"`, `\`, newline) so that collisions and escapes are common.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ab\"\\\\\n =~!]{0,6}"]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}

/// What the alert carries under the matcher's label name: exactly the matcher's value, some
/// other value, or nothing (which Alertmanager treats as the empty string).
#[derive(Debug, Clone)]
enum Actual {
    Same,
    Other(String),
    Missing,
}

fn actual() -> impl Strategy<Value = Actual> {
    prop_oneof![
        Just(Actual::Same),
        label_value().prop_map(Actual::Other),
        Just(Actual::Missing),
    ]
}

fn labels_for(name: &str, value: &str, actual: &Actual) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([("alertname".to_owned(), "Test".to_owned())]);
    match actual {
        Actual::Same => {
            labels.insert(name.to_owned(), value.to_owned());
        }
        Actual::Other(other) => {
            labels.insert(name.to_owned(), other.clone());
        }
        Actual::Missing => {
            labels.remove(name);
        }
    }
    labels
}

/// The matcher text `name OP "value"`, escaping the value by Alertmanager's rules (`"`,
/// `\` and newline), written independently of `Matcher`'s Display so each checks the other.
fn matcher_text(name: &str, op: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}{op}\"{escaped}\"")
}

fn parse(name: &str, op: &str, value: &str) -> Matcher {
    let text = matcher_text(name, op, value);
    Matcher::parse(&text).unwrap_or_else(|error| panic!("{text:?} did not parse: {error}"))
}

fn any_op() -> impl Strategy<Value = MatchOp> {
    prop_oneof![
        Just(MatchOp::Equal),
        Just(MatchOp::NotEqual),
        Just(MatchOp::Regex),
        Just(MatchOp::NotRegex),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn equal_matches_iff_the_label_equals_the_value(
        name in label_name(), value in label_value(), actual in actual()
    ) {
        let labels = labels_for(&name, &value, &actual);
        let seen = labels.get(&name).map(String::as_str).unwrap_or("");
        prop_assert_eq!(parse(&name, "=", &value).matches(&labels), seen == value);
    }

    #[test]
    fn not_equal_is_the_negation_of_equal(
        name in label_name(), value in label_value(), actual in actual()
    ) {
        let labels = labels_for(&name, &value, &actual);
        prop_assert_eq!(
            parse(&name, "!=", &value).matches(&labels),
            !parse(&name, "=", &value).matches(&labels)
        );
    }

    #[test]
    fn a_regex_of_an_escaped_literal_behaves_like_equality(
        name in label_name(), value in label_value(), actual in actual()
    ) {
        let labels = labels_for(&name, &value, &actual);
        let literal = regex::escape(&value);
        let equal = parse(&name, "=", &value).matches(&labels);
        prop_assert_eq!(parse(&name, "=~", &literal).matches(&labels), equal);
        prop_assert_eq!(parse(&name, "!~", &literal).matches(&labels), !equal);
    }

    #[test]
    fn regexes_are_anchored_at_both_ends(
        name in label_name(), value in label_value(), extra in label_value()
    ) {
        prop_assume!(!extra.is_empty());
        let matcher = parse(&name, "=~", &regex::escape(&value));
        for longer in [format!("{value}{extra}"), format!("{extra}{value}")] {
            let labels = BTreeMap::from([(name.clone(), longer.clone())]);
            prop_assert!(
                !matcher.matches(&labels),
                "{} matched {:?}", matcher, longer
            );
        }
    }

    #[test]
    fn display_parses_back_to_the_same_matcher(
        name in label_name(), op in any_op(), value in label_value()
    ) {
        // Regex matchers need a valid regex: an escaped literal keeps the value arbitrary.
        let value = match op {
            MatchOp::Regex | MatchOp::NotRegex => regex::escape(&value),
            MatchOp::Equal | MatchOp::NotEqual => value,
        };
        let original = parse(&name, op.as_str(), &value);
        prop_assert_eq!(original.value(), value.as_str());
        let shown = original.to_string();
        prop_assert_eq!(&shown, &matcher_text(&name, op.as_str(), &value));
        let again = Matcher::parse(&shown)
            .unwrap_or_else(|error| panic!("{shown:?} did not parse back: {error}"));
        prop_assert_eq!(again.name(), name.as_str());
        prop_assert_eq!(again.op(), op);
        prop_assert_eq!(again.value(), value.as_str());
        prop_assert_eq!(again.to_string(), shown);
    }
}

/// Any text a label can carry into a command, except NUL (refused by `shell_quote`).
fn shell_value() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "['\"\\\\$`;|&<>(){}*?~#! \n\t-]{0,12}",]
        .prop_map(|value| value.replace('\0', ""))
}

/// The echo recipe of the end-to-end safety test: a param that accepts any text. The empty
/// default matters: an empty label counts as missing (Alertmanager semantics), and without
/// a default a missing param refuses the plan.
const PRINTF_RECIPE: &str = r#"name = "printf"
match = ['alertname="Echo"']
target = "{{ labels.instance | host }}"

[params.p]
from = "labels.message"
pattern = '(?s).*'
default = ""

[remediate]
run = ["printf %s {{ p }}"]
timeout = "10s"
"#;

fn printf_recipes() -> RecipeSet {
    let recipe = load_recipe(
        Path::new("printf.toml"),
        PRINTF_RECIPE,
        &BTreeSet::new(),
        &RecipeTemplates::new(),
    )
    .unwrap_or_else(|problems| panic!("{problems:#?}"));
    RecipeSet::new(vec![recipe])
}

fn echo_alert(message: &str) -> Alert {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "Echo".to_owned()),
        ("instance".to_owned(), "web1:9100".to_owned()),
        ("message".to_owned(), message.to_owned()),
    ]);
    Alert::firing_generic(labels)
}

proptest! {
    // Each case starts a real `sh`: 64 keeps this test well under a second.
    #![proptest_config(config(64))]

    #[test]
    fn a_quoted_value_is_one_word_that_a_real_shell_prints_back(value in shell_value()) {
        let quoted = shell_quote(&value).expect("no NUL");
        prop_assert!(quoted.len() >= 2 && quoted.starts_with('\'') && quoted.ends_with('\''));
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf %s {quoted}"))
            .output()
            .expect("run /bin/sh");
        prop_assert!(output.status.success(), "sh failed on {:?}", quoted);
        prop_assert_eq!(output.stdout, value.into_bytes());
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_planner_renders_a_param_as_exactly_one_quoted_word(value in shell_value()) {
        let recipes = printf_recipes();
        let inventory = inventory_of("web1", BTreeMap::new());
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::DryRun,
            default_escalation: &[],
        };
        let plan = recipes.plan(&echo_alert(&value), &ctx);
        prop_assert_eq!(plan.outcome, PlanOutcome::Planned, "reason: {:?}", plan.reason);
        prop_assert_eq!(
            plan.commands,
            vec![format!("printf %s {}", shell_quote(&value).expect("no NUL"))]
        );
    }
}

/// One piece of a simple command's arguments: plain characters, a quoted hostile value, a
/// backslash-escaped character (never a newline, which would end the command) or a space.
fn simple_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./:,+@%-][a-zA-Z0-9_./:=,+@%-]{0,3}",
        shell_value().prop_map(|value| shell_quote(&value).expect("no NUL")),
        "[^\\n\\x00]".prop_map(|c| format!("\\{c}")),
        Just(" ".to_owned()),
    ]
}

/// Runs `line` with `shell -c` (as the target's login shell would) and returns its stdout.
fn run_shell(shell: &str, line: &str) -> Vec<u8> {
    let output = std::process::Command::new(shell)
        .arg("-c")
        .arg(line)
        .output()
        .expect("run a shell");
    assert!(output.status.success(), "{shell} -c {line:?}: {output:?}");
    output.stdout
}

/// One piece that `is_simple_command` must refuse wherever it stands (it makes the command
/// need a shell, or be unsafe to split): each operator, redirection, expansion, glob, brace,
/// comment, history or tilde character, a double quote, a newline, tab or carriage return,
/// bare non-ASCII, a word starting with `=` (zsh's path lookup), and a few whole constructs,
/// alone or inside an otherwise plain word.
fn shell_only_piece() -> impl Strategy<Value = String> {
    let single = prop::sample::select(
        [
            ";", "|", "&", "<", ">", "$", "`", "*", "?", "[", "]", "{", "}", "(", ")", "#", "~",
            "!", "^", "\"", "\n", "\t", "\r", "é", "✓", "=x",
        ]
        .as_slice(),
    );
    let construct = prop::sample::select(
        [
            "$(id)", "${HOME}", "`id`", "a>b", "2>&1", "a|b", "a;b", "a&&b", "{a,b}", "*.log",
        ]
        .as_slice(),
    );
    (
        prop_oneof![3 => single, 1 => construct],
        "[a-z]{0,2}",
        "[a-z]{0,2}",
    )
        .prop_map(|(piece, before, after)| match piece {
            // `=` is refused only where a word starts.
            "=x" => format!("{piece}{after}"),
            _ => format!("{before}{piece}{after}"),
        })
}

/// A command's first word that `is_simple_command` must refuse: a builtin or reserved word
/// (`echo` and `printf` differ between shells), an option, an assignment, a `=` lookup, a
/// name with characters only an argument may have.
fn shell_only_program() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        [
            "echo",
            "printf",
            "exec",
            "eval",
            "cd",
            "-show-args",
            "=show-args",
            "X=1",
            "show:args",
            "show@args",
            "show%args",
        ]
        .as_slice(),
    )
}

/// A generated command and whether it is simple: half are built only from what
/// `is_simple_command` accepts (the argv printer, bare, quoted or escaped, then simple
/// pieces); the other half are the same with exactly one thing it must refuse: a shell-only
/// piece at some position, a shell-only program, an unterminated quote or a backslash at the
/// end, or a backslash before a newline. One reason each, so no other hides a wrong verdict.
fn classified_command() -> impl Strategy<Value = (String, bool)> {
    // The argv printer, bare, quoted or escaped, and simple pieces.
    let simple = || {
        (
            prop_oneof![Just("show-args"), Just("'show-args'"), Just("show\\-args")],
            prop::collection::vec(simple_piece(), 0..8),
        )
    };
    let simple_only =
        simple().prop_map(|(program, pieces)| (format!("{program} {}", pieces.concat()), true));
    let poisoned = (
        simple(),
        0..8usize,
        shell_only_piece(),
        shell_only_program(),
        0..8u8,
    )
        .prop_map(|((program, mut pieces), at, piece, bad_program, kind)| {
            let program = if kind == 4 { bad_program } else { program };
            match kind {
                0..=3 => pieces.insert(at.min(pieces.len()), format!(" {piece} ")),
                5 => pieces.push(" 'unterminated".to_owned()),
                6 => pieces.push(" trailing\\".to_owned()),
                7 => pieces.push(" escaped\\\nnewline".to_owned()),
                _ => {}
            }
            (format!("{program} {}", pieces.concat()), false)
        });
    prop_oneof![simple_only, poisoned]
}

/// A directory of stand-ins for what a remote line calls, so a line can be run without
/// running the command in it: `timeout` and `show-args` print their arguments, each ended by
/// NUL; `sudo` checks for `-n --` and execs the rest (so the `sudo` form is covered too).
/// Only this directory is on `PATH`: a line that ran more than it should finds nothing else.
static STAND_INS: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, script) in [
        ("timeout", "#!/bin/sh\nprintf '%s\\0' timeout \"$@\"\n"),
        ("show-args", "#!/bin/sh\nprintf '%s\\0' show-args \"$@\"\n"),
        (
            "sudo",
            "#!/bin/sh\n[ \"$1\" = -n ] && [ \"$2\" = -- ] || exit 97\nshift 2\nexec \"$@\"\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, script).expect("write a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make a stand-in executable");
    }
    dir
});

/// The argv a stand-in printed when `shell -c line` ran (in a fresh directory, with only the
/// stand-ins on `PATH`), one entry per argument, as bytes.
fn argv_of(shell: &str, line: &str) -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().expect("a temporary directory");
    let output = std::process::Command::new(shell)
        .arg("-c")
        .arg(line)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", STAND_INS.path())
        .output()
        .expect("run a shell");
    assert!(output.status.success(), "{shell} -c {line:?}: {output:?}");
    let created: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(
        created.is_empty(),
        "{shell} -c {line:?} created {created:?}"
    );
    let mut argv: Vec<Vec<u8>> = output
        .stdout
        .split(|&byte| byte == 0)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        argv.pop(),
        Some(Vec::new()),
        "unterminated argv from {line:?}"
    );
    argv
}

proptest! {
    // Each case starts real shells: 64 keeps these well under a second each.
    #![proptest_config(config(64))]

    /// The fast path of `remote_line` (no `sh -c`): a command with a quoted hostile value
    /// still passes the value as one word, byte for byte, through bash and `timeout`.
    #[test]
    fn a_simple_remote_line_passes_a_quoted_value_through_bash_unchanged(value in shell_value()) {
        let command = format!("/usr/bin/printf %s {}", shell_quote(&value).expect("no NUL"));
        prop_assert!(is_simple_command(&command), "{:?}", command);
        let line = remote_line(&command, RunAs::User, std::time::Duration::from_secs(10));
        prop_assert!(!line.contains("sh -c"), "{:?}", line);
        prop_assert_eq!(run_shell("/bin/bash", &line), value.into_bytes());
    }
}

proptest! {
    // Pure: many cases, so each refused character is drawn many times.
    #![proptest_config(config(2048))]

    /// `is_simple_command` accepts a command built only from what it allows and refuses one
    /// with a single thing it must refuse, whatever that is and wherever it stands.
    #[test]
    fn is_simple_command_refuses_exactly_the_commands_with_a_shell_only_part(
        (command, simple) in classified_command()
    ) {
        prop_assert_eq!(is_simple_command(&command), simple, "{:?}", command);
    }
}

proptest! {
    // About five processes a case: 256 take a few seconds.
    #![proptest_config(config(256))]

    /// `remote_line` on any command, simple or not: `is_simple_command` classifies it as
    /// the generator built it, and the line, run by sh and by bash (with and without sudo),
    /// hands the target's `timeout` exactly the intended argv: on the fast path the words
    /// `sh -c` splits the command into, on the slow path `sh -c` and the command's own bytes.
    #[test]
    fn remote_line_gives_timeout_the_intended_argv_on_both_paths(
        (command, simple) in classified_command(),
        sudo in any::<bool>(),
    ) {
        prop_assert_eq!(is_simple_command(&command), simple, "{:?}", command);
        let line = remote_line(&command, RunAs::sudo_if(sudo), std::time::Duration::from_secs(10));
        let mut expected: Vec<Vec<u8>> = ["timeout", "-k", "5", "15"]
            .map(|word| word.as_bytes().to_vec())
            .into();
        if simple {
            // What `sh -c COMMAND` would run: the printer's own argv.
            expected.extend(argv_of("/bin/sh", &command));
        } else {
            expected.extend([b"sh".to_vec(), b"-c".to_vec(), command.clone().into_bytes()]);
        }
        for shell in ["/bin/sh", "/bin/bash"] {
            prop_assert_eq!(&argv_of(shell, &line), &expected, "{} -c {:?}", shell, line);
        }
    }
}

/// The shipped recipes, as `salve` loads them, loaded once.
static SHIPPED: std::sync::LazyLock<RecipeSet> = std::sync::LazyLock::new(shipped_recipes);

fn shipped_recipes() -> RecipeSet {
    let channels: BTreeSet<String> = ["oncall-email", "tickets"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    super::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes"),
        &channels,
    )
    .unwrap_or_else(|problems| panic!("{problems:#?}"))
}

/// Unit names: plausible ones, dangerous ones, and arbitrary text.
fn unit_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}(-[a-z]{1,4})?(\\.(service|target|slice|socket|mount|timer))?",
        "(ssh|sshd|salve|poweroff|reboot|rescue|emergency|systemd-[a-z]{1,8}|dbus)(@[a-z0-9]{0,3})?(\\.service)?",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the alert says and whatever the host lists, the shipped service-restart
    /// plans a restart only of a unit the host lists, and never of a target, slice, socket,
    /// sshd, salve or systemd's own units.
    #[test]
    fn service_restart_restarts_only_listed_units_and_never_a_denied_one(
        value in unit_name(),
        listed in proptest::collection::vec(unit_name(), 0..4),
        list_value_too in any::<bool>(),
    ) {
        let mut listed = listed;
        if list_value_too {
            listed.push(value.clone());
        }
        let services = crate::inventory::LabelValue::List(listed.clone());
        let inventory = inventory_of("web1", [("services".to_owned(), services)].into());
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::Enforce,
            default_escalation: &[],
        };
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "ServiceDown".to_owned()),
            ("instance".to_owned(), "web1:9100".to_owned()),
            ("service".to_owned(), value.clone()),
        ]);
        let plan = SHIPPED.plan(&Alert::firing_generic(labels), &ctx);
        if plan.outcome == PlanOutcome::Planned {
            prop_assert!(listed.contains(&value), "{value:?} not listed: {plan:?}");
            let lower = value.to_lowercase();
            let unit = lower.trim_end_matches(".service");
            for denied_suffix in [".target", ".slice", ".socket", ".mount", ".timer", ".scope"] {
                prop_assert!(!unit.ends_with(denied_suffix), "{value:?}");
            }
            let base = unit.split('@').next().unwrap_or(unit);
            for denied in ["ssh", "sshd", "salve", "poweroff", "reboot", "rescue", "emergency", "dbus"] {
                prop_assert_ne!(base, denied, "{:?}", value);
            }
            prop_assert!(!base.starts_with("systemd-"), "{value:?}");
        } else {
            prop_assert_eq!(plan.outcome, PlanOutcome::Refused);
            prop_assert!(plan.commands.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// The load-time scans take any recipe text (the recipe fuzz target relies on it).
    #[test]
    fn template_scans_never_panic(
        source in prop_oneof![
            any::<String>(),
            "([a-z]{1,4}|-[a-zé]{1,3}|--[a-z]+=?|\\{\\{ x \\}\\}|[ '\"\\\\;|&<>()`$\n@:/\\[\\]]){0,24}",
        ]
    ) {
        let _ = super::nested::nested_script_problems(&source);
        let _ = super::template::url_authority(&format!("http://{source}"));
        let _ = super::template::url_port(&format!("http://{source}"));
        let params: BTreeSet<String> = ["x".to_owned()].into();
        let _ = RecipeTemplates::new().check(super::template::TemplateKind::Command, &source, &params);
    }
}
