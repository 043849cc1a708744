//! Alert data is inert whatever the target user's login shell is. sshd hands the command line
//! to the user's shell (`$SHELL -c LINE`), and fish, tcsh and ksh do not read POSIX quotes the
//! way sh does (fish: `\'` inside quotes; tcsh: `!`, and a newline ends the command even
//! inside quotes). One real sshd with one login user per shell (bash, dash, zsh, fish, tcsh,
//! ksh93; scripts/testbed/setup-ssh-target.sh) and `record-argv` on the target, which writes
//! the exact argv it got to a file: each hostile value must arrive byte for byte as data,
//! through the direct path and the `/bin/sh` stdin path, with and without sudo, and
//! `/tmp/PWNED` (what any injection below would create) must not exist.

use std::time::Duration;

use crate::support::{
    Enforcing, LOGIN_SHELL_USERS, SshHost, events, short_tempdir, text, wait_until,
    write_known_hosts,
};
use futures_util::future::join_all;
use salve::plan::PlannedTarget;
use salve::recipe::shell::shell_quote;
use salve::recipe::shell::{RunAs, remote_line};
use salve::ssh::{Executor, SshSettings};
use serde_json::{Value, json};

/// Every metacharacter of every shell above, each in a value that creates /tmp/PWNED if any
/// part of it runs as code; plus values that take the direct path (no stdin shell).
const HOSTILE: &[&str] = &[
    "plain",
    "two words",
    "%1=x,y:z@h+",
    "",
    "\\",
    "\\'",
    // fish reads `\'` inside single quotes as a quote: on today's main this runs `touch`.
    "\\'; touch /tmp/PWNED; echo \\'",
    "'; touch /tmp/PWNED; '",
    "a!b",
    "!!",
    "!touch /tmp/PWNED",
    "\n!touch /tmp/PWNED",
    // tcsh ends the command at a newline even inside quotes: on today's main this runs `touch`.
    "x\ntouch /tmp/PWNED\n",
    "trailing newline\n",
    "cr\rtouch /tmp/PWNED",
    "tab\there",
    "\"; touch /tmp/PWNED; \"",
    "$(touch /tmp/PWNED)",
    "${PATH} $HOME $$ $status",
    "`touch /tmp/PWNED`",
    "a; touch /tmp/PWNED",
    "a | touch /tmp/PWNED",
    "a & touch /tmp/PWNED",
    "a && touch /tmp/PWNED",
    "{touch,/tmp/PWNED}",
    "~ ~root",
    "%self",
    "# comment",
    "*?[]",
    "</tmp/PWNED >/tmp/PWNED",
    "=ls",
    "(touch /tmp/PWNED)",
    "^/tmp/PWNED",
    "ünïcødé ✓ 日本",
];

const TIMEOUT: Duration = Duration::from_secs(10);

/// The file record-argv writes for these arguments: each one, then a NUL.
fn recorded(arguments: &[&str]) -> String {
    arguments.iter().map(|a| format!("{a}\0")).collect()
}

async fn assert_nothing_ran(host: &SshHost) {
    let sentinel = host
        .exec("test -e /tmp/PWNED && echo RAN || echo clean")
        .await;
    assert_eq!(
        text(&sentinel.stdout).trim(),
        "clean",
        "alert text was executed on the target"
    );
}

/// The full matrix through `ssh::Executor` (what remediation, checks and attach all use):
/// for each login shell and value, the remediation shape (`timeout … record-argv 'v'`), the
/// same under sudo (whose rule names exactly that line, so the argv sudo sees is unchanged)
/// and the `sh -c` shape of a command that needs a shell (checks like `df … | tail`).
#[tokio::test]
async fn every_login_shell_gets_hostile_values_as_data_through_the_executor() {
    let host = SshHost::start().await;
    let dir = short_tempdir();
    let known_hosts = write_known_hosts(dir.path(), &[&host]);
    let mut settings = SshSettings::new("nobody", known_hosts, dir.path().join("ctl"));
    settings.identity_file = Some(host.client_key().to_owned());
    let executor = Executor::new(settings).expect("executor");

    // The values that must take the direct path do: the matrix covers both paths.
    for value in ["plain", "two words", "%1=x,y:z@h+", ""] {
        let line = remote_line(
            &format!(
                "/usr/local/bin/record-argv /tmp/x {}",
                shell_quote(value).unwrap()
            ),
            RunAs::Sudo,
            TIMEOUT,
        );
        assert!(
            salve::recipe::shell::is_direct_line(&line),
            "{line:?} should go as it is"
        );
    }

    let shells = LOGIN_SHELL_USERS.iter().map(|(shell, user)| {
        let executor = &executor;
        let host = &host;
        async move {
            let target = PlannedTarget {
                name: (*shell).to_owned(),
                address: host.address(),
                port: host.port(),
                user: Some((*user).to_owned()),
            };
            for (index, value) in HOSTILE.iter().enumerate() {
                let quoted = shell_quote(value).unwrap();
                let argv = |kind: &str| format!("/tmp/{shell}-{index}-{kind}");
                let record =
                    |kind: &str| format!("/usr/local/bin/record-argv {} {quoted} end", argv(kind));
                let lines = [
                    remote_line(&record("plain"), RunAs::User, TIMEOUT),
                    remote_line(&record("sudo"), RunAs::Sudo, TIMEOUT),
                    remote_line(
                        &format!("printf '%s' {quoted} > {}", argv("sh")),
                        RunAs::User,
                        TIMEOUT,
                    ),
                ];
                for line in &lines {
                    let output = executor
                        .run(&target, line, TIMEOUT)
                        .await
                        .unwrap_or_else(|error| panic!("{shell}: {line:?}: {error}"));
                    assert_eq!(output.exit_status, Some(0), "{shell}: {line:?}: {output:?}");
                }
                let arrived = |kind: &str| {
                    let path = argv(kind);
                    async move { host.exec_ok(&format!("cat {path}")).await }
                };
                let expected = recorded(&[value, "end"]);
                assert_eq!(arrived("plain").await, expected, "{shell}: {value:?}");
                assert_eq!(arrived("sudo").await, expected, "{shell} + sudo: {value:?}");
                assert_eq!(arrived("sh").await, *value, "{shell} + sh -c: {value:?}");
            }
        }
    });
    join_all(shells).await;
    assert_nothing_ran(&host).await;
}

