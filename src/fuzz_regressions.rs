//! Runs the fuzz seeds (`fuzz/seeds/TARGET/`) and every input a fuzz run ever crashed on
//! (`tests/fixtures/fuzz-regressions/TARGET/`) through the same entry points as the fuzz
//! targets, in the normal test suite, so a fixed crash stays fixed without cargo-fuzz.
//! Test-only; it never runs the fuzzer itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::alert::Source;
use crate::config;
use crate::intake::grafana::verify_signature;
use crate::intake::{self, IntakeError, Limits, Notification};
use crate::recipe::{RecipeTemplates, load_recipe};

/// The `grafana_signature` target's decoder and check, the very file the fuzz target runs.
#[path = "../fuzz/src/grafana_signature.rs"]
mod grafana_signature;

/// The seeds and saved crash inputs of one fuzz target, by path. The seeds must be there;
/// the regression directory exists only once a target has crashed.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("fuzz/seeds").join(target);
    let regressions = root.join("tests/fixtures/fuzz-regressions").join(target);
    let mut found = Vec::new();
    for dir in [seeds.clone(), regressions] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert!(dir != seeds, "{} is missing", seeds.display());
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            found.push((path, bytes));
        }
    }
    assert!(!found.is_empty(), "no inputs for fuzz target {target}");
    found.sort();
    found
}

/// What the intake fuzz targets check first: a refusal has a reason, an acceptance keeps
/// within the limits.
fn check_intake(path: &Path, result: Result<Notification, IntakeError>, limits: &Limits) {
    match result {
        Err(error) => assert!(!error.reason().is_empty(), "{}: {error:?}", path.display()),
        Ok(notification) => {
            assert!(notification.alerts.len() <= limits.max_alerts);
            for alert in &notification.alerts {
                for map in [&alert.labels, &alert.annotations] {
                    assert!(map.len() <= limits.max_labels, "{}", path.display());
                    assert!(map.iter().all(|(name, value)| {
                        name.len() <= limits.max_name_bytes && value.len() <= limits.max_value_bytes
                    }));
                }
            }
        }
    }
}

#[test]
fn intake_fuzz_inputs_parse_or_are_refused_with_a_reason() {
    let tight = Limits {
        max_alerts: 3,
        max_labels: 4,
        max_name_bytes: 12,
        max_value_bytes: 40,
    };
    let targets = [
        ("intake_alertmanager", Some(Source::Alertmanager)),
        ("intake_grafana", Some(Source::Grafana)),
        ("intake_generic", Some(Source::Generic)),
        ("intake_detect", None),
    ];
    for (target, source) in targets {
        for (path, body) in inputs(target) {
            for limits in [&Limits::default(), &tight] {
                let result = match source {
                    Some(source) => intake::parse(source, &body, limits),
                    None => intake::detect_and_parse(&body, limits),
                };
                check_intake(&path, result, limits);
            }
        }
    }
}

#[test]
fn recipe_fuzz_inputs_load_or_are_refused_with_located_problems() {
    let channels: BTreeSet<String> = ["oncall-email", "tickets"].map(str::to_owned).into();
    let templates = RecipeTemplates::new();
    for (path, bytes) in inputs("recipe_load") {
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if let Err(problems) = load_recipe(&path, &text, &channels, &templates) {
            let lines = text.split('\n').count();
            assert!(!problems.is_empty(), "{}", path.display());
            for problem in problems {
                assert!((1..=lines).contains(&problem.line), "{problem}");
                assert!(!problem.message.is_empty(), "{problem}");
            }
        }
    }
}

#[test]
fn config_fuzz_inputs_load_or_are_refused_with_a_message() {
    for (path, bytes) in inputs("config_load") {
        let Ok(input) = String::from_utf8(bytes) else {
            continue;
        };
        // As in fuzz/fuzz_targets/config_load.rs: TOML, then optionally NUL and KEY=VALUE lines.
        let (text, env_lines) = input.split_once('\0').unwrap_or((&input, ""));
        let env: BTreeMap<String, String> = env_lines
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (format!("SALVE_{key}"), value.to_owned()))
            .collect();
        let origin = path.display().to_string();
        if let Err(problems) = config::load_from_str(&origin, text, env) {
            assert!(!problems.is_empty(), "{origin}");
            assert!(problems.iter().all(|problem| !problem.message.is_empty()));
        }
    }
}

#[test]
fn login_shell_fuzz_inputs_go_direct_only_when_inert() {
    use crate::recipe::shell::{POSIX_SHELL_ON_STDIN, for_login_shell};
    for (path, bytes) in inputs("login_shell_line") {
        let Ok(line) = String::from_utf8(bytes) else {
            continue;
        };
        let Ok(invocation) = for_login_shell(&line) else {
            assert!(line.contains('\0'), "{}", path.display());
            continue;
        };
        match invocation.stdin {
            None => assert!(
                line.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=,+@%- '".contains(c)),
                "{}: {line:?} went direct",
                path.display()
            ),
            Some(_) => assert_eq!(invocation.command, POSIX_SHELL_ON_STDIN),
        }
    }
}

#[test]
fn grafana_signature_fuzz_inputs_are_judged_as_an_independent_hmac_judges_them() {
    let mut accepted = 0;
    for (path, bytes) in inputs("grafana_signature") {
        eprintln!("{}", path.display());
        if grafana_signature::check(&bytes) == Some(true) {
            accepted += 1;
        }
    }
    // The seeds hold real, correctly signed requests: the check sees the accepting side too.
    assert!(accepted > 0, "no grafana_signature input was accepted");
}
