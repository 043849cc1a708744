//! `salve serve`: `App::build` wires store, recipes, engine and HTTP together (everything
//! that can fail at start); `App::run_until` runs them until a shutdown future resolves,
//! then stops accepting, lets the engine finish its step, and returns. `run` is the
//! binary's `serve`: build, then run until SIGTERM or SIGINT. Tests build an `App` on
//! port 0 and stop it in-process. Nothing here parses alerts or runs commands.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::{Engine, Escalator, Outbox, Remediator};
use crate::http::{
    self, AppState, GrafanaSignature,
    auth::{ApiAccess, Credentials},
};
use crate::metrics::Metrics;
use crate::notify::Channels;
use crate::plan::Mode;
use crate::store::Store;
use crate::verify::Verifier;

/// `salve serve`: builds the app, then runs it until SIGTERM or SIGINT.
pub async fn run(loaded: Config, options: BuildOptions) -> anyhow::Result<()> {
    let app = App::build(loaded, options).await?;
    // Before the ready line: a SIGTERM sent as soon as it is read must find the handler
    // (otherwise the default action kills salve without its graceful stop).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing SIGINT handler")?;
    // SIGHUP reloads (it used to kill salve with 129): the handler is in place before the
    // ready line too.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let reloader = app.reloader();
    let reloads = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config, inventory and recipes");
            let reloader = reloader.clone();
            // Logged and counted by the reloader itself.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    });
    tracing::info!(address = %app.local_addr(), config = %app.origin, store = %app.store_url, mode = app.mode.as_str(), "salve serving");
    // The one line on stdout: scripts and tests wait for it.
    println!("listening on {}", app.local_addr());
    let result = app
        .run_until(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            }
        })
        .await;
    reloads.abort();
    result
}

/// What `salve serve`'s flags change in how the app is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// `--dry-run`: plan and journal, run nothing, whatever `[engine] mode` says.
    pub force_dry_run: bool,
}

/// salve, built and not yet running: the listener is bound (connections wait in its
/// backlog), the store is open and recovered, the stages are wired.
pub struct App {
    address: SocketAddr,
    mode: Mode,
    origin: String,
    store_url: String,
    /// Remove the per-process SSH control dir once the masters are closed.
    remove_control_dir: bool,
    /// The one stop signal: cancelled when `run_until`'s future resolves. `/readyz` and the
    /// webhooks read it directly; the engine and outbox get child tokens.
    shutdown: CancellationToken,
    server: actix_web::dev::Server,
    reloader: Arc<crate::reload::Reloader>,
    engine: Engine,
    outbox: Outbox,
    retention: crate::engine::retention::Retention,
    /// Heartbeat and takeover of dead replicas' runs.
    replica: crate::engine::replica::Replica,
    store: Arc<dyn Store>,
}

