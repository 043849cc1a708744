//! `salve serve`: wire store, recipes, engine and HTTP together, run until SIGTERM or
//! SIGINT, then stop accepting, let the engine finish its step, and exit.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::{Notify, watch};

use crate::config::Loaded;
use crate::engine::Engine;
use crate::http::{self, AppState, GrafanaSignature, auth::Credentials};
use crate::intake::Limits;
use crate::metrics::Metrics;
use crate::plan::Mode;
use crate::recipe;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

pub async fn run(loaded: Loaded, force_dry_run: bool) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    let recipes = match recipe::load_dir(&settings.recipes.dir, &loaded.channel_names()) {
        Ok(recipes) => recipes,
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
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&settings.store.url)
            .with_context(|| format!("opening store {}", settings.store.url))?,
    );
    let metrics = Metrics::new();
    let wake = Arc::new(Notify::new());
    let mode = if force_dry_run {
        Mode::DryRun
    } else {
        settings.engine.mode
    };

    let listener =
        TcpListener::bind(loaded.listen).with_context(|| format!("binding {}", loaded.listen))?;
    let address = listener.local_addr()?;
    if !loaded.auth_configured() {
        tracing::warn!(%address, "no webhook credentials configured: anyone who can reach this address can post alerts");
    }
    let state = AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        credentials: Credentials {
            bearer_token: loaded.bearer_token.clone(),
            basic: loaded.basic.clone(),
        },
        limits: Limits {
            max_alerts: settings.intake.max_alerts,
            max_labels: settings.intake.max_labels,
            max_name_bytes: settings.intake.max_name_bytes,
            max_value_bytes: settings.intake.max_value_bytes,
        },
        body_limit_bytes: settings.server.body_limit_bytes,
        grafana: loaded
            .grafana_secret
            .clone()
            .map(|secret| GrafanaSignature {
                secret,
                signature_header: settings.intake.grafana.signature_header.clone(),
                timestamp_header: settings.intake.grafana.timestamp_header.clone(),
                max_skew: settings.intake.grafana.max_timestamp_skew,
            }),
        wake: wake.clone(),
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let server = http::server(state, listener, workers)?;
    let server_handle = server.handle();

    let engine = Engine {
        store: store.clone(),
        recipes: Arc::new(recipes),
        inventory: loaded.inventory(),
        mode,
        default_escalation: settings.escalation.default.clone(),
        metrics,
        wake,
    };
    let (stop_engine, engine_stopped) = watch::channel(false);
    let engine_task = tokio::spawn(engine.run(engine_stopped));
    let mut server_task = tokio::spawn(server);

    tracing::info!(%address, config = %loaded.origin, store = %settings.store.url, mode = mode.as_str(), "salve serving");
    // The one line on stdout: scripts and tests wait for it.
    println!("listening on {address}");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        result = &mut server_task => {
            result.context("HTTP server task")?.context("HTTP server")?;
            bail!("HTTP server stopped unexpectedly");
        }
    }
    server_handle.stop(true).await;
    let _ = stop_engine.send(true);
    engine_task.await.context("engine task")?;
    let _ = server_task.await;
    tracing::info!("stopped");
    Ok(())
}
