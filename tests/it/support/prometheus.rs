//! The real Prometheus from Debian (and its `promtool`), scraping one target every second,
//! and a loopback proxy that makes a scraper ask for the text format 0.0.4: Debian's
//! Prometheus (2.42) always prefers OpenMetrics and has no `scrape_protocols` to say otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::child::{ChildGuard, log_tail};
use super::{free_port, http_client};

const DEFAULT_PROMETHEUS: &str = "/usr/bin/prometheus";
const DEFAULT_PROMTOOL: &str = "/usr/bin/promtool";
/// The `Accept` header the proxy sends in place of the scraper's.
pub const TEXT_004_ACCEPT: &str = "text/plain;version=0.0.4";

/// `$TESTBED_PROMTOOL`, else Debian's; missing means the bed was not prepared: a panic.
pub fn promtool() -> PathBuf {
    bed_binary("TESTBED_PROMTOOL", DEFAULT_PROMTOOL)
}

fn bed_binary(variable: &str, default: &str) -> PathBuf {
    let binary = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if !binary.is_file() {
        panic!(
            "test bed missing: run scripts/test ({} not found; set {variable} or install prometheus)",
            binary.display()
        );
    }
    binary
}

/// A running Prometheus scraping one target as job `salve` every second.
pub struct Prometheus {
    _child: ChildGuard,
    base_url: String,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) as job `salve`, every second, with `rule_files` loaded.
    pub async fn scraping(target: &str, rule_files: &[&Path]) -> Prometheus {
        let binary = bed_binary("TESTBED_PROMETHEUS", DEFAULT_PROMETHEUS);
        let dir = tempfile::tempdir().expect("create Prometheus tempdir");
        let rules: Vec<String> = rule_files
            .iter()
            .map(|path| format!("  - {}\n", serde_json::json!(path.display().to_string())))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: salve\n    static_configs:\n      - targets: [{}]\n",
            rules.concat(),
            serde_json::json!(target)
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        for attempt in 0..5 {
            let port = free_port();
            let log_path = dir.path().join(format!("prometheus-{attempt}.log"));
            let log = std::fs::File::create(&log_path).expect("create Prometheus log");
            let spawned = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
            let mut child = ChildGuard::new(spawned);
            let base_url = format!("http://127.0.0.1:{port}");
            let started = Instant::now();
            loop {
                if child.exited().is_some() {
                    let log = log_tail(&log_path, 40);
                    assert!(
                        log.contains("address already in use"),
                        "Prometheus exited before it was ready\n{log}"
                    );
                    break;
                }
                let ready = http_client()
                    .get(format!("{base_url}/-/ready"))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if ready {
                    return Prometheus {
                        _child: child,
                        base_url,
                        log_path,
                        _dir: dir,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "Prometheus not ready after 60s\n{}",
                    log_tail(&log_path, 40)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("Prometheus lost the port race five times");
    }

    /// The `data` of an instant query of `promql` now; panics unless Prometheus answers
    /// `success`.
    pub async fn query(&self, promql: &str) -> Value {
        let response = http_client()
            .get(self.url("/api/v1/query", &[("query", promql)]))
            .send()
            .await
            .expect("query Prometheus");
        let answer: Value = response.json().await.expect("Prometheus answers JSON");
        assert_eq!(
            answer["status"],
            "success",
            "query {promql}: {answer:#}\n{}",
            self.log_tail()
        );
        answer["data"].clone()
    }

    /// `path` on this Prometheus with these query parameters, encoded.
    pub fn url(&self, path: &str, parameters: &[(&str, &str)]) -> reqwest::Url {
        reqwest::Url::parse_with_params(&format!("{}{path}", self.base_url), parameters)
            .expect("a Prometheus URL")
    }

    /// The last lines of Prometheus's log, for a failure message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }
}

/// What the proxy saw of one scrape.
#[derive(Debug, Clone)]
pub struct ProxiedScrape {
    /// The scraper's own `Accept` header (replaced by [`TEXT_004_ACCEPT`]).
    pub scraper_accept: String,
    /// The `Content-Type` the upstream answered with.
    pub content_type: String,
}

/// A loopback HTTP proxy for GET requests that replaces the `Accept` header with
/// [`TEXT_004_ACCEPT`] and records each exchange. Stops when dropped.
pub struct Text004Proxy {
    address: String,
    scrapes: Arc<Mutex<Vec<ProxiedScrape>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Text004Proxy {
    /// Forwards to `upstream` (`host:port`).
    pub async fn to(upstream: &str) -> Text004Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let scrapes = Arc::new(Mutex::new(Vec::new()));
        let (upstream, seen) = (upstream.to_owned(), Arc::clone(&scrapes));
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, seen) = (upstream.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    let _ = proxy_connection(client, &upstream, &seen).await;
                });
            }
        });
        Text004Proxy {
            address,
            scrapes,
            accepting,
        }
    }

    /// `host:port` to scrape instead of the upstream.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn scrapes(&self) -> Vec<ProxiedScrape> {
        self.scrapes.lock().expect("scrapes lock").clone()
    }
}

impl Drop for Text004Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Serves the client's requests one after another, each over a fresh upstream connection.
async fn proxy_connection(
    mut client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<ProxiedScrape>>,
) -> std::io::Result<()> {
    loop {
        let mut head = Vec::new();
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if client.read(&mut byte).await? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut scraper_accept = String::new();
        let mut request = String::new();
        for line in head.split("\r\n").filter(|line| !line.is_empty()) {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            match name.as_str() {
                "accept" => scraper_accept = line["accept:".len()..].trim().to_owned(),
                "connection" => {}
                _ => request.push_str(&format!("{line}\r\n")),
            }
        }
        request.push_str(&format!(
            "Accept: {TEXT_004_ACCEPT}\r\nConnection: close\r\n\r\n"
        ));
        let mut server = TcpStream::connect(upstream).await?;
        server.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        server.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let content_type = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        seen.lock().expect("scrapes lock").push(ProxiedScrape {
            scraper_accept,
            content_type,
        });
        client.write_all(&response).await?;
    }
}
