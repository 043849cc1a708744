//! Read-only endpoints: liveness, readiness, metrics, and the incidents API.
//! The incidents API shows alert data and can reset breakers, so it takes its own named,
//! scoped tokens (`[server.api]`), never the webhook credential; every change it makes
//! is journaled with the token's name.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::ApiDenied;
use super::hooks::{Rejection, check_content_type, read_body_within};
use crate::config::ApiScope;
use crate::incident::{IncidentId, State};
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRefusal, BreakerResetOutcome, IncidentFilter,
};

pub mod pauses;

/// `limit` beyond this is cut to it.
pub const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 100;
/// A listing stops adding incidents once its JSON reaches this size (at least one is
/// always answered; one incident is bounded by the intake limits), and says where to
/// go on in its `Link: <…?before=ID>; rel="next"` header.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// `{"recipe": …, "target": …}` needs no more.
const MAX_RESET_BODY: usize = 4 * 1024;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the store answers: the one dependency intake needs to acknowledge.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, super::hooks::RETRY_AFTER_SECONDS))
            .json(json!({ "status": "shutting down" }));
    }
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "error": e.to_string() })),
    }
}

/// OpenMetrics when the scraper prefers it, else the Prometheus text format 0.0.4.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"))
        .body(state.metrics.encode_as(format))
}

/// The caller's name when it may do `needed`, else why not.
pub(super) fn authorized(
    req: &HttpRequest,
    state: &AppState,
    needed: ApiScope,
) -> Result<String, ApiDenied> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.api.authorize(authorization, needed)
}

/// 401 (with a challenge) or 403, with the reason.
pub(super) fn refusal(denied: ApiDenied, needed: ApiScope) -> HttpResponse {
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(denied.status())
            .expect("401 and 403 are status codes"),
    );
    if denied.status() == 401 {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"salve-api\""));
    }
    response.json(json!({ "status": "error", "error": denied.reason(needed) }))
}

/// `GET /api/v1/incidents` query: every field optional, any other key refused (400), so a
/// misspelt filter never lists everything.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    /// Cursor: only incidents with a smaller id (the `next` link gives it).
    before: Option<i64>,
    /// An incident state (`succeeded`, `failed`, ...).
    state: Option<String>,
    alertname: Option<String>,
    /// The plan's target (inventory name).
    host: Option<String>,
    /// The plan's recipe.
    recipe: Option<String>,
    /// RFC 3339: first seen at or after this time.
    since: Option<String>,
}

impl ListQuery {
    /// The store filter, or a message for the caller (400).
    fn filter(&self) -> Result<IncidentFilter, String> {
        let state = match self.state.as_deref() {
            None => None,
            Some(text) => Some(State::parse(text).ok_or_else(|| {
                let known: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {text:?}; one of {}", known.join(", "))
            })?),
        };
        let since = match self.since.as_deref() {
            None => None,
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|e| {
                        format!(
                            "since {text:?} is not an RFC 3339 time (2026-01-31T12:00:00Z): {e}"
                        )
                    })?
                    .with_timezone(&chrono::Utc),
            ),
        };
        Ok(IncidentFilter {
            state,
            alertname: self.alertname.clone(),
            host: self.host.clone(),
            recipe: self.recipe.clone(),
            since,
            before: self.before.map(IncidentId),
        })
    }

    /// This query's filters (not `before`) as `&key=value` pairs, for the next link.
    fn filters_query(&self) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let pairs = [
            ("state", &self.state),
            ("alertname", &self.alertname),
            ("host", &self.host),
            ("recipe", &self.recipe),
            ("since", &self.since),
        ];
        pairs
            .iter()
            .filter_map(|(key, value)| {
                value
                    .as_deref()
                    .map(|v| format!("&{key}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            })
            .collect()
    }
}

/// 400 with the reason as JSON: how a bad query string or path is answered (registered
/// as actix's `QueryConfig`/`PathConfig` error handler, so no extractor answers text).
pub fn bad_request(reason: impl std::fmt::Display) -> HttpResponse {
    // Parts of a refused query come back in the reason: no control characters, bounded.
    let reason: String = reason
        .to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(400)
        .collect();
    HttpResponse::BadRequest().json(json!({ "status": "error", "error": reason }))
}

/// A query string the extractor refused, as a JSON 400.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let reason = format!("bad query string: {err}");
    actix_web::error::InternalError::from_response(err, bad_request(reason)).into()
}

/// A path parameter the extractor refused (`/api/v1/incidents/abc`), as a JSON 400.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    let reason = format!("bad path: {err}");
    actix_web::error::InternalError::from_response(err, bad_request(reason)).into()
}

