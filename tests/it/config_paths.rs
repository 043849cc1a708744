//! Config that means what it says, through the real `salve` binary: relative paths follow
//! the config file's directory (not the working directory); `history`, `gaps` and
//! `breaker list` never create a journal; the quick start in an empty directory runs
//! without `recipes/`; `salve check` reports what would fail later (identity file, host
//! keys, fixed targets, store) all in one run, and blames a bad override on its variable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{HostEntry, SalveConfig, salve_cli, text};

/// A one-shot `salve ARGS` in `dir` with a clean environment plus `env`.
fn salve_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run salve")
}

/// `salve serve ARGS` in `dir` on a free loopback port until it prints its ready line;
/// then stopped. Returns the stdout line (or, when it exited first, its stderr).
fn serve_until_ready(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(args)
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SALVE_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start salve serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    if line.starts_with("listening on ") {
        Ok(line)
    } else {
        Err(text(&output.stderr))
    }
}

#[test]
fn relative_paths_are_relative_to_the_config_files_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let etc = cwd.path().join("etc");
    std::fs::create_dir_all(etc.join("recipes")).unwrap();
    SalveConfig::standard()
        .recipes_dir("recipes")
        .store_url("sqlite://journal.db")
        .write_to(&etc);

    let check = salve_cli(cwd.path(), &["check", "--config", "etc/salve.toml"]);
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(
        text(&check.stdout).contains(&etc.join("recipes").display().to_string()),
        "{}",
        text(&check.stdout)
    );

    serve_until_ready(cwd.path(), &["--config", "etc/salve.toml"]).unwrap();
    assert!(
        etc.join("journal.db").exists(),
        "the journal is next to the config"
    );
    assert!(
        !cwd.path().join("journal.db").exists(),
        "not in the working directory"
    );
}

#[test]
fn read_only_commands_never_create_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    SalveConfig::standard()
        .recipes_dir("recipes")
        .write_to(dir.path());
    let journal = dir.path().join("salve.db");

    for args in [
        &["history"][..],
        &["history", "--json"],
        &["gaps"],
        &["breaker", "list"],
    ] {
        let output = salve_cli(dir.path(), args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains(&format!("no journal at {}", journal.display())),
            "{args:?}: {stderr}"
        );
        assert!(!journal.exists(), "{args:?} created {}", journal.display());
    }
}

#[test]
fn the_quick_start_in_an_empty_directory_runs_without_recipes() {
    let dir = tempfile::tempdir().unwrap();

    let check = salve_cli(dir.path(), &["check"]);
    let stderr = text(&check.stderr);
    assert!(check.status.success(), "{}{stderr}", text(&check.stdout));
    assert!(stderr.contains("no recipes"), "{stderr}");

    let ready = serve_until_ready(dir.path(), &[]);
    assert!(ready.is_ok(), "{ready:?}");
}

#[test]
fn check_reports_what_would_fail_later_all_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_salve");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    // Only web1's key is known.
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("127.0.0.1 {public}")).unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    std::fs::write(
        dir.path().join("recipes/fixed.toml"),
        "name = \"fixed-target\"\nmatch = ['alertname=\"DbDown\"']\ntarget = \"db9\"\n\n\
         [remediate]\nrun = [\"true\"]\ntimeout = \"5s\"\n",
    )
    .unwrap();
    SalveConfig::standard()
        .enforce()
        .recipes_dir("recipes")
        .ssh_identity(&key.with_extension("pub"))
        .known_hosts(&known_hosts)
        .store_url("sqlite:///nonexistent-salve-dir/salve.db")
        .write_to(dir.path());

    let output = salve_cli(dir.path(), &["check"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for expected in [
        "is not a private key",
        "host web2 (127.0.0.2) has no key in ssh.known_hosts",
        "target \"db9\" is not an inventory host",
        "no such directory /nonexistent-salve-dir",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("web1 (127.0.0.1) has no key"),
        "web1's key is there:\n{stderr}"
    );
    assert!(!Path::new("/nonexistent-salve-dir").exists());
}

#[test]
fn check_blames_a_bad_override_on_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    SalveConfig::standard()
        .recipes_dir("recipes")
        .host(HostEntry::new("web3", "127.0.0.3"))
        .write_to(dir.path());
    let output = salve_with_env(
        dir.path(),
        &["check"],
        &[("SALVE_SERVER__BODY_LIMIT_BYTES", "lots")],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("environment (SALVE_SERVER__BODY_LIMIT_BYTES)"),
        "{stderr}"
    );
}

#[test]
fn a_store_that_cannot_be_opened_names_the_os_cause() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    SalveConfig::standard()
        .recipes_dir("recipes")
        .store_url("sqlite://missing-dir/salve.db")
        .write_to(dir.path());
    let stderr = serve_until_ready(dir.path(), &[]).expect_err("serve started");
    assert!(
        stderr.contains(&format!(
            "no such directory {}",
            dir.path().join("missing-dir").display()
        )),
        "{stderr}"
    );
}
