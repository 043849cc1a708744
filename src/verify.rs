//! Verification checks: a command on the target (exit status, or the first number of its
//! stdout against a threshold) and an HTTP GET from salve. One call runs one check once
//! and always returns a result; polling until a deadline is the engine's job.

use std::time::Duration;

use tokio::time::Instant;

use crate::plan::{PlannedCheck, PlannedTarget};
use crate::recipe::shell::{RunAs, remote_line};
use crate::ssh::{CommandRunner, SshError, error_chain};

/// How much of an HTTP body a check reads (for `body_contains`) and records.
const HTTP_BODY_LIMIT: usize = 64 * 1024;
/// How much of a check's output the journal keeps per poll (the full bounded output of
/// remediation steps is kept; checks repeat, so keep their record short).
const CHECK_OUTPUT_LIMIT: usize = 1024;
/// Checks run as the SSH user, never through sudo.
const CHECKS_RUN_AS: RunAs = RunAs::User;

/// One check's result in one poll: a journal type (`check_poll` events).
pub use crate::incident::event::CheckResult;

pub struct Verifier {
    /// Certificates verified (the default for every check).
    http: reqwest::Client,
    /// For checks that opted out with `tls_verify = false`.
    http_unverified: reqwest::Client,
}

impl Verifier {
    pub fn new() -> Result<Verifier, reqwest::Error> {
        let build = |verify: bool| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(!verify)
                .user_agent(concat!("salve/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Verifier {
            http: build(true)?,
            http_unverified: build(false)?,
        })
    }

    /// Run `check` once, a command check through `runner`. `command_timeout` bounds a
    /// command check (HTTP checks carry their own timeout); the caller bounds both by what
    /// is left of `within`.
    pub async fn run(
        &self,
        runner: &dyn CommandRunner,
        target: &PlannedTarget,
        check: &PlannedCheck,
        command_timeout: Duration,
    ) -> CheckResult {
        let started = Instant::now();
        let mut result = match check {
            PlannedCheck::Command {
                command,
                below,
                above,
            } => {
                let line = remote_line(command, CHECKS_RUN_AS, command_timeout);
                let outcome = runner.run(target, &line, command_timeout).await;
                command_result(command, *below, *above, outcome)
            }
            PlannedCheck::Http {
                url,
                status,
                body_contains,
                timeout,
                tls_verify,
            } => {
                let client = if *tls_verify {
                    &self.http
                } else {
                    &self.http_unverified
                };
                let timeout = (*timeout).min(command_timeout);
                http_result(client, url, *status, body_contains.as_deref(), timeout).await
            }
        };
        result.duration_ms = started.elapsed().as_millis() as u64;
        result
    }
}

fn blank(check: &str) -> CheckResult {
    CheckResult {
        check: check.to_owned(),
        passed: false,
        detail: String::new(),
        exit_status: None,
        http_status: None,
        value: None,
        output: String::new(),
        duration_ms: 0,
    }
}

fn command_result(
    command: &str,
    below: Option<f64>,
    above: Option<f64>,
    outcome: Result<crate::ssh::CommandOutput, SshError>,
) -> CheckResult {
    let mut result = blank(command);
    let output = match outcome {
        Ok(output) => output,
        Err(e) => {
            result.detail = e.to_string();
            return result;
        }
    };
    result.exit_status = output.exit_status;
    result.output = clip(if output.stdout.trim().is_empty() {
        &output.stderr
    } else {
        &output.stdout
    });
    if output.exit_status != Some(0) {
        result.detail = match output.exit_status {
            Some(code) => format!("exited {code}"),
            None => "killed by a signal".to_owned(),
        };
        return result;
    }
    if below.is_none() && above.is_none() {
        result.passed = true;
        result.detail = "exited 0".to_owned();
        return result;
    }
    let Some(value) = first_number(&output.stdout) else {
        result.detail = "no number in stdout".to_owned();
        return result;
    };
    result.value = Some(value);
    let below_ok = below.is_none_or(|limit| value < limit);
    let above_ok = above.is_none_or(|limit| value > limit);
    result.passed = below_ok && above_ok;
    result.detail = match (below, above) {
        (Some(b), Some(a)) => format!(
            "{value} {} ({a}, {b})",
            if result.passed { "within" } else { "outside" }
        ),
        (Some(b), None) => format!("{value} {} {b}", if below_ok { "<" } else { ">=" }),
        (None, Some(a)) => format!("{value} {} {a}", if above_ok { ">" } else { "<=" }),
        (None, None) => unreachable!("handled above"),
    };
    result
}