/// Any path salve does not serve: a JSON 404.
pub async fn no_such_route() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "status": "error", "error": "no such route" }))
}

/// One incident in a listing: the incident without its plan (`/api/v1/incidents/{id}` has
/// the plan and the journal), with the plan's recipe and target name beside it.
fn summary(incident: &crate::incident::Incident) -> serde_json::Value {
    let recipe = incident.plan.as_ref().and_then(|p| p.recipe.clone());
    let host = incident
        .plan
        .as_ref()
        .and_then(|p| p.target.as_ref())
        .map(|t| t.name.clone());
    let mut value = serde_json::to_value(incident).expect("an incident always serialises");
    if let Some(object) = value.as_object_mut() {
        object.remove("plan");
        object.insert("recipe".into(), json!(recipe));
        object.insert("host".into(), json!(host));
        object.insert(
            "url".into(),
            json!(format!("/api/v1/incidents/{}", incident.id.0)),
        );
    }
    value
}

/// `GET /api/v1/incidents?state=&alertname=&host=&recipe=&since=&limit=N&before=ID`:
/// incident summaries newest first (no plan, no journal: `/api/v1/incidents/{id}` has
/// them), in one query; every filter given must hold. `limit` defaults to 100 and is cut
/// to 500; the answer stops at about 4 MiB. When more may follow, a `Link` header names
/// the next page (same filters). A bad query is a JSON 400.
pub async fn list_incidents(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(denied) = authorized(&req, &state, ApiScope::Read) {
        return refusal(denied, ApiScope::Read);
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(reason) => return bad_request(reason),
    };
    // One more than asked: tells whether a next page exists.
    let incidents = match state.store.incidents_matching(&filter, limit + 1).await {
        Ok(incidents) => incidents,
        Err(e) => {
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "error", "error": e.to_string() }));
        }
    };
    let mut body = Vec::with_capacity(4096);
    body.push(b'[');
    let mut answered = 0;
    let mut next = None;
    for incident in incidents.iter().take(limit) {
        let item = serde_json::to_vec(&summary(incident)).expect("a summary always serialises");
        if answered > 0 && body.len() + item.len() + 2 > MAX_ANSWER_BYTES {
            break;
        }
        if answered > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item);
        answered += 1;
        next = Some(incident.id);
    }
    body.push(b']');
    let more = incidents.len() > answered;
    let mut response = HttpResponse::Ok();
    response.content_type("application/json");
    if more && let Some(last) = next {
        response.insert_header((
            header::LINK,
            format!(
                "</api/v1/incidents?limit={limit}&before={}{}>; rel=\"next\"",
                last.0,
                query.filters_query()
            ),
        ));
    }
    response.body(body)
}

