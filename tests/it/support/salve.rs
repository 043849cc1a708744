//! The real `salve` binary as a black box: its own tempdir, a clean environment, a free port.
//! Tests talk to it only through HTTP, its CLI and its files, never through its internals.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::oneshot;

use super::child::{ChildGuard, log_tail};
use super::wait_until;

/// salve prints exactly this prefix, then the bound address, to stdout once it serves.
const READY_PREFIX: &str = "listening on ";
const READY_DEADLINE: Duration = Duration::from_secs(20);
const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// What to start salve with, beyond the config text.
pub struct SalveBuilder {
    config_toml: String,
    recipes_dir: Option<PathBuf>,
    extra_env: Vec<(String, String)>,
    serve_args: Vec<String>,
}

impl SalveBuilder {
    /// Copies this directory's contents to `<tempdir>/recipes` before the start.
    pub fn recipes_dir(mut self, dir: &Path) -> Self {
        self.recipes_dir = Some(dir.to_owned());
        self
    }

    /// Extra arguments for `salve serve` (e.g. `--dry-run`), kept across restarts.
    pub fn serve_args(mut self, args: &[&str]) -> Self {
        self.serve_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Adds one variable to salve's otherwise clean environment, e.g. a `SALVE_…` secret.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub async fn start(self) -> SalveProcess {
        let dir = tempfile::Builder::new()
            .prefix("salve-it-")
            .tempdir()
            .expect("create salve tempdir");
        std::fs::write(dir.path().join("salve.toml"), &self.config_toml).expect("write salve.toml");
        if let Some(recipes) = &self.recipes_dir {
            copy_dir(recipes, &dir.path().join("recipes"));
        }
        let mut process = SalveProcess {
            child: None,
            base_url: None,
            env: clean_env(&self.extra_env),
            serve_args: self.serve_args.clone(),
            dir,
            starts: 0,
        };
        process.spawn_and_wait_ready().await;
        process
    }
}

/// A running `salve serve`. Dropping it kills the process (by PID) and deletes its tempdir.
pub struct SalveProcess {
    // Field order matters: the process dies before its directory is removed.
    child: Option<ChildGuard>,
    base_url: Option<String>,
    env: Vec<(OsString, OsString)>,
    serve_args: Vec<String>,
    dir: TempDir,
    starts: u32,
}

impl SalveProcess {
    pub fn builder(config_toml: &str) -> SalveBuilder {
        SalveBuilder {
            config_toml: config_toml.to_owned(),
            recipes_dir: None,
            extra_env: Vec::new(),
            serve_args: Vec::new(),
        }
    }

