//! A real Prometheus Alertmanager on a free loopback port, routing every alert to one webhook,
//! alone or as a gossip-clustered HA pair. It never skips: when the binary is missing,
//! starting it panics with how to get the bed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use super::child::{ChildGuard, log_tail};
use super::{free_port, http_client};

const DEFAULT_BINARY: &str = "/usr/bin/prometheus-alertmanager";
/// Ready takes ~150 ms on an idle machine; the margin is for a loaded 2-core CI runner.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts with a fresh port when another process took the port between probe and bind.
const START_ATTEMPTS: u32 = 3;
/// Gossip every 10 ms instead of Alertmanager's 200 ms unless a test says otherwise: the
/// notification log (what each replica already sent) spreads within a few ms, and settling,
/// which polls every ten gossip intervals, takes ~0.5 s instead of ~6 s.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
/// Alertmanager's default peer timeout (replica N waits N × this before sending).
const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// Full state syncs (which also carry the notification log) this many gossip intervals
/// apart: 1 s with the test default instead of Alertmanager's 1 m, and slowed down together
/// with gossip when a test wants replicas that learn late what the others sent.
const PUSHPULL_PER_GOSSIP: u32 = 100;
/// An upper bound on settling (default 1 m). With fast gossip a replica settles well before;
/// with slow gossip it stops waiting here, which only affects how well it deduplicates.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a pair may take to find each other and settle on a loaded 2-core runner.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(20);

/// Gossip clustering for one replica: its own gossip port is picked at start; `peers` are
/// the gossip addresses of replicas already running.
#[derive(Clone)]
struct ClusterOptions {
    peers: Vec<SocketAddr>,
    /// `--cluster.peer-timeout`: replica number N waits N × this before it sends, and sends
    /// only if the notification log gossiped by the others does not show it sent already.
    peer_timeout: Duration,
    /// `--cluster.gossip-interval`, also the pace at which notification-log entries spread
    /// (full syncs aside).
    gossip_interval: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            peers: Vec::new(),
            peer_timeout: PEER_TIMEOUT,
            gossip_interval: GOSSIP_INTERVAL,
        }
    }
}

/// How to configure the Alertmanager before it starts. The defaults suit most tests: first
/// notification at once (`group_wait: 0s`), resolves within ~1 s (`group_interval: 1s`), no
/// re-sends during a test (`repeat_interval: 1h`), clustering disabled.
#[derive(Clone)]
pub struct AlertmanagerBuilder {
    webhook_url: String,
    bearer_token: Option<String>,
    basic_auth: Option<(String, String)>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
    cluster: Option<ClusterOptions>,
    /// A second receiver every alert also goes to (`continue: true`), with its own group_wait.
    also_notify: Option<(String, Duration)>,
    /// More webhooks of the salve receiver (every salve replica), with the same credentials.
    more_webhooks: Vec<String>,
}

impl AlertmanagerBuilder {
    /// The salve receiver also notifies these URLs (each salve replica), as an operator
    /// lists every replica under one receiver.
    pub fn more_webhooks(mut self, urls: &[String]) -> Self {
        self.more_webhooks.extend(urls.iter().cloned());
        self
    }

    /// Every alert also goes to `webhook_url` (a "human" receiver, the alert's normal
    /// route), first after `group_wait` there, then every `group_interval` like the first.
    pub fn also_notify(mut self, webhook_url: &str, group_wait: Duration) -> Self {
        self.also_notify = Some((webhook_url.to_owned(), group_wait));
        self
    }

