//! A real SMTP server per test: Debian's aiosmtpd (tests/bed/smtp-server.py) on a free
//! loopback port, plain, STARTTLS or implicit TLS, with optional AUTH, capturing every mail
//! as JSON. TLS uses a fresh test CA per server (openssl). It never skips: a missing
//! python3-aiosmtpd or openssl panics with "test bed missing: run scripts/test".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use super::child::ChildGuard;

/// The AUTH credentials the server accepts (tests/bed/smtp-server.py).
pub const SMTP_TEST_USER: &str = "salve-test";
pub const SMTP_TEST_PASSWORD: &str = "s3cret-test-password";

const DEFAULT_PYTHON: &str = "/usr/bin/python3";
const OPENSSL: &str = "/usr/bin/openssl";
/// aiosmtpd is ready in ~200 ms; the margin is for a loaded 2-core runner.
const READY_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS and require it before MAIL.
    pub starttls: bool,
    /// TLS from the first byte (SMTPS).
    pub implicit_tls: bool,
    /// Require AUTH with `SMTP_TEST_USER`/`SMTP_TEST_PASSWORD` (over TLS when TLS is on).
    pub auth: bool,
}

/// One mail as the server received it.
#[derive(Debug, Clone, Deserialize)]
pub struct CapturedMail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The decoded text/plain body.
    pub body: String,
    /// Header name and value, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// Whether the session was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The AUTH user, when the client authenticated.
    pub auth_login: Option<String>,
}

impl CapturedMail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A running SMTP server. Dropping it kills the process, then deletes its directory.
pub struct SmtpServer {
    // Field order matters: the process dies before its directory is removed. Held only to
    // be dropped (which kills it).
    _child: ChildGuard,
    port: u16,
    ca_file: Option<PathBuf>,
    untrusted_ca_file: Option<PathBuf>,
    dir: TempDir,
}

impl SmtpServer {
    pub async fn start(options: SmtpOptions) -> SmtpServer {
        Self::start_with_password(options, SMTP_TEST_PASSWORD).await
    }

    /// Like `start`, but AUTH accepts `SMTP_TEST_USER` with `password` instead of
    /// `SMTP_TEST_PASSWORD`: for tests that must know no other copy of it exists.
    pub async fn start_with_password(options: SmtpOptions, password: &str) -> SmtpServer {
        assert!(
            !(options.starttls && options.implicit_tls),
            "SmtpOptions: choose starttls or implicit_tls, not both"
        );
        let python = ensure_smtp_bed();
        let dir = tempfile::Builder::new()
            .prefix("salve-smtp-")
            .tempdir()
            .expect("create SMTP tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bed/smtp-server.py");
        let mut command = Command::new(&python);
        command.arg(&script).arg("--dir").arg(dir.path());
        let tls = options.starttls || options.implicit_tls;
        let (mut ca_file, mut untrusted_ca_file) = (None, None);
        if tls {
            let certificates = TestCertificates::generate(dir.path());
            command
                .arg(if options.starttls {
                    "--starttls"
                } else {
                    "--implicit-tls"
                })
                .arg("--tlscert")
                .arg(&certificates.server_cert)
                .arg("--tlskey")
                .arg(&certificates.server_key);
            ca_file = Some(certificates.ca);
            untrusted_ca_file = Some(certificates.untrusted_ca);
        }
        if options.auth {
            command.arg("--auth").arg("--password").arg(password);
        }
        let log_path = dir.path().join("smtp-server.log");
        let log = std::fs::File::create(&log_path).expect("create SMTP log");
        let spawned = command
            // A clean environment: no PYTHON* variable from a developer's pyenv leaks in.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn();
        let mut child = ChildGuard::new(spawned.unwrap_or_else(|error| {
            panic!("spawn {} {}: {error}", python.display(), script.display())
        }));

        let ready = dir.path().join("ready");
        let port = child
            .wait_for_ready_port("SMTP server", &ready, &log_path, READY_DEADLINE)
            .await;
        SmtpServer {
            _child: child,
            port,
            ca_file,
            untrusted_ca_file,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA that signed the server's certificate (TLS servers only).
    pub fn ca_file(&self) -> &Path {
        self.ca_file
            .as_deref()
            .expect("ca_file: this SMTP server was started without TLS")
    }

    /// A CA that did NOT sign the server's certificate: a client trusting only it must
    /// refuse the server.
    pub fn untrusted_ca_file(&self) -> &Path {
        self.untrusted_ca_file
            .as_deref()
            .expect("untrusted_ca_file: this SMTP server was started without TLS")
    }

    /// Every mail accepted so far, oldest first.
    /// Waits (up to 30 s) until at least `count` mails arrived, and returns them all.
    pub async fn wait_for_mails(&self, count: usize) -> Vec<CapturedMail> {
        super::wait_until(
            Duration::from_secs(30),
            &format!("{count} mail(s) at the SMTP server"),
            || {
                let mails = self.messages();
                async move { (mails.len() >= count).then_some(mails) }
            },
        )
        .await
    }

    pub fn messages(&self) -> Vec<CapturedMail> {
        let mail_dir = self.dir.path().join("mail");
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&mail_dir) {
            Ok(entries) => entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect(),
            Err(_) => return Vec::new(),
        };
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
                serde_json::from_str(&text)
                    .unwrap_or_else(|error| panic!("{}: {error}: {text}", path.display()))
            })
            .collect()
    }

    /// While failing, the server answers MAIL and DATA with `451 4.3.0 try again later`.
    pub fn set_failing(&self, failing: bool) {
        let switch = self.dir.path().join("fail");
        if failing {
            std::fs::write(&switch, b"").expect("create SMTP fail switch");
        } else if let Err(error) = std::fs::remove_file(&switch)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            panic!("remove SMTP fail switch: {error}");
        }
    }
}

