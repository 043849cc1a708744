//! A private SSH target per test: a real `/usr/sbin/sshd` in its own mount and PID namespace,
//! with its own host key and authorized key, on a free loopback port. It never skips: a
//! missing bed (users, sudo, sshd) panics with "test bed missing: run scripts/test".
//!
//! Why namespaces: each test gets a fresh "host" whose system paths (`/tmp`, `/var/tmp`,
//! `/var/log`, `/var/cache/apt`, `/srv`) are small private tmpfs mounts, so recipes act on
//! real files and filesystems without touching the CI machine's, and tests run in parallel.
//! `/usr/local/bin` is the repo's `tests/bed/bin` (TEST stand-ins for `systemctl` and
//! `journalctl`, since these machines have no systemd, `health-server`, and `record-argv`,
//! which writes the exact argv it got to a file), so the stand-ins are on every PATH there,
//! sudo's `secure_path` included. The network is NOT private: a mount namespace shares the
//! machine's loopback, so a service started on the host at 127.0.0.1:PORT is reachable from
//! the test (and from salve) at 127.0.0.1:PORT.
//!
//! Lifetime: sshd is PID 1 of its PID namespace. Dropping `SshHost` SIGKILLs it, which makes
//! the kernel kill every process in the namespace (per-connection sshd children, remote
//! commands, services a stand-in started, `exec` shells) before the drop returns.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::child::{ChildGuard, log_tail};