impl App {
    /// Does everything that can fail at start: loads the recipes, opens the store, binds
    /// `[server] listen` (port 0 allowed: see `local_addr`), sets up SSH in enforce mode,
    /// and recovers the incidents the last run left mid-remediation.
    pub async fn build(loaded: Config, options: BuildOptions) -> anyhow::Result<App> {
        let settings = &loaded.settings;
        let recipes =
            match crate::reload::load_recipes(&settings.recipes.dir, &loaded.channel_names()) {
                Ok((recipes, no_recipes)) => {
                    if let Some(warning) = no_recipes {
                        tracing::warn!("{warning}");
                    }
                    recipes
                }
                Err(problems) => {
                    for problem in &problems {
                        eprintln!("{problem}");
                    }
                    bail!(
                        "{} problem(s) in recipes; `salve check` lists them",
                        problems.len()
                    );
                }
            };
        // What `salve check` warns about is worth a line at every start too: a recipe that
        // loads but restricts less than its author may think.
        for warning in recipes.warnings() {
            tracing::warn!(recipe_file = %warning.file.display(), line = warning.line, "{}", warning.message);
        }
        for (index, label, message) in recipes.inventory_warnings(&loaded.inventory()) {
            tracing::warn!(host = index, label = %label, "{message}");
        }
        let approve_mode: Vec<&str> = recipes
            .iter()
            .filter(|r| r.approval)
            .map(|r| r.name.as_str())
            .collect();
        if !approve_mode.is_empty() && loaded.approval_key.is_none() {
            bail!(
                "recipe(s) {} say mode = \"approve\" but [approval] key_file (or key) is not set",
                approve_mode.join(", ")
            );
        }
        let store: Arc<dyn Store> =
            crate::store::open(&settings.store, loaded.store_password.clone())
                .await
                .with_context(|| format!("opening store {}", settings.store.url))?;
        let replica = store
            .join_replicas(&replica_name(settings.server.listen), settings.store.lease)
            .await
            .context("joining the replicas sharing the store")?;
        let metrics = Metrics::new();
        let live = crate::reload::Live::new(crate::reload::LiveSet::new(recipes, &loaded));
        let reloader = Arc::new(crate::reload::Reloader::new(
            &loaded,
            live.clone(),
            metrics.clone(),
        ));
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let mode = if options.force_dry_run {
            Mode::DryRun
        } else {
            settings.engine.mode
        };

        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let address = listener.local_addr()?;
        let approval_links = loaded.approval_links(address).map(Arc::new);
        if !loaded.auth_configured() {
            tracing::warn!(%address, "no webhook credentials configured: anyone who can reach this address can post alerts");
        }
        let credentials = Credentials {
            bearer_token: loaded.bearer_token.clone(),
            basic: loaded.basic.clone(),
        };
        // No credential of any kind on loopback: the API is open, and only the Host check
        // keeps a DNS-rebinding web page out of it.
        let loopback_hosts_only = loaded.no_credentials() && address.ip().is_loopback();
        if loaded.api_tokens.is_empty() && !loopback_hosts_only {
            tracing::info!(
                "no [server.api] tokens: the incidents API and breaker resets are closed"
            );
        }
        let state = AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            api: ApiAccess {
                tokens: loaded.api_tokens.clone(),
                webhook: credentials.clone(),
                open: loopback_hosts_only,
            },
            credentials,
            loopback_hosts_only,
            body_timeout: settings.server.body_timeout,
            limits: settings.intake.limits.clone(),
            body_limit_bytes: settings.server.body_limit_bytes,
            grafana: loaded
                .grafana_secret
                .clone()
                .map(|secret| GrafanaSignature {
                    secret,
                    settings: settings.intake.grafana.clone(),
                }),
            wake: wake.clone(),
            shutdown: shutdown.clone(),
            reloader: reloader.clone(),
            approval_links: approval_links.clone(),
            pauses: Arc::new(http::api::pauses::PauseContext {
                windows: loaded.maintenance.clone(),
                hosts: settings
                    .hosts
                    .iter()
                    .map(|host| host.name.clone())
                    .collect(),
                live: Some(live.clone()),
            }),
        };
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let server = http::server(state, listener, workers, settings.server.max_connections)?;

        let executor = match mode {
            Mode::DryRun => None,
            Mode::Enforce => Some(Arc::new(build_executor(&loaded)?)),
        };
        let silencer = crate::silence::Silencer::new(
            &settings.alertmanager,
            loaded.alertmanager_credentials.clone(),
        )
        .context("setting up the Alertmanager client")?
        .map(Arc::new);
        let remediator = executor
            .as_ref()
            .map(|executor| {
                build_remediator(
                    &loaded,
                    executor.clone(),
                    store.clone(),
                    metrics.clone(),
                    wake.clone(),
                )
                .map(|remediator| match &silencer {
                    Some(silencer) => remediator.with_silences(silencer.clone()),
                    None => remediator,
                })
                // Stops taking work the moment salve starts draining.
                .map(|remediator| Arc::new(remediator.stopping_with(shutdown.child_token())))
            })
            .transpose()?;
        let outbox_wake = Arc::new(Notify::new());
        let escalation_routes = Arc::new(settings.escalation.routes());
        let escalator = Arc::new(
            Escalator::new(
                store.clone(),
                remediator.clone(),
                escalation_routes,
                settings.ssh.command_timeout,
                outbox_wake.clone(),
            )
            .with_approval_links(approval_links)
            .with_metrics(metrics.clone())
            .with_live_routes(live.clone()),
        );
        let channels = Channels::new(&settings.escalation.channels)
            .map_err(|e| anyhow::anyhow!("escalation channels: {e}"))?;
        // Every channel's series from the first scrape, so a rate sees its first page.
        for channel in settings.escalation.channels.keys() {
            let label = crate::metrics::ChannelLabel {
                channel: channel.clone(),
            };
            metrics
                .escalation_delivery_failures
                .get_or_create(&label)
                .inc_by(0);
            for reason in crate::incident::EscalationReason::ALL {
                let label = crate::metrics::EscalationLabels {
                    channel: channel.clone(),
                    reason: reason.as_str().to_owned(),
                };
                metrics.escalations.get_or_create(&label).inc_by(0);
            }
        }
        let outbox = Outbox {
            store: store.clone(),
            channels: Arc::new(channels),
            metrics: metrics.clone(),
            wake: outbox_wake,
            policy: crate::engine::outbox::DeliveryPolicy::from_settings(&settings.escalation),
        };
        let recovered =
            crate::engine::recover_interrupted(store.as_ref(), mode, remediator.as_deref())
                .await
                .context("recovering incidents the last run left mid-remediation")?;
        Metrics::saturating_inc_by(
            &metrics
                .incidents
                .get_or_create(&crate::metrics::OutcomeLabel {
                    outcome: crate::incident::State::Interrupted.as_str(),
                }),
            recovered.interrupted as u64,
        );
        if recovered.resumed + recovered.interrupted > 0 {
            tracing::warn!(
                resumed = recovered.resumed,
                interrupted = recovered.interrupted,
                cut_commands = recovered.cut_commands.len(),
                "incidents were mid-remediation when salve last stopped: idempotent ones run again, the others are escalated as interrupted"
            );
        }
        // Before the engine runs: nothing may start beside a command the crash left running.
        if let Some(remediator) = &remediator {
            remediator
                .restore_holds(&recovered.cut_commands)
                .await
                .context("restoring host holds")?;
        }
        // After recovery: silences of fixes the last process left behind end now.
        if let Some(silencer) = &silencer {
            crate::engine::remediate::expire_orphan_silences(store.as_ref(), silencer).await;
        }

