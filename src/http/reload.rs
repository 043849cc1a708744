//! `POST /-/reload` (operate scope): the same reload as SIGHUP, with its outcome in the
//! answer. Reads files off the async workers; never runs anything.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::api::{authorized, refusal};
use crate::config::ApiScope;

/// 200 with what changed (and the settings that need a restart) when the new set is in
/// force; 422 with every problem when it was refused and the old set still runs.
pub async fn reload(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let by = match authorized(&req, &state, ApiScope::Operate) {
        Ok(by) => by,
        Err(denied) => return refusal(denied, ApiScope::Operate),
    };
    tracing::info!(by = %by, "reload requested through the API");
    let reloader = state.reloader.clone();
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(Ok(reloaded)) => HttpResponse::Ok().json(json!({
            "status": "ok",
            "reloaded": reloaded,
        })),
        Ok(Err(failed)) => HttpResponse::UnprocessableEntity().json(json!({
            "status": "error",
            "error": "reload refused: still running the previous config and recipes",
            "problems": failed.problems,
        })),
        Err(e) => HttpResponse::InternalServerError()
            .json(json!({ "status": "error", "error": format!("reload task: {e}") })),
    }
}
