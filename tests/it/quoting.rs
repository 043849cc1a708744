//! Hostile label values through `salve simulate --json`: each shows up in the planned
//! command only as one single-quoted word, and a real shell reads it back as data.

use std::process::Command;

use crate::support::{SalveConfig, fixture, parse_json_output, salve_cli, text};
use serde_json::{Value, json};

const HOSTILE: &[&str] = &[
    "plain",
    "a;b",
    "x; touch SENTINEL",
    "$(touch SENTINEL)",
    "`touch SENTINEL`",
    "it's 'quoted'",
    "say \"hi\"",
    "line1\nline2\n",
    "two words  and\ttab",
    "ünïcødé ✓ 日本",
    "$HOME ${PATH} \\ backslash",
    "",
];

/// The expected form, computed independently of salve: POSIX single quotes, with each
/// embedded quote written as '\''.
fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[test]
fn hostile_values_are_single_quoted_words_in_simulated_plans() {
    let dir = tempfile::tempdir().unwrap();
    SalveConfig::standard()
        .recipes_dir(fixture("quoting-recipes"))
        .write_to(dir.path());

    let alerts: Vec<Value> = HOSTILE
        .iter()
        .map(|message| {
            json!({
                "labels": { "alertname": "Echo", "instance": "web1:9100", "message": message }
            })
        })
        .collect();
    std::fs::write(
        dir.path().join("alerts.json"),
        serde_json::to_vec(&json!({ "alerts": alerts })).unwrap(),
    )
    .unwrap();

    let output = salve_cli(dir.path(), &["simulate", "alerts.json", "--json"]);
    let plans = &parse_json_output("simulate --json", &output)[0]["alerts"];
    let plans = plans
        .as_array()
        .unwrap_or_else(|| panic!("no alerts in {}", text(&output.stdout)));
    assert_eq!(plans.len(), HOSTILE.len());

    for (message, entry) in HOSTILE.iter().zip(plans) {
        let plan = &entry["plan"];
        assert_eq!(plan["outcome"], "planned", "{message:?}: {plan}");
        let command = plan["commands"][0].as_str().unwrap();
        assert_eq!(
            command,
            format!("printf '%s' {}", single_quoted(message)),
            "{message:?}"
        );

        // A real shell (sh) runs it in an empty directory: it prints the value back
        // byte for byte, and nothing in it was executed.
        let sandbox = tempfile::tempdir().unwrap();
        let run = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(sandbox.path())
            .env_clear()
            .output()
            .unwrap();
        assert!(run.status.success(), "{command}: {}", text(&run.stderr));
        assert_eq!(
            text(&run.stdout),
            *message,
            "shell read back something else for {command}"
        );
        assert!(
            !sandbox.path().join("SENTINEL").exists(),
            "{command} executed alert text"
        );
    }
}