async fn http_result(
    client: &reqwest::Client,
    url: &str,
    expected: u16,
    body_contains: Option<&str>,
    timeout: Duration,
) -> CheckResult {
    let mut result = blank(url);
    let response = match client.get(url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => {
            result.detail = if e.is_timeout() {
                format!("no answer within {}", humantime::format_duration(timeout))
            } else {
                // reqwest's Display hides the cause ("error sending request"); the chain
                // says what happened (connection refused, certificate, ...).
                error_chain(&e)
            };
            return result;
        }
    };
    let status = response.status().as_u16();
    result.http_status = Some(status);
    let body = read_bounded(response, timeout).await;
    result.output = clip(&body);
    if status != expected {
        result.detail = format!("status {status}, expected {expected}");
        return result;
    }
    if let Some(needle) = body_contains
        && !body.contains(needle)
    {
        result.detail = format!("status {status} but body lacks {needle:?}");
        return result;
    }
    result.passed = true;
    result.detail = format!("status {status}");
    result
}

async fn read_bounded(mut response: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = HTTP_BODY_LIMIT.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= HTTP_BODY_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.len() <= CHECK_OUTPUT_LIMIT {
        return text.to_owned();
    }
    let mut end = CHECK_OUTPUT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The first decimal number in `text` (`" 45%"` → 45, `"Use%\n 83%"` → 83).
pub fn first_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let negative = start > 0 && bytes[start - 1] == b'-';
    let mut end = start;
    let mut seen_dot = false;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || (bytes[end] == b'.' && !seen_dot)) {
        seen_dot |= bytes[end] == b'.';
        end += 1;
    }
    let number: f64 = text[start..end].trim_end_matches('.').parse().ok()?;
    Some(if negative { -number } else { number })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::CommandOutput;

    fn output(code: i32, stdout: &str) -> Result<CommandOutput, SshError> {
        Ok(CommandOutput {
            exit_status: Some(code),
            stdout: stdout.to_owned(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration: Duration::from_millis(3),
        })
    }

    #[test]
    fn first_number_reads_df_style_output() {
        assert_eq!(first_number(" 45%"), Some(45.0));
        assert_eq!(first_number("Use%\n 83%\n"), Some(83.0));
        assert_eq!(first_number("load 1.25 0.5"), Some(1.25));
        assert_eq!(first_number("temp -3.5C"), Some(-3.5));
        assert_eq!(first_number("v2."), Some(2.0));
        assert_eq!(first_number("none"), None);
    }

    #[test]
    fn thresholds_and_exit_status() {
        let check = |below, above, outcome| command_result("df", below, above, outcome);
        assert!(check(None, None, output(0, "")).passed);
        assert!(!check(None, None, output(3, "")).passed);
        let low = check(Some(80.0), None, output(0, " 79%"));
        assert!(low.passed, "{low:?}");
        assert_eq!(low.value, Some(79.0));
        let high = check(Some(80.0), None, output(0, " 80%"));
        assert!(!high.passed);
        assert_eq!(high.detail, "80 >= 80");
        assert!(check(None, Some(10.0), output(0, "11")).passed);
        assert!(!check(Some(80.0), None, output(0, "n/a")).passed);
        // A threshold never passes a failing command, whatever it printed.
        assert!(!check(Some(80.0), None, output(1, " 5%")).passed);
        let unreachable = check(None, None, Err(SshError::Connect("no route".into())));
        assert!(!unreachable.passed);
        assert!(unreachable.detail.contains("no route"));
    }
}
