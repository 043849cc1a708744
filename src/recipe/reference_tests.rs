//! `docs/recipes.md` cannot drift: every key the recipe loader accepts (read from the file
//! shapes' own serde field lists, not from a list kept by hand) must be named in it.

use serde::de::DeserializeOwned;

use super::model::{
    BreakerFile, CheckFile, EscalateFile, ParamFile, RecipeFile, RemediateFile, VerifyFile,
};

const REFERENCE: &str = include_str!("../../docs/recipes.md");

/// The keys a table shape accepts, from serde's own "unknown field" error.
fn accepted_keys<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
    let error = toml::from_str::<T>("zz_not_a_recipe_key = 1")
        .expect_err("an unknown key is refused (deny_unknown_fields)")
        .to_string();
    let (_, expected) = error
        .split_once("expected one of ")
        .or_else(|| error.split_once("expected "))
        .unwrap_or_else(|| panic!("no expected keys in {error:?}"));
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys parsed from {error:?}");
    keys
}

#[test]
fn every_key_the_loader_accepts_is_in_the_reference() {
    let tables = [
        ("top level", accepted_keys::<RecipeFile>()),
        ("[params.NAME]", accepted_keys::<ParamFile>()),
        ("[remediate]", accepted_keys::<RemediateFile>()),
        ("[verify]", accepted_keys::<VerifyFile>()),
        ("verify.checks", accepted_keys::<CheckFile>()),
        ("[breaker]", accepted_keys::<BreakerFile>()),
        ("[escalate]", accepted_keys::<EscalateFile>()),
    ];
    let mut missing = Vec::new();
    for (table, keys) in &tables {
        for key in keys {
            if !REFERENCE.contains(&format!("| `{key}` |")) {
                missing.push(format!("{table}: {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/recipes.md has no table row for: {missing:?}"
    );
    // The walk really saw the shapes (a parse that found one key would pass vacuously).
    assert!(tables[0].1.len() >= 14 && tables[4].1.contains(&"tls_verify".to_owned()));
}

#[test]
fn the_reference_names_the_check_kinds_and_salves_own_filter() {
    for needle in [
        "| `command` | command |",
        "| `http` | http |",
        "| `host` | `target` only |",
    ] {
        assert!(REFERENCE.contains(needle), "docs/recipes.md lacks {needle}");
    }
}

#[test]
fn an_unknown_filter_is_reported_once() {
    use super::template::{RecipeTemplates, TemplateKind};
    let problems = RecipeTemplates::new().check(
        TemplateKind::Target,
        "{{ labels.instance | hots }}",
        &Default::default(),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].matches("unknown").count(), 1, "{problems:?}");
    assert_eq!(problems[0].matches("hots").count(), 1, "{problems:?}");
}
