//! What a human reads is safe to read. Alert text carrying terminal control sequences (a
//! screen clear, an OSC 8 link, BEL, backspaces, a C1 CSI, a bidi override, and a CR/LF
//! followed by a fake log line) travels the real path — webhook, journal, SSH to a real
//! target and back as that target's stderr — and `salve history` (the list and `--id`),
//! `salve gaps` and salve's human-format log show it escaped and still recognisable, never
//! raw. `history --json` stays JSON carrying the exact bytes, every control escaped.

use std::time::Duration;

use crate::support::{Enforcing, SalveProcess, SshHost, events, wait_until};
use serde_json::{Value, json};

/// The fake line an attacker wants the operator to see as salve's own.
const FORGED: &str = "2026-12-01T00:00:00.000000Z  INFO salve: all incidents resolved";

fn hostile() -> String {
    format!(
        "Disk\u{1b}[2J\u{1b}]8;;http://evil.test/\u{7}Full\u{1b}]8;;\u{7}\r\n{FORGED}\u{8}\u{8}\u{9b}31m\u{202e}txt"
    )
}

/// Panics if `bytes` (what a terminal would be given) holds a raw control sequence or a
/// line that starts with the forged log line.
fn assert_readable(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (raw, name) in [
        ("\u{1b}", "ESC"),
        ("\u{7}", "BEL"),
        ("\u{8}", "backspace"),
        ("\r", "CR"),
        ("\u{9b}", "C1 CSI"),
        ("\u{202e}", "bidi override"),
    ] {
        assert!(
            !text.contains(raw),
            "{what} prints a raw {name}:\n{}",
            text.escape_debug()
        );
    }
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with(FORGED),
            "{what} prints a forged line: {line:?}"
        );
    }
}

async fn cli(salve: &SalveProcess, args: &[&str]) -> Vec<u8> {
    let output = salve.run_cli(args).await;
    assert!(
        output.status.success(),
        "salve {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_readable(&format!("salve {args:?} (stderr)"), &output.stderr);
    output.stdout
}

#[tokio::test]
async fn history_gaps_and_the_human_log_show_hostile_alert_text_escaped() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    let hostile = hostile();

    // One alert whose label the target writes to stderr before failing (so it is in the
    // command, the output, the reason and the log), one with no recipe named by it.
    salve
        .post_generic(json!({ "alerts": [
            { "labels": { "alertname": "EchoFail", "instance": "web1:9100", "message": hostile } },
            { "labels": { "alertname": hostile, "instance": "web1:9100" } },
        ]}))
        .await;
    salve.wait_for_final(2, Duration::from_secs(60)).await;
    let history: Vec<Value> = wait_until(
        Duration::from_secs(30),
        "both incidents escalated",
        || async {
            let history = salve.history_json().await;
            history
                .iter()
                .all(|i| !i["escalated_at"].is_null())
                .then_some(history)
        },
    )
    .await;

    // The JSON record keeps the exact bytes that came back from the target.
    let failed = history
        .iter()
        .find(|i| i["labels"]["alertname"] == "EchoFail")
        .expect("the EchoFail incident");
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(
        events(failed, "step_finished")[0]["stderr"],
        hostile.as_str()
    );
    let novel = history
        .iter()
        .find(|i| i["labels"]["alertname"] == hostile.as_str())
        .expect("the incident named by the hostile text");
    assert_eq!(novel["state"], "unmatched", "{novel:#}");

    // As JSON it is the same value, with even the controls serde leaves raw (DEL, C1,
    // bidi) written as \u escapes.
    for args in [&["history", "--json"][..], &["gaps", "--json"]] {
        let json = cli(salve, args).await;
        assert_readable(&format!("salve {args:?}"), &json);
        serde_json::from_slice::<Value>(&json).expect("still JSON");
    }

    let list = cli(salve, &["history"]).await;
    assert_readable("salve history", &list);
    let mut shown = String::from_utf8_lossy(&list).into_owned();
    for incident in [failed, novel] {
        let id = incident["id"].to_string();
        let one = cli(salve, &["history", "--id", &id]).await;
        assert_readable(&format!("salve history --id {id}"), &one);
        shown.push_str(&String::from_utf8_lossy(&one));
    }
    let gaps = cli(salve, &["gaps"]).await;
    assert_readable("salve gaps", &gaps);
    let gaps = String::from_utf8_lossy(&gaps);

    // Escaped, not dropped: an operator still sees what the alert said.
    for escaped in [
        "Disk\\x1b[2J\\x1b]8;;http://evil.test/\\x07Full",
        "\\r\\n2026-12-01T00:00:00.000000Z  INFO salve: all incidents resolved\\x08\\x08\\x9b31m\\u{202e}txt",
    ] {
        assert!(shown.contains(escaped), "history lacks {escaped}:\n{shown}");
    }
    assert!(gaps.contains("Disk\\x1b[2J"), "{gaps}");

    // salve's own log in the human format (the default), as written to a file.
    let log = std::fs::read(salve.dir().join("salve.stderr.log")).expect("salve's log");
    assert_readable("salve's log", &log);
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("remediation finished") && log.contains("Disk\\x1b[2J"),
        "the log does not show the failed step's reason:\n{log}"
    );
}
