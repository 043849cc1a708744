//! A store commit that fails acknowledges nothing: with the journal's disk full, the
//! webhook answers 503, and after a restart nothing of the refused alerts is in the
//! journal while alerts accepted before and after are. The fault is real: the journal
//! lives on a small tmpfs this test mounts (the bed runs as root) and fills with ballast,
//! so SQLite's WAL append at commit fails with SQLITE_FULL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{BEARER, SalveConfig};
use crate::support::{SalveProcess, post_json};

/// A tmpfs mounted for one test, unmounted when dropped (after whatever holds files on it:
/// declare it before the salve that uses it).
struct Tmpfs {
    _parent: TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::Builder::new()
            .prefix("salve-it-tmpfs-")
            .tempdir()
            .expect("create mount point parent");
        let path = parent.path().join("journal");
        std::fs::create_dir(&path).expect("create mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs {} failed ({status}): this test needs root, as scripts/test runs it",
            path.display()
        );
        Tmpfs {
            _parent: parent,
            path,
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Something still holds a file there: detach it so the tempdir can go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes `path` until the filesystem refuses: after this, nothing on it can grow.
fn fill_with_ballast(path: &Path) {
    let mut ballast = std::fs::File::create(path).expect("create ballast");
    let chunk = vec![0xa5_u8; 64 * 1024];
    loop {
        match ballast.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("writing ballast: {e}"),
        }
    }
    // Whatever fits in the last partial page too.
    while ballast.write_all(&[0xa5]).is_ok() {}
}

/// A `ServiceDown` alert for `service` on `host` (both hosts are in the inventory).
async fn post_alert(salve: &SalveProcess, host: &str, service: &str) -> reqwest::Response {
    let alert = json!({ "labels": {
        "alertname": "ServiceDown", "instance": format!("{host}:9100"), "service": service
    }});
    post_json(
        &format!("{}/hooks/generic", salve.base_url()),
        &alert,
        &[BEARER],
    )
    .await
}

/// `instance service` of each incident, sorted.
fn alerts_of(incidents: &[Value]) -> Vec<String> {
    let mut alerts: Vec<String> = incidents
        .iter()
        .map(|incident| {
            let labels = &incident["labels"];
            format!(
                "{} {}",
                labels["instance"].as_str().unwrap_or(""),
                labels["service"].as_str().unwrap_or("")
            )
        })
        .collect();
    alerts.sort();
    alerts
}

async fn wait_until_settled(salve: &SalveProcess, count: usize) {
    salve
        .wait_for_incidents("every incident planned (dry_run)", |all| {
            all.len() == count && all.iter().all(|incident| incident["state"] == "dry_run")
        })
        .await;
}

#[tokio::test]
async fn a_failed_store_commit_is_a_503_and_leaves_nothing_in_the_journal() {
    let disk = Tmpfs::mount("8m");
    let journal = disk.path().join("salve.db");
    let config = SalveConfig::standard().store_url(&format!("sqlite://{}", journal.display()));
    let mut salve = config.start_with_shipped_recipes().await;

    // Accepted before the disk fills.
    assert_eq!(
        post_alert(&salve, "web1", "postgresql")
            .await
            .status()
            .as_u16(),
        200
    );
    wait_until_settled(&salve, 1).await;

    let ballast = disk.path().join("ballast");
    fill_with_ballast(&ballast);
    for service in ["postgresql", "nginx"] {
        let response = post_alert(&salve, "web2", service).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            503,
            "POST with the journal's disk full answered {status}: {body}\n{}",
            salve.stderr_tail()
        );
        assert!(body.contains("store unavailable"), "{body}");
    }

    // Room again: the same salve stores the next alert without a restart.
    std::fs::remove_file(&ballast).expect("remove ballast");
    assert_eq!(
        post_alert(&salve, "web1", "nginx").await.status().as_u16(),
        200
    );
    wait_until_settled(&salve, 2).await;

    salve.restart().await;
    let history = salve.history_json().await;
    assert_eq!(
        alerts_of(&history),
        ["web1:9100 nginx", "web1:9100 postgresql"],
        "the refused alerts must not be in the journal: {history:#?}"
    );
    drop(salve);
}
