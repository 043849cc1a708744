//! The HTTP surface (actix-web): webhooks, health, metrics, the incidents API.
//! Handlers journal and return; they never plan, connect or run anything.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, dev::Server, web};
use tokio::sync::Notify;

use crate::config::Secret;
use crate::intake::Limits;
use crate::metrics::Metrics;
use crate::store::Store;

pub mod api;
pub mod auth;
pub mod hooks;

/// Grafana signature settings, resolved.
#[derive(Clone)]
pub struct GrafanaSignature {
    pub secret: Secret,
    pub signature_header: String,
    pub timestamp_header: Option<String>,
    pub max_skew: std::time::Duration,
}

/// Everything a handler may touch.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub credentials: auth::Credentials,
    pub limits: Limits,
    pub body_limit_bytes: usize,
    pub grafana: Option<GrafanaSignature>,
    /// Tells the engine there is new work.
    pub wake: Arc<Notify>,
    /// Set on SIGTERM: webhooks answer 503 and readiness fails while salve drains.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Build the server on an already bound listener (port 0 in tests).
pub fn server(state: AppState, listener: TcpListener, workers: usize) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hooks/alertmanager", web::post().to(hooks::alertmanager))
            .route("/hooks/grafana", web::post().to(hooks::grafana))
            .route("/hooks/generic", web::post().to(hooks::generic))
            .route("/healthz", web::get().to(api::healthz))
            .route("/readyz", web::get().to(api::readyz))
            .route("/metrics", web::get().to(api::metrics))
            .route("/api/v1/incidents", web::get().to(api::list_incidents))
            .route("/api/v1/incidents/{id}", web::get().to(api::get_incident))
            .route("/api/v1/breakers/reset", web::post().to(api::reset_breaker))
    })
    .workers(workers)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
