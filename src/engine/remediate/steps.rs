//! The run: each command of the plan in order, journaled before it is sent and after it
//! ends; the first that fails stops the run. A command salve stopped waiting for (timeout,
//! lost session) holds the host until the target's backstop has surely ended it.

use std::time::Duration;

use crate::incident::Event;
use crate::incident::event::{CommandRecord, StepEnd};
use crate::plan::PlannedTarget;
use crate::ssh::{CommandOutput, SshError};
use crate::store::StoreError;

use super::Remediator;
use super::gates::RunPlan;

/// Why a run stopped early, for the incident's reason.
pub(super) struct StepFailure(pub(super) String);

impl Remediator {
    /// Runs the commands in order; the first that fails stops the run.
    pub(super) async fn run_steps(
        &self,
        run: &RunPlan,
    ) -> Result<Result<(), StepFailure>, StoreError> {
        let (id, plan, target) = (run.id, &run.plan, &run.target);
        for (index, (command, executed)) in plan.commands.iter().zip(&run.executed).enumerate() {
            // The first step's `step_started` was committed with `begin_run`.
            if index > 0 {
                self.store
                    .append_event(id, step_started(index, command, executed))
                    .await?;
            } else {
                let waited = self.clock.now_utc() - run.first_seen;
                self.metrics
                    .alert_to_first_command
                    .observe(waited.to_std().unwrap_or_default().as_secs_f64());
            }
            let (outcome, held) = self
                .run_holding_if_cut(target, executed, plan.command_timeout)
                .await;
            held?;
            let (end, failure) =
                step_end(index + 1, command, target, plan.command_timeout, &outcome);
            let finished = Event::StepFinished {
                step: index + 1,
                command: command.clone(),
                end,
            };
            self.store.append_event(id, finished).await?;
            if let Some(reason) = failure {
                return Ok(Err(StepFailure(reason)));
            }
        }
        Ok(Ok(()))
    }
}

/// The journal entry that must be committed before step `index` (0-based) is sent.
pub(super) fn step_started(index: usize, command: &str, executed: &str) -> Event {
    Event::StepStarted {
        step: index + 1,
        command: command.to_owned(),
        executed: executed.to_owned(),
    }
}

/// How a step ended, for its `step_finished`, and the run's failure reason if it failed.
fn step_end(
    step: usize,
    command: &str,
    target: &PlannedTarget,
    timeout: Duration,
    outcome: &Result<CommandOutput, SshError>,
) -> (StepEnd, Option<String>) {
    match outcome {
        Ok(output) => {
            let record = CommandRecord {
                exit_status: output.exit_status,
                stdout: output.stdout.clone(),
                stderr: output.stderr.clone(),
                stdout_truncated: output.stdout_truncated,
                stderr_truncated: output.stderr_truncated,
                duration: output.duration,
            };
            if output.exit_status == Some(0) {
                return (StepEnd::Ok(record), None);
            }
            let status = match output.exit_status {
                Some(code) => format!("exited {code}"),
                None => "was killed by a signal".to_owned(),
            };
            let mut reason = format!("step {step} {status}: {command}");
            if let Some(line) = output.stderr.lines().find(|l| !l.trim().is_empty()) {
                reason.push_str(&format!(" ({})", line.trim()));
            }
            if output.stderr.contains("a password is required") {
                reason.push_str(&format!(
                    "; sudo on {} needs a password: give the SSH user passwordless sudo for this recipe's commands",
                    target.name
                ));
            }
            (StepEnd::Failed(record), Some(reason))
        }
        Err(error) => {
            let (kind, reason): (fn(String) -> StepEnd, _) = match error {
                SshError::Timeout { .. } => (
                    |error| StepEnd::Timeout { error },
                    format!(
                        "step {step} timed out after {}: {command}",
                        humantime::format_duration(timeout)
                    ),
                ),
                SshError::Connect(why) => (
                    |error| StepEnd::Error { error },
                    format!(
                        "cannot reach {} ({}:{}): {why}",
                        target.name, target.address, target.port
                    ),
                ),
                other => (
                    |error| StepEnd::Error { error },
                    format!("step {step} could not run on {}: {other}", target.name),
                ),
            };
            (kind(error.to_string()), Some(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> PlannedTarget {
        PlannedTarget {
            name: "web1".into(),
            address: "127.0.0.1".into(),
            port: 22,
            user: None,
        }
    }

    fn output(code: i32, stderr: &str) -> Result<CommandOutput, SshError> {
        Ok(CommandOutput {
            exit_status: Some(code),
            stdout: String::new(),
            stderr: stderr.to_owned(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration: Duration::from_millis(4),
        })
    }

    #[test]
    fn failure_reasons_say_what_happened() {
        let t = target();
        let timeout = Duration::from_secs(60);
        let (record, failure) = step_end(1, "true", &t, timeout, &output(0, ""));
        assert!(matches!(record, StepEnd::Ok(_)), "{record:?}");
        assert!(failure.is_none());

        let (_, failure) = step_end(
            2,
            "sudo x",
            &t,
            timeout,
            &output(1, "sudo: a password is required\n"),
        );
        let failure = failure.unwrap();
        assert!(
            failure.starts_with("step 2 exited 1: sudo x (sudo: a password is required)"),
            "{failure}"
        );
        assert!(failure.contains("passwordless sudo"));

        let (record, failure) = step_end(
            1,
            "sleep 99",
            &t,
            timeout,
            &Err(SshError::Timeout { after: timeout }),
        );
        assert!(matches!(record, StepEnd::Timeout { .. }), "{record:?}");
        assert_eq!(failure.unwrap(), "step 1 timed out after 1m: sleep 99");

        let (_, failure) = step_end(
            1,
            "true",
            &t,
            timeout,
            &Err(SshError::Connect("Host key verification failed.".into())),
        );
        assert_eq!(
            failure.unwrap(),
            "cannot reach web1 (127.0.0.1:22): Host key verification failed."
        );
    }
}