        let replica_task = crate::engine::replica::Replica {
            store: store.clone(),
            mode,
            lease: settings.store.lease,
            remediator: remediator.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
        };
        // The count is right from the start (the rate split, the gauge).
        replica_task.beat().await;
        tracing::info!(replica, "serving as replica {replica}");
        let engine = Engine {
            store: store.clone(),
            live,
            mode,
            metrics,
            wake,
            remediator,
            escalator,
            shutdown_grace: settings.engine.shutdown_grace,
        };
        Ok(App {
            address,
            mode,
            origin: loaded.origin.clone(),
            store_url: settings.store.url.clone(),
            remove_control_dir: mode == Mode::Enforce && settings.ssh.control_dir.is_none(),
            shutdown,
            server,
            reloader,
            engine,
            outbox,
            retention: crate::engine::retention::Retention {
                store: store.clone(),
                window: settings.store.retention,
            },
            replica: replica_task,
            store,
        })
    }

    /// Reloads config, inventory and recipes into the running app (SIGHUP, `/-/reload`).
    pub fn reloader(&self) -> Arc<crate::reload::Reloader> {
        self.reloader.clone()
    }

    /// The address the listener is bound to (the real port when `listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` resolves, then drains in order: webhooks and `/readyz`
    /// answer 503 at once (senders retry elsewhere or later), the engine takes no new work
    /// and gives running remediations `shutdown_grace`, the outbox gives deliveries in
    /// flight their grace, the SSH masters close, and last the listener. An error when the
    /// HTTP server stops on its own.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let outbox_task = tokio::spawn(self.outbox.run(self.shutdown.child_token()));
        let retention_task = tokio::spawn(self.retention.run(self.shutdown.child_token()));
        let engine_task = tokio::spawn(self.engine.run(self.shutdown.child_token()));
        let replica_stop = CancellationToken::new();
        let replica_task = tokio::spawn(
            self.replica
                .run(self.shutdown.child_token(), replica_stop.clone()),
        );
        let server_handle = self.server.handle();
        let mut server_task = tokio::spawn(self.server);

        tokio::select! {
            () = shutdown => {}
            result = &mut server_task => {
                self.shutdown.cancel();
                result.context("HTTP server task")?.context("HTTP server")?;
                bail!("HTTP server stopped unexpectedly");
            }
        }
        // Stop acknowledging first, then let running remediations finish within the grace,
        // then close the listener.
        self.shutdown.cancel();
        engine_task.await.context("engine task")?;
        // The lease is renewed through the drain: the remediations let finish still write.
        replica_stop.cancel();
        replica_task.await.context("replica task")?;
        // After the drain: what this replica still claims is free for the others at once.
        if let Err(e) = self.store.leave_replicas().await {
            tracing::warn!(error = %e, "could not end this replica's lease; others take its work over when it runs out");
        }
        outbox_task.await.context("outbox task")?;
        retention_task.await.context("retention task")?;
        server_handle.stop(true).await;
        let _ = server_task.await;
        if self.remove_control_dir {
            // The masters are closed (the engine's stop shut the executor down).
            let _ = std::fs::remove_dir_all(default_control_dir());
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How this process appears among the replicas: host, pid and listen address.
fn replica_name(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host} pid {} on {listen}", std::process::id())
}