/// The interpreter with Debian's aiosmtpd, checked once per test process.
pub(super) fn ensure_smtp_bed() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let python = std::env::var_os("TESTBED_PYTHON3")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PYTHON));
            let imports = Command::new(&python)
                .args(["-c", "import aiosmtpd.controller"])
                .env_clear()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !imports {
                panic!(
                    "test bed missing: run scripts/test ({} cannot import aiosmtpd; \
                     install python3-aiosmtpd)",
                    python.display()
                );
            }
            if !Path::new(OPENSSL).is_file() {
                panic!("test bed missing: run scripts/test ({OPENSSL} not found)");
            }
            python
        })
        .clone()
}

/// A per-server PKI: a test CA (CA:TRUE), a server certificate it signed (CA:FALSE, SAN
/// localhost and 127.0.0.1: what rustls accepts), and an unrelated CA.
pub(super) struct TestCertificates {
    pub(super) ca: PathBuf,
    pub(super) untrusted_ca: PathBuf,
    pub(super) server_cert: PathBuf,
    pub(super) server_key: PathBuf,
}

const CA_CONFIG: &str = "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
[dn]\nCN = salve test CA\n\
[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier = hash\n";

const SERVER_EXTENSIONS: &str = "basicConstraints = critical,CA:FALSE\n\
subjectAltName = DNS:localhost,IP:127.0.0.1\nkeyUsage = critical,digitalSignature\n\
extendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\n\
authorityKeyIdentifier = keyid\n";

impl TestCertificates {
    pub(super) fn generate(dir: &Path) -> TestCertificates {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).expect("create pki dir");
        std::fs::write(pki.join("ca.cnf"), CA_CONFIG).expect("write ca.cnf");
        // Another name too: with the same name a verifier would pick it as the issuer and
        // fail on the signature instead of reporting an unknown issuer.
        std::fs::write(
            pki.join("untrusted-ca.cnf"),
            CA_CONFIG.replace("salve test CA", "salve untrusted test CA"),
        )
        .expect("write untrusted-ca.cnf");
        std::fs::write(pki.join("server.ext"), SERVER_EXTENSIONS).expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for name in ["ca", "untrusted-ca"] {
            openssl(
                &pki,
                &[
                    &[
                        "req",
                        "-x509",
                        "-config",
                        &format!("{name}.cnf"),
                        "-days",
                        "2",
                    ][..],
                    &ec[..],
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.pem"),
                    ][..],
                ]
                .concat(),
            );
        }
        openssl(
            &pki,
            &[
                &["req", "-new", "-subj", "/CN=localhost"][..],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr"][..],
            ]
            .concat(),
        );
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCertificates {
            ca: pki.join("ca.pem"),
            untrusted_ca: pki.join("untrusted-ca.pem"),
            server_cert: pki.join("server.pem"),
            server_key: pki.join("server.key"),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap_or_else(|error| panic!("run openssl {args:?}: {error}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