    /// e.g. `http://127.0.0.1:40123`; panics if salve is not running (after `kill9`).
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .expect("salve is not running (killed and not restarted)")
    }

    /// The tempdir salve runs in (its CWD): config, recipes, journal and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("salve.toml")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// SIGKILL and reap: a crash, with no chance to flush or shut down cleanly.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill_and_reap();
        }
        self.base_url = None;
    }

    /// SIGTERM, then waits up to `deadline` for salve to exit by itself (its graceful
    /// shutdown path) and returns the exit status. Panics, with the log, if it does not exit.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("salve is not running");
        self.base_url = None;
        let pid = child.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait_until(deadline, "salve to exit after SIGTERM", || {
            let exited = child.exited();
            async move { exited }
        })
        .await;
        // Reaped already; wait() just returns the stored status.
        let _ = child.wait();
        status
    }

    /// Sends `signal` (a `kill` name: `TERM`, `INT`, ...) and returns at once, so the test
    /// can watch salve while it drains; `wait_for_exit` then reaps it.
    pub fn send_signal(&self, signal: &str) {
        let pid = self.pid().expect("salve is not running").to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// Waits up to `deadline` for salve to exit by itself (after `send_signal`) and returns
    /// the exit status. Panics, with the log, if it does not exit.
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("salve is not running");
        self.base_url = None;
        wait_until(deadline, "salve to exit after the signal", || {
            let exited = child.exited();
            async move { exited }
        })
        .await
    }

    /// Another `salve serve` with the same config and recipes in its own tempdir, on its own
    /// port: a second replica when the store is shared (PostgreSQL).
    pub async fn replica(&self) -> SalveProcess {
        let dir = tempfile::Builder::new()
            .prefix("salve-it-replica-")
            .tempdir()
            .expect("create salve tempdir");
        std::fs::copy(self.config_path(), dir.path().join("salve.toml")).expect("copy salve.toml");
        let recipes = self.dir().join("recipes");
        if recipes.is_dir() {
            copy_dir(&recipes, &dir.path().join("recipes"));
        }
        let mut process = SalveProcess {
            child: None,
            base_url: None,
            env: self.env.clone(),
            serve_args: self.serve_args.clone(),
            dir,
            starts: 0,
        };
        process.spawn_and_wait_ready().await;
        process
    }

    /// Starts salve again in the same tempdir with the same config (so the same journal);
    /// kills it first if it still runs. With `listen = "127.0.0.1:0"` the port changes.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn_and_wait_ready().await;
    }

    /// Runs `salve ARGS --config <tempdir>/salve.toml` in the same tempdir and environment.
    pub async fn run_cli(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_salve"));
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .env_clear()
            .envs(self.env.iter().cloned())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            // A hung CLI is killed when the timeout below drops the future.
            .kill_on_drop(true);
        match tokio::time::timeout(CLI_DEADLINE, command.output()).await {
            Ok(output) => output.expect("run salve CLI"),
            Err(_) => panic!("salve {args:?} did not finish within {CLI_DEADLINE:?}"),
        }
    }

    /// The end of salve's stderr (its log) across all starts, for panic messages.
    pub fn stderr_tail(&self) -> String {
        log_tail(&self.dir.path().join("salve.stderr.log"), 60)
    }

    /// Every line salve printed to stderr that contains one of `needles` (the last 80).
    pub fn stderr_lines_with(&self, needles: &[&str]) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("salve.stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| needles.iter().any(|needle| line.contains(needle)))
            .collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// The end of everything salve printed to stdout.
    pub fn stdout_tail(&self) -> String {
        log_tail(&self.dir.path().join("salve.stdout.log"), 20)
    }

    async fn spawn_and_wait_ready(&mut self) {
        self.starts += 1;
        let stderr_path = self.dir.path().join("salve.stderr.log");
        // Append across restarts, with a marker, so a panic shows what happened before too.
        let mut stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("open salve stderr log");
        writeln!(stderr, "---- salve start #{} ----", self.starts).expect("write marker");

        let spawned = Command::new(env!("CARGO_BIN_EXE_salve"))
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .args(&self.serve_args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn();
        let mut child = ChildGuard::new(spawned.expect("spawn salve serve"));
        let stdout = child.take_stdout().expect("salve stdout is piped");

        let (address_sender, address_receiver) = oneshot::channel();
        let stdout_log = self.dir.path().join("salve.stdout.log");
        // A plain thread, detached on purpose: it drains stdout for the whole life of the
        // process (a full pipe would block salve), and a grandchild holding the pipe open
        // must not make Drop hang joining it.
        std::thread::spawn(move || forward_stdout(stdout, &stdout_log, address_sender));

        let address = match tokio::time::timeout(READY_DEADLINE, address_receiver).await {
            Ok(Ok(address)) => address,
            Ok(Err(_)) => {
                let status = wait_until(
                    Duration::from_secs(5),
                    "salve to exit after closing stdout",
                    || {
                        let exited = child.exited();
                        async move { exited }
                    },
                )
                .await;
                panic!(
                    "salve exited ({status}) before printing `{READY_PREFIX}ADDR`\n{}\n{}",
                    self.stdout_tail(),
                    self.stderr_tail()
                );
            }
            Err(_) => panic!(
                "salve did not print `{READY_PREFIX}ADDR` within {READY_DEADLINE:?}\n{}\n{}",
                self.stdout_tail(),
                self.stderr_tail()
            ),
        };
        self.base_url = Some(format!("http://{address}"));
        self.child = Some(child);
    }
}

/// Copies salve's stdout to a log file and reports the first `listening on ADDR` line.
fn forward_stdout(
    stdout: std::process::ChildStdout,
    log_path: &Path,
    address_sender: oneshot::Sender<SocketAddr>,
) {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open salve stdout log");
    let mut address_sender = Some(address_sender);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if let Some(address) = line.trim().strip_prefix(READY_PREFIX)
            && let Ok(address) = address.parse::<SocketAddr>()
            && let Some(sender) = address_sender.take()
        {
            // The receiver is gone only if the start already panicked; nothing to tell then.
            let _ = sender.send(address);
        }
    }
    // Dropping an unsent sender tells the starter that salve closed stdout without
    // ever listening, which it reports at once instead of waiting for the deadline.
}

/// The whole environment salve sees: PATH and HOME so it can run ssh, RUST_LOG if the
/// developer set one, plus the test's own variables. Nothing else from the shell leaks in;
/// in particular no `SALVE_…` override the test did not ask for.
fn clean_env(extra: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = ["PATH", "HOME", "RUST_LOG"]
        .into_iter()
        .filter_map(|key| std::env::var_os(key).map(|value| (key.into(), value)))
        .collect();
    env.extend(extra.iter().map(|(key, value)| (key.into(), value.into())));
    env
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("create {}: {error}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|error| panic!("read {}: {error}", from.display()));
    for entry in entries {
        let entry = entry.expect("read dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|error| {
                panic!(
                    "copy {} to {}: {error}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}
