//! A real HTTPS server for HTTP checks: Python's `http.server` behind `ssl`, with a
//! certificate from a fresh test CA that nothing trusts (so a verifying client refuses it).
//! `/ok` answers 200 with `OK_BODY`, `/redirect` answers 302 to `/ok`, `/hang` never answers.
//! It never skips: a missing python3 or openssl panics with "test bed missing".

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::child::{ChildGuard, log_tail};
use super::smtp::{TestCertificates, ensure_smtp_bed};

/// The body of `/ok`.
pub const OK_BODY: &str = "salve-check-body: all good";
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// argv: certificate, key, ready file (gets the port once the server listens).
const SERVER: &str = r#"
import http.server, os, ssl, sys, time
cert, key, ready = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/hang":
            time.sleep(600)
        else:
            body = os.environ["OK_BODY"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
        sys.stderr.flush()
http.server.ThreadingHTTPServer.daemon_threads = True
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(ready + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(ready + ".tmp", ready)
server.serve_forever()
"#;

/// A running HTTPS endpoint on 127.0.0.1. Dropping it kills the server, then deletes its
/// directory.
pub struct HttpsEndpoint {
    // Held only to be dropped, in this order: the process dies before its directory goes.
    _child: ChildGuard,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl HttpsEndpoint {
    pub async fn start() -> HttpsEndpoint {
        let python = ensure_smtp_bed();
        let dir = tempfile::Builder::new()
            .prefix("salve-https-")
            .tempdir()
            .expect("create HTTPS tempdir");
        let certificates = TestCertificates::generate(dir.path());
        let ready = dir.path().join("ready");
        let log_path = dir.path().join("https-server.log");
        let log = std::fs::File::create(&log_path).expect("create HTTPS log");
        let spawned = Command::new(&python)
            .args(["-c", SERVER])
            .arg(&certificates.server_cert)
            .arg(&certificates.server_key)
            .arg(&ready)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("OK_BODY", OK_BODY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn();
        let mut child = ChildGuard::new(
            spawned.unwrap_or_else(|error| panic!("spawn {}: {error}", python.display())),
        );
        let port = child
            .wait_for_ready_port("HTTPS server", &ready, &log_path, READY_DEADLINE)
            .await;
        HttpsEndpoint {
            _child: child,
            port,
            log_path,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The server's request log, for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }
}
