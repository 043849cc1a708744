//! The HTTP surface (actix-web): webhooks, health, metrics, the incidents API.
//! Handlers journal and return; they never plan, connect or run anything.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::Notify;

use crate::intake::Limits;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

pub mod api;
pub mod approve;
pub mod auth;
pub mod hooks;
pub mod reload;
pub mod ui;

/// Grafana signature settings, with the secret resolved (inline or from its file).
#[derive(Clone)]
pub struct GrafanaSignature {
    pub secret: Secret,
    /// `[intake.grafana]` as configured (its own secret fields are not read here).
    pub settings: crate::config::GrafanaSettings,
}

/// Everything a handler may touch.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub credentials: auth::Credentials,
    /// Who may read incidents and reset breakers (never the webhook credential).
    pub api: auth::ApiAccess,
    /// Refuse requests whose `Host` is not a loopback name (DNS rebinding): set when no
    /// credential of any kind is configured and salve listens on loopback.
    pub loopback_hosts_only: bool,
    /// A request body must arrive within this long (408 otherwise).
    pub body_timeout: std::time::Duration,
    pub limits: Limits,
    pub body_limit_bytes: usize,
    pub grafana: Option<GrafanaSignature>,
    /// Tells the engine there is new work.
    pub wake: Arc<Notify>,
    /// Checks approve/deny links; `None` without `[approval] key` (the link routes 404).
    pub approval_links: Option<Arc<crate::approval::LinkSigner>>,
    /// salve's stop signal: once cancelled, webhooks answer 503 and readiness fails while
    /// salve drains.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// `POST /-/reload` (operate scope).
    pub reloader: Arc<crate::reload::Reloader>,
    /// Maintenance windows and inventory names, for the pauses API.
    pub pauses: Arc<api::pauses::PauseContext>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// Reading a request's headers may take this long (actix's `client_request_timeout`,
/// 408 after it); with `body_timeout` it bounds how long a slow client holds a connection.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// With no credentials configured, only requests addressed to a loopback name are served
/// (`/healthz` excepted: it says nothing and probes use it). A page on `evil.example`
/// whose DNS answer flips to 127.0.0.1 sends `Host: evil.example` and gets 421
/// Misdirected Request: this server does not answer for that name. Not 401/403: no
/// credential would help, the name is wrong.
async fn loopback_host_guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let guarded = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.loopback_hosts_only);
    if guarded && request.path() != "/healthz" {
        let host = request
            .headers()
            .get(actix_web::http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
        if !host.as_deref().is_some_and(auth::is_loopback_host) {
            let response = HttpResponse::MisdirectedRequest().json(serde_json::json!({
                "status": "error",
                "error": "no credentials are configured, so salve answers only requests addressed to localhost, 127.0.0.0/8 or [::1] (Host header); configure [server.auth] and [server.api] to serve other names",
            }));
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// The webhook paths: any method but POST on them is a 405 (`hooks::post_only`).
const HOOK_PATHS: &str = "/hooks/{source:(alertmanager|grafana|generic)}";

/// Build the server on an already bound listener (port 0 in tests). At most
/// `max_connections` connections are open at once, all workers together (actix counts
/// per worker, so fewer workers when the limit is small); beyond it connections wait in
/// the listen backlog until the header/body/keep-alive deadlines free a slot.
pub fn server(
    state: AppState,
    listener: TcpListener,
    workers: usize,
    max_connections: usize,
) -> std::io::Result<Server> {
    let workers = workers.clamp(1, max_connections.max(1));
    let per_worker = (max_connections / workers).max(1);
    let state = web::Data::new(state);
    let ui_sessions = web::Data::new(ui::session::Sessions::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(ui_sessions.clone())
            .configure(ui::routes)
            .wrap(from_fn(loopback_host_guard))
            .app_data(web::QueryConfig::default().error_handler(api::query_error))
            .app_data(web::PathConfig::default().error_handler(api::path_error))
            .default_service(web::to(api::no_such_route))
            .route("/hooks/alertmanager", web::post().to(hooks::alertmanager))
            .route("/hooks/grafana", web::post().to(hooks::grafana))
            .route("/hooks/generic", web::post().to(hooks::generic))
            .route(HOOK_PATHS, web::route().to(hooks::post_only))
            .route("/healthz", web::get().to(api::healthz))
            .route("/readyz", web::get().to(api::readyz))
            .route("/metrics", web::get().to(api::metrics))
            .route("/api/v1/incidents", web::get().to(api::list_incidents))
            .route("/api/v1/incidents/{id}", web::get().to(api::get_incident))
            .route("/api/v1/breakers", web::get().to(api::list_breakers))
            .route("/api/v1/breakers/reset", web::post().to(api::reset_breaker))
            .route(
                "/api/v1/incidents/{id}/approve",
                web::post().to(api::approve_incident),
            )
            .route(
                "/api/v1/incidents/{id}/deny",
                web::post().to(api::deny_incident),
            )
            .route("/approve/{token}", web::get().to(approve::approve_page))
            .route("/approve/{token}", web::post().to(approve::approve_post))
            .route("/deny/{token}", web::get().to(approve::deny_page))
            .route("/deny/{token}", web::post().to(approve::deny_post))
            .route("/-/reload", web::post().to(reload::reload))
            .route("/api/v1/pauses", web::get().to(api::pauses::list_pauses))
            .route("/api/v1/pauses", web::post().to(api::pauses::create_pause))
            .route(
                "/api/v1/pauses/{id}/resume",
                web::post().to(api::pauses::resume_pause),
            )
    })
    .workers(workers)
    .max_connections(per_worker)
    .client_request_timeout(HEADER_TIMEOUT)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}