pub async fn get_incident(
    req: HttpRequest,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(denied) = authorized(&req, &state, ApiScope::Read) {
        return refusal(denied, ApiScope::Read);
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

/// `GET /api/v1/breakers`: every (recipe, breaker key) with runs in its window, open or
/// not — what `salve breaker list --json` prints. Needs a `read` token.
pub async fn list_breakers(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(denied) = authorized(&req, &state, ApiScope::Read) {
        return refusal(denied, ApiScope::Read);
    }
    match state.store.breakers().await {
        Ok(breakers) => HttpResponse::Ok().json(breakers),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerReset {
    recipe: String,
    /// The breaker key (`salve breaker list`); `target` is accepted for it, as before
    /// breaker keys, when the key is the target's name.
    #[serde(alias = "target")]
    key: String,
}

/// An operator's JSON request: the `operate` token's name and the body read as `T`
/// (within `limit` bytes and the body deadline), or the answer refusing it. `shape`
/// shows the expected body in a 400.
pub(super) async fn operate_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    limit: usize,
    shape: &str,
) -> Result<(String, T), HttpResponse> {
    let by = authorized(req, state, ApiScope::Operate)
        .map_err(|denied| refusal(denied, ApiScope::Operate))?;
    let bytes = match check_content_type(req.headers()) {
        Ok(()) => read_body_within(req.headers(), body, limit, state.body_timeout).await,
        Err(rejection) => Err(rejection),
    };
    let parsed = bytes.and_then(|bytes| {
        serde_json::from_slice(&bytes)
            .map_err(|e| Rejection::BadRequest(format!("expected {shape}: {e}")))
    });
    match parsed {
        Ok(parsed) => Ok((by, parsed)),
        Err(rejection) => Err(rejection.response()),
    }
}

/// `POST /api/v1/breakers/reset` with `{"recipe": …, "key": …}`: the next incident for
/// that breaker runs again. Needs an `operate` token; journals `breaker_reset` with the
/// token's name (`by`) on the key's newest incident. 404 when that breaker never ran
/// (naming, for a recipe that did run, some keys it ran under).
pub async fn reset_breaker(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let shape = r#"{"recipe": "…", "key": "…"}"#;
    let (by, reset): (String, BreakerReset) =
        match operate_json(&req, body, &state, MAX_RESET_BODY, shape).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    match state
        .store
        .reset_breaker(&reset.recipe, &reset.key, &by)
        .await
    {
        Ok(BreakerResetOutcome::Reset(done)) => {
            tracing::info!(recipe = %reset.recipe, key = %reset.key, by = %by, incident = done.incident.0, "breaker reset through the API");
            HttpResponse::Ok().json(json!({
                "status": "ok",
                "recipe": reset.recipe,
                "key": reset.key,
                "by": by,
                "runs_forgotten": done.runs_forgotten,
                "journaled_on": done.incident.0,
            }))
        }
        Ok(BreakerResetOutcome::UnknownRecipe) => HttpResponse::NotFound().json(json!({
            "status": "error",
            "error": "no breaker of this recipe: it never ran; nothing to reset",
        })),
        Ok(BreakerResetOutcome::UnknownKey { known_keys }) => {
            HttpResponse::NotFound().json(json!({
                "status": "error",
                "error": "this recipe never ran under this breaker key; nothing to reset",
                "known_keys": known_keys,
            }))
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}

/// `{"reason": …}` for a deny; at most this many bytes.
const MAX_DECISION_BODY: usize = 4 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    reason: String,
}

/// `POST /api/v1/incidents/{id}/approve`: approve the plan of an incident awaiting
/// approval; it goes through the usual gates and runs. Needs an `operate` token; journals
/// `approved` with the token's name. 409 (nothing done) when it is not awaiting approval,
/// was decided, expired, its alert resolved or its plan changed.
pub async fn approve_incident(
    req: HttpRequest,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let by = match authorized(&req, &state, ApiScope::Operate) {
        Ok(by) => by,
        Err(denied) => return refusal(denied, ApiScope::Operate),
    };
    decide_incident(&state, path.into_inner(), ApprovalDecision::Approve, &by).await
}

/// `POST /api/v1/incidents/{id}/deny` with `{"reason": …}`: deny the plan; nothing runs
/// and the incident is escalated once. As `approve_incident` otherwise.
pub async fn deny_incident(
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let shape = r#"{"reason": "…"}"#;
    let (by, deny): (String, DenyBody) =
        match operate_json(&req, body, &state, MAX_DECISION_BODY, shape).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    let decision = ApprovalDecision::deny(Some(&deny.reason), "denied by API (no reason given)");
    decide_incident(&state, path.into_inner(), decision, &by).await
}

async fn decide_incident(
    state: &AppState,
    id: i64,
    decision: ApprovalDecision,
    by: &str,
) -> HttpResponse {
    let word = match decision {
        ApprovalDecision::Approve => "approved",
        ApprovalDecision::Deny { .. } => "denied",
    };
    match state
        .store
        .decide_approval(IncidentId(id), decision, by, None)
        .await
    {
        Ok(ApprovalOutcome::Decided { plan_digest }) => {
            tracing::info!(incident = id, by = %by, decision = word, "approval decided through the API");
            state.wake.notify_one();
            HttpResponse::Ok().json(json!({
                "status": "ok",
                "incident": id,
                "decision": word,
                "by": by,
                "plan_digest": plan_digest,
            }))
        }
        Ok(ApprovalOutcome::Refused(why)) => {
            let body = json!({ "status": "error", "error": why.to_string() });
            match why {
                ApprovalRefusal::NotFound(_) => HttpResponse::NotFound().json(body),
                _ => HttpResponse::Conflict().json(body),
            }
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "error", "error": e.to_string() })),
    }
}
