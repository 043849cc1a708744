//! Ownership of a spawned test-bed process: killed by PID and reaped on drop, even on panic.

use std::path::Path;
use std::process::{Child, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

/// A child process that cannot outlive its owner. Starters hold one from the moment of
/// spawning, so a panic during startup (say, a readiness timeout) still kills the process.
pub(crate) struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    pub(crate) fn new(child: Child) -> Self {
        Self { child }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The piped stdout, once; the caller then owns reading it.
    pub(crate) fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status if the process already exited; never blocks.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on test-bed child")
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap, so no zombie keeps the PID.
    pub(crate) fn kill_and_reap(&mut self) {
        // kill fails only when the process was already reaped; wait is still correct then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the process writes its port to the file `ready`, and returns it. Panics,
    /// with the tail of its `log`, if it exits first or is not ready within `deadline`.
    pub(crate) async fn wait_for_ready_port(
        &mut self,
        what: &str,
        ready: &Path,
        log: &Path,
        deadline: Duration,
    ) -> u16 {
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(ready) {
                return text
                    .trim()
                    .parse::<u16>()
                    .unwrap_or_else(|error| panic!("{what} ready file {text:?}: {error}"));
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{what} exited before it was ready ({status})\n{}",
                    log_tail(log, 40)
                );
            }
            assert!(
                started.elapsed() < deadline,
                "{what} not ready after {deadline:?}\n{}",
                log_tail(log, 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Blocks until the process exits by itself.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait on test-bed child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// The last `lines` lines of a log file, for panic messages; a missing file says so.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "---- last {} lines of {} ----\n{}",
                all.len() - start,
                path.display(),
                all[start..].join("\n")
            )
        }
        Err(error) => format!("---- {} unreadable: {error} ----", path.display()),
    }
}