const SSHD: &str = "/usr/sbin/sshd";
/// The login users scripts/testbed/setup-ssh-target.sh creates.
pub const TARGET_USER: &str = "salvetarget";
pub const NO_SUDO_USER: &str = "salvenopw";
/// May sudo only `timeout -k 5 65 systemctl restart *` (the shipped service-restart line).
pub const LIMITED_SUDO_USER: &str = "salvelimited";
/// One login user per login shell (shell name, user), created by setup-ssh-target.sh; each
/// may sudo only `timeout -k 5 15 /usr/local/bin/record-argv *`.
pub const LOGIN_SHELL_USERS: &[(&str, &str)] = &[
    ("bash", "salvesh-bash"),
    ("dash", "salvesh-dash"),
    ("zsh", "salvesh-zsh"),
    ("fish", "salvesh-fish"),
    ("tcsh", "salvesh-tcsh"),
    ("ksh", "salvesh-ksh"),
];
/// sshd logs "Server listening" within ~20 ms; the margin is for a loaded 2-core runner.
const READY_DEADLINE: Duration = Duration::from_secs(15);
const START_ATTEMPTS: u32 = 3;
/// The PATH for `exec` shells: the stand-ins first, as on the target's login PATH.
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One running SSH target. Dropping it kills everything in its namespace, then deletes its
/// directory.
pub struct SshHost {
    // Field order matters: the namespace dies (Drop below) before the directory goes.
    namespace: Option<ChildGuard>,
    /// Host-side PID of sshd, PID 1 of the namespace; `None` only if it could not be read.
    init_pid: Option<u32>,
    ip: Ipv4Addr,
    port: u16,
    host_public_key: String,
    client_key: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl SshHost {
    /// A host on 127.0.0.1.
    pub async fn start() -> SshHost {
        Self::start_on(Ipv4Addr::LOCALHOST).await
    }

    /// A host on another loopback address (127.0.0.2, …: Linux routes all of 127/8 to `lo`
    /// without setup), for tests that need two distinct hosts.
    pub async fn start_on(ip: Ipv4Addr) -> SshHost {
        Self::start_configured(ip, "").await
    }

    /// A host on 127.0.0.1 whose sshd allows at most `max_sessions` sessions (commands) per
    /// connection (`MaxSessions`, default 10), refusing more with "open failed".
    pub async fn start_with_max_sessions(max_sessions: u32) -> SshHost {
        Self::start_configured(
            Ipv4Addr::LOCALHOST,
            &format!("MaxSessions {max_sessions}\n"),
        )
        .await
    }

    /// A host on `ip` with `extra` lines appended to the bed's sshd config.
    async fn start_configured(ip: Ipv4Addr, extra: &str) -> SshHost {
        ensure_bed();
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            // Not under /tmp: the namespace mounts a tmpfs over /tmp, which would hide the
            // config and keys from sshd.
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create sshd dir");
        // sshd reads AuthorizedKeysFile as the target user, who must be able to get to it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod sshd dir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key, "salve-test-host");
        keygen(&client_key, "salve-test-client");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized_keys)
            .expect("write authorized_keys");
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized_keys");
        let host_public_key = public_key_text(&host_key.with_extension("pub"));

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port_on(ip);
            let config =
                write_sshd_config(dir.path(), ip, port, &host_key, &authorized_keys, extra);
            let log_path = dir.path().join(format!("sshd-{attempt}.log"));
            match start_namespace(&config, &log_path).await {
                Started::Ready { guard, init_pid } => {
                    return SshHost {
                        namespace: Some(guard),
                        init_pid,
                        ip,
                        port,
                        host_public_key,
                        client_key,
                        log_path,
                        dir,
                    };
                }
                Started::PortTaken if attempt < START_ATTEMPTS => {
                    eprintln!("sshd attempt {attempt}: port {port} taken, retrying");
                }
                Started::PortTaken => {
                    panic!(
                        "sshd could not bind a free port on {ip} in {START_ATTEMPTS} attempts\n{}",
                        log_tail(&log_path, 30)
                    )
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The address to connect to, e.g. `127.0.0.1`.
    pub fn address(&self) -> String {
        self.ip.to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unprivileged login user with passwordless sudo.
    pub fn user(&self) -> &str {
        TARGET_USER
    }

    /// This host's line for a known_hosts file: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!("[{}]:{} {}", self.ip, self.port, self.host_public_key)
    }

    /// `ssh-ed25519 AAAA…`: this host's public host key.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// Also accepts logins with `client_key` (another host's key, so one executor identity
    /// reaches several hosts). sshd reads authorized_keys at each login: no restart needed.
    pub fn also_authorize(&self, client_key: &Path) {
        use std::io::Write as _;
        let public_key = std::fs::read_to_string(client_key.with_extension("pub"))
            .expect("read client public key");
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .and_then(|mut file| file.write_all(public_key.as_bytes()))
            .expect("append to authorized_keys");
    }

    /// The private key this host authorizes for both target users.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// Runs `shell` with `/bin/sh -c` as root inside this host's namespaces (its private
    /// mounts, its processes): for arranging a test (write a unit file, fill a disk) and
    /// asserting on the host (a sentinel file exists or not). Returns the output whatever the
    /// exit status; the caller asserts.
    pub async fn exec(&self, shell: &str) -> Output {
        let init_pid = self
            .init_pid
            .expect("sshd's PID is unknown, cannot enter its namespace");
        tokio::process::Command::new("nsenter")
            .args(["-t", &init_pid.to_string(), "--mount", "--pid", "--"])
            .args(["/bin/sh", "-c", shell])
            .env_clear()
            .env("PATH", ROOT_PATH)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|error| panic!("nsenter into sshd {init_pid}: {error}"))
    }

    /// `exec`, asserting exit 0, returning stdout as text.
    pub async fn exec_ok(&self, shell: &str) -> String {
        let output = self.exec(shell).await;
        assert!(
            output.status.success(),
            "on the ssh host, `{shell}` failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The end of sshd's log (it logs each accepted login), for assertions and panic messages.
    pub fn sshd_log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }

    /// The whole sshd log.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many SSH logins sshd accepted so far (one per control master).
    pub fn accepted_logins(&self) -> usize {
        self.sshd_log().matches("Accepted publickey for").count()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        let Some(mut guard) = self.namespace.take() else {
            return;
        };
        if let Some(init_pid) = self.init_pid {
            // SIGKILL to a namespace's PID 1 makes the kernel kill every process in it; the
            // init exits only after they are all gone, and unshare (waiting for it) then exits.
            let _ = Command::new("kill")
                .args(["-KILL", &init_pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = guard.wait();
        }
        // Without the PID (or as a last resort) kill unshare itself: --kill-child makes the
        // kernel SIGKILL the namespace's init when unshare dies.
        guard.kill_and_reap();
    }
}

/// A known_hosts file in `dir` listing exactly these hosts.
pub fn write_known_hosts(dir: &Path, hosts: &[&SshHost]) -> PathBuf {
    let path = dir.join("known_hosts");
    let text: String = hosts
        .iter()
        .map(|host| format!("{}\n", host.known_hosts_line()))
        .collect();
    std::fs::write(&path, text).expect("write known_hosts");
    path
}

/// A temporary directory with a short path (under /tmp), for control sockets: Unix socket
/// paths are limited to ~107 bytes and the target dir can be deep.
pub fn short_tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("salve-")
        .tempdir_in("/tmp")
        .expect("create short tempdir")
}

/// Panics, saying how to fix it, unless this machine can host the SSH test bed. Creates
/// `/run/sshd` if it is missing (sshd refuses to start without it; without systemd nothing
/// creates it after a reboot).
pub fn ensure_bed() {
    let missing = |what: String| -> ! {
        panic!("test bed missing: run scripts/test ({what})");
    };
    for binary in [SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/bin/sudo"] {
        if !Path::new(binary).is_file() {
            missing(format!("{binary} not found"));
        }
    }
    for binary in ["unshare", "nsenter"] {
        let found = Command::new("which")
            .arg(binary)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            missing(format!("{binary} (util-linux) not on PATH"));
        }
    }
    let shell_users = LOGIN_SHELL_USERS.iter().map(|(_, user)| *user);
    for user in [TARGET_USER, NO_SUDO_USER, LIMITED_SUDO_USER]
        .into_iter()
        .chain(shell_users)
    {
        let exists = Command::new("getent")
            .args(["passwd", user])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !exists {
            missing(format!("user {user} does not exist"));
        }
    }
    for drop_in in [
        "/etc/sudoers.d/salve-testbed",
        "/etc/sudoers.d/salve-testbed-shells",
    ] {
        if !Path::new(drop_in).is_file() {
            missing(format!("{drop_in} not found"));
        }
    }
    for stand_in in ["systemctl", "record-argv"] {
        if !Path::new(&bed_bin()).join(stand_in).is_file() {
            missing(format!("{}/{stand_in} not found", bed_bin().display()));
        }
    }
    if let Err(error) = std::fs::create_dir_all("/run/sshd") {
        missing(format!("cannot create /run/sshd: {error}"));
    }
}

/// The repo's stand-in binaries, mounted over the target's /usr/local/bin.
fn bed_bin() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The host's private tmpfs over /tmp would hide a checkout there (and the target dir).
    for (what, path) in [
        ("checkout", repo),
        ("target dir", Path::new(env!("CARGO_TARGET_TMPDIR"))),
    ] {
        assert!(
            !path.starts_with("/tmp") && !path.starts_with("/var/tmp"),
            "the SSH test hosts mount a private /tmp and /var/tmp, which hides this {what} \
             ({}): move it out of /tmp",
            path.display()
        );
    }
    repo.join("tests/bed/bin")
}

enum Started {
    Ready {
        guard: ChildGuard,
        init_pid: Option<u32>,
    },
    PortTaken,
}

/// Starts `unshare … sshd` and waits for sshd to listen. Any failure other than a lost port
/// race panics with sshd's log.
async fn start_namespace(config: &Path, log_path: &Path) -> Started {
    // `sshd -t` first: a config error then reads as one clear line, not a dead process.
    let check = Command::new(SSHD)
        .args(["-t", "-f"])
        .arg(config)
        .output()
        .expect("run sshd -t");
    assert!(
        check.status.success(),
        "sshd -t -f {} rejected the bed's config: {}",
        config.display(),
        String::from_utf8_lossy(&check.stderr)
    );

    let bed_bin = bed_bin();
    // Mounts first (set -e: a failed mount fails the start loudly), then sshd as PID 1.
    // Paths are passed as positional parameters, never spliced into the script.
    let script = r#"set -eu
mount -t tmpfs -o size=16m,mode=1777 salve-tmp /tmp
mount -t tmpfs -o size=16m,mode=1777 salve-var-tmp /var/tmp
mount -t tmpfs -o size=16m,mode=0755 salve-var-log /var/log
mkdir -p /var/log/journal
mount -t tmpfs -o size=16m,mode=0755 salve-apt-cache /var/cache/apt
mkdir -p /var/cache/apt/archives/partial
mount -t tmpfs -o size=16m,mode=0755 salve-srv /srv
# Unit state for the systemctl stand-in; whoever runs it (the target user or root via sudo)
# must be able to write there.
mkdir -m 0777 /srv/units
mount --bind "$1" /usr/local/bin
mount -o remount,bind,ro /usr/local/bin
exec /usr/sbin/sshd -D -e -f "$2"
"#;
    let log = std::fs::File::create(log_path).expect("create sshd log");
    let spawned = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            script,
            "salve-ssh-host",
        ])
        .arg(&bed_bin)
        .arg(config)
        .env_clear()
        .env("PATH", ROOT_PATH)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn();
    let mut guard =
        ChildGuard::new(spawned.unwrap_or_else(|error| panic!("spawn unshare: {error}")));