    /// Webhook calls carry `Authorization: Bearer TOKEN` (Alertmanager's `http_config.authorization`).
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.bearer_token = Some(token.to_owned());
        self
    }

    /// Webhook calls carry HTTP basic auth (Alertmanager's `http_config.basic_auth`).
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.basic_auth = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// Lower it (e.g. to 2 s) for tests about re-sent notifications and idempotence.
    pub fn repeat_interval(mut self, value: Duration) -> Self {
        self.repeat_interval = value;
        self
    }

    /// Turns on HA clustering: gossip on a free loopback port, joining `peers` (the
    /// [`Alertmanager::cluster_address`] of replicas already running; empty for the first).
    /// Gossip and settling are sped up for tests; the peer timeout stays Alertmanager's 15 s
    /// unless [`peer_timeout`](Self::peer_timeout) changes it.
    pub fn cluster(mut self, peers: &[SocketAddr]) -> Self {
        self.cluster_options().peers = peers.to_vec();
        self
    }

    /// `--cluster.peer-timeout` (implies [`cluster`](Self::cluster)). Below the time the
    /// notification log takes to gossip, the later replica does not yet know the first one
    /// sent, and sends its own copy: the at-least-once case a receiver must absorb.
    pub fn peer_timeout(mut self, value: Duration) -> Self {
        self.cluster_options().peer_timeout = value;
        self
    }

    /// `--cluster.gossip-interval` (implies [`cluster`](Self::cluster)); 10 ms by default.
    /// Membership does not depend on it (joining is a direct state exchange), but how soon a
    /// replica learns what the others already sent does.
    pub fn gossip_interval(mut self, value: Duration) -> Self {
        self.cluster_options().gossip_interval = value;
        self
    }

    fn cluster_options(&mut self) -> &mut ClusterOptions {
        self.cluster.get_or_insert_with(ClusterOptions::default)
    }

    /// Starts two clustered replicas with this configuration, the second joining the first,
    /// and waits until each lists both as peers and has settled.
    pub async fn start_pair(self) -> (Alertmanager, Alertmanager) {
        let first = self.clone().cluster(&[]).start().await;
        let first_gossip = first
            .cluster_address()
            .expect("a clustered replica has a gossip address");
        let second = self.cluster(&[first_gossip]).start().await;
        for replica in [&first, &second] {
            replica.wait_for_cluster(2).await;
        }
        (first, second)
    }

    /// Writes the config, starts Alertmanager on a free port and waits for `/-/ready`.
    pub async fn start(self) -> Alertmanager {
        let binary = alertmanager_binary();
        let dir = tempfile::Builder::new()
            .prefix("salve-alertmanager-")
            .tempdir()
            .expect("create Alertmanager tempdir");
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, self.config_yaml()).expect("write alertmanager.yml");

        for attempt in 1..=START_ATTEMPTS {
            match start_once(
                &binary,
                &config_path,
                dir.path(),
                attempt,
                self.cluster.as_ref(),
            )
            .await
            {
                Started::Ready {
                    child,
                    port,
                    cluster_port,
                    log_path,
                } => {
                    return Alertmanager {
                        child,
                        port,
                        cluster_port,
                        log_path,
                        _dir: dir,
                    };
                }
                Started::PortTaken { log_path } if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "alertmanager attempt {attempt}: port taken, retrying\n{}",
                        log_tail(&log_path, 5)
                    );
                }
                Started::PortTaken { log_path } => panic!(
                    "Alertmanager could not bind a free port in {START_ATTEMPTS} attempts\n{}",
                    log_tail(&log_path, 30)
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The config as YAML. Strings are written as JSON strings, which YAML reads verbatim, so a
    /// URL or credential with special characters needs no YAML escaping rules here.
    fn config_yaml(&self) -> String {
        let quote = |text: &str| serde_json::to_string(text).expect("quote string");
        let http_config = match (&self.bearer_token, &self.basic_auth) {
            (Some(_), Some(_)) => {
                panic!("Alertmanager webhook: choose bearer_token or basic_auth, not both")
            }
            (Some(token), None) => format!(
                "        http_config:\n          authorization:\n            type: Bearer\n            credentials: {}\n",
                quote(token)
            ),
            (None, Some((username, password))) => format!(
                "        http_config:\n          basic_auth:\n            username: {}\n            password: {}\n",
                quote(username),
                quote(password)
            ),
            (None, None) => String::new(),
        };
        let (routes, also) = match &self.also_notify {
            Some((url, group_wait)) => (
                format!(
                    "  routes:\n    - receiver: salve\n      continue: true\n    - receiver: also\n      group_wait: {}\n",
                    go_duration(*group_wait)
                ),
                format!(
                    "  - name: also\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
                    quote(url)
                ),
            ),
            None => (String::new(), String::new()),
        };
        let webhooks: String = std::iter::once(&self.webhook_url)
            .chain(&self.more_webhooks)
            .map(|url| {
                format!(
                    "      - url: {}\n        send_resolved: true\n{http_config}",
                    quote(url)
                )
            })
            .collect();
        format!(
            "route:\n  receiver: salve\n  group_by: ['alertname', 'instance']\n  group_wait: {}\n  group_interval: {}\n  repeat_interval: {}\n{routes}receivers:\n  - name: salve\n    webhook_configs:\n{webhooks}{also}",
            go_duration(self.group_wait),
            go_duration(self.group_interval),
            go_duration(self.repeat_interval),
        )
    }
}