/// The SSH executor for enforce mode. The config check already made sure a known_hosts
/// file exists: without one nothing could be connected to strictly.
fn build_executor(loaded: &Config) -> anyhow::Result<crate::ssh::Executor> {
    let ssh = &loaded.settings.ssh;
    let control_dir = match &ssh.control_dir {
        Some(dir) => dir.clone(),
        None => {
            remove_stale_control_dirs();
            default_control_dir()
        }
    };
    std::fs::create_dir_all(&control_dir)
        .with_context(|| format!("creating {}", control_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&control_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing {}", control_dir.display()))?;
    }
    crate::ssh::Executor::new(crate::ssh::SshSettings {
        control_dir: Some(control_dir),
        ..ssh.clone()
    })
    .context("setting up SSH")
}

/// Short on purpose: the control sockets live here and Unix socket paths are limited to
/// ~108 bytes. Per process, so two salves on one machine never share masters.
fn default_control_dir() -> PathBuf {
    std::env::temp_dir().join(format!("salve-{}", std::process::id()))
}

/// Removes the default control dirs of salve processes that are gone (killed, crashed):
/// a crash loop must not fill the temp dir. A dir whose PID is alive is left alone, even if
/// the PID now belongs to another program. Orphaned masters exit on their own
/// (`ControlPersist`); a command one may still run is not affected by this.
fn remove_stale_control_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let uid = current_uid();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("salve-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|meta| {
            use std::os::unix::fs::MetadataExt;
            meta.is_dir() && meta.uid() == uid
        });
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::debug!(dir = %entry.path().display(), "removed a stale control dir")
                }
                Err(e) => {
                    tracing::debug!(dir = %entry.path().display(), error = %e, "cannot remove a stale control dir")
                }
            }
        }
    }
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // Our own /proc entry is owned by our real UID.
    std::fs::metadata("/proc/self").map_or(u32::MAX, |meta| meta.uid())
}

fn build_remediator(
    loaded: &Config,
    executor: Arc<crate::ssh::Executor>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
) -> anyhow::Result<Remediator> {
    let settings = &loaded.settings;
    let verifier = Verifier::new().context("setting up the HTTP check client")?;
    Ok(Remediator::new(
        store,
        executor,
        verifier,
        crate::engine::remediate::Bounds {
            check_timeout: settings.ssh.command_timeout,
            max_parallel: settings.engine.max_parallel,
            limits: crate::engine::remediate::RateLimits::new(&settings.limits),
        },
        metrics,
        wake,
    )
    .with_approval_timeout(settings.approval.timeout)
    .with_pauses(crate::engine::remediate::PauseSettings {
        windows: loaded.maintenance.clone(),
        error_budget: settings.engine.error_budget,
        budget_channels: settings.escalation.default.clone(),
    }))
}

#[cfg(test)]
mod tests {
    //! salve in-process on port 0: a real listener, real HTTP, the real SQLite store, no
    //! SSH (dry-run). Stopped by a token instead of a signal.

    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use super::*;
    use crate::incident::State;

