//! Read-only endpoints: liveness, readiness, metrics, and the incidents API.
//! The incidents API shows alert data, so it takes the webhook credentials.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::incident::IncidentId;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the store answers: the one dependency intake needs to acknowledge.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting down" }));
    }
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "error": e.to_string() })),
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

fn authorized(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.credentials.accepts(authorization) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"salve\", Basic realm=\"salve\"",
                ))
                .json(json!({ "status": "error", "error": "missing or invalid credentials" })),
        )
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
}

pub async fn list_incidents(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    // Each incident with its journal (steps, check polls, transitions), newest first.
    let details = async {
        let mut details = Vec::new();
        for incident in state.store.list_incidents(limit).await? {
            if let Some(detail) = state.store.incident(incident.id).await? {
                details.push(detail);
            }
        }
        Ok::<_, crate::store::StoreError>(details)
    };
    match details.await {
        Ok(details) => HttpResponse::Ok().json(details),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}

pub async fn get_incident(
    req: HttpRequest,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    match state.store.incident(IncidentId(path.into_inner())).await {
        Ok(Some(detail)) => HttpResponse::Ok().json(detail),
        Ok(None) => {
            HttpResponse::NotFound().json(json!({ "status": "error", "error": "no such incident" }))
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}

#[derive(Deserialize)]
pub struct BreakerReset {
    recipe: String,
    target: String,
}

/// `POST /api/v1/breakers/reset` with `{"recipe": …, "target": …}`: the next incident for
/// that pair runs again. Takes the webhook credentials.
pub async fn reset_breaker(
    req: HttpRequest,
    body: web::Json<BreakerReset>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    match state.store.reset_breaker(&body.recipe, &body.target).await {
        Ok(()) => {
            tracing::info!(recipe = %body.recipe, target = %body.target, "breaker reset through the API");
            HttpResponse::Ok()
                .json(json!({ "status": "ok", "recipe": body.recipe, "target": body.target }))
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}