/// A running Alertmanager. Dropping it kills the process (by PID) and deletes its directory.
pub struct Alertmanager {
    // Field order matters: the process dies before its directory is removed.
    child: ChildGuard,
    port: u16,
    cluster_port: Option<u16>,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Alertmanager {
    /// A builder for tests that need other intervals than the defaults.
    pub fn builder(webhook_url: &str) -> AlertmanagerBuilder {
        AlertmanagerBuilder {
            webhook_url: webhook_url.to_owned(),
            bearer_token: None,
            basic_auth: None,
            group_wait: Duration::ZERO,
            group_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(3600),
            cluster: None,
            also_notify: None,
            more_webhooks: Vec::new(),
        }
    }

    /// Starts an Alertmanager that sends every alert to `webhook_url` with the given auth.
    pub async fn start(
        webhook_url: &str,
        bearer_token: Option<&str>,
        basic_auth: Option<(&str, &str)>,
    ) -> Alertmanager {
        let mut builder = Self::builder(webhook_url);
        if let Some(token) = bearer_token {
            builder = builder.bearer_token(token);
        }
        if let Some((username, password)) = basic_auth {
            builder = builder.basic_auth(username, password);
        }
        builder.start().await
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The gossip address other replicas join, when clustered.
    pub fn cluster_address(&self) -> Option<SocketAddr> {
        self.cluster_port
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// `GET /api/v2/status` → `cluster`: `status` (`ready`, `settling`, `disabled`), `name`
    /// and `peers` (this replica included).
    pub async fn cluster_status(&self) -> Value {
        super::get_json(&format!("{}/api/v2/status", self.url())).await["cluster"].take()
    }

    /// Polls until this replica has settled and sees `peers` members (itself included).
    pub async fn wait_for_cluster(&self, peers: usize) {
        let what = format!("Alertmanager {} to settle with {peers} peers", self.url());
        let started = Instant::now();
        loop {
            let cluster = self.cluster_status().await;
            let seen = cluster["peers"].as_array().map_or(0, Vec::len);
            if cluster["status"] == "ready" && seen == peers {
                return;
            }
            if started.elapsed() > CLUSTER_DEADLINE {
                panic!(
                    "timed out after {CLUSTER_DEADLINE:?} waiting for {what}; status: {cluster}\n{}",
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fires an alert that starts now. Like Prometheus, the sender stamps `startsAt`; it is
    /// whole milliseconds because that is the precision `GET /api/v2/alerts` reports, which
    /// lets `resolve_alert` send back exactly the same start.
    pub async fn post_alert(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let alert = json!({
            "labels": to_map(labels),
            "annotations": to_map(annotations),
            "startsAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        self.post_alerts_json(json!([alert])).await;
    }

    /// Resolves the alert with these labels: the same labels, the firing alert's `startsAt`,
    /// and `endsAt` just in the past. Sending `startsAt` matters: Alertmanager merges the
    /// resolve into the firing alert only if `endsAt` is after that alert's start, and a
    /// resolve posted in the same millisecond as the fire would otherwise become a new alert
    /// with its own `startsAt`, which salve would see as another incident. The start is read
    /// back from Alertmanager (millisecond precision), so alerts posted through
    /// `post_alerts_json` with finer `startsAt` should be resolved through it too.
    pub async fn resolve_alert(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let labels = to_map(labels);
        let now = Utc::now();
        let mut alert = json!({ "labels": labels, "annotations": to_map(annotations) });
        let firing_start = self
            .alerts()
            .await
            .into_iter()
            .find(|held| held["labels"].as_object() == Some(&labels))
            .and_then(|held| held["startsAt"].as_str().map(str::to_owned))
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
            .map(|start| start.with_timezone(&Utc));
        let ends_at = match firing_start {
            Some(start) => {
                alert["startsAt"] = Value::from(start.to_rfc3339_opts(SecondsFormat::Nanos, true));
                // Strictly after the start (so it overlaps) and not in the future (so resolved).
                (now - chrono::Duration::milliseconds(1))
                    .max(start + chrono::Duration::nanoseconds(1))
            }
            None => now - chrono::Duration::milliseconds(1),
        };
        alert["endsAt"] = Value::from(ends_at.to_rfc3339_opts(SecondsFormat::Nanos, true));
        self.post_alerts_json(json!([alert])).await;
    }

    /// POSTs a raw `/api/v2/alerts` body (a JSON list) for tests that need full control over
    /// `startsAt`, `endsAt` or `generatorURL`. Panics unless Alertmanager accepts it.
    pub async fn post_alerts_json(&self, alerts: Value) {
        let url = format!("{}/api/v2/alerts", self.url());
        let response = http_client()
            .post(&url)
            .json(&alerts)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {url}: {error}\n{}", self.stderr_tail()));
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            panic!(
                "POST {url}: {status}: {body}\nsent: {alerts}\n{}",
                self.stderr_tail()
            );
        }
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager currently holds.
    pub async fn alerts(&self) -> Vec<Value> {
        match super::get_json(&format!("{}/api/v2/alerts", self.url())).await {
            Value::Array(alerts) => alerts,
            other => panic!("GET /api/v2/alerts: expected a list, got {other}"),
        }
    }

    /// `GET /api/v2/silences`: every silence this replica knows (gossiped ones included).
    pub async fn silences(&self) -> Vec<Value> {
        match super::get_json(&format!("{}/api/v2/silences", self.url())).await {
            Value::Array(silences) => silences,
            other => panic!("GET /api/v2/silences: expected a list, got {other}"),
        }
    }

    /// The silence `id` as this replica lists it, if it knows it.
    pub async fn silence(&self, id: &str) -> Option<Value> {
        self.silences().await.into_iter().find(|s| s["id"] == id)
    }

    /// Creates a silence as a human would (`created_by`, `comment`) on these labels for an
    /// hour; returns its id.
    pub async fn create_silence(
        &self,
        labels: &[(&str, &str)],
        created_by: &str,
        comment: &str,
    ) -> String {
        let matchers: Vec<Value> = labels
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value, "isRegex": false, "isEqual": true }))
            .collect();
        let now = Utc::now();
        let body = json!({
            "matchers": matchers,
            "startsAt": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true),
            "createdBy": created_by,
            "comment": comment,
        });
        let url = format!("{}/api/v2/silences", self.url());
        let response = http_client()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {url}: {error}"));
        let status = response.status();
        let answer: Value = response.json().await.expect("silence answer is JSON");
        assert!(status.is_success(), "POST {url}: {status}: {answer}");
        answer["silenceID"].as_str().expect("silenceID").to_owned()
    }

    /// The end of Alertmanager's log, to put in a panic message.
    pub fn stderr_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }
}

enum Started {
    Ready {
        child: ChildGuard,
        port: u16,
        cluster_port: Option<u16>,
        log_path: PathBuf,
    },
    PortTaken {
        log_path: PathBuf,
    },
}

/// One start on one free port (two when clustered: web and gossip). Any failure other than a
/// lost port race panics with the log.
async fn start_once(
    binary: &Path,
    config_path: &Path,
    dir: &Path,
    attempt: u32,
    cluster: Option<&ClusterOptions>,
) -> Started {
    let port = free_port();
    let cluster_port = cluster.map(|_| free_port());
    // A fresh storage dir per start: an old notification log could suppress a notification.
    let storage = dir.join(format!("storage-{attempt}"));
    std::fs::create_dir_all(&storage).expect("create storage dir");
    let log_path = dir.join(format!("alertmanager-{attempt}.log"));
    let log = std::fs::File::create(&log_path).expect("create Alertmanager log");
    let address = format!("127.0.0.1:{port}");

    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address={address}"))
        .arg(format!("--web.external-url=http://{address}"));
    match (cluster, cluster_port) {
        (Some(cluster), Some(cluster_port)) => {
            let gossip = format!("127.0.0.1:{cluster_port}");
            // Advertised explicitly: left to itself, Alertmanager looks for a private
            // interface address to announce, which the loopback-only bed must not depend on.
            command
                .arg(format!("--cluster.listen-address={gossip}"))
                .arg(format!("--cluster.advertise-address={gossip}"))
                .arg(format!(
                    "--cluster.gossip-interval={}",
                    go_duration(cluster.gossip_interval)
                ))
                .arg(format!(
                    "--cluster.pushpull-interval={}",
                    go_duration(cluster.gossip_interval * PUSHPULL_PER_GOSSIP)
                ))
                .arg(format!(
                    "--cluster.settle-timeout={}",
                    go_duration(SETTLE_TIMEOUT)
                ))
                .arg(format!(
                    "--cluster.peer-timeout={}",
                    go_duration(cluster.peer_timeout)
                ));
            for peer in &cluster.peers {
                command.arg(format!("--cluster.peer={peer}"));
            }
        }
        // Empty disables clustering: no gossip port to collide, no peers to wait for.
        _ => {
            command.arg("--cluster.listen-address=");
        }
    }
    let spawned = command
        // A clean environment: no proxy or locale from the developer's shell leaks in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn();
    let mut child = ChildGuard::new(
        spawned.unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display())),
    );

    let ready_url = format!("http://{address}/-/ready");
    let client = http_client();
    let started = Instant::now();
    loop {
        if let Some(status) = child.exited() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("address already in use") {
                return Started::PortTaken { log_path };
            }
            panic!(
                "Alertmanager exited before it was ready ({status})\n{}",
                log_tail(&log_path, 40)
            );
        }
        if let Ok(response) = client.get(&ready_url).send().await
            && response.status().is_success()
        {
            return Started::Ready {
                child,
                port,
                cluster_port,
                log_path,
            };
        }
        if started.elapsed() > READY_DEADLINE {
            panic!(
                "Alertmanager not ready at {ready_url} after {READY_DEADLINE:?}\n{}",
                log_tail(&log_path, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Alertmanager binary: `$TESTBED_ALERTMANAGER`, else the Debian path. Missing means the
/// bed was not prepared, which must fail the test, never skip it.
fn alertmanager_binary() -> PathBuf {
    let binary = std::env::var_os("TESTBED_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
    if !binary.is_file() {
        panic!(
            "test bed missing: run scripts/test (Alertmanager binary {} not found; \
             set TESTBED_ALERTMANAGER or install prometheus-alertmanager)",
            binary.display()
        );
    }
    binary
}

/// Formats a duration the way Alertmanager's config parser reads it (`0s`, `1s`, `250ms`).
fn go_duration(value: Duration) -> String {
    let millis = value.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

fn to_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Value::from(*value)))
        .collect()
}
