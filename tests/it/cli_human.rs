//! The CLI for humans, through the real binary: `--version` names the commit, shell
//! completions that complete in the real shells, a man page that `man` renders, colour only
//! on a terminal (and never with NO_COLOR), `history` in words, `simulate -` and fixture cases.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{SalveConfig, free_port, salve_cli, shipped_recipes, text, wait_until};

const SALVE: &str = env!("CARGO_BIN_EXE_salve");

/// `program args…` with a clean environment (PATH kept), stdin given, output collected.
fn run(program: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn success(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let shown = success("--version", &salve_cli(dir.path(), &["--version"]));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git (the tests run from a checkout)");
    let head = text(&head.stdout).trim().to_owned();
    assert_eq!(
        shown.trim(),
        format!("salve {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bash_completion_completes_subcommands_and_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = success(
        "completions bash",
        &salve_cli(dir.path(), &["completions", "bash"]),
    );
    let file = dir.path().join("salve.bash");
    std::fs::write(&file, &script).unwrap();
    // Ask the real bash what TAB offers after `salve hist` and after `salve history --be`.
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _salve salve \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        success("bash", &run("/bin/bash", &["-c", &program], &[], b""))
    };
    assert_eq!(complete("salve hist").trim(), "history");
    assert_eq!(complete("salve history --be").trim(), "--before");

    for (shell, checker) in [("zsh", "/usr/bin/zsh"), ("fish", "/usr/bin/fish")] {
        let script = success(shell, &salve_cli(dir.path(), &["completions", shell]));
        assert!(
            script.contains("history") && script.contains("simulate"),
            "{script}"
        );
        let file = dir.path().join(format!("salve.{shell}"));
        std::fs::write(&file, &script).unwrap();
        success(
            &format!("{shell} -n"),
            &run(checker, &["-n", &file.display().to_string()], &[], b""),
        );
    }
}

#[test]
fn man_page_renders_every_subcommand_and_needs_no_config() {
    let dir = tempfile::tempdir().unwrap();
    // A broken salve.toml in the working directory does not stop it.
    std::fs::write(dir.path().join("salve.toml"), "[server\n").unwrap();
    let page = salve_cli(dir.path(), &["man"]);
    let page = success("salve man", &page);
    let rendered = run(
        "/usr/bin/man",
        &["-l", "-"],
        &[("MANWIDTH", "100"), ("MAN_KEEP_FORMATTING", "")],
        page.as_bytes(),
    );
    let rendered = success("man -l -", &rendered);
    for expected in [
        "Self-healing",
        "SALVE HISTORY",
        "SALVE SIMULATE",
        "SALVE BREAKER RESET",
        "--before",
        "--case",
    ] {
        assert!(
            rendered.contains(expected),
            "{expected} missing:\n{rendered}"
        );
    }
}

/// `salve serve` under a pseudo-terminal (util-linux `script`): its stderr is a terminal.
/// Returns what the terminal showed from start to SIGTERM.
fn serve_on_a_terminal(no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    SalveConfig::standard()
        .recipes_dir(shipped_recipes())
        .write_to(dir.path());
    let listen = format!("127.0.0.1:{port}");
    // Serve in the background on the terminal, wait until it answers, stop it.
    let inner = format!(
        "{SALVE} serve & pid=$!; \
         for _ in $(seq 600); do kill -0 $pid || exit 1; \
           curl -fs http://127.0.0.1:{port}/healthz >/dev/null && break; sleep 0.1; done; \
         kill -TERM $pid; wait $pid"
    );
    let mut env = vec![("TERM", "xterm"), ("SALVE_SERVER__LISTEN", listen.as_str())];
    if let Some(value) = no_color {
        env.push(("NO_COLOR", value));
    }
    let output = Command::new("/usr/bin/script")
        .args(["-qefc", &inner, "/dev/null"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run script(1)");
    let shown = text(&output.stdout);
    assert!(
        output.status.success() && shown.contains("salve serving") && shown.contains("stopped"),
        "serve under script: {}\n{shown}{}",
        output.status,
        text(&output.stderr)
    );
    shown
}

#[tokio::test]
async fn log_colour_only_on_a_terminal_and_never_with_no_color() {
    assert!(
        serve_on_a_terminal(None).contains("\x1b["),
        "a terminal gets colour"
    );
    let plain = serve_on_a_terminal(Some("1"));
    assert!(
        !plain.contains('\x1b'),
        "NO_COLOR=1 still coloured:\n{plain:?}"
    );

    // Not a terminal: a file (or the journal) gets no escape sequence.
    let mut salve = SalveConfig::standard().start_with_shipped_recipes().await;
    salve.terminate(Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(salve.dir().join("salve.stderr.log")).unwrap();
    assert!(
        log.contains("salve serving") && !log.contains('\x1b'),
        "{log:?}"
    );
}

const LONG_ALERTNAME: &str = "ServiceDownOnTheFrontEndCluster";

#[tokio::test]
async fn history_shows_labels_full_alertname_zoned_times_and_checks_in_words() {
    let salve = SalveConfig::standard()
        .salve()
        .recipes_dir(&shipped_recipes())
        .start()
        .await;
    salve
        .post_generic(json!({ "labels": {
            "alertname": LONG_ALERTNAME, "instance": "web1:9100", "severity": "page"
        } }))
        .await;
    salve
        .post_generic(json!({ "labels": {
            "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx"
        } }))
        .await;
    // Planned in dry-run (ServiceDown) and unmatched (the other): both past `received`.
    let history = wait_until(
        Duration::from_secs(60),
        "both incidents planned",
        || async {
            let history = salve.history_json().await;
            (history.len() == 2 && history.iter().all(|i| i["state"] != "received"))
                .then_some(history)
        },
    )
    .await;

    let list = text(&salve.run_cli(&["history"]).await.stdout);
    assert!(list.contains(LONG_ALERTNAME), "full alertname:\n{list}");
    assert!(
        list.contains(&format!(
            "labels: alertname={LONG_ALERTNAME}, instance=web1:9100, severity=page"
        )),
        "labels:\n{list}"
    );
    assert!(list.contains(" UTC "), "a time with its zone:\n{list}");
    assert!(!list.contains('{'), "JSON in:\n{list}");

    let planned = history
        .iter()
        .find(|i| i["labels"]["alertname"] == "ServiceDown")
        .expect("the ServiceDown incident");
    let one = text(
        &salve
            .run_cli(&["history", "--id", &planned["id"].to_string()])
            .await
            .stdout,
    );
    for expected in [
        "labels:   alertname=ServiceDown, instance=web1:9100, service=nginx",
        "run `systemctl is-active --quiet 'nginx'` on the target: passes when it exits 0",
        "GET http://127.0.0.1:8080/healthz from salve: passes on status 200",
        " UTC",
    ] {
        assert!(one.contains(expected), "{expected} missing:\n{one}");
    }
    assert!(!one.contains('{'), "a JSON blob in:\n{one}");
}

#[test]
fn simulate_reads_stdin_and_plans_a_fixture_case_with_a_raw_body() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped recipes, with only this test's fixtures in recipes/tests.
    let recipes = dir.path().join("recipes");
    let tests = recipes.join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    for recipe in ["service-restart.toml", "disk-space.toml"] {
        std::fs::copy(shipped_recipes().join(recipe), recipes.join(recipe)).unwrap();
    }
    SalveConfig::standard()
        .recipes_dir(&recipes)
        .write_to(dir.path());
    let body = json!({ "labels": {
        "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx"
    } })
    .to_string();
    let config = dir.path().join("salve.toml").display().to_string();
    let from_stdin = run(
        SALVE,
        &["simulate", "-", "--config", &config],
        &[],
        body.as_bytes(),
    );
    let from_stdin = success("simulate -", &from_stdin);
    assert!(
        from_stdin.contains("alert ServiceDown: dry_run (planned)")
            && from_stdin.contains("run:      [sudo] systemctl restart 'nginx'"),
        "{from_stdin}"
    );

    // The same alert as an Alertmanager webhook body in a fixture case, which `salve test`
    // runs and `salve simulate --case` plans.
    let alertmanager_body = json!({
        "version": "4", "status": "firing", "receiver": "salve", "groupKey": "{}:{}",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.test", "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": { "alertname": "ServiceDown", "instance": "web1:9100", "service": "nginx" },
            "annotations": {}, "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0123456789abcdef"
        }]
    });
    let fixture = tests.join("raw.toml");
    std::fs::write(
        &fixture,
        format!(
            "[[case]]\nname = \"raw alertmanager body\"\nsource = \"alertmanager\"\nbody = '''{alertmanager_body}'''\n\
             [case.expect]\nrecipe = \"service-restart\"\ncommands = [\"systemctl restart 'nginx'\"]\n"
        ),
    )
    .unwrap();
    let fixture = fixture.display().to_string();
    let case = salve_cli(
        dir.path(),
        &["simulate", &fixture, "--case", "raw alertmanager body"],
    );
    let case = success("simulate --case", &case);
    assert!(
        case.contains("alert ServiceDown: dry_run (planned)")
            && case.contains("run:      [sudo] systemctl restart 'nginx'"),
        "{case}"
    );
    let test = success("salve test", &salve_cli(dir.path(), &["test"]));
    assert!(test.contains("1 passed, 0 failed"), "{test}");

    // A body the intake refuses fails `salve test`, at the case's line.
    std::fs::write(
        tests.join("wrong.toml"),
        "[[case]]\nname = \"not a webhook\"\nsource = \"alertmanager\"\nbody = '{\"alerts\": 3}'\n",
    )
    .unwrap();
    let wrong = salve_cli(dir.path(), &["test"]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("wrong.toml:1: body:"),
        "{}",
        text(&wrong.stderr)
    );
}
