//! Build script: the git commit `salve --version` prints. Never fails the build: outside a
//! git checkout (a release tarball, the .deb built from one) the commit is "unknown".

use std::process::Command;

fn main() {
    // A packager may say which commit a tarball came from.
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SALVE_GIT_COMMIT={}", commit.trim());
    // Rebuild when HEAD moves (a commit, a checkout) so the version never names a stale one.
    if let Some(git_dir) = git_path("HEAD") {
        println!("cargo:rerun-if-changed={git_dir}");
    }
    if let Some(refs) = git_path("refs/heads") {
        println!("cargo:rerun-if-changed={refs}");
    }
}

fn git_head() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !commit.trim().is_empty()).then_some(commit)
}

/// The path of `name` in the git directory (a worktree has its own HEAD).
fn git_path(name: &str) -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--git-path", name])
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !path.is_empty()).then_some(path)
}