    /// A temp dir with an empty recipe dir and `salve.toml` (dry-run, port 0, a store in
    /// the dir) plus `extra` TOML; the config as `salve serve` would load it.
    fn config_in(dir: &Path, extra: &str) -> Config {
        std::fs::create_dir(dir.join("recipes")).unwrap();
        let path = dir.join("salve.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n\n\
                 [recipes]\ndir = \"{}\"\n\n[engine]\nmode = \"dry-run\"\n\n{extra}",
                dir.join("salve.db").display(),
                dir.join("recipes").display(),
            ),
        )
        .unwrap();
        crate::config::load_with_env(Some(&path), BTreeMap::new())
            .unwrap_or_else(|problems| panic!("{problems:?}"))
    }

    /// Builds the app and runs it on a task until `stop` is cancelled.
    async fn start(
        loaded: Config,
        stop: &CancellationToken,
    ) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
        let app = App::build(loaded, BuildOptions::default()).await.unwrap();
        let base_url = format!("http://{}", app.local_addr());
        assert_ne!(app.local_addr().port(), 0, "port 0 is resolved at build");
        let running = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
        (base_url, running)
    }

    async fn post_alert(base_url: &str, alertname: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{base_url}/hooks/generic"))
            .json(&json!({ "labels": { "alertname": alertname } }))
            .send()
            .await
            .unwrap()
    }

    /// Polls until `ready` answers `Some`, for at most `within`.
    async fn wait_for<T, F: Future<Output = Option<T>>>(
        within: Duration,
        what: &str,
        mut ready: impl FnMut() -> F,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = ready().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /api/v1/incidents` (open: no credentials, loopback).
    async fn incidents(base_url: &str) -> Vec<Value> {
        reqwest::get(format!("{base_url}/api/v1/incidents"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_app_on_port_0_takes_a_webhook_and_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let (base_url, running) = start(config_in(dir.path(), ""), &stop).await;

        let response = post_alert(&base_url, "NoRecipe").await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{:?}",
            response.text().await
        );
        let stored = wait_for(Duration::from_secs(20), "the incident planned", || {
            let base_url = base_url.clone();
            async move {
                let listed = incidents(&base_url).await;
                (listed.first()?["state"] == "unmatched").then_some(listed)
            }
        })
        .await;
        assert_eq!(stored.len(), 1, "{stored:#?}");

        let stopping = Instant::now();
        stop.cancel();
        // Nothing runs or is in flight: the stop does not wait out any grace.
        tokio::time::timeout(Duration::from_secs(20), running)
            .await
            .expect("run_until returns once cancelled")
            .unwrap()
            .unwrap();
        assert!(stopping.elapsed() < Duration::from_secs(20));
        assert!(
            reqwest::get(format!("{base_url}/healthz")).await.is_err(),
            "the listener is closed after run_until"
        );
        let store = crate::store::sqlite::SqliteStore::open(&format!(
            "sqlite://{}",
            dir.path().join("salve.db").display()
        ))
        .unwrap();
        let unmatched = store
            .incidents_in_state(State::Unmatched, 10)
            .await
            .unwrap();
        assert_eq!(unmatched.len(), 1, "{unmatched:#?}");
    }

    /// A delivery to an escalation webhook that never answers is in flight at the stop: the
    /// outbox gives it its grace, and meanwhile salve answers, but refuses work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_it_drains_readyz_and_webhooks_answer_503_with_retry_after() {
        let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let loaded = config_in(
            dir.path(),
            &format!(
                "[escalation]\ndefault = [\"stalled\"]\n\n[escalation.channels.stalled]\n\
                 kind = \"webhook\"\nurl = \"http://{}/\"\ntimeout = \"60s\"\n",
                stalled.local_addr().unwrap()
            ),
        );
        let stop = CancellationToken::new();
        let (base_url, running) = start(loaded, &stop).await;
        let ready = reqwest::get(format!("{base_url}/readyz")).await.unwrap();
        assert_eq!(ready.status().as_u16(), 200);

        assert_eq!(
            post_alert(&base_url, "NoRecipe").await.status().as_u16(),
            200
        );
        // Held open, never answered: the escalation's delivery stays in flight.
        let (_delivery, _) = tokio::time::timeout(Duration::from_secs(20), stalled.accept())
            .await
            .expect("the escalation is delivered to the stalled webhook")
            .unwrap();

        let stopping = Instant::now();
        stop.cancel();
        let readyz = wait_for(Duration::from_secs(5), "/readyz 503 while draining", || {
            let url = format!("{base_url}/readyz");
            async move {
                let response = reqwest::get(url).await.ok()?;
                (response.status().as_u16() == 503).then_some(response)
            }
        })
        .await;
        assert_eq!(
            readyz
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5"),
            "{:?}",
            readyz.headers()
        );
        let body: Value = readyz.json().await.unwrap();
        assert_eq!(body["status"], "shutting down", "{body:#}");
        let refused = post_alert(&base_url, "Late").await;
        assert_eq!(refused.status().as_u16(), 503);
        assert!(!running.is_finished(), "still draining the delivery");

        // The outbox's grace is 10 s; 40 s leaves room for two loaded cores.
        tokio::time::timeout(Duration::from_secs(40), running)
            .await
            .expect("run_until returns after the outbox's grace")
            .unwrap()
            .unwrap();
        assert!(
            stopping.elapsed() >= Duration::from_secs(5),
            "{:?}",
            stopping.elapsed()
        );
    }
}
