//! `salve check` and `salve test` as an operator runs them: broken recipes are listed as
//! file:line: message with a non-zero exit; the shipped recipes check clean and pass
//! their fixtures.

use crate::support::{SalveConfig, fixture, salve_cli, shipped_recipes, text};

fn config_with_recipes(dir: &std::path::Path, recipes: &std::path::Path) {
    SalveConfig::standard().recipes_dir(recipes).write_to(dir);
}

#[test]
fn check_lists_every_broken_recipe_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = fixture("broken-recipes");
    config_with_recipes(dir.path(), &broken);
    let output = salve_cli(dir.path(), &["check"]);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "check passed a broken directory:\n{stderr}"
    );

    let mut files: Vec<_> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "the broken fixture should have one file per mistake"
    );
    for file in files {
        let prefix = format!("{}:", file.display());
        let located = stderr.lines().any(|line| {
            line.strip_prefix(&prefix).is_some_and(|rest| {
                let (line_number, message) = rest.split_once(": ").unwrap_or(("", ""));
                line_number.parse::<usize>().is_ok_and(|n| n > 0) && !message.is_empty()
            })
        });
        assert!(
            located,
            "no file:line: message for {}:\n{stderr}",
            file.display()
        );
    }
}

#[test]
fn shipped_recipes_check_clean_and_pass_their_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    config_with_recipes(dir.path(), &shipped_recipes());
    let output = salve_cli(dir.path(), &["check"]);
    assert!(
        output.status.success(),
        "check: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("2 recipe(s)"),
        "{}",
        text(&output.stdout)
    );

    let recipes = shipped_recipes().display().to_string();
    let output = salve_cli(dir.path(), &["test", &recipes]);
    assert!(
        output.status.success(),
        "salve test: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn a_typo_in_salve_toml_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("salve.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit = 5\n",
    )
    .unwrap();
    let output = salve_cli(dir.path(), &["check"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("salve.toml:3: unknown field `body_limit`"),
        "{stderr}"
    );
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["serve", "check", "simulate", "test", "history"] {
        let output = salve_cli(dir.path(), &[command, "--help"]);
        assert!(output.status.success(), "{command} --help");
        assert!(
            text(&output.stdout).contains("--config"),
            "{command} --help lacks --config"
        );
    }
}
