//! What the black-box tests share about salve itself: a config with credentials and an
//! inventory, the shipped recipes, reading the journal back through the API and the CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{SalveProcess, http_client, salve_config_template, wait_until};

pub const TOKEN: &str = "it-webhook-token";
pub const BEARER: (&str, &str) = ("authorization", "Bearer it-webhook-token");
/// The `[server.api]` token `config` sets (name "it", scope operate): the webhook
/// credential cannot read incidents.
pub const API_BEARER: (&str, &str) = ("authorization", "Bearer it-api-token");
/// The `[server.api]` section that makes [`API_BEARER`] an operate-scope API token.
pub const API_SECTION: &str =
    "[server.api]\ntokens = [{ name = \"it\", token = \"it-api-token\", scope = \"operate\" }]\n";

/// The repository's own recipes directory (the shipped recipes).
pub fn shipped_recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// A config with a bearer token, the shipped recipes' channels and a two-host inventory.
/// `auth_extra` is appended inside `[server.auth]`; `extra` at the end (more `[[hosts]]`,
/// or whole sections).
pub fn config(auth_extra: &str, extra: &str) -> String {
    format!(
        "{}\n{API_SECTION}\n\
         [server.auth]\nbearer_token = \"{TOKEN}\"\n{auth_extra}\n[recipes]\ndir = \"recipes\"\n\n\
         [escalation]\ndefault = [\"oncall-email\"]\n\n\
         [escalation.channels.oncall-email]\nkind = \"log\"\n\n\
         [escalation.channels.tickets]\nkind = \"log\"\n\n\
         [[hosts]]\nname = \"web1\"\naddress = \"127.0.0.1\"\nlabels = {{ services = \"nginx,postgresql\" }}\n\n\
         [[hosts]]\nname = \"web2\"\naddress = \"127.0.0.2\"\nlabels = {{ services = \"nginx,postgresql\" }}\n{extra}",
        salve_config_template()
    )
}

pub async fn start_salve(auth_extra: &str, extra: &str) -> SalveProcess {
    SalveProcess::builder(&config(auth_extra, extra))
        .recipes_dir(&shipped_recipes())
        .start()
        .await
}

/// Incidents from `GET /api/v1/incidents`, newest first.
pub async fn api_incidents(salve: &SalveProcess) -> Vec<Value> {
    let response = http_client()
        .get(format!("{}/api/v1/incidents?limit=500", salve.base_url()))
        .header(API_BEARER.0, API_BEARER.1)
        .send()
        .await
        .expect("GET /api/v1/incidents");
    assert!(
        response.status().is_success(),
        "incidents API: {}",
        response.status()
    );
    match response.json::<Value>().await.expect("incidents JSON") {
        Value::Array(items) => items,
        other => panic!("incidents API returned {other}"),
    }
}

/// Polls the API until `done` holds for the incident list, and returns it.
pub async fn wait_for_incidents(
    salve: &SalveProcess,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_until(Duration::from_secs(20), what, || async {
        let incidents = api_incidents(salve).await;
        done(&incidents).then_some(incidents)
    })
    .await
}

/// `salve history --json` for a running salve, parsed, asserting exit 0.
pub async fn history_json(salve: &SalveProcess) -> Vec<Value> {
    let output = salve
        .run_cli(&["history", "--json", "--limit", "1000"])
        .await;
    parse_json_output("history --json", &output)
}

pub fn parse_json_output(what: &str, output: &Output) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "salve {what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_str::<Value>(&stdout) {
        Ok(Value::Array(items)) => items,
        Ok(other) => vec![other],
        Err(e) => panic!("salve {what}: not JSON ({e}): {stdout}"),
    }
}

/// Runs a one-shot `salve` command (check, simulate, test) in `dir` with a clean
/// environment, the way an operator would.
pub fn salve_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run salve")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one incident whose labels include `alertname`, asserting there is exactly one.
pub fn only<'a>(incidents: &'a [Value], alertname: &str) -> &'a Value {
    let matching: Vec<&Value> = incidents
        .iter()
        .filter(|i| i["labels"]["alertname"] == alertname)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "incidents for {alertname}: {matching:#?}"
    );
    matching[0]
}