/// A test-only recipe with sudo, a command check and an attach line, all carrying a param
/// that accepts any text to `record-argv`; a second check never passes, so every incident
/// ends `verify_failed` and escalates, which runs the attach line.
const RECORD_RECIPE: &str = r#"name = "record-argv"
description = "Record a label's exact bytes on the target (login-shell safety test)"
match = ['alertname="Record"']
target = "{{ labels.instance | host }}"
mode = "enforce"
sudo = true

[params.message]
from = "labels.message"
pattern = '(?s).*'
default = ""

[params.slot]
from = "labels.slot"
pattern = '[a-z0-9]{1,20}'

[remediate]
run = ["/usr/local/bin/record-argv /tmp/run-{{ slot }} {{ message }}"]
timeout = "10s"

[verify]
within = "2s"
interval = "1s"
checks = [
  { command = "/usr/local/bin/record-argv /tmp/check-{{ slot }} {{ message }}" },
  { command = "test -e /tmp/never-{{ slot }}" },
]

[escalate]
to = ["oncall-email"]
attach = ["/usr/local/bin/record-argv /tmp/attach-{{ slot }} {{ message }}"]
"#;

/// The hostile value of the end-to-end test: everything at once.
const EVERYTHING: &str = "\\'; touch /tmp/PWNED; echo \\'\nx\ntouch /tmp/PWNED\n!! a!b $(touch /tmp/PWNED) `touch /tmp/PWNED` ${HOME} \"q\" 'q' {a,b} ~ %1 =x *?[] <> # ; | & \\\\ \r\tü ✓\n";

/// The real salve binary, a real recipe: one inventory host per login shell (the same sshd,
/// another user each), alerts with a hostile label and a plain one. The remediation (sudo,
/// through the stdin path for the hostile value and directly for the plain one), the command
/// check and the attach diagnostic each record exactly the value on the target.
#[tokio::test]
async fn a_real_recipe_passes_hostile_values_as_data_whatever_the_login_shell() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::single_recipe(&host, LOGIN_SHELL_USERS, RECORD_RECIPE)
        .ssh_setting("connect_timeout", "\"2s\"")
        // Diagnostics get `timeout -k 5 15`, as the sudo rule says.
        .ssh_setting("command_timeout", "\"10s\"")
        .start()
        .await;
    let salve = &enforcing.salve;

    let values = [("hostile", EVERYTHING), ("plain", "plain-value")];
    let alerts: Vec<Value> = LOGIN_SHELL_USERS
        .iter()
        .flat_map(|(shell, _)| {
            values.iter().map(move |(kind, value)| {
                json!({ "labels": {
                    "alertname": "Record",
                    "instance": format!("{shell}:9100"),
                    "slot": format!("{shell}{kind}"),
                    "message": value,
                } })
            })
        })
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;

    let history = salve
        .wait_for_final(alerts.len(), Duration::from_secs(90))
        .await;
    for incident in &history {
        assert_eq!(
            incident["state"],
            "verify_failed",
            "the run and the recording check must pass, only `test -e never` fails: {incident:#}\n{}",
            salve.stderr_tail()
        );
        let started = events(incident, "step_started");
        assert!(
            started[0]["executed"]
                .as_str()
                .unwrap()
                .starts_with("sudo -n -- timeout -k 5 15 /usr/local/bin/record-argv /tmp/run-"),
            "{incident:#}"
        );
    }
    // Escalation runs the attach line after the final state: wait for its file too.
    for (shell, _) in LOGIN_SHELL_USERS {
        for (kind, value) in values {
            let slot = format!("{shell}{kind}");
            let attach = format!("test -e /tmp/attach-{slot}");
            wait_until(
                Duration::from_secs(30),
                &format!("{shell}'s attach line to run"),
                || {
                    let (host, attach) = (&host, &attach);
                    async move { host.exec(attach).await.status.success().then_some(()) }
                },
            )
            .await;
            for step in ["run", "check", "attach"] {
                let arrived = host.exec_ok(&format!("cat /tmp/{step}-{slot}")).await;
                assert_eq!(
                    arrived,
                    format!("{value}\0"),
                    "{shell}, {step}: the target got other bytes"
                );
            }
        }
    }
    assert_nothing_ran(&host).await;
}