    let started = Instant::now();
    loop {
        let log_text = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(status) = guard.exited() {
            if log_text.contains("Address already in use") {
                return Started::PortTaken;
            }
            panic!(
                "sshd exited before it listened ({status})\n{}",
                log_tail(log_path, 40)
            );
        }
        if log_text.contains("Server listening on") {
            let init_pid = namespace_init_pid(guard.pid());
            return Started::Ready { guard, init_pid };
        }
        if started.elapsed() > READY_DEADLINE {
            panic!(
                "sshd not listening after {READY_DEADLINE:?}\n{}",
                log_tail(log_path, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The host-side PID of unshare's one child (the namespace's PID 1, which exec'd sshd).
fn namespace_init_pid(unshare_pid: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn write_sshd_config(
    dir: &Path,
    ip: Ipv4Addr,
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join("sshd_config");
    let shell_users: Vec<&str> = LOGIN_SHELL_USERS.iter().map(|(_, user)| *user).collect();
    let mut text = format!(
        "# sshd for one salve test (tests/it/support/sshd.rs)\n\
         ListenAddress {ip}:{port}\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PidFile {pid_file}\n\
         # Key login only, as the bed's users; no PAM (there is no login stack to speak of here),\n\
         # and StrictModes off because the bed's files live in the build tree.\n\
         UsePAM no\n\
         StrictModes no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         AllowUsers {TARGET_USER} {NO_SUDO_USER} {LIMITED_SUDO_USER} {shell_users}\n\
         PrintMotd no\n\
         UseDNS no\n\
         # One sshd may play many inventory hosts (the storm test: 100), and salve opens up to\n\
         # engine.max_parallel masters at once; the default MaxStartups (10:30:100) would\n\
         # randomly drop logins beyond 10 in progress.\n\
         MaxStartups 100:30:200\n",
        host_key = host_key.display(),
        authorized_keys = authorized_keys.display(),
        pid_file = dir.join("sshd.pid").display(),
        shell_users = shell_users.join(" "),
    );
    text.push_str(extra);
    std::fs::write(&path, text).expect("write sshd_config");
    path
}

fn keygen(path: &Path, comment: &str) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        output.status.success(),
        "ssh-keygen {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ssh-ed25519 AAAA…` from a `.pub` file (type and key, without the comment).
fn public_key_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A port that was free on `ip` a moment ago; `start_on` retries when the race is lost.
fn free_port_on(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(ip, 0))
        .unwrap_or_else(|error| panic!("bind {ip}:0: {error}"));
    listener.local_addr().expect("local_addr").port()
}

/// Host-side PIDs of ssh processes whose command line mentions `control_dir`: the control
/// masters this test's executor started (ssh runs as `ssh -E DIR/.ssh-connectionX/log -S …`).
pub fn master_pids(control_dir: &Path) -> Vec<u32> {
    let needle = control_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if args.first().is_some_and(|program| program.ends_with("ssh"))
            && args.iter().any(|arg| arg.contains(&needle))
        {
            pids.push(pid);
        }
    }
    pids
}
